"""Figures as PNG bytes: loss curves of every scenario, and a sweep's accuracy heatmaps.

matplotlib is imported inside the drawing functions only (``import optreg.report`` stays light),
and figures are built on a bare :class:`matplotlib.figure.Figure` rendered by Agg: no pyplot,
no global state, safe in worker threads. The ``save_*`` functions write the PNG atomically.

Loss curves
    One column per panel (the study's ``panels``; else one per decay mode, or a single one),
    train loss on the top row (solid), validation loss below (dashed), rows sharing their y axis.
    Each line is the mean over the scenario's ok seeds with a ±1 sample-std band. A twin that
    matches an earlier scenario of its panel (see :func:`optreg.report.summary.twin_deltas`) is
    drawn as markers only, on top of the other's line, and its legend entry says
    ``(= other)``, so coincidence is seen rather than hidden. Diverged or failed runs are drawn
    thin up to their last finite value and end in a ✕.

Heatmaps (sweeps)
    One panel per decay mode, x = learning rate, y = weight decay (grid values, log-spaced
    as swept), colour = mean final test accuracy over seeds on one shared scale, every cell
    annotated; the best usable cell of each mode (on validation accuracy) is boxed,
    diverged/failed cells are grey and hatched.
"""

from __future__ import annotations

import io
import os
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optreg.atomic import atomic_write_bytes
from optreg.formatting import format_number
from optreg.report.summary import (
    DEFAULT_TOL,
    ScenarioCurves,
    gap_curve,
    mean_std,
    require_runs,
    scenario_curves,
    step_curves,
    twin_deltas,
)
from optreg.report.sweep import SweepGrid, best_settings, sweep_grid
from optreg.results import StudyResult

__all__ = [
    "DPI",
    "gap_curves_png",
    "heatmaps_png",
    "loss_curves_png",
    "loss_panels",
    "save_heatmaps",
    "save_loss_curves",
    "step_sizes_png",
]

DPI = 120
_TWIN_MARKERS = (("o", 8.0, "none"), ("D", 3.5, None), ("+", 9.0, None), ("x", 6.0, None))
_GREY = "#c8c8c8"
_BEST = "#e4002b"


# --- pure layout ------------------------------------------------------------------------------


def loss_panels(results: StudyResult) -> list[tuple[str, list[str]]]:
    """Panel titles and the scenario names in each, for the loss-curve figure.

    The study's ``panels`` (unknown names dropped, empty panels dropped, names in no panel
    collected in "Other"); without them one panel per decay mode when there are several, else a
    single panel. Pure data; no matplotlib.
    """
    require_runs(results)
    by_name = results.by_name()
    names = list(by_name)
    declared = results.study.panels
    if declared:
        panels = []
        placed: set[str] = set()
        for title, members in declared.items():
            keep = [str(n) for n in members if str(n) in by_name]
            placed.update(keep)
            if keep:
                panels.append((str(title), list(dict.fromkeys(keep))))
        rest = [n for n in names if n not in placed]
        if rest:
            panels.append(("Other", rest))
        return panels
    modes: dict[str, list[str]] = {}
    for name, runs in by_name.items():
        mode = runs[0].config.decay_mode
        modes.setdefault(mode, []).append(name)
    if len(modes) > 1:
        return [(f"decay mode: {mode}", members) for mode, members in modes.items()]
    title = results.study.name or (names[0] if len(names) == 1 else "all scenarios")
    return [(str(title), names)]


@dataclass(frozen=True)
class _Twin:
    others: tuple[str, ...]
    matched: bool
    rank: int  # 0 for the first twin drawn on someone's line, 1 for the next …


