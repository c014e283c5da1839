"""Tables: summary data formatted as cells, rendered as aligned plain text or Markdown.

A :class:`Table` is just formatted strings plus a column alignment, so one table renders the
same in the terminal (:func:`to_text`), in Markdown (:func:`to_markdown`) and in HTML
(:mod:`optreg.report.document`). Number formats: accuracies as percentages with 2 decimals,
losses with 4 decimals, times in seconds with 1 decimal, throughput in whole images per second;
a value over several seeds reads ``mean ± std`` (sample std, ``ddof=1``), std only with ≥ 2 seeds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from optreg.formatting import format_number
from optreg.report.summary import (
    DEFAULT_TOL,
    GapSummary,
    ScenarioSummary,
    Stat,
    gap_summaries,
    held_out,
    step_curves,
    summarize,
    traced,
)
from optreg.report.sweep import BestSetting, SweepGrid, best_settings, sweep_grid
from optreg.results import StudyResult

__all__ = [
    "MISSING",
    "Table",
    "best_table",
    "format_stat",
    "gap_table",
    "key_value_table",
    "md_escape",
    "results_tables",
    "step_table",
    "summary_table",
    "sweep_table",
    "to_markdown",
    "to_text",
]

MISSING = "—"  # shown for a value that no ok run provides


@dataclass(frozen=True)
class Table:
    """Headers, rows of already formatted cells, and per-column alignment (``l`` or ``r``)."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    align: tuple[str, ...]

    def __post_init__(self) -> None:
        width = len(self.headers)
        if len(self.align) != width or any(len(r) != width for r in self.rows):
            raise ValueError("every row and the alignment must have one entry per header")


# --- formatting -------------------------------------------------------------------------------


def format_stat(stat: Stat | None, decimals: int, *, scale: float = 1.0) -> str:
    """``mean ± std`` (or just the mean with one value) with fixed decimals; ``—`` for None."""
    if stat is None:
        return MISSING
    mean = f"{stat.mean * scale:.{decimals}f}"
    return mean if stat.std is None else f"{mean} ± {stat.std * scale:.{decimals}f}"


def _format_epoch(stat: Stat | None) -> str:
    if stat is None:
        return MISSING
    if stat.std is None or stat.std == 0:
        return f"{stat.mean:g}"
    return format_stat(stat, 1)


