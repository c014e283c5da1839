# Broken: the optimizer's defaults are still the skeleton's blanks (a syntax error on line 9).
import torch
from torch.optim import Optimizer


class MyAdamOptimizer(Optimizer):

    # set default parameters for Adam from the slides here
    def __init__(self, params, lr=, beta1=, beta2=, eps=, l2=0, adamw=False):
        self.adamw = adamw
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, l2=l2))
