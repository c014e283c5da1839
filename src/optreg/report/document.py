"""The report: one list of blocks built from the results, rendered as Markdown and as HTML.

:func:`build_report` is a pure function of the results that returns a title and a list of
blocks (headings, paragraphs, bullet lists, tables, figures). :func:`render_markdown` and
:func:`render_html` turn those blocks into text, so both files say the same thing; the HTML is a
single self-contained page (figures as ``data:`` URIs, inline CSS, every text HTML-escaped).
:func:`write_report` draws the figures and writes everything, atomically.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optreg.atomic import atomic_write_bytes, atomic_write_text
from optreg.report.figures import (
    DPI,
    gap_curves_png,
    heatmaps_png,
    loss_curves_png,
    step_sizes_png,
)
from optreg.report.summary import (
    DEFAULT_TOL,
    format_delta,
    held_out,
    require_runs,
    run_status,
    traced,
    twin_deltas,
)
from optreg.report.tables import Table, key_value_table, md_escape, results_tables, to_markdown
from optreg.results import RunResult, StudyResult

__all__ = [
    "FIGURE_FILES",
    "Bullets",
    "FigureRef",
    "Heading",
    "Paragraph",
    "build_report",
    "render_html",
    "render_markdown",
    "write_report",
]

#: File names of the figures, by key (the keys of :func:`write_report`'s answer).
FIGURE_FILES = {"loss_curves": "loss_curves.png", "heatmaps": "heatmaps.png",
                "gap_curves": "gap_curves.png", "step_sizes": "step_sizes.png"}


@dataclass(frozen=True)
class Heading:
    """A section heading (level 2 or 3; the title is level 1)."""

    text: str
    level: int = 2


@dataclass(frozen=True)
class Paragraph:
    """Plain text (escaped when rendered)."""

    text: str


@dataclass(frozen=True)
class Bullets:
    """A bullet list of plain-text items."""

    items: tuple[str, ...]


@dataclass(frozen=True)
class FigureRef:
    """A figure, by its PNG file name relative to the report, with alt text and a caption."""

    file: str
    alt: str
    caption: str = ""


Block = Heading | Paragraph | Bullets | Table | FigureRef


# --- content ----------------------------------------------------------------------------------


def _counts(runs: Sequence[RunResult]) -> str:
    counts: dict[str, int] = {}
    for r in runs:
        counts[r.status] = counts.get(r.status, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def _overview(results: StudyResult) -> str:
    study, runs = results.study, results.runs
    seeds = sorted({r.seed for r in runs})
    text = (
        f"Study “{study.name}” (kind {study.kind}): {len(runs)} run(s) of "
        f"{len(results.by_name())} scenario(s), seed(s) {', '.join(map(str, seeds))}; "
        f"status: {_counts(runs)}."
    )
    validation = {"test" if r.config.valid_size is None else "held-out" for r in runs}
    if validation == {"held-out"}:
        text += (" Validation: the last training images, held out (the test split is read only "
                 "by the final evaluation).")
    elif validation == {"test"}:
        text += " Validation: the test split, as in the exercise."
    when = [f"{label} {value}" for label, value in (("started", study.started_at),
                                                    ("finished", study.finished_at)) if value]
    if study.wall_s is not None:
        when.append(f"wall time {study.wall_s:.1f} s")
    if not when:
        return text
    joined = "; ".join(when)
    return f"{text} {joined[0].upper()}{joined[1:]}."


def _machine(results: StudyResult) -> Mapping[str, Any]:
    machine = dict(results.study.machine)
    if not machine:  # fall back to the first run's provenance
        machine = dict(results.runs[0].provenance)
        machine.pop("finished_at", None)
    return machine


def _conventions(results: StudyResult) -> str:
    if results.study.is_sweep:
        return (
            "Accuracies are the last epoch's, mean ± sample standard deviation (ddof=1) over "
            "seeds; the best setting of each mode is chosen on validation accuracy and reported "
            "with its test accuracy; a setting counts only when all its seeds finished ok (others "
            "are greyed in the heatmaps)."
        )
    return (
        "Values are mean ± sample standard deviation (ddof=1) over the seeds that finished ok "
        "(std only with ≥ 2 seeds; “seeds” reads ok/total when some did not). Losses are the "
        "last epoch's cross-entropy (the data term, without any L2 penalty); best epoch is the "
        "1-based epoch of the lowest validation loss; wall time is the whole run, img/s the "
        "training throughput."
    )


def _twin_notes(results: StudyResult, tol: float) -> list[str]:
    notes = []
    for d in twin_deltas(results, tol=tol):
        seeds = ", ".join(map(str, d.seeds)) or "none"
        if d.matched:
            what = "match"
        elif d.comparable:
            what = "DIFFER"
        else:
            what = "cannot be compared"
        detail = f"max |Δ| {format_delta(d.max_delta)} over train and validation loss"
        if not d.comparable:
            detail = d.note or "nothing to compare"
        elif d.note:
            detail += f" ({d.note})"
        notes.append(
            f"{d.a} {d.verdict} {d.b}: {what}; {detail} (seeds {seeds}; "
            f"{d.epochs} epoch(s); tolerance {format_delta(tol)})."
        )
    return notes


def _problems(results: StudyResult) -> list[str]:
    items = []
    for r in results.runs:
        if r.ok:
            continue
        line = f"{r.name} (seed {r.seed}): {run_status(r)}"
        error = (r.error or "").strip()
        if error and r.status != "failed":
            line += f". {' '.join(error.splitlines())}"
        items.append(line)
    return items


def build_report(
    results: StudyResult, *, figures: Mapping[str, str] | None = None, tol: float = DEFAULT_TOL
) -> tuple[str, list[Block]]:
    """The report's title and blocks; a pure function of ``results``.

    ``figures`` maps figure keys (``loss_curves``, ``heatmaps``) to file names; keys that are
    absent are left out of the report (default: :data:`FIGURE_FILES` as appropriate for the
    kind). ``tol`` is the twins' tolerance on max |Δ|.
    """
    require_runs(results)
    study = results.study
    if figures is None:
        figures = {k: FIGURE_FILES[k] for k in _figures_of(results)}
    title = f"optreg report: {study.name}"
    blocks: list[Block] = [Paragraph(_overview(results))]

    tables = results_tables(results, tol=tol)
    first_title, first_table = tables[0]
    blocks += [Heading(first_title), first_table, Paragraph(_conventions(results))]
    if study.is_sweep:
        if "heatmaps" in figures:
            blocks += [
                Heading("Heatmaps"),
                FigureRef(
                    figures["heatmaps"],
                    "Heatmaps of mean final test accuracy per decay mode",
                    "x: learning rate, y: weight decay; red box: best per mode on validation "
                    "accuracy; "
                    "grey: a seed diverged or failed.",
                ),
            ]
        if "loss_curves" in figures:
            blocks += [
                Heading("Loss curves of the best settings"),
                FigureRef(figures["loss_curves"], "Loss curves of the best setting per mode"),
            ]
    else:
        notes = _twin_notes(results, tol)
        if notes:
            blocks += [
                Heading("Twins"),
                Paragraph("Scenarios that must coincide, compared epoch by epoch at equal seed."),
                Bullets(tuple(notes)),
            ]
        if "loss_curves" in figures:
            blocks += [
                Heading("Loss curves"),
                FigureRef(
                    figures["loss_curves"],
                    "Train and validation loss per epoch of every scenario",
                    "Top: train loss (solid); bottom: validation loss (dashed). A twin that "
                    "coincides with another is drawn as markers on its line.",
                ),
            ]
    for extra_title, table in tables[1:]:
        blocks += [Heading(extra_title), table]
        if extra_title == "Overfitting" and "gap_curves" in figures:
            blocks.append(FigureRef(
                figures["gap_curves"], "Validation minus training loss per epoch",
                "The generalisation gap: it grows while a model memorises its training images; "
                "a regularizer that works keeps it small."))
        if extra_title.startswith("Effective step") and "step_sizes" in figures:
            blocks.append(FigureRef(
                figures["step_sizes"], "Effective step of the first optimizer steps",
                "‖θ_t − θ_{t−1}‖_rms divided by the learning rate, measured in the runs."))

    described = [f"{n}: {study.descriptions[n]}" for n in results.by_name()
                 if n in study.descriptions]
    if described:
        blocks += [Heading("Scenarios"), Bullets(tuple(described))]
    problems = _problems(results)
    if problems:
        blocks += [Heading("Runs that did not finish"), Bullets(tuple(problems))]
    if study.settings:
        blocks += [Heading("Settings"), key_value_table(study.settings, ("setting", "value"))]
    if study.execution:
        blocks += [Heading("Execution"), key_value_table(study.execution, ("option", "value"))]
    machine = _machine(results)
    if machine:
        blocks += [Heading("Machine"), key_value_table(machine, ("item", "value"))]
    return title, blocks


def _figures_of(results: StudyResult) -> list[str]:
    """The figures a study's report has: loss curves always; heatmaps for a sweep; the
    generalisation gap with held-out validation; step sizes when runs traced their steps."""
    keys = ["loss_curves"]
    if results.study.is_sweep:
        keys.append("heatmaps")
    elif held_out(results):
        keys.append("gap_curves")
    if traced(results):
        keys.append("step_sizes")
    return keys


# --- rendering --------------------------------------------------------------------------------


def render_markdown(title: str, blocks: Sequence[Block]) -> str:
    """The blocks as Markdown; figures link to their PNG files by relative path."""
    parts = [f"# {md_escape(title)}"]
    for b in blocks:
        if isinstance(b, Heading):
            parts.append(f"{'#' * b.level} {md_escape(b.text)}")
        elif isinstance(b, Paragraph):
            parts.append(md_escape(b.text))
        elif isinstance(b, Bullets):
            parts.append("\n".join(f"- {md_escape(item)}" for item in b.items))
        elif isinstance(b, Table):
            parts.append(to_markdown(b).rstrip("\n"))
        elif isinstance(b, FigureRef):
            text = f"![{md_escape(b.alt)}]({b.file})"
            parts.append(text + (f"\n\n*{md_escape(b.caption)}*" if b.caption else ""))
    return "\n\n".join(parts) + "\n"


_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1a1a1a;
       max-width: 1280px; margin: 2em auto; padding: 0 1.5em; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { font-size: 1.25em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 13px;
        font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: .3em .6em; vertical-align: top; }
th { background: #f3f5f7; }
tr:nth-child(even) td { background: #fafbfc; }
.r { text-align: right; white-space: nowrap; }
.l { text-align: left; }
figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 13px; }
""".strip()


