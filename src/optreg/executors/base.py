"""What every executor shares: the task format, and the function that executes one task."""

from __future__ import annotations

import hashlib
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from optreg.config import RunConfig
from optreg.data import Cifar10
from optreg.results import RunResult
from optreg.runtime import machine_info, now


@dataclass(frozen=True)
class Task:
    """One run to execute: its config (plain dict), where its checkpoint lives, and for a run of
    a student's classes the submission's text (workers need no access to the file)."""

    config: dict[str, Any]
    checkpoint: str | None = None
    custom_source: str | None = None


@dataclass(frozen=True)
class Resources:
    """How each run executes: device, torch threads, progress display, TensorBoard folder."""

    device: str = "cpu"
    threads: int = 1
    progress: bool = False
    tensorboard: str | None = None


class Executor(Protocol):
    """Runs tasks; yields one result per task, in order of completion."""

    def map(self, tasks: list[Task]) -> Iterator[RunResult]: ...

    def close(self) -> None: ...


def execute_task(task: Task, data: Cifar10, resources: Resources) -> RunResult:
    """Run one task; an exception becomes a ``status="failed"`` result instead of propagating.

    A diverged run is a result (``status="diverged"``) already; a failed one keeps the error and
    the traceback's last lines, so the study can go on and the user can see what went wrong.
    """
    from optreg.training import run  # keeps this module light to import in Ray drivers

    config = RunConfig.from_dict(task.config)
    log = None if resources.progress else _log_line
    try:
        student = None if config.custom is None else _student_classes(config, task)
        return run(config, data, device=resources.device, threads=resources.threads,
                   checkpoint=task.checkpoint, progress=resources.progress, log=log,
                   tensorboard=resources.tensorboard, student=student)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:
        return failed_result(config, f"{type(e).__name__}: {e}", traceback.format_exc(limit=-5))


def _student_classes(config: RunConfig, task: Task) -> Any:
    """The submission's classes, defined in this process, after checking it is the file the
    config names (its SHA-256)."""
    from optreg.check.submission import load_student_classes

    source = task.custom_source
    if source is None or hashlib.sha256(source.encode()).hexdigest() != config.custom_sha256:
        raise ValueError(f"the task does not carry the submission {config.custom} whose "
                         f"SHA-256 is {config.custom_sha256}")
    return load_student_classes(source, config.custom)


def failed_result(config: RunConfig, error: str, detail: str | None = None) -> RunResult:
    """A result for a run that could not finish (an exception, a crashed worker)."""
    return RunResult.failed(config, error, detail, {**machine_info(), "finished_at": now()})


def _log_line(line: str) -> None:
    """One line per epoch on stderr (stdout is kept for the results table)."""
    print(line, file=sys.stderr, flush=True)