def _twins_in_panel(
    members: Sequence[str], pairs: Mapping[frozenset[str], bool]
) -> dict[str, _Twin]:
    twins: dict[str, _Twin] = {}
    ranks: dict[str, int] = {}
    for i, name in enumerate(members):
        earlier = [m for m in members[:i] if frozenset((m, name)) in pairs]
        if not earlier:
            continue
        same = [m for m in earlier if pairs[frozenset((m, name))]]
        if same:
            root = same[0]
            while root in twins and twins[root].matched:  # draw on the first line of the chain
                root = twins[root].others[0]
            rank = ranks.get(root, 0)
            ranks[root] = rank + 1
            twins[name] = _Twin((root,), True, rank)
        else:
            twins[name] = _Twin(tuple(earlier), False, 0)
    return twins


# --- drawing helpers --------------------------------------------------------------------------


def _palette(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _png(fig: Any, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def _ylimits(curves: Sequence[ScenarioCurves], key: str) -> tuple[float, float, bool] | None:
    """Limits that show the ok curves fully (a diverged run must not squash them)."""
    values = []
    for c in curves:
        mean, std = getattr(c, f"{key}_mean"), getattr(c, f"{key}_std")
        if mean.size:
            values.append(mean if std is None else np.concatenate([mean - std, mean + std]))
    if not values:  # only stopped runs: show what they have
        values = [getattr(s, f"{key}_loss") for c in curves for s in c.stopped]
    flat = np.concatenate(values) if values else np.empty(0)
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return None
    lo, hi = float(flat.min()), float(flat.max())
    log = lo > 0 and hi / lo > 30
    if log:
        return lo / 1.15, hi * 1.15, True
    pad = 0.06 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
    return lo - pad, hi + pad, False


def _draw_curves(
    ax: Any,
    curves: Sequence[ScenarioCurves],
    key: str,
    colors: Mapping[str, Any],
    twins: Mapping[str, _Twin],
    limits: tuple[float, float, bool] | None,
) -> None:
    style = "-" if key == "train" else "--"
    for c in curves:
        color = colors[c.label]
        mean, std = getattr(c, f"{key}_mean"), getattr(c, f"{key}_std")
        epochs = np.arange(1, mean.size + 1)
        twin = twins.get(c.label)
        label = c.label
        if twin is not None:
            label += f" ({'=' if twin.matched else '≠'} {', '.join(twin.others)})"
        n_runs = c.n_ok + len(c.stopped)
        if c.stopped:
            what = sorted({s.status.split(" ")[0].rstrip(":") for s in c.stopped})
            label += f" [{len(c.stopped)}/{n_runs} {'/'.join(what)}]"
        if mean.size:
            if twin is not None and twin.matched:
                marker, size, face = _TWIN_MARKERS[twin.rank % len(_TWIN_MARKERS)]
                ax.plot(
                    epochs,
                    mean,
                    linestyle="none",
                    marker=marker,
                    markersize=size,
                    markerfacecolor=face or color,
                    markeredgecolor=color,
                    markeredgewidth=1.6,
                    color=color,
                    label=label,
                    zorder=4,
                )
            else:
                ax.plot(epochs, mean, style, color=color, linewidth=1.8, label=label, zorder=3)
            if std is not None:
                ax.fill_between(
                    epochs, mean - std, mean + std, color=color, alpha=0.18, linewidth=0, zorder=2
                )
            label = "_nolegend_"
        for s in c.stopped:
            y = getattr(s, f"{key}_loss")
            finite = np.flatnonzero(np.isfinite(y))
            if finite.size == 0:
                continue
            last = int(finite[-1])
            x = np.arange(1, last + 2)
            ax.plot(
                x,
                y[: last + 1],
                style,
                color=color,
                linewidth=1.0,
                alpha=0.85,
                label=label,
                zorder=3,
            )
            label = "_nolegend_"
            y_end = float(y[last])
            if limits is not None:
                y_end = min(max(y_end, limits[0]), limits[1])
            ax.plot(
                [last + 1],
                [y_end],
                marker="X",
                markersize=9,
                color=color,
                markeredgecolor="black",
                markeredgewidth=0.8,
                linestyle="none",
                clip_on=False,
                zorder=5,
            )


# --- loss curves ------------------------------------------------------------------------------


def _loss_panels_data(
    results: StudyResult, tol: float
) -> tuple[list[tuple[str, list[ScenarioCurves]]], dict[frozenset[str], bool], str]:
    if results.study.is_sweep:
        grid = sweep_grid(results)
        best = {b.mode: b.cell for b in best_settings(grid)}
        curves = []
        for mode in grid.modes:
            cells = (
                [best[mode]] if mode in best else [c for c in grid.cells.values() if c.mode == mode]
            )
            for cell in cells:
                label = (
                    f"{mode}: lr {format_number(cell.lr)}, wd {format_number(cell.weight_decay)}"
                )
                curves.append(scenario_curves(label, cell.runs))
        return [("best setting per decay mode", curves)], {}, "Sweep: loss curves of the best cells"
    by_name = results.by_name()
    panels = [
        (title, [scenario_curves(n, by_name[n]) for n in members])
        for title, members in loss_panels(results)
    ]
    pairs = {frozenset((d.a, d.b)): d.matched for d in twin_deltas(results, tol=tol)}
    name = results.study.name
    return panels, pairs, f"Loss curves{f' — {name}' if name else ''}"


def loss_curves_png(results: StudyResult, *, tol: float = DEFAULT_TOL, dpi: int = DPI) -> bytes:
    """PNG of train (top row, solid) and validation (bottom row, dashed) loss per epoch.

    For a sweep, the curves of the best cell of each decay mode (all cells of a mode that has
    none usable). ``tol`` decides which twins count as coinciding (drawn as markers).
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    panels, pairs, title = _loss_panels_data(results, tol)
    labels = list(dict.fromkeys(c.label for _, curves in panels for c in curves))
    colors = dict(zip(labels, _palette(len(labels)), strict=True))
    n_seeds = max((c.n_ok + len(c.stopped) for _, cs in panels for c in cs), default=1)

    ncols = len(panels)
    fig = Figure(figsize=(max(5.5, 4.8 * ncols), 7.6), layout="constrained")
    axes = fig.subplots(2, ncols, sharex="col", sharey="row", squeeze=False)
    all_curves = [c for _, cs in panels for c in cs]
    for row, key in enumerate(("train", "valid")):
        limits = _ylimits(all_curves, key)
        for col, (panel_title, curves) in enumerate(panels):
            ax = axes[row, col]
            twins = _twins_in_panel([c.label for c in curves], pairs)
            _draw_curves(ax, curves, key, colors, twins, limits)
            if limits is not None:
                lo, hi, log = limits
                if log:
                    ax.set_yscale("log")
                ax.set_ylim(lo, hi)
            ax.grid(True, alpha=0.3, linewidth=0.6)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if not ax.lines:
                ax.text(
                    0.5,
                    0.5,
                    "no loss history",
                    transform=ax.transAxes,
                    ha="center",
                    va="center",
                    color="#777777",
                )
            if row == 0:
                ax.set_title(panel_title, fontsize=11, fontweight="bold")
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=7.5, loc="upper right", framealpha=0.85)
            else:
                ax.set_xlabel("epoch")
            if col == 0:
                ax.set_ylabel("train loss (cross-entropy)" if key == "train" else "validation loss")
    legend = ["solid: train, dashed: validation"]
    if n_seeds > 1:
        legend.append("line: mean, band: ±1 sample std over seeds")
    if any(
        t.matched
        for _, cs in panels
        for t in _twins_in_panel([c.label for c in cs], pairs).values()
    ):
        legend.append("markers only: a twin that coincides with the line under it")
    if any(c.stopped for c in all_curves):
        legend.append("✕: where a diverged/failed run stopped")
    width = int(fig.get_figwidth() * 14)  # characters that fit across the figure at 10 pt
    fig.suptitle(title + "\n" + textwrap.fill("; ".join(legend), width), fontsize=10)
    return _png(fig, dpi)


# --- overfitting and step sizes ----------------------------------------------------------------


def gap_curves_png(results: StudyResult, *, dpi: int = DPI) -> bytes:
    """PNG of the generalisation gap, validation minus training loss, per epoch: one panel per
    panel of the loss curves, mean ± 1 sample std over each scenario's ok seeds."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    by_name = results.by_name()
    panels = loss_panels(results)
    names = list(dict.fromkeys(n for _, members in panels for n in members))
    colors = dict(zip(names, _palette(len(names)), strict=True))
    fig = Figure(figsize=(max(5.5, 4.8 * len(panels)), 4.4), layout="constrained")
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    for ax, (title, members) in zip(axes, panels, strict=True):
        for name in members:
            mean, std = mean_std([gap_curve(r) for r in by_name[name] if r.ok])
            if not mean.size:
                continue
            epochs = np.arange(1, mean.size + 1)
            ax.plot(epochs, mean, color=colors[name], linewidth=1.8, label=name)
            if std is not None:
                ax.fill_between(epochs, mean - std, mean + std, color=colors[name], alpha=0.18,
                                linewidth=0)
        ax.axhline(0.0, color="#999999", linewidth=0.8)
        ax.set_title(title, fontsize=11, fontweight="bold")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3, linewidth=0.6)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7.5, loc="upper left", framealpha=0.85)
    axes[0].set_ylabel("validation − training loss")
    fig.suptitle("Generalisation gap (held-out validation); line: mean, band: ±1 sample std "
                 "over seeds", fontsize=10)
    return _png(fig, dpi)


