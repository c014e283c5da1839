# A correct solution in torch's signature style: Adam(params, lr, betas, eps, weight_decay), an
# AdamW class beside it, and a loss with keyword-only params/l2 (check with --optimizer MyAdam;
# MyAdamW is found by its name). weight_decay is torch's raw coefficient (λ/B).
import math

import torch
from torch import Tensor, nn
from torch.optim import Optimizer


class CrossEntropyWithL2(nn.Module):
    """Log-sum-exp cross-entropy plus l2/(2B)·Σ‖W‖² over the weight tensors."""

    def __init__(self, *, params=(), l2: float = 0.0):
        super().__init__()
        self.weights = [p for p in params if p.ndim > 1]
        self.l2 = l2

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        log_p = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        loss = -log_p.gather(1, target[:, None]).mean()
        if self.l2:
            loss = loss + self.l2 / (2 * logits.shape[0]) * sum((w * w).sum() for w in self.weights)
        return loss


class MyAdam(Optimizer):

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _decay(self, p: Tensor, grad: Tensor, lr: float, wd: float) -> Tensor:
        return grad.add(p, alpha=wd) if wd else grad  # Adam + L2: through the gradient

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t = state["step"]
                grad = self._decay(p, p.grad, lr, wd)
                state["exp_avg"].lerp_(grad, 1 - beta1)
                state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                denom = state["exp_avg_sq"].sqrt() / math.sqrt(1 - beta2**t) + eps
                p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**t))


class MyAdamW(MyAdam):

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2):
        super().__init__(params, lr, betas, eps, weight_decay)

    def _decay(self, p: Tensor, grad: Tensor, lr: float, wd: float) -> Tensor:
        p.mul_(1 - lr * wd)  # decoupled, torch's form: θ ← θ(1 − lr·λ)
        return grad