def html_table(table: Table) -> str:
    """A table as an HTML ``<table>``, every cell escaped (the report's and Jupyter's)."""
    def cls(a: str) -> str:
        return "r" if a == "r" else "l"

    head = "".join(
        f'<th class="{cls(a)}">{html.escape(h)}</th>'
        for h, a in zip(table.headers, table.align, strict=True)
    )
    rows = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="{cls(a)}">{html.escape(c)}</td>'
            for c, a in zip(row, table.align, strict=True)
        )
        + "</tr>"
        for row in table.rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"


def render_html(title: str, blocks: Sequence[Block], images: Mapping[str, bytes]) -> str:
    """The blocks as one self-contained HTML page.

    ``images`` maps each figure's file name to its PNG bytes, embedded as a base64 data URI; a
    figure without bytes is left out (nothing is ever linked).
    """
    body = [f"<h1>{html.escape(title)}</h1>"]
    for b in blocks:
        if isinstance(b, Heading):
            body.append(f"<h{b.level}>{html.escape(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            body.append(f"<p>{html.escape(b.text)}</p>")
        elif isinstance(b, Bullets):
            items = "\n".join(f"<li>{html.escape(item)}</li>" for item in b.items)
            body.append(f"<ul>\n{items}\n</ul>")
        elif isinstance(b, Table):
            body.append(html_table(b))
        elif isinstance(b, FigureRef) and b.file in images:
            data = base64.b64encode(images[b.file]).decode("ascii")
            caption = f"<figcaption>{html.escape(b.caption)}</figcaption>" if b.caption else ""
            body.append(
                f'<figure><img alt="{html.escape(b.alt)}" '
                f'src="data:image/png;base64,{data}">{caption}</figure>'
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


# --- writing ----------------------------------------------------------------------------------


def write_report(
    results: StudyResult,
    out_dir: str | os.PathLike[str],
    *,
    tol: float = DEFAULT_TOL,
    dpi: int = DPI,
) -> dict[str, Path]:
    """Write the figures, ``report.md`` and ``report.html`` into ``out_dir`` (created if needed).

    Returns the written paths by key: ``loss_curves``, ``heatmaps`` (sweeps), ``gap_curves``
    (held-out validation), ``step_sizes`` (traced runs), ``markdown``, ``html``. Every file is
    written atomically. ``ValueError`` when ``results`` has no runs.
    """
    require_runs(results)  # fail before creating anything
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    draw = {"loss_curves": lambda: loss_curves_png(results, tol=tol, dpi=dpi),
            "heatmaps": lambda: heatmaps_png(results, dpi=dpi),
            "gap_curves": lambda: gap_curves_png(results, dpi=dpi),
            "step_sizes": lambda: step_sizes_png(results, dpi=dpi)}
    pngs = {key: draw[key]() for key in _figures_of(results)}
    written = {key: atomic_write_bytes(out / FIGURE_FILES[key], data) for key, data in pngs.items()}
    title, blocks = build_report(results, figures={k: FIGURE_FILES[k] for k in pngs}, tol=tol)
    images = {FIGURE_FILES[k]: data for k, data in pngs.items()}
    written["markdown"] = atomic_write_text(out / "report.md", render_markdown(title, blocks))
    written["html"] = atomic_write_text(out / "report.html", render_html(title, blocks, images))
    return written
