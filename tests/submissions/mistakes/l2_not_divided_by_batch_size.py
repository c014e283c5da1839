# Mistake l2_not_divided_by_batch_size: l2 is used without dividing by the batch size.
import torch
from torch.optim import Optimizer

batch_size = 32


class MyAdamOptimizer(Optimizer):

    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0, adamw=False):
        self.adamw = adamw
        defaults = dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, l2=l2)
        super().__init__(params, defaults)

    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group['beta1'], group['beta2']
            eps, lr, l2 = group['eps'], group['lr'], group['l2']
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if len(state) == 0:
                    state['step'] = 1
                    state['exp_avg'] = torch.zeros_like(p)
                    state['exp_avg_sq'] = torch.zeros_like(p)
                else:
                    state['step'] += 1

                d_p = p.grad
                if not self.adamw and l2 > 0 and len(p.data.size()) > 1:
                        d_p = d_p + l2 * p.data

                step = state['step']
                exp_avg, exp_avg_sq = state['exp_avg'], state['exp_avg_sq']
                exp_avg.mul_(beta1).add_(d_p, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(d_p, d_p, value=1 - beta2)
                m_hat = exp_avg / (1 - beta1 ** step)
                v_hat = exp_avg_sq / (1 - beta2 ** step)
                update = m_hat / (torch.sqrt(v_hat) + eps)

                if self.adamw and l2 > 0 and len(p.data.size()) > 1:
                        update = update + l2 * p.data

                p.data = p.data - lr * update
        return
