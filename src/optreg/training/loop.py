"""The training loop: one epoch of steps over slices of the data, and evaluation.

Reads top to bottom, nanoGPT-style: for each batch — slice, normalise, forward, loss, backward,
optimizer step, scheduler step. Losses stay tensors inside the epoch (no ``.item()`` per step:
on a GPU that is a device sync); they are checked for NaN/Inf every ``check_every`` steps, so a
diverging run stops within that many steps and the error names the first bad step.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from optreg.data import Cifar10Split, iterate_batches, normalize, num_batches
from optreg.results import History

EVAL_BATCH_SIZE = 1000


class DivergenceError(RuntimeError):
    """The training loss became NaN or Inf."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class EpochResult:
    """What one epoch of training measured (losses are means over the epoch's batches)."""

    train_loss: float  # cross-entropy data term
    train_objective: float  # the minimised objective (data term + any penalty in the loss)
    seconds: float  # wall time of the training steps alone
    images: int  # images processed


class StepTrace:
    """Per-step measurements of the first ``steps`` optimizer steps of a run.

    For step t (1-based, counted over the whole run): ``loss`` is the minimised objective of the
    batch, and ``update_rms`` = ‖θ_t − θ_{t−1}‖ / √n over all n parameters: the size of what the
    optimizer did (divide by the learning rate for the effective step in units of lr). Costs one
    copy of the parameters per traced step, and nothing once ``steps`` are recorded.
    """

    def __init__(self, steps: int, done: dict[str, list[float]] | None = None) -> None:
        self.steps = steps
        self.series: dict[str, list[float]] = done or {"loss": [], "update_rms": []}
        self._before: torch.Tensor | None = None

    @property
    def active(self) -> bool:
        return len(self.series["loss"]) < self.steps

    def before_step(self, model: nn.Module) -> None:
        self._before = _flat(model)

    def after_step(self, model: nn.Module, loss: torch.Tensor) -> None:
        assert self._before is not None, "before_step was not called"
        delta = _flat(model) - self._before
        self.series["update_rms"].append(delta.square().mean().sqrt().item())
        self.series["loss"].append(loss.item())
        self._before = None


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).double() for p in model.parameters()])


