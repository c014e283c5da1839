"""One run: a :class:`~optreg.config.RunConfig` in, a :class:`~optreg.results.RunResult` out.

Top to bottom: splits → seed → model → loss → optimizer → schedule → (resume from a checkpoint)
→ epochs of training, each followed by evaluation on the validation split, keeping the best
epoch's weights and writing a checkpoint → final accuracy on the whole train and test splits →
result.
"""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optreg.config import RunConfig
from optreg.data import Cifar10, num_batches
from optreg.data.augment import augmentation_generator, random_crop_flip
from optreg.data.splits import Splits, make_splits
from optreg.progress import progress_bar
from optreg.results import DivergedAt, History, RunResult
from optreg.runtime import execution, machine_info, now
from optreg.training.builders import build_loss, build_model, build_optimizer, build_scheduler
from optreg.training.checkpoint import load_checkpoint, save_checkpoint
from optreg.training.loop import DivergenceError, StepTrace, evaluate, fit
from optreg.training.tensorboard import RunLog, flat_hparams, run_dir_name

Log = Callable[[str], None]


def run(
    config: RunConfig,
    data: Cifar10,
    *,
    device: torch.device | str = "cpu",
    threads: int = 1,
    checkpoint: str | Path | None = None,
    progress: bool = False,
    log: Log | None = None,
    tensorboard: str | Path | None = None,
    student: Any = None,
) -> RunResult:
    """Train and evaluate one config on ``data``; return its result.

    Args:
        config: what to train.
        data: CIFAR-10 as uint8 tensors on any device (moved to ``device`` here, a no-op if
            already there); cut into the run's splits by :func:`optreg.data.splits.make_splits`.
        device: where to compute.
        threads: torch intra-op threads for the run (CPU); fixed so results do not depend on
            what else runs on the machine (the bits may depend on the count: see README).
        checkpoint: file for end-of-epoch checkpoints; an existing one is resumed from.
        progress: show a progress bar (else one log line per epoch).
        log: where per-epoch lines go (default: nowhere).
        tensorboard: write the run's TensorBoard log into its own folder under this one
            (:mod:`optreg.training.tensorboard`; needs the ``tensorboard`` extra).
        student: a student's classes (:class:`optreg.check.submission.StudentClasses`), for a
            config whose loss or optimizer is ``"custom"``.

    A run whose loss becomes NaN/Inf returns ``status="diverged"`` with the epoch and step;
    other exceptions propagate (the executor records them as ``status="failed"``).
    """
    device = torch.device(device)
    log = log or (lambda _line: None)
    splits = make_splits(data, train_size=config.train_size, valid_size=config.valid_size,
                         test_size=config.test_size).to(device)
    started = time.perf_counter()
    with execution(threads, config.flush_denormal and device.type == "cpu"):
        model = build_model(config, device)
        criterion = build_loss(config, model, student)
        optimizer = build_optimizer(config, model, student)
        steps_per_epoch = num_batches(len(splits.train), config.batch_size)
        scheduler = build_scheduler(config, optimizer, steps_per_epoch * config.epochs)
        # The data order and the augmentation draw from separate streams, so turning
        # augmentation on changes nothing but the augmentation.
        generator = torch.Generator().manual_seed(config.seed) if config.shuffle else None
        augmenter = augmentation_generator(config.seed) if config.augment else None
        transform = partial(random_crop_flip, generator=augmenter) if augmenter else None
        state = _RunState(model, optimizer, scheduler, [g for g in (generator, augmenter) if g],
                          StepTrace(config.trace_steps) if config.trace_steps else None,
                          keep_best=splits.validation == "held-out")
        prior_wall_s = 0.0  # wall time spent on this run before it was resumed
        saved = load_checkpoint(checkpoint) if checkpoint else None
        if saved is not None:
            state.restore(saved, config, checkpoint)
            prior_wall_s = float(saved["wall_s"])
            log(f"{config.name}: resumed after epoch {saved['epoch']}")

        bar = progress_bar(config.name, total=config.epochs * steps_per_epoch, enabled=progress,
                           done=state.history.epochs * steps_per_epoch, unit="step")
        board = None if tensorboard is None else RunLog(
            tensorboard, run_dir_name(config.name, config.seed, config.run_id),
            first_epoch=state.history.epochs + 1)

        def end_of_epoch(epoch: int, history: History) -> None:
            state.keep_if_best(history)
            if board is not None:
                board.log_epoch(epoch, _epoch_scalars(config, history, len(splits.train)))
            if checkpoint:
                wall_s = prior_wall_s + time.perf_counter() - started
                save_checkpoint(checkpoint, state.snapshot(config, epoch, wall_s))

        def epoch_line(line: str) -> None:
            text = f"{config.name} {line}"
            if bar.disable:
                log(text)
            else:
                bar.write(text, file=sys.stderr)

        diverged = None
        try:
            fit(model, criterion, optimizer, splits.train, splits.valid, epochs=config.epochs,
                batch_size=config.batch_size, scheduler=scheduler, generator=generator,
                shuffle=config.shuffle, transform=transform, trace=state.trace,
                history=state.history, on_epoch_end=end_of_epoch, on_steps=bar.update,
                log=epoch_line)
        except DivergenceError as e:
            diverged = e
        except BaseException:
            if board is not None:
                board.close()
            raise
        finally:
            bar.close()

        final = _final_evaluation(model, splits, state) if diverged is None else {}
    history = state.history
    wall_s = prior_wall_s + time.perf_counter() - started
    train_s = sum(history.train_s)
    if diverged is not None:
        log(f"{config.name}: diverged: {diverged}")
    result = RunResult(
        id=config.run_id,
        config=config,
        status="ok" if diverged is None else "diverged",
        history=history,
        error=None if diverged is None else f"{config.name}: {diverged}",
        diverged_at=None if diverged is None else DivergedAt(diverged.epoch, diverged.step),
        wall_s=wall_s,
        train_s=train_s,
        eval_s=sum(history.eval_s) + final.pop("eval_s", 0.0),
        train_img_per_s=len(splits.train) * len(history.train_s) / train_s if train_s else None,
        trace=state.trace.series if state.trace is not None else {},
        provenance={**machine_info(), "device": str(device), "threads": threads,
                    "finished_at": now()},
        **final,
    )
    if board is not None:
        with board:
            board.log_hparams(flat_hparams({**config.to_dict(), "run_id": config.run_id}),
                              {"train_acc": result.train_acc, "test_acc": result.test_acc,
                               "best_test_acc": result.best_test_acc, "train_s": train_s,
                               "wall_s": wall_s}, succeeded=diverged is None)
    return result


