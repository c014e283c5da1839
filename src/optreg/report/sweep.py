"""A sweep's runs as a grid of cells (decay mode × weight decay × learning rate), and its optimum.

A cell is every run with the same ``decay_mode``, ``weight_decay`` and ``lr`` (one per seed),
with the mean final validation and test accuracy over its seeds (sample std, ``ddof=1``, as in
:mod:`optreg.report.summary`). The best setting of a mode is chosen on **validation** accuracy
(the last epoch's) and reported with its test accuracy: with held-out validation, choosing on
the test split would peek at it (when validation is the test split, as in the exercise, the two
are the same numbers). A cell is *usable* only when every one of its runs finished ok: a
setting that diverges for some seed is not a setting to recommend, so it is greyed out in the
heatmaps and never chosen as the best. Each mode has its own weight-decay axis (a sweep may
give each mode its own values: their units differ). Pure data in, pure data out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from optreg.report.summary import Stat, require_runs, run_status
from optreg.results import RunResult, StudyResult

__all__ = ["BestSetting", "SweepCell", "SweepGrid", "best_settings", "sweep_grid"]


@dataclass(frozen=True)
class SweepCell:
    """All runs (seeds) of one (mode, lr, weight_decay) setting."""

    mode: str
    lr: float
    weight_decay: float
    seeds: tuple[int, ...]
    n_ok: int
    test_acc: Stat | None  # over the ok runs; fraction in [0, 1]
    valid_acc: Stat | None  # the last epoch's validation accuracy, over the ok runs
    status: str  # "ok", "diverged 1/2", "failed 2/2", "diverged 1/2, failed 1/2"
    runs: tuple[RunResult, ...] = field(default=(), repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Every run finished ok and gave a test and a validation accuracy."""
        return (bool(self.seeds) and self.n_ok == len(self.seeds) and self.test_acc is not None
                and self.valid_acc is not None)


@dataclass(frozen=True)
class SweepGrid:
    """The sweep's axes (sorted ascending) and its cells; ``weight_decays`` per mode."""

    modes: tuple[str, ...]
    lrs: tuple[float, ...]
    weight_decays: Mapping[str, tuple[float, ...]]
    cells: Mapping[tuple[str, float, float], SweepCell]

    @property
    def shared_decays(self) -> bool:
        """Every mode has the same weight-decay axis."""
        return len({self.weight_decays[m] for m in self.modes}) <= 1

    def cell(self, mode: str, lr: float, weight_decay: float) -> SweepCell | None:
        """The cell at this setting, or None if the sweep has no run there."""
        return self.cells.get((mode, float(lr), float(weight_decay)))

    def accuracy(self, mode: str, *, split: Literal["test", "valid"] = "test",
                 usable_only: bool = True) -> np.ndarray:
        """Mean test (or validation) accuracy as a (weight_decay × lr) array of ``mode``; NaN
        where missing (or unusable)."""
        decays = self.weight_decays[mode]
        out = np.full((len(decays), len(self.lrs)), np.nan)
        for i, wd in enumerate(decays):
            for j, lr in enumerate(self.lrs):
                c = self.cell(mode, lr, wd)
                if c is None or (usable_only and not c.usable):
                    continue
                stat = c.test_acc if split == "test" else c.valid_acc
                if stat is not None:
                    out[i, j] = stat.mean
        return out


@dataclass(frozen=True)
class BestSetting:
    """The usable cell of highest mean validation accuracy within one mode."""

    mode: str
    lr: float
    weight_decay: float
    valid_acc: Stat
    test_acc: Stat
    n_seeds: int
    cell: SweepCell = field(repr=False, compare=False)


def _cell_status(runs: Sequence[RunResult]) -> str:
    n = len(runs)
    counts: dict[str, int] = {}
    for r in runs:
        if not r.ok:
            counts[r.status] = counts.get(r.status, 0) + 1
    if not counts:
        return "ok"
    if n == 1:
        return run_status(runs[0])
    return ", ".join(f"{s} {k}/{n}" for s, k in counts.items())


def _axis(declared: Any, found: Sequence[float]) -> tuple[float, ...]:
    return tuple(sorted({float(v) for v in (declared or [])} | set(found)))


def sweep_grid(results: StudyResult) -> SweepGrid:
    """Group the runs into cells by their configs' ``decay_mode``, ``lr`` and ``weight_decay``.

    The axes are the study's ``grid`` values together with every value that a run used; modes
    keep the grid's order, then order of first appearance.
    """
    require_runs(results)
    grid = results.study.grid or {}
    groups: dict[tuple[str, float, float], list[RunResult]] = {}
    for run in results.runs:
        c = run.config
        groups.setdefault((c.decay_mode, c.lr, c.weight_decay), []).append(run)
    modes = list(dict.fromkeys([*(grid.get("mode") or []), *(k[0] for k in groups)]))
    declared = grid.get("weight_decay")
    decays = {
        m: _axis(declared.get(m) if isinstance(declared, Mapping) else declared,
                 [k[2] for k in groups if k[0] == m])
        for m in modes
    }
    cells = {}
    for key, runs in groups.items():
        ok = [r for r in runs if r.ok]
        cells[key] = SweepCell(
            mode=key[0], lr=key[1], weight_decay=key[2], seeds=tuple(r.seed for r in runs),
            n_ok=len(ok), test_acc=Stat.of(r.test_acc for r in ok),
            valid_acc=Stat.of(r.history.valid_acc[-1] for r in ok if r.history.valid_acc),
            status=_cell_status(runs),
            runs=tuple(runs),
        )
    return SweepGrid(modes=tuple(modes), lrs=_axis(grid.get("lr"), [k[1] for k in groups]),
                     weight_decays=decays, cells=cells)


def best_settings(grid: SweepGrid) -> list[BestSetting]:
    """Per mode (grid order), the usable cell with the highest mean validation accuracy (the
    last epoch's).

    Ties go to the first cell in (weight decay, lr) ascending order. Modes without a usable
    cell are left out.
    """
    out = []
    for mode in grid.modes:
        acc = grid.accuracy(mode, split="valid")
        if np.isnan(acc).all():
            continue
        i, j = np.unravel_index(int(np.nanargmax(acc)), acc.shape)
        cell = grid.cell(mode, grid.lrs[j], grid.weight_decays[mode][i])
        assert cell is not None and cell.test_acc is not None and cell.valid_acc is not None
        out.append(BestSetting(mode, cell.lr, cell.weight_decay, cell.valid_acc, cell.test_acc,
                               len(cell.seeds), cell))
    return out
