"""One run: a :class:`~optreg.config.RunConfig` in, a plain result dict out.

Top to bottom: seed → model → loss → optimizer → schedule → (resume from a checkpoint) → epochs
of training, each followed by evaluation on the validation split and a checkpoint → final
accuracy on the whole train and test splits → result. The result is JSON-ready; its format is
described in ``optreg.results`` and the README.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from optreg.config import RunConfig
from optreg.data import Cifar10, Cifar10Split, num_batches
from optreg.runtime import execution, machine_info, now
from optreg.training.builders import build_loss, build_model, build_optimizer, build_scheduler
from optreg.training.checkpoint import load_checkpoint, save_checkpoint
from optreg.training.loop import DivergenceError, History, evaluate, fit
from optreg.training.progress import Progress

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
) -> dict[str, Any]:
    """Train and evaluate one config on ``data``; return its result dict.

    Args:
        config: what to train.
        data: the splits (uint8 images, on any device; moved to ``device`` here, a no-op if
            already there). The run uses the first ``config.train_size`` / ``test_size`` images.
            The test split doubles as the validation split, as in the classroom exercise.
        device: where to compute.
        threads: torch intra-op threads for the run (CPU); fixed so results do not depend on
            what else runs on the machine.
        checkpoint: file for end-of-epoch checkpoints; an existing one is resumed from.
        progress: show a progress bar (else one log line per epoch).
        log: where per-epoch lines go (default: nowhere).

    A run whose loss becomes NaN/Inf returns ``status="diverged"`` with the epoch and step;
    other exceptions propagate (the executor records them as ``status="failed"``).
    """
    device = torch.device(device)
    log = log or (lambda _line: None)
    train = _prefix(data.train, config.train_size).to(device)
    test = _prefix(data.test, config.test_size).to(device)
    started = time.perf_counter()
    with execution(threads, config.flush_denormal and device.type == "cpu"):
        model = build_model(config, device)
        criterion = build_loss(config, model)
        optimizer = build_optimizer(config, model)
        steps_per_epoch = num_batches(len(train), config.batch_size)
        scheduler = build_scheduler(config, optimizer, steps_per_epoch * config.epochs)
        generator = torch.Generator().manual_seed(config.seed) if config.shuffle else None
        trainables = _Trainables(model, optimizer, scheduler, generator)
        history = History()
        prior_wall_s = 0.0  # wall time spent on this run before it was resumed
        state = load_checkpoint(checkpoint) if checkpoint else None
        if state is not None:
            trainables.restore(state, config, history)
            prior_wall_s = float(state.get("wall_s", sum(history.train_s)))
            log(f"{config.name}: resumed after epoch {state['epoch']}")
        first_epoch = len(history.train_loss) + 1

        bar = Progress(config.name, total=config.epochs * steps_per_epoch, enabled=progress,
                       done=(first_epoch - 1) * steps_per_epoch)

        def save(epoch: int, history: History) -> None:
            if checkpoint:
                snapshot = trainables.snapshot(config, epoch, history)
                snapshot["wall_s"] = prior_wall_s + time.perf_counter() - started
                save_checkpoint(checkpoint, snapshot)

        diverged = None
        try:
            fit(model, criterion, optimizer, train, test, epochs=config.epochs,
                batch_size=config.batch_size, scheduler=scheduler, generator=generator,
                history=history, on_epoch_end=save, on_steps=bar.update,
                log=lambda line: (bar.write if bar.active else log)(f"{config.name} {line}"))
        except DivergenceError as e:
            diverged = e
        finally:
            bar.close()

        train_acc = test_acc = None
        if diverged is None:  # the exercise's final measure: eval mode, whole splits
            train_acc = evaluate(model, train)[1]
            test_acc = evaluate(model, test)[1]

    wall_s = prior_wall_s + time.perf_counter() - started
    train_s = sum(history.train_s)
    trained_images = len(train) * len(history.train_s)
    result: dict[str, Any] = {
        "id": config.run_id,
        "name": config.name,
        "seed": config.seed,
        "config": config.to_dict(),
        "status": "ok" if diverged is None else "diverged",
        "error": None if diverged is None else f"{config.name}: {diverged}",
        "diverged_at": None if diverged is None else {"epoch": diverged.epoch,
                                                       "step": diverged.step},
        "train_acc": train_acc,
        "test_acc": test_acc,
        "history": history.as_dict(with_objective=config.decay_mode == "loss"),
        "epoch_train_s": history.train_s,
        "wall_s": wall_s,
        "train_s": train_s,
        "eval_s": wall_s - train_s,
        "train_img_per_s": trained_images / train_s if train_s > 0 else None,
        "provenance": {**machine_info(), "device": str(device), "threads": threads,
                       "finished_at": now()},
    }
    if diverged is not None:
        log(f"{config.name}: diverged: {diverged}")
    return result


def _prefix(split: Cifar10Split, size: int | None) -> Cifar10Split:
    """The first ``size`` images of ``split`` (all of it for None)."""
    return split if size is None else Cifar10Split(split.images[:size], split.labels[:size])


@dataclass
class _Trainables:
    """Everything a checkpoint must capture besides the history, and how to save/restore it."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    generator: torch.Generator | None

    def snapshot(self, config: RunConfig, epoch: int, history: History) -> dict[str, Any]:
        return {
            "config": config.to_dict(),
            "epoch": epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "generator": None if self.generator is None else self.generator.get_state(),
            "history": vars(history),
        }

    def restore(self, state: dict[str, Any], config: RunConfig, history: History) -> None:
        """Load a checkpoint of this config into the objects and ``history``."""
        if state.get("config") != config.to_dict():
            raise ValueError(f"checkpoint belongs to another config than run {config.name!r}")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if self.generator is not None:
            self.generator.set_state(state["generator"])
        for key, values in state["history"].items():
            getattr(history, key).extend(values)
