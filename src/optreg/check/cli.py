"""``optreg check PATH...``: check submissions, print a table each, write Gradescope JSON.

    optreg check alice.ipynb                       the table, and details of what failed
    optreg check alice.ipynb --json results.json   also Gradescope's results.json
    optreg check class/*.ipynb --json-dir grades   one JSON per submission + summary.csv/.md

Exit codes: 0 every check of every submission passed; 1 a check failed (a wrong result, a crash,
a time-out, a syntax error or a missing class in a submission); 2 a usage error (no such file,
a bad option).

For the ``optreg`` command: :func:`add_arguments` adds every option to a (sub)parser
(:data:`DESCRIPTION` is its help text) and :func:`run` runs a parsed namespace and returns the
exit code; :func:`main` is both together (``python -m optreg.check``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from optreg.atomic import atomic_write_text, write_json
from optreg.check.checks import ADAMW_FORMS, CHECK_NAMES, DEFAULT_POINTS, CheckOptions
from optreg.check.isolation import DEFAULT_TIMEOUT, ClassNames, run_isolated
from optreg.check.report import headline, summary_csv, summary_markdown, text_report
from optreg.check.result import SubmissionResult
from optreg.check.submission import SUFFIXES, read_submission

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
PROG = "optreg check"
DESCRIPTION = ("Check a student's own cross-entropy and Adam against PyTorch, step by step: "
               "where they first differ, the most likely mistake, a grade.")


class UsageError(Exception):
    """Bad input on the command line: printed as ``optreg check: error: ...``, exit code 2."""


def _points(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected CHECK=POINTS like adam=3, got {text!r}")
    if name not in CHECK_NAMES:
        raise argparse.ArgumentTypeError(f"unknown check {name!r} (the checks: "
                                         f"{', '.join(CHECK_NAMES)})")
    try:
        points = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"points must be a number, got {value!r}") from None
    if not 0 <= points < float("inf"):
        raise argparse.ArgumentTypeError(f"points must be a finite number >= 0, got {value}")
    return name, points


def _checks(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CHECK_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown check {unknown[0]!r}" if unknown else "no check named"
            f" (the checks: {', '.join(CHECK_NAMES)})")
    return names


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add every option of ``optreg check`` to ``parser``."""
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="submissions: .py files or Jupyter notebooks (.ipynb); only "
                             "imports, definitions and constant assignments in them run")
    g = parser.add_argument_group("the classes (default: the exercise's names)")
    g.add_argument("--loss", metavar="NAME", help="the cross-entropy class "
                   "(default: MyCrossEntropyLoss)")
    g.add_argument("--optimizer", metavar="NAME", help="the Adam class (default: "
                   "MyAdamOptimizer); its __init__ tells the signature style")
    g.add_argument("--adamw", metavar="NAME", help="a separate AdamW class (default: the "
                   "optimizer's adamw flag, or the one Optimizer class named *AdamW*)")
    g = parser.add_argument_group("grading")
    g.add_argument("--checks", type=_checks, default=list(CHECK_NAMES), metavar="LIST",
                   help=f"comma-separated checks to run (default: all: {','.join(CHECK_NAMES)})")
    defaults = ", ".join(f"{n}={p:g}" for n, p in DEFAULT_POINTS.items() if p)
    g.add_argument("--points", type=_points, action="append", default=[], metavar="CHECK=N",
                   help=f"points of a check, repeatable (defaults: {defaults})")
    g.add_argument("--adamw-form", choices=ADAMW_FORMS, default="either",
                   help="decoupled decay as torch.optim.AdamW (× lr), as the paper's "
                        "Algorithm 2 (× schedule, no lr), or either (default)")
    g.add_argument("--timeout", type=_positive_float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                   help=f"time limit per check (default: {DEFAULT_TIMEOUT:g}); a check that "
                        "runs longer fails as timed out")
    g.add_argument("--seed", type=_count, default=0, metavar="N",
                   help="seed of the random problems (default: 0, the same for every student)")
    g = parser.add_argument_group("output")
    g.add_argument("--json", metavar="FILE", help="write Gradescope's results.json (one PATH)")
    g.add_argument("--json-dir", metavar="DIR", help="write DIR/<submission>.json for each PATH "
                   "and a class summary DIR/summary.csv and DIR/summary.md")
    g.add_argument("--jobs", type=_count, default=1, metavar="N",
                   help="check N submissions at once (default: 1)")
    g.add_argument("--quiet", action="store_true",
                   help="one line per submission instead of the table and details")