def step_sizes_png(results: StudyResult, *, dpi: int = DPI) -> bytes:
    """PNG of the effective step ‖Δθ‖_rms / lr over the traced first steps of each scenario."""
    from matplotlib.figure import Figure

    curves = step_curves(results)
    colors = dict(zip(curves, _palette(len(curves)), strict=True))
    fig = Figure(figsize=(7.5, 4.6), layout="constrained")
    ax = fig.subplots()
    for name, (mean, _std) in curves.items():
        ax.plot(np.arange(1, mean.size + 1), mean, color=colors[name], linewidth=1.6, label=name)
    ax.set_yscale("log")
    ax.axhline(1.0, color="#999999", linewidth=0.8, linestyle=":")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("‖Δθ‖_rms / learning rate")
    ax.grid(True, which="both", alpha=0.25, linewidth=0.5)
    ax.legend(fontsize=7.5, framealpha=0.85)
    ax.set_title("How far each step moves the weights, in units of the learning rate",
                 fontsize=10)
    return _png(fig, dpi)


# --- heatmaps ---------------------------------------------------------------------------------


def _draw_heatmap(ax: Any, grid: SweepGrid, mode: str, norm: Any, cmap: Any) -> Any:
    from matplotlib.patches import Rectangle

    acc = grid.accuracy(mode) * 100
    image = ax.imshow(
        np.ma.masked_invalid(acc), origin="lower", cmap=cmap, norm=norm, aspect="auto"
    )
    best = {b.mode: b for b in best_settings(grid)}.get(mode)
    decays = grid.weight_decays[mode]
    for i, wd in enumerate(decays):
        for j, lr in enumerate(grid.lrs):
            cell = grid.cell(mode, lr, wd)
            if cell is None:
                ax.text(j, i, "no run", ha="center", va="center", fontsize=8, color="#777777")
                continue
            if not cell.usable:
                ax.add_patch(
                    Rectangle(
                        (j - 0.5, i - 0.5),
                        1,
                        1,
                        facecolor=_GREY,
                        edgecolor="white",
                        hatch="///",
                        linewidth=0,
                    )
                )
                text = cell.status.replace("diverged", "div.").replace(", ", "\n")
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color="#333333")
                continue
            assert cell.test_acc is not None
            value = cell.test_acc.mean * 100
            text = f"{value:.2f}"
            if cell.test_acc.std is not None:
                text += f"\n±{cell.test_acc.std * 100:.2f}"
            r, g, b, _ = cmap(norm(value))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.55
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8.5,
                color="white" if dark else "black",
            )
    if best is not None:
        j, i = grid.lrs.index(best.lr), decays.index(best.weight_decay)
        ax.add_patch(
            Rectangle(
                (j - 0.46, i - 0.46), 0.92, 0.92, fill=False, edgecolor=_BEST, linewidth=3, zorder=5
            )
        )
        ax.set_title(
            f"{mode}\nbest on validation: lr {format_number(best.lr)}, "
            f"wd {format_number(best.weight_decay)}\n"
            f"→ valid {best.valid_acc.mean * 100:.2f}%, test {best.test_acc.mean * 100:.2f}%",
            fontsize=10.5,
        )
    else:
        ax.set_title(f"{mode}\nno setting finished on every seed", fontsize=10.5)
    ax.set_xticks(range(len(grid.lrs)), [format_number(v) for v in grid.lrs])
    ax.set_yticks(range(len(decays)), [format_number(v) for v in decays])
    ax.set_xlabel("learning rate (log grid)")
    ax.set_ylabel("weight decay (log grid)")
    ax.set_xlim(-0.5, len(grid.lrs) - 0.5)
    ax.set_ylim(-0.5, len(decays) - 0.5)
    return image


