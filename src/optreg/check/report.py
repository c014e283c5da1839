"""How results read: the table (terminal), HTML (Jupyter), Gradescope's JSON, a class summary.

Pure functions of :class:`~optreg.check.result.SubmissionResult`; nothing here runs a check.

Gradescope's autograder format (results.json)::

    {"score": 7.0, "output": "notes ...",
     "tests": [{"name": "adam: Adam vs torch.optim.Adam", "score": 0.0, "max_score": 3.0,
                "status": "failed", "output": "FAILED: no bias correction ..."}, ...]}
"""

from __future__ import annotations

import csv
import html
import io
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optreg.check.result import CheckResult, SubmissionResult

WIDTH = 100


def _number(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:.2g}" if x == x else "nan"


def _points(r: CheckResult) -> str:
    return "-" if r.status == "info" else f"{r.score:g}/{r.max_score:g}"


def _status(r: CheckResult) -> str:
    if r.timed_out:
        return "TIMEOUT"
    return {"passed": "passed", "failed": "FAILED", "info": "info"}[r.status]


def headline(result: SubmissionResult) -> str:
    style = f"{result.style}-style signature, " if result.style else ""
    failed = [r.name for r in result.results if not r.passed]
    verdict = "every check passed" if not failed else f"failed: {', '.join(failed)}"
    return (f"{result.name} — {style}{result.score:g}/{result.max_score:g} points, {verdict}")


def text_report(result: SubmissionResult, *, details: bool = True) -> str:
    """The table of checks, then (with ``details``) what failed checks and info checks say."""
    lines = [headline(result)]
    if result.error:
        lines += _indent(f"error: {result.error}", "  ")
    for note in result.notes:
        lines += _wrap(f"note: {note}", "  ", "        ")
    header = ("check", "result", "points", "max |Δ|", "first bad", "diagnosis")
    rows = [(r.name, _status(r), _points(r), _number(r.max_diff),
             "-" if r.first_bad_step is None else str(r.first_bad_step), r.diagnosis)
            for r in result.results]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(5)]
    lead = sum(widths) + 2 * 5 + 2

    def line(cells: Sequence[str]) -> str:
        return "  " + "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False)) \
            + "  " + cells[5]

    lines += ["", line(header)]
    for r, row in zip(result.results, rows, strict=True):
        lines.append(line(row).rstrip())
        if r.fix and not r.passed:
            lines.append(" " * lead + f"fix: {r.fix}")
    if details:
        shown = {result.error: "the error above"} if result.error else {}
        for r in result.results:
            if r.passed and r.status != "info" and "float32" not in r.diagnosis:
                continue
            if r.details in shown and not r.output:  # a missing class, an unreadable file:
                continue  # said once is enough
            lines += ["", f"  {r.name} ({_status(r)}):"]
            if r.details in shown:
                lines.append(f"    (as for {shown[r.details]})")
            else:
                shown[r.details] = r.name
                lines += _indent(r.details, "    ")
            if r.output:
                lines += ["    printed (last lines):",
                          *("      | " + line for line in r.output.splitlines())]
    return "\n".join(lines) + "\n"


def _wrap(text: str, first: str, rest: str) -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=first, subsequent_indent=rest) or [first]


def _indent(text: str, prefix: str) -> list[str]:
    """Wrap prose paragraphs; keep tracebacks and other pre-formatted lines as they are."""
    out = []
    for para in text.splitlines():
        if para.startswith((" ", "Traceback")) or len(para) <= WIDTH - len(prefix):
            out.append(prefix + para)
        else:
            out += textwrap.wrap(para, WIDTH, initial_indent=prefix, subsequent_indent=prefix)
    return out