def run(args: argparse.Namespace) -> int:
    """Check ``args.paths``; print the reports; write the JSON asked for; return the exit code."""
    try:
        texts = _read_all(args)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    names = ClassNames(loss=args.loss, optimizer=args.optimizer, adamw=args.adamw)
    options = CheckOptions(seed=args.seed, adamw_form=args.adamw_form)
    points = {**DEFAULT_POINTS, **dict(args.points)}

    def check_one(item: tuple[str, str]) -> SubmissionResult:
        path, text = item
        return run_isolated(text, path, args.checks, names=names, options=options,
                            points=points, timeout=args.timeout)

    results = []
    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        for result in pool.map(check_one, texts.items()):
            print(headline(result) if args.quiet else text_report(result), flush=True)
            results.append(result)
    if args.json:
        write_json(args.json, results[0].json)
    if args.json_dir:
        _write_class(Path(args.json_dir), results, args.checks)
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


def _read_all(args: argparse.Namespace) -> dict[str, str]:
    if args.json and len(args.paths) > 1:
        raise UsageError(f"--json takes one PATH, got {len(args.paths)} (use --json-dir DIR)")
    if args.jobs < 1:
        raise UsageError("--jobs must be >= 1")
    texts = {}
    for path in args.paths:
        p = Path(path)
        if p.suffix not in SUFFIXES:
            raise UsageError(f"{path}: not a .py file or a Jupyter notebook (.ipynb)")
        if not p.is_file():
            raise UsageError(f"{path}: no such file")
        try:
            texts[path] = read_submission(p)
        except OSError as e:
            raise UsageError(f"{path}: cannot read it ({e.strerror or e})") from None
    return texts


def _write_class(folder: Path, results: Sequence[SubmissionResult], checks: Sequence[str]) -> None:
    for name, result in zip(_file_names([r.name for r in results]), results, strict=True):
        write_json(folder / f"{name}.json", result.json)
    atomic_write_text(folder / "summary.csv", summary_csv(results, checks))
    atomic_write_text(folder / "summary.md", summary_markdown(results, checks))


def _file_names(paths: Sequence[str]) -> list[str]:
    """A distinct file name per submission: its stem, with parent folders added where needed
    (alice/nb.ipynb and bob/nb.ipynb become alice-nb and bob-nb; a path given twice, x and x-2)."""
    distinct = list(dict.fromkeys(paths))
    parts = [Path(p).with_suffix("").parts for p in distinct]
    depth = [1] * len(distinct)
    while True:
        names = ["-".join(p[-d:]) for p, d in zip(parts, depth, strict=True)]
        clashes = {n for n in names if names.count(n) > 1}
        grow = [i for i, n in enumerate(names) if n in clashes and depth[i] < len(parts[i])]
        if not grow:
            break
        for i in grow:
            depth[i] += 1
    name_of = dict(zip(distinct, names, strict=True))
    seen: dict[str, int] = {}
    unique = []
    for path in paths:
        seen[path] = seen.get(path, 0) + 1
        unique.append(name_of[path] + ("" if seen[path] == 1 else f"-{seen[path]}"))
    return unique


def main(argv: list[str] | None = None) -> int:
    """``optreg check`` as a program: parse ``argv`` (default: sys.argv[1:]), run, exit code."""
    parser = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2, already printed)
        return int(e.code or 0)
    return run(args)
