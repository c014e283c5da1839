"""Aggregate a study's runs into one summary row per scenario: typed results in, plain data out.

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from optreg.results import RunResult, StudyResult

__all__ = [
    "DEFAULT_TOL",
    "GapSummary",
    "ScenarioCurves",
    "ScenarioSummary",
    "Stat",
    "StoppedRun",
    "TwinDelta",
    "effective_steps",
    "format_delta",
    "gap_curve",
    "gap_summaries",
    "held_out",
    "require_runs",
    "run_status",
    "scenario_curves",
    "step_curves",
    "summarize",
    "traced",
    "twin_deltas",
]

#: Largest max |Δ| between twins' per-epoch losses that still counts as "the same".
DEFAULT_TOL = 1e-3

#: Histories compared between twins (the data term and the validation loss).
TWIN_KEYS = ("train_loss", "valid_loss")

_ERROR_CHARS = 80  # a failed run's error is cut to this many characters in the status text


def require_runs(results: StudyResult) -> None:
    """``ValueError`` when there is nothing to report."""
    if not results.runs:
        raise ValueError("the study has no finished run yet: nothing to report")


def curve(run: RunResult, key: str) -> np.ndarray:
    """One per-epoch history as float64 (NaN where a value was not finite)."""
    return np.asarray(getattr(run.history, key), dtype=np.float64)


def run_status(run: RunResult) -> str:
    """``ok``, ``diverged (epoch e, step s)`` or ``failed: <first line of the error>``."""
    if run.status == "diverged":
        where = run.diverged_at
        return "diverged" if where is None else f"diverged (epoch {where.epoch}, step {where.step})"
    if run.status == "failed":
        lines = (run.error or "").strip().splitlines()
        short = lines[0] if lines else ""
        if len(short) > _ERROR_CHARS:
            short = short[: _ERROR_CHARS - 1] + "…"
        return f"failed: {short}" if short else "failed"
    return run.status


# --- aggregation over seeds -------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """One metric over seeds: mean, sample std (``ddof=1``; None with one value) and count."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float | None]) -> Stat | None:
        """Summarise the values that are not None; None when there are none."""
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
    best_test_acc: Stat | None  # test accuracy of the best validation epoch (held-out only)
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


def _final(values: Sequence[float]) -> float | None:
    return float(values[-1]) if len(values) else None


def _scenario_status(runs: Sequence[RunResult]) -> str:
    bad = [r for r in runs if not r.ok]
    if not bad:
        return "ok"
    if len(runs) == 1:
        return run_status(bad[0])
    return "; ".join(f"seed {r.seed}: {run_status(r)}" for r in bad)