def heatmaps_png(results: StudyResult, *, dpi: int = DPI) -> bytes:
    """PNG of the sweep's mean final test accuracy: one heatmap per decay mode, side by side.

    All panels share one colour scale, so the accuracy and the position of each mode's optimum
    (boxed) compare at a glance.
    """
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    grid = sweep_grid(results)
    usable = np.concatenate([grid.accuracy(m).ravel() for m in grid.modes]) * 100
    usable = usable[np.isfinite(usable)]
    lo, hi = (float(usable.min()), float(usable.max())) if usable.size else (0.0, 100.0)
    if hi - lo < 1e-9:
        lo, hi = lo - 0.5, hi + 0.5
    norm, cmap = Normalize(lo, hi), colormaps["viridis"]

    n = len(grid.modes)
    width = 1.05 * len(grid.lrs) + 1.6
    fig = Figure(
        figsize=(max(4.5, width) * n + 1.2,
                 0.75 * max(len(d) for d in grid.weight_decays.values()) + 2.6),
        layout="constrained",
    )
    # Modes with their own weight-decay values get their own y axis.
    axes = fig.subplots(1, n, squeeze=False, sharey=grid.shared_decays)[0]
    image = None
    for ax, mode in zip(axes, grid.modes, strict=True):
        image = _draw_heatmap(ax, grid, mode, norm, cmap)
    if image is not None:
        fig.colorbar(image, ax=list(axes), label="mean final test accuracy (%)", shrink=0.9)
    seeds = max((len(c.seeds) for c in grid.cells.values()), default=1)
    fig.suptitle(
        f"Sweep: final test accuracy (%), mean ± std over {seeds} seed(s)\n"
        "red box: best per mode on validation accuracy; grey: a seed diverged or failed",
        fontsize=11,
    )
    return _png(fig, dpi)


# --- saving -----------------------------------------------------------------------------------


def save_loss_curves(
    results: StudyResult, path: str | os.PathLike[str], *, tol: float = DEFAULT_TOL,
    dpi: int = DPI
) -> Path:
    """Write :func:`loss_curves_png` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, loss_curves_png(results, tol=tol, dpi=dpi))


def save_heatmaps(results: StudyResult, path: str | os.PathLike[str], *, dpi: int = DPI) -> Path:
    """Write :func:`heatmaps_png` to ``path`` atomically; returns the path."""
    return atomic_write_bytes(path, heatmaps_png(results, dpi=dpi))
