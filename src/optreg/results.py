"""The result of a run and of a study: typed records, serialised as versioned JSON.

Data flows one way — config → run → result → report — and this module is the *result*: what
:func:`optreg.training.run` returns, what executors hand back across process boundaries (as
:meth:`RunResult.to_dict`), what a study writes to disk and what the report reads. Nothing here
imports torch.

:class:`RunResult`
    one run: its :class:`~optreg.config.RunConfig`, status (``ok`` | ``diverged`` | ``failed``),
    final accuracies, the per-epoch :class:`History`, timings and provenance (versions, machine,
    device, threads).
:class:`StudyResult`
    a study: its :class:`Study` description (what it computes: ``settings``; how it ran:
    ``execution``; which runs must coincide: ``matches``) and its runs.

On disk (``SCHEMA_VERSION`` 2)::

    results.json      {"schema": 2, "study": {...}, "runs": [run, ...]}
    runs/<id>.json    {"schema": 2, ...one run...}

``from_dict`` validates everything it reads and raises :class:`ResultError` naming the file and
the field; results written by optreg 0.1.0 (no ``schema`` key) are upgraded on load.
"""

from __future__ import annotations

import dataclasses
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from optreg.atomic import read_json, write_json
from optreg.config import ConfigError, RunConfig
from optreg.extras import require

__all__ = [
    "RESULTS_FILE",
    "SCHEMA_VERSION",
    "DivergedAt",
    "History",
    "ResultError",
    "RunResult",
    "RunStatus",
    "Study",
    "StudyResult",
    "load_results",
    "read_run",
    "write_run",
]

SCHEMA_VERSION = 2
RESULTS_FILE = "results.json"

RunStatus = Literal["ok", "diverged", "failed"]
RUN_STATUSES: tuple[str, ...] = get_args(RunStatus)


class ResultError(ValueError):
    """A results file (or dict) is not a valid optreg result; the message says where and why."""


# --- validation helpers ---------------------------------------------------------------------------
def _at(where: str, key: str) -> str:
    """The place of ``key`` inside ``where``: ``file: a.b[2].key`` (": " after the file)."""
    return f"{where}.{key}" if ": " in where or key.startswith("[") else f"{where}: {key}"


class _Fields:
    """Typed access to one JSON object, with errors that name ``where`` (file and path)."""

    _MISSING = object()

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise ResultError(f"{where}: expected an object, got {_kind(data)}")
        self.data, self.where = data, where

    def _fail(self, key: str, why: str) -> ResultError:
        return ResultError(f"{_at(self.where, key)}: {why}")

    def raw(self, key: str, default: Any = _MISSING) -> Any:
        if key in self.data:
            return self.data[key]
        if default is self._MISSING:
            raise self._fail(key, "missing")
        return default

    def text(self, key: str, default: Any = _MISSING, *, optional: bool = False) -> Any:
        value = self.raw(key, None if optional else default)
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise self._fail(key, f"expected text, got {_kind(value)}")
        return value

    def integer(self, key: str, default: Any = _MISSING, *, optional: bool = False) -> Any:
        value = self.raw(key, None if optional else default)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"expected an integer, got {_kind(value)}")
        return value

    def number(self, key: str, default: Any = _MISSING, *, optional: bool = False) -> Any:
        """A float; ``null`` reads as NaN when ``optional`` is False and a default is not given."""
        value = self.raw(key, None if optional else default)
        if value is None:
            return None if optional else math.nan
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"expected a number, got {_kind(value)}")
        return float(value)

    def numbers(self, key: str, default: Any = _MISSING) -> list[float]:
        """A list of floats (``null`` entries, written for NaN/Inf, read back as NaN)."""
        value = self.raw(key, default)
        if not isinstance(value, list) or any(
            v is not None and (isinstance(v, bool) or not isinstance(v, int | float))
            for v in value
        ):
            raise self._fail(key, f"expected a list of numbers, got {_kind(value)}")
        return [math.nan if v is None else float(v) for v in value]

    def mapping(self, key: str, default: Any = _MISSING) -> dict[str, Any]:
        value = self.raw(key, default)
        if not isinstance(value, Mapping):
            raise self._fail(key, f"expected an object, got {_kind(value)}")
        return dict(value)

    def sub(self, key: str, default: Any = _MISSING) -> _Fields:
        return _Fields(self.raw(key, default), _at(self.where, key))


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "text",
             list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _text_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ResultError(f"{where}: expected a list of names, got {_kind(value)}")
    return list(value)


