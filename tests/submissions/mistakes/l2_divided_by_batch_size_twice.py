# Mistake l2_divided_by_batch_size_twice (torch style: check with --optimizer MyAdam):
# weight_decay is already lambda/B, and it is divided by the batch size again.
import torch
from torch.optim import Optimizer


class MyAdam(Optimizer):
    """Adam in torch's signature: weight_decay is torch's raw coefficient."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group['betas']
            wd = group['weight_decay']
            for p in group['params']:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state['step'] = 0
                    state['exp_avg'] = torch.zeros_like(p)
                    state['exp_avg_sq'] = torch.zeros_like(p)
                state['step'] += 1
                t = state['step']
                g = p.grad
                if wd != 0:
                    g = g.add(p, alpha=wd / 32)  # divided by the batch size: weight_decay already is
                state['exp_avg'].lerp_(g, 1 - beta1)
                state['exp_avg_sq'].mul_(beta2).addcmul_(g, g, value=1 - beta2)
                m_hat = state['exp_avg'] / (1 - beta1 ** t)
                v_hat = state['exp_avg_sq'] / (1 - beta2 ** t)
                p.sub_(group['lr'] * m_hat / (v_hat.sqrt() + group['eps']))