def train_epoch(
    model: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    data: Cifar10Split,
    *,
    batch_size: int,
    epoch: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    generator: torch.Generator | None = None,
    shuffle: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    trace: StepTrace | None = None,
    check_every: int = 100,
    on_steps: Callable[[int], None] | None = None,
) -> EpochResult:
    """Train ``model`` for one pass over ``data`` in batches of ``batch_size``.

    The data is taken in stored order, or with ``shuffle`` in a fresh permutation drawn from
    ``generator``. ``transform`` (e.g. augmentation, which draws from ``generator`` too) maps
    each uint8 batch before it is normalised. ``criterion`` returns the objective to minimise; if
    it has a ``last_data_term`` attribute (optreg's :class:`~optreg.CrossEntropyLoss`), that is
    recorded as the training loss, so an L2 penalty in the loss does not blur comparisons.

    Raises:
        DivergenceError: a loss was NaN or Inf; names the epoch (1-based) and step (1-based).
    """
    model.train()
    n = len(data)
    n_steps = num_batches(n, batch_size)
    batches = iterate_batches(data.images, data.labels, batch_size, shuffle=shuffle,
                              generator=generator)
    data_terms = torch.empty(n_steps, device=data.device)
    objectives = torch.empty(n_steps, device=data.device)
    has_data_term = hasattr(criterion, "last_data_term")

    checked = 0  # steps whose loss was already checked for NaN/Inf
    start_time = time.perf_counter()
    for step, (images, y) in enumerate(batches):
        if transform is not None:
            images = transform(images)
        loss = criterion(model(normalize(images)), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        tracing = trace is not None and trace.active
        if tracing:
            trace.before_step(model)
        optimizer.step()
        if tracing:
            trace.after_step(model, loss)
        if scheduler is not None:
            scheduler.step()
        objectives[step] = loss.detach()
        data_terms[step] = criterion.last_data_term if has_data_term else objectives[step]
        if step + 1 - checked == check_every or step + 1 == n_steps:
            _check_finite(objectives, checked, step + 1, epoch)
            if on_steps is not None:
                on_steps(step + 1 - checked)
            checked = step + 1
    seconds = time.perf_counter() - start_time
    return EpochResult(
        train_loss=data_terms.mean().item(),
        train_objective=objectives.mean().item(),
        seconds=seconds,
        images=n,
    )


def _check_finite(losses: torch.Tensor, start: int, stop: int, epoch: int) -> None:
    """Raise DivergenceError at the first non-finite value of ``losses[start:stop]``."""
    window = losses[start:stop]
    bad = ~torch.isfinite(window)
    if bad.any():
        first = int(bad.nonzero()[0, 0])
        raise DivergenceError(epoch, start + first + 1, window[first].item())


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Cifar10Split, *, batch_size: int = EVAL_BATCH_SIZE
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``data``, in eval mode, no autograd.

    The loss is torch's ``F.cross_entropy`` (summed, then divided by N), the same ruler for
    every scenario whichever loss it trained with. Restores train mode if it was on.
    """
    was_training = model.training
    model.eval()
    total_loss = torch.zeros((), dtype=torch.float64, device=data.device)
    correct = torch.zeros((), dtype=torch.int64, device=data.device)
    for start in range(0, len(data), batch_size):
        x = normalize(data.images[start : start + batch_size])
        y = data.labels[start : start + batch_size]
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").double()
        correct += (logits.argmax(dim=1) == y).sum()
    model.train(was_training)
    n = len(data)
    return total_loss.item() / n, correct.item() / n


def fit(
    model: nn.Module,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    train: Cifar10Split,
    valid: Cifar10Split,
    *,
    epochs: int,
    batch_size: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    generator: torch.Generator | None = None,
    shuffle: bool = False,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    trace: StepTrace | None = None,
    history: History | None = None,
    on_epoch_end: Callable[[int, History], None] | None = None,
    log: Callable[[str], None] = print,
    on_steps: Callable[[int], None] | None = None,
) -> History:
    """Train for ``epochs`` (continuing ``history`` if given), evaluating after each epoch.

    After each epoch the train loss (data term), the minimised objective, the validation loss
    and accuracy, the epoch's training and evaluation times and the learning rate are appended to
    the history, a line is logged, and ``on_epoch_end(epoch, history)`` is called (the run uses it
    to keep the best weights and to checkpoint). Training time excludes evaluation.

    Raises:
        DivergenceError: the training loss became NaN or Inf (the history keeps the epochs
            finished before).
    """
    history = history if history is not None else History()
    for epoch in range(history.epochs + 1, epochs + 1):
        stats = train_epoch(
            model, criterion, optimizer, train, batch_size=batch_size, epoch=epoch,
            scheduler=scheduler, generator=generator, shuffle=shuffle, transform=transform,
            trace=trace, on_steps=on_steps,
        )
        eval_start = time.perf_counter()
        valid_loss, valid_acc = evaluate(model, valid)
        history.eval_s.append(time.perf_counter() - eval_start)
        history.train_loss.append(stats.train_loss)
        history.train_objective.append(stats.train_objective)
        history.valid_loss.append(valid_loss)
        history.valid_acc.append(valid_acc)
        history.train_s.append(stats.seconds)
        history.lr.append(float(optimizer.param_groups[0]["lr"]))
        log(f"epoch {epoch}/{epochs}: train loss {stats.train_loss:.4f}, valid loss "
            f"{valid_loss:.4f}, valid acc {valid_acc:.2%}, "
            f"{stats.images / stats.seconds:,.0f} img/s")
        if on_epoch_end is not None:
            on_epoch_end(epoch, history)
    return history