# --- one run --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DivergedAt:
    """Where a run's training loss first became NaN/Inf (both 1-based)."""

    epoch: int
    step: int


@dataclass
class History:
    """Per-epoch metrics of a run, one entry per finished epoch (plain lists).

    ``train_loss`` is the mean cross-entropy data term over the epoch's batches;
    ``train_objective`` the mean minimised objective (data term + any penalty in the loss, so equal
    to ``train_loss`` when the loss carries none); ``valid_loss`` / ``valid_acc`` are measured on
    the validation split after the epoch, in eval mode; ``train_s`` is the epoch's training time
    (evaluation excluded), ``eval_s`` its validation time; ``lr`` the learning rate after the
    epoch's last step.
    """

    train_loss: list[float] = field(default_factory=list)
    train_objective: list[float] = field(default_factory=list)
    valid_loss: list[float] = field(default_factory=list)
    valid_acc: list[float] = field(default_factory=list)
    train_s: list[float] = field(default_factory=list)
    eval_s: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        """Number of finished epochs."""
        return len(self.train_loss)

    def best_epoch(self) -> int | None:
        """1-based epoch of the lowest finite validation loss (the first on ties); None if none."""
        finite = [(v, i) for i, v in enumerate(self.valid_loss) if math.isfinite(v)]
        return min(finite)[1] + 1 if finite else None

    def to_dict(self) -> dict[str, list[float]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str) -> History:
        f = _Fields(data, where)
        train_loss = f.numbers("train_loss")
        history = cls(
            train_loss=train_loss,
            # 0.1.0 wrote train_objective only when the loss held a penalty.
            train_objective=f.numbers("train_objective", list(train_loss)),
            valid_loss=f.numbers("valid_loss"),
            valid_acc=f.numbers("valid_acc"),
            train_s=f.numbers("train_s", []),
            eval_s=f.numbers("eval_s", []),
            lr=f.numbers("lr", []),
        )
        n = history.epochs
        for name in ("train_objective", "valid_loss", "valid_acc"):
            if len(getattr(history, name)) != n:
                raise ResultError(f"{_at(where, name)}: {len(getattr(history, name))} entries "
                                  f"for {n} epochs of train_loss")
        return history


