"""A sweep's runs as a grid of cells (decay mode × weight decay × learning rate), and its optimum.

A cell is every run with the same ``decay_mode``, ``weight_decay`` and ``lr`` (one per seed).
Its score is the mean final test accuracy over its seeds (sample std, ``ddof=1``, as in
:mod:`optreg.report.summary`). A cell is *usable* only when every one of its runs finished ok: a
setting that diverges for some seed is not a setting to recommend, so it is greyed out in the
heatmaps and never chosen as the best. Pure data in, pure data out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optreg.report.summary import Results, Run, Stat, run_seed, run_status, runs_of, study_of

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
    status: str  # "ok", "diverged 1/2", "failed 2/2", "diverged 1/2, failed 1/2"
    runs: tuple[Run, ...] = field(default=(), repr=False, compare=False)

    @property
    def usable(self) -> bool:
        """Every run finished ok and gave a test accuracy."""
        return bool(self.seeds) and self.n_ok == len(self.seeds) and self.test_acc is not None


@dataclass(frozen=True)
class SweepGrid:
    """The sweep's axes (sorted ascending for lr and weight decay) and its cells."""

    modes: tuple[str, ...]
    lrs: tuple[float, ...]
    weight_decays: tuple[float, ...]
    cells: Mapping[tuple[str, float, float], SweepCell]

    def cell(self, mode: str, lr: float, weight_decay: float) -> SweepCell | None:
        """The cell at this setting, or None if the sweep has no run there."""
        return self.cells.get((mode, float(lr), float(weight_decay)))

    def accuracy(self, mode: str, *, usable_only: bool = True) -> np.ndarray:
        """Mean test accuracy as a (weight_decay × lr) array; NaN where missing (or unusable)."""
        out = np.full((len(self.weight_decays), len(self.lrs)), np.nan)
        for i, wd in enumerate(self.weight_decays):
            for j, lr in enumerate(self.lrs):
                c = self.cell(mode, lr, wd)
                if c is not None and c.test_acc is not None and (c.usable or not usable_only):
                    out[i, j] = c.test_acc.mean
        return out


@dataclass(frozen=True)
class BestSetting:
    """The usable cell of highest mean test accuracy within one mode."""

    mode: str
    lr: float
    weight_decay: float
    test_acc: Stat
    n_seeds: int
    cell: SweepCell = field(repr=False, compare=False)


def _cell_status(runs: Sequence[Run]) -> str:
    n = len(runs)
    counts: dict[str, int] = {}
    for r in runs:
        s = str(r.get("status", "ok"))
        if s != "ok":
            counts[s] = counts.get(s, 0) + 1
    if not counts:
        return "ok"
    if n == 1:
        return run_status(runs[0])
    return ", ".join(f"{s} {k}/{n}" for s, k in counts.items())


def _axis(declared: Any, found: Sequence[float]) -> tuple[float, ...]:
    values = {float(v) for v in (declared or [])} | set(found)
    return tuple(sorted(values))


def sweep_grid(results: Results) -> SweepGrid:
    """Group the runs into cells by ``config.decay_mode``, ``config.lr``, ``config.weight_decay``.

    The axes are the study's ``grid`` values (when given) together with every value that a run
    used; modes keep the grid's order, then order of first appearance.
    """
    grid = study_of(results).get("grid") or {}
    groups: dict[tuple[str, float, float], list[Run]] = {}
    for run in runs_of(results):
        config = run.get("config") or {}
        key = (
            str(config.get("decay_mode", "none")),
            float(config.get("lr", float("nan"))),
            float(config.get("weight_decay", 0.0)),
        )
        groups.setdefault(key, []).append(run)
    modes = [str(m) for m in grid.get("mode") or []]
    modes += [m for m, _, _ in groups if m not in modes]
    cells = {}
    for key, runs in groups.items():
        ok = [r for r in runs if r.get("status", "ok") == "ok"]
        cells[key] = SweepCell(
            mode=key[0],
            lr=key[1],
            weight_decay=key[2],
            seeds=tuple(run_seed(r) for r in runs),
            n_ok=len(ok),
            test_acc=Stat.of(r.get("test_acc") for r in ok),
            status=_cell_status(runs),
            runs=tuple(runs),
        )
    return SweepGrid(
        modes=tuple(dict.fromkeys(modes)),
        lrs=_axis(grid.get("lr"), [k[1] for k in groups]),
        weight_decays=_axis(grid.get("weight_decay"), [k[2] for k in groups]),
        cells=cells,
    )


def best_settings(grid: SweepGrid) -> list[BestSetting]:
    """Per mode (grid order), the usable cell with the highest mean test accuracy.

    Ties go to the first cell in (weight decay, lr) ascending order. Modes without a usable
    cell are left out.
    """
    out = []
    for mode in grid.modes:
        acc = grid.accuracy(mode)
        if np.isnan(acc).all():
            continue
        i, j = np.unravel_index(int(np.nanargmax(acc)), acc.shape)
        cell = grid.cell(mode, grid.lrs[j], grid.weight_decays[i])
        assert cell is not None and cell.test_acc is not None
        out.append(
            BestSetting(mode, cell.lr, cell.weight_decay, cell.test_acc, len(cell.seeds), cell)
        )
    return out
