# Broken: the classes are there under other names than the exercise's.
import torch
from torch import nn
from torch.optim import Optimizer


class CrossEntropy(nn.Module):
    def forward(self, y_predicted, y_target):
        return nn.functional.cross_entropy(y_predicted, y_target)


class Adam(Optimizer):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0, adamw=False):
        super().__init__(params, dict(lr=lr))