@dataclass(frozen=True)
class RunResult:
    """What one run of a :class:`~optreg.config.RunConfig` produced.

    ``train_acc`` / ``test_acc`` are fractions measured after training, in eval mode, on the
    whole training and test splits. With held-out validation (``config.valid_size``),
    ``best_test_acc`` is the test accuracy of the weights of ``best_epoch`` (lowest validation
    loss): early stopping, measured. Timings are seconds: ``train_s`` the training steps alone,
    ``eval_s`` the evaluations, ``wall_s`` the whole run (setup and checkpoints included).
    """

    id: str
    config: RunConfig
    status: RunStatus
    history: History
    error: str | None = None
    traceback: str | None = None
    diverged_at: DivergedAt | None = None
    train_acc: float | None = None
    test_acc: float | None = None
    best_test_acc: float | None = None
    wall_s: float | None = None
    train_s: float | None = None
    eval_s: float | None = None
    train_img_per_s: float | None = None
    trace: dict[str, list[float]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ResultError(f"status {self.status!r}: expected one of {RUN_STATUSES}")

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def best_epoch(self) -> int | None:
        """1-based epoch of the lowest validation loss of a finished run (None otherwise)."""
        return self.history.best_epoch() if self.ok else None

    @classmethod
    def failed(cls, config: RunConfig, error: str, traceback: str | None = None,
               provenance: Mapping[str, Any] | None = None) -> RunResult:
        """A run that could not finish (an exception, a dead worker): no metrics."""
        return cls(id=config.run_id, config=config, status="failed", history=History(),
                   error=f"{config.name}: {error}", traceback=traceback,
                   provenance=dict(provenance or {}))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``name`` and ``seed`` are repeated at the top for people reading it)."""
        return {
            "schema": SCHEMA_VERSION,
            "id": self.id,
            "name": self.name,
            "seed": self.seed,
            "config": self.config.to_dict(),
            "status": self.status,
            "error": self.error,
            "traceback": self.traceback,
            "diverged_at": None if self.diverged_at is None else dataclasses.asdict(
                self.diverged_at),
            "train_acc": self.train_acc,
            "test_acc": self.test_acc,
            "best_epoch": self.best_epoch,
            "best_test_acc": self.best_test_acc,
            "history": self.history.to_dict(),
            "wall_s": self.wall_s,
            "train_s": self.train_s,
            "eval_s": self.eval_s,
            "train_img_per_s": self.train_img_per_s,
            "trace": self.trace,
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "run") -> RunResult:
        """Validate and build; accepts schema 2 and optreg 0.1.0's run dicts."""
        f = _Fields(data, where)
        schema = f.integer("schema", 1)
        if schema > SCHEMA_VERSION:
            raise ResultError(f"{where}: written by a newer optreg (schema {schema}); "
                              f"this one reads up to {SCHEMA_VERSION}")
        try:
            config = RunConfig.from_dict(f.mapping("config"))
        except ConfigError as e:
            raise ResultError(f"{_at(where, 'config')}: {e}") from None
        history_data = f.mapping("history")
        if schema == 1 and "epoch_train_s" in f.data:  # 0.1.0 kept it beside the history
            history_data["train_s"] = f.raw("epoch_train_s")
        history = History.from_dict(history_data, _at(where, "history"))
        status = f.text("status")
        if status not in RUN_STATUSES:
            raise ResultError(f"{_at(where, 'status')}: {status!r} is not one of "
                              f"{', '.join(RUN_STATUSES)}")
        diverged = None
        if f.raw("diverged_at", None) is not None:
            d = f.sub("diverged_at")
            diverged = DivergedAt(d.integer("epoch"), d.integer("step"))
        trace = f.mapping("trace", {})
        for key in trace:
            trace[key] = _Fields(trace, _at(where, "trace")).numbers(key)
        f.integer("best_epoch", None, optional=True)  # written for readers; derived here
        return cls(
            id=f.text("id"),
            config=config,
            status=status,  # type: ignore[arg-type]
            history=history,
            error=f.text("error", optional=True),
            traceback=f.text("traceback", optional=True),
            diverged_at=diverged,
            train_acc=f.number("train_acc", optional=True),
            test_acc=f.number("test_acc", optional=True),
            best_test_acc=f.number("best_test_acc", optional=True),
            wall_s=f.number("wall_s", optional=True),
            train_s=f.number("train_s", optional=True),
            eval_s=f.number("eval_s", optional=True),
            train_img_per_s=f.number("train_img_per_s", optional=True),
            trace=trace,
            provenance=f.mapping("provenance", {}),
        )


# --- a study --------------------------------------------------------------------------------------
#: Keys of 0.1.0's study "settings" that described how it ran, not what it computed.
_EXECUTION_KEYS = ("data_dir", "download", "download_url", "device", "out", "resume", "executor",
                   "workers", "threads", "ray_address", "no_progress")


