"""From a :class:`~optreg.config.RunConfig` to the objects a run trains with.

Each scenario of a study is one config; these functions are the only place that turns its plain
fields into a model, a loss, an optimizer and a schedule.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from optreg.config import RunConfig
from optreg.losses import CrossEntropyLoss
from optreg.models import LeNet5
from optreg.optim import SGD, Adam, RMSprop
from optreg.regularization import param_groups


def build_model(config: RunConfig, device: torch.device) -> nn.Module:
    """Seed with ``config.seed``, then build the model: the same seed, the same initial weights."""
    torch.manual_seed(config.seed)
    return LeNet5().to(device)


def build_loss(config: RunConfig, model: nn.Module, student: Any = None) -> nn.Module:
    """optreg's cross-entropy (with λ = wd·B in the loss when decay_mode is "loss"), torch's,
    or the student's (``student``: their classes), with the config's label smoothing."""
    l2 = config.l2 if config.decay_mode == "loss" else 0.0
    if config.loss == "torch":
        return nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    if config.loss == "custom":
        return _StudentLoss(_need(student).make_loss(model.parameters(), l2=l2))
    return CrossEntropyLoss(label_smoothing=config.label_smoothing, params=model.parameters(),
                            l2=l2, decay=config.decay)


class _StudentLoss(nn.Module):
    """A student's loss, with the data term measured beside it by torch's cross-entropy (the
    ruler every scenario's training loss is read with; the student's value is what trains)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss
        self.last_data_term: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.last_data_term = nn.functional.cross_entropy(logits.detach(), target)
        return self.loss(logits, target)


def _need(student: Any) -> Any:
    if student is None:
        raise ValueError("a custom loss or optimizer needs the student's classes")
    return student


def build_optimizer(config: RunConfig, model: nn.Module,
                    student: Any = None) -> torch.optim.Optimizer:
    """The optimizer a config names, decaying only what ``config.decay`` selects.

    optreg's optimizers choose decayed tensors themselves (their ``decay`` option); torch's get
    two param groups (weight_decay on the selected tensors, 0 on the rest), or, for
    ``decay="all"``, one group as torch users write it.
    """
    params = list(model.parameters())
    in_optimizer = config.decay_mode in ("coupled", "decoupled", "paper")
    wd = config.weight_decay if in_optimizer else 0.0
    if config.implementation == "custom":  # the exercise's λ; the class divides by B itself
        return _need(student).make_optimizer(
            params, lr=config.lr, l2=config.l2 if in_optimizer else 0.0,
            adamw=config.decay_mode == "decoupled", batch_size=config.batch_size)
    if config.implementation == "optreg" and config.optimizer == "sgd":
        return SGD(params, lr=config.lr, momentum=config.momentum, dampening=config.dampening,
                   weight_decay=wd, decay=config.decay)
    if config.implementation == "optreg" and config.optimizer == "rmsprop":
        return RMSprop(params, lr=config.lr, alpha=config.alpha, eps=config.eps,
                       weight_decay=wd, momentum=config.momentum, decay=config.decay)
    if config.implementation == "optreg":
        return Adam(
            params,
            lr=config.lr,
            betas=config.betas,
            eps=config.eps,
            weight_decay=wd,
            amsgrad=config.amsgrad,
            decoupled_weight_decay=config.decay_mode in ("decoupled", "paper"),
            decay=config.decay,
            decay_scale="schedule" if config.decay_mode == "paper" else "lr",
            bias_correction=config.bias_correction,
        )
    groups = param_groups(params, wd, config.decay) if wd > 0 else [{"params": params}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               dampening=config.dampening)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=config.lr, alpha=config.alpha, eps=config.eps,
                                   momentum=config.momentum)
    torch_adam = torch.optim.AdamW if config.decay_mode == "decoupled" else torch.optim.Adam
    return torch_adam(
        groups, lr=config.lr, betas=config.betas, eps=config.eps, amsgrad=config.amsgrad,
        weight_decay=0.0,  # the groups carry the decay
    )


def build_scheduler(
    config: RunConfig, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """None for a constant rate; for "cosine", lr_t = lr·½(1 + cos(π·t/T)), stepped per batch."""
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total_steps) / total_steps))
    )