def _epoch_scalars(config: RunConfig, history: History, images: int) -> dict[str, float]:
    """The last epoch's numbers for TensorBoard (the objective only when the loss holds L2)."""
    scalars = {"train_loss": history.train_loss[-1], "valid_loss": history.valid_loss[-1],
               "valid_acc": history.valid_acc[-1], "lr": history.lr[-1],
               "img_per_s": images / history.train_s[-1]}
    if config.decay_mode == "loss":
        scalars["train_objective"] = history.train_objective[-1]
    return scalars


def _final_evaluation(model: nn.Module, splits: Splits, state: _RunState) -> dict[str, Any]:
    """The exercise's final measure (eval mode, whole splits), plus early stopping's.

    Validating on the test split, the last epoch's validation accuracy *is* the final test
    accuracy (the same weights on the same images), so the test split is not evaluated again.
    With held-out validation the test split is read here for the first time: by the final weights
    and by those of the best validation epoch.
    """
    started = time.perf_counter()
    measured: dict[str, Any] = {"train_acc": evaluate(model, splits.train)[1]}
    if splits.validation == "test":
        measured["test_acc"] = state.history.valid_acc[-1]
    else:
        measured["test_acc"] = evaluate(model, splits.test)[1]
        if state.best_weights is not None:  # None: no epoch had a finite validation loss
            best = copy.deepcopy(model)
            best.load_state_dict(state.best_weights)
            measured["best_test_acc"] = evaluate(best, splits.test)[1]
    measured["eval_s"] = time.perf_counter() - started
    return measured


@dataclass
class _RunState:
    """Everything a run carries from epoch to epoch, and its checkpoint form.

    A checkpoint holds the model, optimizer and scheduler ``state_dict``s, the RNG states (torch's
    global one and the data generators': order and augmentation), the history, the best epoch's
    weights (held-out validation) and the step trace: enough to continue bit for bit.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generators: list[torch.Generator]
    trace: StepTrace | None
    keep_best: bool
    history: History = field(default_factory=History)
    best_weights: dict[str, torch.Tensor] | None = None

    def keep_if_best(self, history: History) -> None:
        """Copy the weights when the epoch just finished has the lowest validation loss yet."""
        if self.keep_best and history.best_epoch() == history.epochs:
            self.best_weights = copy.deepcopy(self.model.state_dict())

    def snapshot(self, config: RunConfig, epoch: int, wall_s: float) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "epoch": epoch,
            "wall_s": wall_s,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "generators": [g.get_state() for g in self.generators],
            "history": self.history.to_dict(),
            "best_weights": self.best_weights,
            "trace": None if self.trace is None else self.trace.series,
        }

    def restore(self, saved: dict[str, Any], config: RunConfig, path: str | Path) -> None:
        """Load a checkpoint of this config into the objects and the history."""
        if saved.get("config") != config.to_dict():
            raise ValueError(f"{path}: this checkpoint belongs to another config than run "
                             f"{config.name!r}; delete it to restart the run")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        for generator, rng_state in zip(self.generators, saved["generators"], strict=True):
            generator.set_state(rng_state)
        self.history = History(**saved["history"])
        self.best_weights = saved["best_weights"]
        if self.trace is not None:
            self.trace = StepTrace(self.trace.steps, saved["trace"])