@dataclass(frozen=True)
class Study:
    """What a study is: its runs' description, and how this execution of it went.

    ``settings`` hold the study's own parameters (what it computes: epochs, seeds, data sizes,
    grid values…), ``execution`` how it was run (device, executor, workers, threads per run), so
    one never overwrites the other. ``matches`` lists groups of scenarios that compute the same
    thing with different code (their histories must coincide); ``panels`` groups scenarios for
    the loss-curve figure; ``grid`` makes it a sweep (lr × weight decay × mode × seeds).
    ``data`` identifies the data the runs trained on (a fingerprint, never a path).
    """

    name: str
    kind: str
    settings: dict[str, Any] = field(default_factory=dict)
    execution: dict[str, Any] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    matches: list[list[str]] = field(default_factory=list)
    panels: dict[str, list[str]] = field(default_factory=dict)
    grid: dict[str, list[Any]] | None = None
    reference: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    machine: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    wall_s: float | None = None

    @property
    def is_sweep(self) -> bool:
        return self.grid is not None

    def replace(self, **changes: Any) -> Study:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "study", *, schema: int = SCHEMA_VERSION) -> Study:
        f = _Fields(data, where)
        settings = f.mapping("settings", {})
        execution = f.mapping("execution", {})
        if schema == 1:  # 0.1.0 mixed the two (and a sweep's settings got overwritten)
            execution.update({k: settings.pop(k) for k in _EXECUTION_KEYS if k in settings})
        descriptions = f.mapping("descriptions", {})
        for key, value in descriptions.items():
            if not isinstance(value, str):
                raise ResultError(f"{_at(where, 'descriptions')}.{key}: expected text, got "
                                  f"{_kind(value)}")
        matches = f.raw("matches", [])
        if not isinstance(matches, list):
            raise ResultError(f"{_at(where, 'matches')}: expected a list of name lists, got "
                              f"{_kind(matches)}")
        panels = f.mapping("panels", {})
        grid = f.raw("grid", None)
        if grid is not None:
            grid = f.mapping("grid")
            for axis in ("lr", "mode"):
                if not isinstance(grid.get(axis), list):
                    raise ResultError(f"{_at(where, 'grid')}.{axis}: expected a list")
            if not isinstance(grid.get("weight_decay"), list | dict):
                raise ResultError(f"{_at(where, 'grid')}.weight_decay: expected a list, or one "
                                  "per mode")
        kind = f.text("kind", "sweep" if grid is not None else "seed")
        return cls(
            name=f.text("name", kind),
            kind=kind,
            settings=settings,
            execution=execution,
            descriptions=descriptions,
            matches=[_text_list(m, f"{_at(where, 'matches')}[{i}]")
                     for i, m in enumerate(matches)],
            panels={str(k): _text_list(v, f"{_at(where, 'panels')}.{k}")
                    for k, v in panels.items()},
            grid=grid,
            reference=f.text("reference", optional=True),
            data=f.mapping("data", {}),
            machine=f.mapping("machine", {}),
            started_at=f.text("started_at", optional=True),
            finished_at=f.text("finished_at", optional=True),
            wall_s=f.number("wall_s", optional=True),
        )


