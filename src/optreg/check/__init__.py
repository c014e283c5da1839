"""``optreg check``: a student's own cross-entropy and Adam, checked against PyTorch step by step.

From a notebook's kernel::

    import optreg.check
    result = optreg.check(loss=MyCrossEntropyLoss, optimizer=MyAdamOptimizer)
    result            # the table (HTML in Jupyter); result.passed; result.json (Gradescope)

From a shell: ``optreg check alice.ipynb bob.py --json-dir grades/`` (see
:mod:`optreg.check.cli` and docs/check.md). The package is callable: ``optreg.check(...)`` is
:func:`check`.

Modules: :mod:`~optreg.check.submission` (reading and filtering a submission, finding its
classes, the adapter between signature styles), :mod:`~optreg.check.problems` (the random
problems and the tolerances), :mod:`~optreg.check.catalogue` (reference implementations with one
known mistake each), :mod:`~optreg.check.trajectory` (lockstep recording and replays),
:mod:`~optreg.check.diagnosis` (naming the mistake), :mod:`~optreg.check.checks`,
:mod:`~optreg.check.isolation` (child processes, time limits), :mod:`~optreg.check.report`,
:mod:`~optreg.check.cli`.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Mapping, Sequence

from optreg.check.checks import CHECK_NAMES, CHECKS, DEFAULT_POINTS, CheckOptions
from optreg.check.isolation import DEFAULT_TIMEOUT, run_in_process
from optreg.check.result import CheckResult, SubmissionResult
from optreg.check.submission import (
    StudentClasses,
    Submission,
    SubmissionError,
    load_student_classes,
    load_submission,
)

__all__ = [
    "CHECK_NAMES",
    "DEFAULT_POINTS",
    "CheckResult",
    "StudentClasses",
    "Submission",
    "SubmissionError",
    "SubmissionResult",
    "check",
    "load_student_classes",
    "load_submission",
]


def check(
    loss: type | None = None,
    optimizer: type | None = None,
    adamw: type | None = None,
    *,
    checks: Sequence[str] | None = None,
    points: Mapping[str, float] | None = None,
    adamw_form: str = "either",
    timeout: float | None = DEFAULT_TIMEOUT,
    seed: int = 0,
    steps: int = 300,
) -> SubmissionResult:
    """Run the checks on classes defined in this process (e.g. a notebook's cells).

    Args:
        loss: the cross-entropy class (the exercise's ``MyCrossEntropyLoss``).
        optimizer: the Adam class (``MyAdamOptimizer``), exercise or torch signature style.
        adamw: a separate AdamW class (torch style), if the optimizer has no ``adamw`` flag.
        checks: which checks to run (default: all whose classes are given).
        points: points per check, e.g. ``{"adam": 3}`` (default :data:`DEFAULT_POINTS`).
        adamw_form: ``"torch"``, ``"paper"`` or ``"either"`` decoupled-decay form accepted.
        timeout: seconds per check (SIGALRM: main thread on Unix only), None for no limit.
        seed, steps: the random problem (the defaults are what ``optreg check`` uses).

    The checks run in this process (a child process cannot see a kernel's classes): a crash in
    native code takes the kernel with it.
    """
    name = " + ".join(c.__name__ for c in (loss, optimizer, adamw) if isinstance(c, type))
    sub = Submission.from_classes(name or "no classes", loss, optimizer, adamw)
    if checks is None:
        given = {"loss": loss is not None, "optimizer": optimizer is not None,
                 "adamw": optimizer is not None or adamw is not None}
        checks = [n for n in CHECK_NAMES if all(given[r] for r in CHECKS[n].roles)]
    _check_names(checks, points)
    options = CheckOptions(seed=seed, steps=steps, adamw_form=adamw_form)
    return run_in_process(sub, list(checks), options=options, points=points, timeout=timeout)


def _check_names(checks: Sequence[str], points: Mapping[str, float] | None) -> None:
    unknown = [n for n in [*checks, *(points or {})] if n not in CHECK_NAMES]
    if unknown:
        raise ValueError(f"unknown check {unknown[0]!r} (the checks: {', '.join(CHECK_NAMES)})")


class _CallableModule(types.ModuleType):
    """Lets ``optreg.check(...)`` call :func:`check` while ``optreg.check.cli`` stays a module."""

    def __call__(self, *args: object, **kwargs: object) -> SubmissionResult:
        return check(*args, **kwargs)  # type: ignore[arg-type]


sys.modules[__name__].__class__ = _CallableModule
