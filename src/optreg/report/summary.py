"""Aggregate a study's runs into one summary row per scenario: plain results in, plain data out.

A *scenario* is a run name; a study may hold several runs of one name that differ only by seed.
Every metric is summarised over seeds as a :class:`Stat`: the mean and the **sample** standard
deviation (``ddof=1``, the unbiased estimate of the spread between seeds), the latter only when
at least two seeds contributed. Metrics (accuracies, final losses, best epoch, timings) are taken
over the runs whose status is ``ok``; diverged and failed runs appear in the status text and as
truncated curves, never in a mean.

*Twins* are scenarios that must give the same numbers (e.g. optreg's Adam and torch's): the
study's ``matches`` lists groups of them, and :func:`twin_deltas` gives, for every pair in a
group, the largest |Δ| between their per-epoch train and validation losses at equal seed.

Nothing here imports torch, matplotlib or training code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_TOL",
    "ScenarioCurves",
    "ScenarioSummary",
    "Stat",
    "StoppedRun",
    "TwinDelta",
    "best_epoch",
    "format_delta",
    "group_by_name",
    "run_name",
    "run_seed",
    "run_status",
    "runs_of",
    "scenario_curves",
    "study_kind",
    "study_of",
    "summarize",
    "twin_deltas",
]

Run = Mapping[str, Any]
Results = Mapping[str, Any]

#: Largest max |Δ| between twins' per-epoch losses that still counts as "the same".
DEFAULT_TOL = 1e-3

#: Histories compared between twins (``train_objective`` exists only for loss-mode runs).
TWIN_KEYS = ("train_loss", "valid_loss")

_ERROR_CHARS = 80  # a failed run's error is cut to this many characters in the status text


# --- access to the plain results --------------------------------------------------------------


def runs_of(results: Results) -> list[Run]:
    """The ``runs`` list of a results dict; ``ValueError`` if there is none or it is empty."""
    if not isinstance(results, Mapping):
        raise ValueError(f"results must be a dict, got {type(results).__name__}")
    runs = results.get("runs")
    if not runs:
        raise ValueError("results has no runs: nothing to report")
    return list(runs)


def study_of(results: Results) -> Mapping[str, Any]:
    """The ``study`` block of a results dict (``{}`` when absent)."""
    return results.get("study") or {}


def study_kind(results: Results) -> str:
    """``study.kind`` if given, else ``sweep`` (a grid), ``train`` (one run) or ``seed``."""
    study = study_of(results)
    if study.get("kind"):
        return str(study["kind"])
    if study.get("grid"):
        return "sweep"
    return "train" if len(runs_of(results)) == 1 else "seed"


def run_name(run: Run) -> str:
    """A run's scenario name (falls back to its config's name, then its id)."""
    name = run.get("name") or (run.get("config") or {}).get("name") or run.get("id") or "?"
    return str(name)


def run_seed(run: Run) -> int:
    """A run's seed (its config's when the top-level key is missing; 0 when neither has one)."""
    seed = run.get("seed")
    if seed is None:
        seed = (run.get("config") or {}).get("seed")
    return int(seed) if seed is not None else 0


def group_by_name(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Runs grouped by scenario name, names in order of first appearance."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run_name(run), []).append(run)
    return groups


def history(run: Run, key: str) -> np.ndarray:
    """One per-epoch history as float64 (``None`` entries → NaN; missing key → empty)."""
    values = (run.get("history") or {}).get(key) or []
    return np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)


def _is_ok(run: Run) -> bool:
    return run.get("status", "ok") == "ok"


def run_status(run: Run) -> str:
    """``ok``, ``diverged (epoch e, step s)`` or ``failed: <first line of the error>``."""
    status = str(run.get("status", "ok"))
    if status == "diverged":
        where = run.get("diverged_at") or {}
        parts = [f"{k} {where[k]}" for k in ("epoch", "step") if where.get(k) is not None]
        return f"diverged ({', '.join(parts)})" if parts else "diverged"
    if status == "failed":
        error = str(run.get("error") or "").strip().splitlines()
        short = error[0] if error else ""
        if len(short) > _ERROR_CHARS:
            short = short[: _ERROR_CHARS - 1] + "…"
        return f"failed: {short}" if short else "failed"
    return status


def best_epoch(valid_loss: Sequence[float]) -> int | None:
    """1-based epoch of the lowest finite validation loss (first one on ties); None if none."""
    values = np.asarray(valid_loss, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return None
    return int(np.argmin(np.where(finite, values, np.inf))) + 1


# --- aggregation over seeds -------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """One metric over seeds: mean, sample std (``ddof=1``; None with one value) and count."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        """Summarise the non-None values; None when there are none."""
        xs = np.array([float(v) for v in values if v is not None], dtype=np.float64)
        if xs.size == 0:
            return None
        std = float(xs.std(ddof=1)) if xs.size >= 2 else None
        return cls(float(xs.mean()), std, int(xs.size))


@dataclass(frozen=True)
class ScenarioSummary:
    """The summary row of one scenario (all metrics over its ``ok`` runs)."""

    name: str
    seeds: tuple[int, ...]  # every run's seed, in order of appearance
    n_ok: int  # runs with status ok (the ones the metrics average)
    train_acc: Stat | None  # fraction in [0, 1]
    test_acc: Stat | None
    final_train_loss: Stat | None  # last epoch's train (cross-entropy) loss
    final_valid_loss: Stat | None
    best_epoch: Stat | None  # 1-based epoch of the lowest validation loss
    wall_s: Stat | None
    img_per_s: Stat | None  # training images per second
    status: str  # "ok", or the non-ok runs' statuses ("seed 1: diverged (epoch 3, step 7)")
    matches: str  # "= torch-adam (max Δ 3.1e-04)" etc.; "" outside any matches group
    description: str = ""

    @property
    def n_runs(self) -> int:
        """Runs of this scenario, whatever their status."""
        return len(self.seeds)


def _final(values: np.ndarray) -> float | None:
    return float(values[-1]) if values.size else None


def _scenario_status(runs: Sequence[Run]) -> str:
    bad = [r for r in runs if not _is_ok(r)]
    if not bad:
        return "ok"
    if len(runs) == 1:
        return run_status(bad[0])
    return "; ".join(f"seed {run_seed(r)}: {run_status(r)}" for r in bad)


def summarize(results: Results, *, tol: float = DEFAULT_TOL) -> list[ScenarioSummary]:
    """One :class:`ScenarioSummary` per scenario name, in order of first appearance.

    ``tol`` is the largest max |Δ| between twins' losses that the matches column calls equal.
    """
    by_name = group_by_name(runs_of(results))
    descriptions = study_of(results).get("descriptions") or {}
    match_text = _match_texts(twin_deltas(results, tol=tol))
    rows = []
    for name, runs in by_name.items():
        ok = [r for r in runs if _is_ok(r)]
        rows.append(
            ScenarioSummary(
                name=name,
                seeds=tuple(run_seed(r) for r in runs),
                n_ok=len(ok),
                train_acc=Stat.of(r.get("train_acc") for r in ok),
                test_acc=Stat.of(r.get("test_acc") for r in ok),
                final_train_loss=Stat.of(_final(history(r, "train_loss")) for r in ok),
                final_valid_loss=Stat.of(_final(history(r, "valid_loss")) for r in ok),
                best_epoch=Stat.of(best_epoch(history(r, "valid_loss")) for r in ok),
                wall_s=Stat.of(r.get("wall_s") for r in ok),
                img_per_s=Stat.of(r.get("train_img_per_s") for r in ok),
                status=_scenario_status(runs),
                matches="; ".join(match_text.get(name, [])),
                description=str(descriptions.get(name, "")),
            )
        )
    return rows


# --- twins ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TwinDelta:
    """How closely two scenarios of one ``matches`` group agree.

    ``max_delta`` is the largest |Δ| between their train and validation losses over all epochs
    of every seed both have (NaN when nothing could be compared; a NaN in one history only
    counts as ∞). ``note`` says why the pair cannot be equal regardless of Δ, e.g. histories
    of different lengths.
    """

    a: str
    b: str
    max_delta: float
    seeds: tuple[int, ...]  # seeds compared
    epochs: int  # epochs compared (per seed, the shortest common history)
    tol: float
    note: str | None = None

    @property
    def comparable(self) -> bool:
        """Whether any loss values could be compared at all."""
        return bool(self.seeds) and not math.isnan(self.max_delta)

    @property
    def matched(self) -> bool:
        """True when comparable, of equal lengths and max |Δ| ≤ tol."""
        return self.comparable and self.note is None and self.max_delta <= self.tol

    @property
    def verdict(self) -> str:
        """``=`` (matched), ``≠`` (compared and different) or ``?`` (nothing to compare)."""
        if self.matched:
            return "="
        return "≠" if self.comparable else "?"

    def describe(self, other: str) -> str:
        """The matches-column text seen from the twin that is not ``other``'s partner."""
        detail = self.note or f"max Δ {format_delta(self.max_delta)}"
        if self.comparable and self.note:
            detail = f"{self.note}; max Δ {format_delta(self.max_delta)}"
        return f"{self.verdict} {other} ({detail})"