@dataclass(frozen=True)
class StudyResult:
    """A study and its runs (in the order of the study's configs)."""

    study: Study
    runs: tuple[RunResult, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "runs", tuple(self.runs))

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA_VERSION, "study": self.study.to_dict(),
                "runs": [r.to_dict() for r in self.runs]}

    @classmethod
    def from_dict(cls, data: Any, where: str = "results") -> StudyResult:
        f = _Fields(data, where)
        schema = f.integer("schema", 1)
        if schema > SCHEMA_VERSION:
            raise ResultError(f"{where}: written by a newer optreg (schema {schema}); "
                              f"this one reads up to {SCHEMA_VERSION}")
        runs = f.raw("runs")
        if not isinstance(runs, list):
            raise ResultError(f"{_at(where, 'runs')}: expected a list of runs, got "
                              f"{_kind(runs)}")
        return cls(
            study=Study.from_dict(f.raw("study"), _at(where, "study"), schema=schema),
            runs=tuple(RunResult.from_dict(r, f"{_at(where, 'runs')}[{i}]")
                       for i, r in enumerate(runs)),
        )

    def by_name(self) -> dict[str, list[RunResult]]:
        """Runs grouped by scenario name, names in order of first appearance."""
        groups: dict[str, list[RunResult]] = {}
        for run in self.runs:
            groups.setdefault(run.name, []).append(run)
        return groups

    # --- for notebooks and pandas ---------------------------------------------------------------
    def to_dataframe(self) -> Any:
        """One row per run (pandas, the ``pandas`` extra): ``name``, ``seed``, ``id``,
        ``status``, the accuracies (``train_acc``, ``test_acc``, ``best_test_acc``, fractions),
        ``best_epoch``, ``epochs`` (finished), the final ``train_loss`` and ``valid_loss``, the
        times (``wall_s``, ``train_s``, ``eval_s``, ``train_img_per_s``), ``error``, then every
        :class:`~optreg.config.RunConfig` field as ``config.<field>``."""
        pd = require("pandas", purpose="StudyResult.to_dataframe", extra="pandas")
        rows = []
        for run in self.runs:
            history = run.history
            rows.append({
                "name": run.name, "seed": run.seed, "id": run.id, "status": run.status,
                "train_acc": run.train_acc, "test_acc": run.test_acc,
                "best_test_acc": run.best_test_acc, "best_epoch": run.best_epoch,
                "epochs": history.epochs,
                "train_loss": history.train_loss[-1] if history.epochs else None,
                "valid_loss": history.valid_loss[-1] if history.epochs else None,
                "wall_s": run.wall_s, "train_s": run.train_s, "eval_s": run.eval_s,
                "train_img_per_s": run.train_img_per_s, "error": run.error,
                **{f"config.{k}": v for k, v in run.config.to_dict().items()},
            })
        return pd.DataFrame(rows, columns=FRAME_COLUMNS + tuple(
            f"config.{f.name}" for f in dataclasses.fields(RunConfig)))

    def history_frame(self) -> Any:
        """Every per-epoch value in long format (pandas): columns ``name``, ``seed``, ``id``,
        ``epoch`` (1-based), ``metric`` (a :class:`History` field) and ``value``."""
        pd = require("pandas", purpose="StudyResult.history_frame", extra="pandas")
        rows = [
            {"name": run.name, "seed": run.seed, "id": run.id, "epoch": epoch, "metric": metric,
             "value": value}
            for run in self.runs
            for metric, values in run.history.to_dict().items()
            for epoch, value in enumerate(values, start=1)
        ]
        return pd.DataFrame(rows, columns=["name", "seed", "id", "epoch", "metric", "value"])

    def report(self, out_dir: str | Path) -> dict[str, Path]:
        """Write the report (figures, report.md, report.html) into ``out_dir``; the paths."""
        from optreg.report import write_report

        return write_report(self, out_dir)

    def _repr_html_(self) -> str:
        """Jupyter shows a study as its results table."""
        from optreg.report import results_tables
        from optreg.report.document import html_table

        if not self.runs:
            return f"<p>study {html.escape(self.study.name)}: no run has finished yet</p>"
        return "\n".join(f"<h4>{html.escape(title)}</h4>\n{html_table(table)}"
                         for title, table in results_tables(self))

    def __str__(self) -> str:
        from optreg.report import results_tables, to_text

        if not self.runs:
            return f"study {self.study.name}: no run has finished yet"
        return "\n".join(f"{title}\n{to_text(table)}" for title, table in results_tables(self))


#: The leading columns of :meth:`StudyResult.to_dataframe` (then one per config field).
FRAME_COLUMNS: tuple[str, ...] = (
    "name", "seed", "id", "status", "train_acc", "test_acc", "best_test_acc", "best_epoch",
    "epochs", "train_loss", "valid_loss", "wall_s", "train_s", "eval_s", "train_img_per_s",
    "error")


# --- files ----------------------------------------------------------------------------------------
def load_results(path: str | Path) -> StudyResult:
    """Read ``results.json`` (or the folder holding one); ``ResultError`` names the file."""
    path = Path(path)
    if path.is_dir() and (path / RESULTS_FILE).exists():
        path = path / RESULTS_FILE
    return StudyResult.from_dict(_read(path), str(path))


def write_results(path: str | Path, result: StudyResult) -> Path:
    """Write ``results.json`` atomically (NaN/Inf as null)."""
    return write_json(path, result.to_dict())


def read_run(path: str | Path) -> RunResult:
    """Read one ``runs/<id>.json``; ``ResultError`` names the file and what is wrong."""
    return RunResult.from_dict(_read(Path(path)), str(path))


def write_run(path: str | Path, result: RunResult) -> Path:
    return write_json(path, result.to_dict())


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except ValueError as e:
        raise ResultError(str(e)) from None