def _format_value(value: Any) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list | tuple):
        return ", ".join(_format_value(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


# --- tables -----------------------------------------------------------------------------------


def summary_table(rows: Sequence[ScenarioSummary], *, matches: bool | None = None) -> Table:
    """The study's summary, one row per scenario.

    The matches column is shown when ``matches`` is True, or (None, the default) when any row
    has a matches text. The seeds column reads ``ok/total`` when some runs did not finish ok.
    With held-out validation, "best-epoch test acc" is the test accuracy of the weights of the
    best validation epoch (early stopping), beside the final one.
    """
    show_matches = any(r.matches for r in rows) if matches is None else matches
    show_best = any(r.best_test_acc is not None for r in rows)
    headers = [
        "scenario",
        "seeds",
        "train acc (%)",
        "test acc (%)",
        *(["best-epoch test acc (%)"] if show_best else []),
        "train loss",
        "valid loss",
        "best epoch",
        "wall (s)",
        "img/s",
        "status",
    ]
    align = ["l", *["r"] * (len(headers) - 2), "l"]
    if show_matches:
        headers.append("matches")
        align.append("l")
    body = []
    for r in rows:
        seeds = str(r.n_runs) if r.n_ok == r.n_runs else f"{r.n_ok}/{r.n_runs}"
        cells = [
            r.name,
            seeds,
            format_stat(r.train_acc, 2, scale=100),
            format_stat(r.test_acc, 2, scale=100),
            *([format_stat(r.best_test_acc, 2, scale=100)] if show_best else []),
            format_stat(r.final_train_loss, 4),
            format_stat(r.final_valid_loss, 4),
            _format_epoch(r.best_epoch),
            format_stat(r.wall_s, 1),
            format_stat(r.img_per_s, 0),
            r.status,
        ]
        if show_matches:
            cells.append(r.matches)
        body.append(tuple(cells))
    return Table(tuple(headers), tuple(body), tuple(align))


def best_table(best: Sequence[BestSetting]) -> Table:
    """The best settings per mode (chosen on validation accuracy): mode, lr, weight decay,
    validation and test accuracy, number of seeds."""
    rows = tuple(
        (
            b.mode,
            format_number(b.lr),
            format_number(b.weight_decay),
            format_stat(b.valid_acc, 2, scale=100),
            format_stat(b.test_acc, 2, scale=100),
            str(b.n_seeds),
        )
        for b in best
    )
    return Table(
        ("mode", "best lr", "best weight decay", "valid acc (%)", "test acc (%)", "seeds"),
        rows,
        ("l", "r", "r", "r", "r", "r"),
    )


def sweep_table(grid: SweepGrid) -> Table:
    """Every cell of a sweep: mode, lr, weight decay, validation and test accuracy over seeds,
    status."""
    rows = []
    for mode in grid.modes:
        for wd in grid.weight_decays[mode]:
            for lr in grid.lrs:
                cell = grid.cell(mode, lr, wd)
                if cell is None:
                    continue
                seeds = str(len(cell.seeds))
                if cell.n_ok != len(cell.seeds):
                    seeds = f"{cell.n_ok}/{len(cell.seeds)}"
                rows.append(
                    (
                        mode,
                        format_number(lr),
                        format_number(wd),
                        format_stat(cell.valid_acc, 2, scale=100),
                        format_stat(cell.test_acc, 2, scale=100),
                        seeds,
                        cell.status,
                    )
                )
    return Table(
        ("mode", "lr", "weight decay", "valid acc (%)", "test acc (%)", "seeds", "status"),
        tuple(rows),
        ("l", "r", "r", "r", "r", "r", "l"),
    )


def gap_table(rows: Sequence[GapSummary]) -> Table:
    """How each scenario overfits (held-out validation): the generalisation gap at the end, the
    validation loss's rise after its minimum, the best epoch, and the test accuracy of the final
    and of the best epoch's weights."""
    body = tuple(
        (r.name, format_stat(r.final_gap, 4), format_stat(r.rise, 4), _format_epoch(r.best_epoch),
         format_stat(r.test_acc, 2, scale=100), format_stat(r.best_test_acc, 2, scale=100))
        for r in rows
    )
    return Table(("scenario", "final gap (valid − train loss)", "valid loss rise after its min",
                  "best epoch", "final test acc (%)", "best-epoch test acc (%)"), body,
                 ("l", "r", "r", "r", "r", "r"))


STEP_COLUMNS = (1, 2, 10, 100)  # traced steps shown in the step-size table


def step_table(curves: Mapping[str, tuple[Any, Any]]) -> Table:
    """The effective step ‖Δθ‖_rms / lr of each traced scenario at a few steps."""
    columns = [s for s in STEP_COLUMNS if any(len(mean) >= s for mean, _ in curves.values())]
    body = tuple(
        (name, *(f"{mean[s - 1]:.3g}" if len(mean) >= s else MISSING for s in columns))
        for name, (mean, _) in curves.items()
    )
    return Table(("scenario", *(f"step {s}" for s in columns)), body,
                 ("l", *("r" for _ in columns)))


def key_value_table(pairs: Mapping[str, Any], headers: tuple[str, str] = ("key", "value")) -> Table:
    """A two-column table of settings or machine facts (lists joined, dicts as JSON)."""
    rows = tuple((str(k), _format_value(v)) for k, v in pairs.items())
    return Table(headers, rows, ("l", "l"))


# --- rendering --------------------------------------------------------------------------------


def to_text(table: Table) -> str:
    """Aligned columns for the terminal, with a rule under the header; no trailing spaces."""
    cells = [table.headers, *table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.headers))]

    def line(row: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if a == "r" else c.ljust(w)
            for c, w, a in zip(row, widths, table.align, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(table.headers), rule, *(line(r) for r in table.rows)]) + "\n"


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\|<>&*`[]"})


def md_escape(text: str) -> str:
    """Escape text for Markdown: backslash before ``\\ | < > & * ` [ ]``; newlines → spaces.

    Escaping ``<`` and ``&`` keeps names such as ``<script>`` literal text in any renderer.
    """
    return " ".join(str(text).splitlines()).translate(_MD_SPECIAL)


def to_markdown(table: Table) -> str:
    """A GitHub pipe table (cells escaped, so every row has the same number of pipes)."""
    sep = {"l": ":---", "r": "---:"}

    def line(row: Sequence[str]) -> str:
        return "| " + " | ".join(md_escape(c) for c in row) + " |"

    rule = "|" + "|".join(sep.get(a, "---") for a in table.align) + "|"
    return "\n".join([line(table.headers), rule, *(line(r) for r in table.rows)]) + "\n"


def results_tables(results: StudyResult, *,
                   tol: float = DEFAULT_TOL) -> list[tuple[str, Table]]:
    """The study's main tables with their titles, by kind.

    A sweep gives "Best settings per mode" and "All settings"; a study of scenarios or a single
    run gives "Results" (the :func:`summary_table` of :func:`~optreg.report.summary.summarize`),
    then "Overfitting" when it validated on held-out images and "Effective step" when its runs
    traced their first steps.
    """
    if results.study.is_sweep:
        grid = sweep_grid(results)
        return [
            ("Best settings per mode", best_table(best_settings(grid))),
            ("All settings", sweep_table(grid)),
        ]
    tables = [("Results", summary_table(summarize(results, tol=tol)))]
    if held_out(results):
        tables.append(("Overfitting", gap_table(gap_summaries(results))))
    if traced(results):
        tables.append(("Effective step ‖Δθ‖_rms / lr", step_table(step_curves(results))))
    return tables