def format_delta(value: float) -> str:
    """A |Δ| compactly: ``0``, ``3.1e-04`` below 0.01, else two significant digits."""
    if math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    return f"{value:.1e}" if value < 0.01 else f"{value:.2g}"


def _abs_diff(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    n = min(x.size, y.size)
    x, y = x[:n], y[:n]
    both_nan = np.isnan(x) & np.isnan(y)
    with np.errstate(invalid="ignore"):
        d = np.abs(x - y)
    d[both_nan] = 0.0
    d[np.isnan(d)] = np.inf  # NaN on one side only, or ∞ − ∞
    return d


def _compare(a: str, b: str, runs_a: Sequence[Run], runs_b: Sequence[Run], tol: float) -> TwinDelta:
    by_seed_b = {}
    for r in runs_b:
        by_seed_b.setdefault(run_seed(r), r)
    seeds, deltas, lengths = [], [], []
    note = None
    seen = set()
    for ra in runs_a:
        seed = run_seed(ra)
        if seed in seen or seed not in by_seed_b:
            continue
        seen.add(seed)
        rb = by_seed_b[seed]
        for key in TWIN_KEYS:
            ha, hb = history(ra, key), history(rb, key)
            if ha.size != hb.size and note is None:
                note = f"{ha.size} vs {hb.size} epochs"
            if ha.size and hb.size:
                deltas.append(float(_abs_diff(ha, hb).max()))
                lengths.append(min(ha.size, hb.size))
        seeds.append(seed)
    if not seeds:
        return TwinDelta(a, b, math.nan, (), 0, tol, note="no common seed")
    if not deltas:
        return TwinDelta(a, b, math.nan, tuple(seeds), 0, tol, note="no history")
    return TwinDelta(a, b, max(deltas), tuple(seeds), min(lengths), tol, note=note)


def twin_deltas(results: Results, *, tol: float = DEFAULT_TOL) -> list[TwinDelta]:
    """Every pair of scenarios in the study's ``matches`` groups, with their max |Δ|.

    Pairs come in group order (``a`` before ``b`` within a group). Names without any run are
    skipped; a study without ``matches`` gives ``[]``.
    """
    by_name = group_by_name(runs_of(results))
    out = []
    seen: set[tuple[str, str]] = set()
    for group in study_of(results).get("matches") or []:
        names = [str(n) for n in group if str(n) in by_name]
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if a == b or (a, b) in seen or (b, a) in seen:
                    continue
                seen.add((a, b))
                out.append(_compare(a, b, by_name[a], by_name[b], tol))
    return out


def _match_texts(deltas: Iterable[TwinDelta]) -> dict[str, list[str]]:
    texts: dict[str, list[str]] = {}
    for d in deltas:
        texts.setdefault(d.a, []).append(d.describe(d.b))
        texts.setdefault(d.b, []).append(d.describe(d.a))
    return texts


# --- curves for the figures -------------------------------------------------------------------


@dataclass(frozen=True)
class StoppedRun:
    """A diverged or failed run's (short) curves, drawn on their own up to where they stop."""

    seed: int
    status: str  # run_status() text
    train_loss: np.ndarray
    valid_loss: np.ndarray


@dataclass(frozen=True)
class ScenarioCurves:
    """Per-epoch loss curves of one scenario: mean and sample std over its ``ok`` runs.

    ``*_std`` is None with fewer than two ok runs. ``stopped`` holds the runs that diverged or
    failed, each with its own truncated curves.
    """

    label: str
    n_ok: int
    train_mean: np.ndarray
    train_std: np.ndarray | None
    valid_mean: np.ndarray
    valid_std: np.ndarray | None
    stopped: tuple[StoppedRun, ...] = field(default=())


def _mean_std(curves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    curves = [c for c in curves if c.size]
    if not curves:
        return np.empty(0), None
    n = min(c.size for c in curves)  # ok runs have equal lengths; be safe if not
    stack = np.stack([c[:n] for c in curves])
    std = stack.std(axis=0, ddof=1) if len(curves) >= 2 else None
    return stack.mean(axis=0), std


def scenario_curves(label: str, runs: Sequence[Run]) -> ScenarioCurves:
    """The loss curves of the runs of one scenario (or of one sweep cell), labelled ``label``."""
    ok = [r for r in runs if _is_ok(r)]
    train_mean, train_std = _mean_std([history(r, "train_loss") for r in ok])
    valid_mean, valid_std = _mean_std([history(r, "valid_loss") for r in ok])
    stopped = tuple(
        StoppedRun(
            seed=run_seed(r),
            status=run_status(r),
            train_loss=history(r, "train_loss"),
            valid_loss=history(r, "valid_loss"),
        )
        for r in runs
        if not _is_ok(r)
    )
    return ScenarioCurves(label, len(ok), train_mean, train_std, valid_mean, valid_std, stopped)