def summarize(results: StudyResult, *, tol: float = DEFAULT_TOL) -> list[ScenarioSummary]:
    """One :class:`ScenarioSummary` per scenario name, in order of first appearance.

    ``tol`` is the largest max |Δ| between twins' losses that the matches column calls equal.
    """
    require_runs(results)
    descriptions = results.study.descriptions
    match_text = _match_texts(twin_deltas(results, tol=tol))
    rows = []
    for name, runs in results.by_name().items():
        ok = [r for r in runs if r.ok]
        rows.append(
            ScenarioSummary(
                name=name,
                seeds=tuple(r.seed for r in runs),
                n_ok=len(ok),
                train_acc=Stat.of(r.train_acc for r in ok),
                test_acc=Stat.of(r.test_acc for r in ok),
                best_test_acc=Stat.of(r.best_test_acc for r in ok),
                final_train_loss=Stat.of(_final(r.history.train_loss) for r in ok),
                final_valid_loss=Stat.of(_final(r.history.valid_loss) for r in ok),
                best_epoch=Stat.of(r.best_epoch for r in ok),
                wall_s=Stat.of(r.wall_s for r in ok),
                img_per_s=Stat.of(r.train_img_per_s for r in ok),
                status=_scenario_status(runs),
                matches="; ".join(match_text.get(name, [])),
                description=descriptions.get(name, ""),
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
        """The matches-column text seen from the twin that is not ``other``."""
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


def _compare(a: str, b: str, runs_a: Sequence[RunResult], runs_b: Sequence[RunResult],
             tol: float) -> TwinDelta:
    by_seed_b: dict[int, RunResult] = {}
    for r in runs_b:
        by_seed_b.setdefault(r.seed, r)
    seeds, deltas, lengths = [], [], []
    note = None
    seen = set()
    for ra in runs_a:
        if ra.seed in seen or ra.seed not in by_seed_b:
            continue
        seen.add(ra.seed)
        rb = by_seed_b[ra.seed]
        for key in TWIN_KEYS:
            ha, hb = curve(ra, key), curve(rb, key)
            if ha.size != hb.size and note is None:
                note = f"{ha.size} vs {hb.size} epochs"
            if ha.size and hb.size:
                deltas.append(float(_abs_diff(ha, hb).max()))
                lengths.append(min(ha.size, hb.size))
        seeds.append(ra.seed)
    if not seeds:
        return TwinDelta(a, b, math.nan, (), 0, tol, note="no common seed")
    if not deltas:
        return TwinDelta(a, b, math.nan, tuple(seeds), 0, tol, note="no history")
    return TwinDelta(a, b, max(deltas), tuple(seeds), min(lengths), tol, note=note)


def twin_deltas(results: StudyResult, *, tol: float = DEFAULT_TOL) -> list[TwinDelta]:
    """Every pair of scenarios in the study's ``matches`` groups, with their max |Δ|.

    Pairs come in group order (``a`` before ``b`` within a group). Names without any run are
    skipped; a study without ``matches`` gives ``[]``.
    """
    by_name = results.by_name()
    out = []
    seen: set[frozenset[str]] = set()
    for group in results.study.matches:
        names = list(dict.fromkeys(n for n in group if n in by_name))
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if frozenset((a, b)) in seen:
                    continue
                seen.add(frozenset((a, b)))
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


def mean_std(curves: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean and sample std (None with one curve) of equal-length curves, epoch by epoch."""
    curves = [c for c in curves if c.size]
    if not curves:
        return np.empty(0), None
    n = min(c.size for c in curves)  # ok runs have equal lengths; be safe if not
    stack = np.stack([c[:n] for c in curves])
    std = stack.std(axis=0, ddof=1) if len(curves) >= 2 else None
    return stack.mean(axis=0), std


def scenario_curves(label: str, runs: Sequence[RunResult]) -> ScenarioCurves:
    """The loss curves of the runs of one scenario (or of one sweep cell), labelled ``label``."""
    ok = [r for r in runs if r.ok]
    train_mean, train_std = mean_std([curve(r, "train_loss") for r in ok])
    valid_mean, valid_std = mean_std([curve(r, "valid_loss") for r in ok])
    stopped = tuple(
        StoppedRun(seed=r.seed, status=run_status(r), train_loss=curve(r, "train_loss"),
                   valid_loss=curve(r, "valid_loss"))
        for r in runs
        if not r.ok
    )
    return ScenarioCurves(label, len(ok), train_mean, train_std, valid_mean, valid_std, stopped)


# --- overfitting and step sizes ---------------------------------------------------------------


def held_out(results: StudyResult) -> bool:
    """Every run validated on held-out training images (the gap is then a generalisation gap)."""
    return bool(results.runs) and all(r.config.valid_size is not None for r in results.runs)


@dataclass(frozen=True)
class GapSummary:
    """How one scenario overfits: over its ok runs, the validation-minus-training loss at the
    end, how far the validation loss rose after its minimum, and the best epoch."""

    name: str
    final_gap: Stat | None  # valid_loss − train_loss at the last epoch
    rise: Stat | None  # last valid_loss − lowest valid_loss (0: still improving at the end)
    best_epoch: Stat | None
    test_acc: Stat | None
    best_test_acc: Stat | None


def gap_curve(run: RunResult) -> np.ndarray:
    """valid_loss − train_loss per epoch (the train loss is the data term, without penalty)."""
    return curve(run, "valid_loss") - curve(run, "train_loss")


def gap_summaries(results: StudyResult) -> list[GapSummary]:
    rows = []
    for name, runs in results.by_name().items():
        ok = [r for r in runs if r.ok and r.history.epochs]
        rows.append(GapSummary(
            name=name,
            final_gap=Stat.of(float(gap_curve(r)[-1]) for r in ok),
            rise=Stat.of(float(curve(r, "valid_loss")[-1] - np.nanmin(curve(r, "valid_loss")))
                         for r in ok),
            best_epoch=Stat.of(r.best_epoch for r in ok),
            test_acc=Stat.of(r.test_acc for r in ok),
            best_test_acc=Stat.of(r.best_test_acc for r in ok),
        ))
    return rows


def traced(results: StudyResult) -> bool:
    return any(r.trace.get("update_rms") for r in results.runs)


def effective_steps(run: RunResult) -> np.ndarray:
    """Per traced step, ‖Δθ‖_rms / γ: the update in units of the learning rate (the config's lr,
    so this assumes the constant schedule the traced studies use)."""
    return np.asarray(run.trace.get("update_rms", []), dtype=np.float64) / run.config.lr


def step_curves(results: StudyResult) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Scenario → (mean, sample std over seeds) of :func:`effective_steps`, traced runs only."""
    out = {}
    for name, runs in results.by_name().items():
        steps = [effective_steps(r) for r in runs if r.trace.get("update_rms")]
        if steps:
            out[name] = mean_std(steps)
    return out
