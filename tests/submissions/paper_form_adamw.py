# Correct, with AdamW in the paper's form (Loshchilov & Hutter, Algorithm 2): the decay is
# eta_t * lambda * theta with eta_t = 1, not multiplied by lr.
from torchvision import datasets, transforms  # not installed here: the checker skips it
from torch.utils.data import DataLoader
import torch
from torch import nn
import torch.nn.functional as F
from torch.optim import Optimizer
import numpy as np

device = 'cuda' if torch.cuda.is_available() else 'cpu'
print(f'Using device: {device}')

batch_size = 32
learning_rate = 0.001
nb_epochs = 10


class MyCrossEntropyLoss(nn.Module):

    def __init__(self, params, l2=0):
        super().__init__()
        self.l2 = l2
        # a list: model.parameters() is a generator, empty after the first pass
        self.para = list(params)

    def forward(self, y_predicted, y_target):
        y_predicted = F.softmax(y_predicted, dim=1)
        eps = 1e-7
        one_hot = F.one_hot(y_target, num_classes=y_predicted.shape[1])
        log_p = torch.log(y_predicted + eps)
        ce_sum = torch.sum(one_hot * log_p)
        ce_avg = ce_sum / y_predicted.shape[0]
        loss = -ce_avg

        if self.l2 > 0:
            for p in self.para:
                if len(p.data.size()) == 1:
                    continue
                l2_term = torch.sum(p ** 2)
                weight = self.l2 / (2 * y_predicted.shape[0])
                loss = loss + weight * l2_term
        return loss


class MyAdamOptimizer(Optimizer):

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0, adamw=False):
        self.adamw = adamw
        defaults = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, l2=l2)
        super(MyAdamOptimizer, self).__init__(params, defaults)

    def step(self, closure=None):
        for group in self.param_groups:
            beta1 = group['beta1']
            beta2 = group['beta2']
            eps = group['eps']
            lr = group['lr']
            l2 = group['l2']

            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 1
                    state['exp_avg'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state['exp_avg_sq'] = torch.zeros_like(p, memory_format=torch.preserve_format)
                else:
                    state['step'] += 1

                d_p = p.grad
                if not self.adamw and (l2 > 0):
                    if len(p.data.size()) > 1:
                        d_p = d_p + l2 / batch_size * p.data

                step = state['step']
                exp_avg = state['exp_avg']
                exp_avg_sq = state['exp_avg_sq']

                exp_avg.mul_(beta1).add_(d_p, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(d_p, d_p, value=1 - beta2)
                m_hat = exp_avg / (1 - beta1 ** step)
                v_hat = exp_avg_sq / (1 - beta2 ** step)
                update = m_hat / (torch.sqrt(v_hat) + eps)

                if self.adamw and (l2 > 0):
                    if len(p.data.size()) > 1:
                        p.data = p.data - l2 / batch_size * p.data

                p.data = p.data - lr * update
        return


# The training part of the notebook: it must never run inside the checker.
torch.manual_seed(0)
estimator = nn.Linear(3, 3)
optimizer = MyAdamOptimizer(estimator.parameters(), lr=learning_rate)
loss_function = MyCrossEntropyLoss(estimator.parameters())
import time
time.sleep(3600)
