"""Reports of optreg studies: tables, figures and a Markdown + HTML page, from typed results.

Every function here reads a :class:`~optreg.results.StudyResult` and nothing else: no torch, no
training code, and matplotlib only inside the figure functions, so a report can be rendered on
any machine from ``results.json`` (``optreg.results.load_results``).

>>> from optreg.report import write_report, results_tables, to_text   # doctest: +SKIP
>>> paths = write_report(results, "out/seed")      # loss_curves.png, report.md, report.html
>>> for title, table in results_tables(results):
...     print(title, to_text(table), sep="\\n")
"""

from optreg.extras import require
from optreg.report.document import (
    build_report,
    render_html,
    render_markdown,
    write_report,
)
from optreg.report.figures import (
    heatmaps_png,
    loss_curves_png,
    loss_panels,
    save_heatmaps,
    save_loss_curves,
)
from optreg.report.summary import (
    DEFAULT_TOL,
    ScenarioSummary,
    Stat,
    TwinDelta,
    summarize,
    twin_deltas,
)
from optreg.report.sweep import BestSetting, SweepCell, SweepGrid, best_settings, sweep_grid
from optreg.report.tables import (
    Table,
    best_table,
    results_tables,
    summary_table,
    sweep_table,
    to_markdown,
    to_text,
)


def check_report_dependencies() -> None:
    """Import matplotlib now (a dependency of optreg: this catches a broken install before any
    training starts), or raise MissingExtra with the install hint."""
    require("matplotlib", purpose="drawing the report's figures")


__all__ = [
    "DEFAULT_TOL",
    "BestSetting",
    "ScenarioSummary",
    "Stat",
    "SweepCell",
    "SweepGrid",
    "Table",
    "TwinDelta",
    "best_settings",
    "best_table",
    "build_report",
    "check_report_dependencies",
    "heatmaps_png",
    "loss_curves_png",
    "loss_panels",
    "render_html",
    "render_markdown",
    "results_tables",
    "save_heatmaps",
    "save_loss_curves",
    "summarize",
    "summary_table",
    "sweep_grid",
    "sweep_table",
    "to_markdown",
    "to_text",
    "twin_deltas",
    "write_report",
]