def check_output(r: CheckResult) -> str:
    """The text of one check for Gradescope's "output" field."""
    parts = [f"{_status(r)}: {r.diagnosis}" if r.diagnosis else _status(r)]
    if r.max_diff is not None:
        parts.append(f"max |Δ|: {_number(r.max_diff)}")
    if r.first_bad_step is not None:
        parts.append(f"first bad step: {r.first_bad_step}")
    if r.fix and not r.passed:
        parts.append(f"fix: {r.fix}")
    if r.details:
        parts.append(r.details)
    if r.output:
        parts.append("printed (last lines):\n" + r.output)
    return "\n".join(parts)


def gradescope_json(result: SubmissionResult) -> dict[str, Any]:
    from optreg.check.checks import CHECKS

    tests = [{
        "name": f"{r.name}: {CHECKS[r.name].title}" if r.name in CHECKS else r.name,
        "score": r.score,
        "max_score": r.max_score,
        "status": "passed" if r.passed else "failed",
        "output": check_output(r),
    } for r in result.results]
    notes = ([f"error: {result.error}"] if result.error else []) + result.notes
    return {"score": result.score, "output": "\n".join(notes), "tests": tests}


def html_report(result: SubmissionResult) -> str:
    """The table as HTML, each failed or info check's details folded below it."""
    e = html.escape
    colour = {"passed": "#1a7f37", "failed": "#cf222e", "info": "#6e7781"}
    rows = []
    for r in result.results:
        cells = [f"<td><code>{e(r.name)}</code></td>",
                 f'<td style="color:{colour[r.status]};font-weight:bold">{e(_status(r))}</td>',
                 f"<td>{e(_points(r))}</td>", f"<td>{e(_number(r.max_diff))}</td>",
                 f"<td>{'-' if r.first_bad_step is None else r.first_bad_step}</td>"]
        body = e(r.diagnosis)
        if r.fix and not r.passed:
            body += f"<br><b>fix:</b> <code>{e(r.fix)}</code>"
        if (not r.passed or r.status == "info") and (r.details or r.output):
            inner = e(r.details) + (f"\n\nprinted:\n{e(r.output)}" if r.output else "")
            body += (f"<details><summary>details</summary><pre style='white-space:pre-wrap'>"
                     f"{inner}</pre></details>")
        cells.append(f'<td style="text-align:left">{body}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f"<li>{e(n)}</li>" for n in result.notes)
    error = f"<p><b>error:</b> <pre>{e(result.error)}</pre></p>" if result.error else ""
    head = "".join(f"<th>{h}</th>" for h in ("check", "result", "points", "max |Δ|",
                                              "first bad step", "diagnosis"))
    return (f"<div><p><b>{e(headline(result))}</b></p>{error}"
            f"{f'<ul>{notes}</ul>' if notes else ''}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>")


def summary_csv(results: Sequence[SubmissionResult], checks: Sequence[str]) -> str:
    """One row per submission: its score, and each check's score ("info" for info checks)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["submission", "score", "max_score", *checks])
    for result in results:
        by_name = {r.name: r for r in result.results}
        writer.writerow([result.name, f"{result.score:g}", f"{result.max_score:g}",
                         *(_csv_cell(by_name.get(c)) for c in checks)])
    return out.getvalue()


def _csv_cell(r: CheckResult | None) -> str:
    if r is None:
        return ""
    return "info" if r.status == "info" else f"{r.score:g}"


def summary_markdown(results: Sequence[SubmissionResult], checks: Sequence[str]) -> str:
    """A Markdown table: submission × check, ✓ or ✗ with the diagnosis."""
    lines = ["| submission | score | " + " | ".join(checks) + " |",
             "|---|---|" + "---|" * len(checks)]
    for result in results:
        by_name = {r.name: r for r in result.results}
        cells = [_md_cell(by_name.get(c)) for c in checks]
        lines.append(f"| {_md(result.name)} | {result.score:g}/{result.max_score:g} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _md_cell(r: CheckResult | None) -> str:
    if r is None:
        return ""
    if r.status == "info":
        return f"ℹ {_md(r.diagnosis)}"
    return "✓" if r.passed else f"✗ {_md(r.diagnosis)}"


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
