"""The ``optreg`` command line: parses options and hands off to the library.

Commands::

    optreg parity                     prove the from-scratch parts equal PyTorch's
    optreg check PATH...              check students' own loss and Adam against PyTorch's
    optreg train [options]            one run (default: the exercise's optreg Adam + optreg CE)
    optreg study NAME [options]       a named study (seed, decoupling, …)
    optreg sweep --lr .. [options]    any lr × weight-decay × mode × seed grid
    optreg report OUT                 re-render the report of a finished (or partial) study

Every option maps to a library option of the same name (``--train-size`` → ``train_size``), and
only the options the user gave are passed on: the defaults live in the library (the presets'
signatures, :class:`~optreg.config.RunConfig`, :class:`~optreg.api.Execution`), and so do the
range checks, whose errors reach the user as exit code 2.

Exit codes: 0 every run finished (and parity passed); 1 a run failed or diverged (or parity
failed, or the disk filled up mid-study); 2 usage or input error (bad option or value, data
missing or corrupt, output folder unusable); 128 + N when stopped by signal N (130 Ctrl-C,
143 SIGTERM, 129 SIGHUP): the work done so far is kept, rerun with ``--resume``.

``main(argv)`` takes the arguments as a list, so tests call it without a subprocess.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_type_hints

from optreg import config as config_module
from optreg.cli import values

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the command line: printed as ``optreg: error: ...``, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP: stop, keep what is done, exit with 128 + the signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# --- one table of options -------------------------------------------------------------------------
def _number(text: str, flag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{flag}: expected a number, got {text!r}") from None


def _integer(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{flag}: expected a whole number, got {text!r}") from None


def _text(text: str, flag: str) -> str:
    return text


def _choices(field: str, *left_out: str) -> tuple[str, ...]:
    """The values a RunConfig field's Literal type allows (but ``left_out``): the config is the
    one definition."""
    hint = get_type_hints(config_module.RunConfig)[field]
    return tuple(a for a in get_args(hint) if isinstance(a, str) and a not in left_out)


@dataclass(frozen=True)
class Flag:
    """A command-line option for the library option ``name``.

    ``parse(text, flag)`` turns its text into the value (None: a switch that sets ``value``);
    ``choices`` restricts it; ``help`` says what it is (the default is added from the library,
    or ``unset`` says in words what happens when the library's default is None).
    """

    name: str
    help: str
    parse: Callable[[str, str], Any] | None = _text
    choices: tuple[str, ...] | None = None
    value: Any = True
    metavar: str | None = None
    unset: str | None = None

    @property
    def flag(self) -> str:
        prefix = "--no-" if self.parse is None and self.value is False else "--"
        return prefix + self.name.replace("_", "-")


FLAGS: dict[str, Flag] = {f.name: f for f in [
    # what a run computes (RunConfig fields and study options)
    Flag("name", "run name (default: from the optimizer and regularisation)"),
    Flag("seed", "seed of the run", _integer),
    Flag("seeds", "comma list or a-b range", values.parse_ints),
    Flag("only", "comma list of scenario names", values.parse_names),
    Flag("epochs", "passes over the training images", _integer),
    Flag("batch_size", "images per step", _integer),
    Flag("train_size", "train on the first N training images", _integer, metavar="N"),
    Flag("valid_size", "validate on the last N training images, held out", _integer,
         metavar="N", unset="validate on the test split, as the exercise"),
    Flag("test_size", "test on the first N test images", _integer, metavar="N"),
    Flag("shuffle", "shuffle each epoch (default: stored order, as the exercise)", None),
    Flag("augment", "random crop (4-pixel padding) and horizontal flip, seeded per run", None),
    Flag("optimizer", "which optimizer", choices=_choices("optimizer")),
    # (a student's classes come with `study seed --custom FILE`, never as a bare choice)
    Flag("implementation", "whose optimizer", choices=_choices("implementation", "custom")),
    Flag("loss", "whose cross-entropy", choices=_choices("loss", "custom")),
    Flag("label_smoothing", "label smoothing ε of the training loss", _number),
    Flag("lr", "learning rate (peak value with a schedule)", _number),
    Flag("betas", "Adam's β₁,β₂", values.parse_pair, metavar="B1,B2"),
    Flag("eps", "Adam's / RMSprop's ε", _number),
    Flag("amsgrad", "Adam's AMSGrad variant", None),
    Flag("bias_correction", "Adam without bias correction (the ablation)", None, value=False),
    Flag("momentum", "SGD's / RMSprop's momentum", _number),
    Flag("dampening", "SGD's dampening (= momentum: an EMA, Adam's first moment)", _number),
    Flag("alpha", "RMSprop's smoothing constant", _number),
    Flag("l2", "L2 = λ the classroom way: weight decay λ / batch size", _number),
    Flag("weight_decay", "weight decay, the raw coefficient as in torch", _number),
    Flag("decay_mode", "where the L2 / weight decay acts",
         choices=_choices("decay_mode", "none"),
         unset="coupled when --l2 or --weight-decay is given"),
    Flag("decay", "which tensors decay: ndim > 1 or all", choices=_choices("decay")),
    Flag("schedule", "learning-rate schedule", choices=_choices("schedule")),
    Flag("flush_denormal", "keep subnormal floats (slow on some CPUs; see README)", None,
         value=False),
    Flag("trace_steps", "record per-step update sizes and losses of the first N steps",
         _integer, metavar="N"),
    Flag("custom", "a student's submission (.py or .ipynb with MyCrossEntropyLoss and "
                   "MyAdamOptimizer): its classes run the exercise's last cell too",
         metavar="PATH"),
    # sweeps
    Flag("mode", "where decay acts: comma list of loss, coupled, decoupled, paper",
         values.parse_modes),
    # execution (optreg.api.Execution)
    Flag("data_dir", "folder holding cifar-10-batches-py/", metavar="DIR",
         unset="$OPTREG_DATA_DIR, else $XDG_CACHE_HOME/optreg, else ~/.cache/optreg"),
    Flag("download", "download CIFAR-10 (official site, md5-checked) if it is missing", None),
    Flag("download_url", "a mirror of cifar-10-python.tar.gz (same md5)", metavar="URL"),
    Flag("device", "auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps"),
    Flag("out", "output folder (default: out/<study>)", metavar="DIR"),
    Flag("resume", "continue the study in --out: skip finished runs, resume checkpoints", None),
    Flag("executor", "local: this process / worker processes; ray: one Ray task per run",
         choices=("local", "ray")),
    Flag("workers", "runs at once (default: as the cores and runs allow)", _integer),
    Flag("threads", "torch threads per run (default: the cores divided among the runs at "
                    "once; recorded and reused on resume)", _integer),
    Flag("ray_address", "an existing Ray cluster (host:port, ray://host:port, auto)"),
    Flag("progress", "no progress bars", None, value=False),
    Flag("tensorboard", "write TensorBoard logs of every run under DIR", metavar="DIR"),
]}

def _add(parser: argparse.ArgumentParser, names: Sequence[str],
         defaults: dict[str, Any], *, required: Sequence[str] = ()) -> None:
    for name in names:
        f = FLAGS[name]
        default = defaults.get(name, inspect.Parameter.empty)
        # A None default means "not set", which ``unset`` explains in words; a default outside
        # the choices (decay_mode "none") is not a value the user could give.
        if default is inspect.Parameter.empty or f.parse is None:
            shown = ""
        elif default is None or (f.choices and default not in f.choices):
            shown = f" (default: {f.unset})" if f.unset else ""
        else:
            shown = f" (default: {_show(default)})"
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS,
                                  "help": f.help + shown}
        if f.parse is None:
            kwargs.update(action="store_const", const=f.value)
        else:
            kwargs.update(metavar=f.metavar or name.upper(), required=name in required)
            if f.choices:
                kwargs.update(choices=f.choices, metavar=None)
            else:
                kwargs.update(type=_typed(f))
        parser.add_argument(f.flag, **kwargs)


def _typed(f: Flag) -> Callable[[str], Any]:
    """An argparse ``type`` that keeps our error text (argparse would say only 'invalid')."""
    def parse(text: str) -> Any:
        try:
            return f.parse(text, f.flag)  # type: ignore[misc]
        except (UsageError, config_module.ConfigError) as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = f.name
    return parse


def _show(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(_show(v) for v in value)
    if isinstance(value, float):
        from optreg.formatting import format_number

        return format_number(value)
    return str(value)


def _defaults(function: Callable[..., Any]) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(function).parameters.items()}


# --- the parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from optreg import __version__
    from optreg.api import EXECUTION_OPTIONS, STUDIES, Execution
    from optreg.check import cli as check_cli
    from optreg.studies.sweep import sweep_study

    parser = argparse.ArgumentParser(
        prog="optreg",
        description="Optimization and regularization, from scratch and proven equal to PyTorch.",
        epilog="Exit codes: 0 ok; 1 a run failed or diverged (or parity failed); 2 usage or "
               "input error; 128+N stopped by signal N (130 Ctrl-C): rerun with --resume.",
    )
    parser.add_argument("--version", action="version", version=f"optreg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    execution = {f.name: f.default for f in dataclasses.fields(Execution)}

    p = commands.add_parser("parity", help="check the from-scratch parts against PyTorch")
    p.add_argument("--steps", type=_typed(Flag("steps", "", _integer)), default=300,
                   help="optimizer steps (default 300)")
    p.add_argument("--seed", type=_typed(Flag("seed", "", _integer)), default=0)

    check_cli.add_arguments(commands.add_parser(
        "check", help="check a student's own loss and Adam against PyTorch, step by step",
        description=check_cli.DESCRIPTION))

    run_defaults = {f.name: f.default for f in dataclasses.fields(config_module.RunConfig)}
    p = commands.add_parser("train", help="train one run (default: optreg Adam + optreg CE, "
                                          "batch 32, 10 epochs, as the exercise)")
    run_flags = [n for n in FLAGS if n in run_defaults and n not in ("weight_decay", "custom")]
    _add(p.add_argument_group("the run"), run_flags, {**run_defaults, "name": None})
    _add(p.add_mutually_exclusive_group(), ["weight_decay", "l2"], run_defaults)
    _add(p.add_argument_group("data and execution"), EXECUTION_OPTIONS, execution)

    study = commands.add_parser("study", help="run a named study").add_subparsers(
        dest="study", required=True, metavar="STUDY")
    for name, preset in STUDIES.items():
        summary = (inspect.getdoc(preset) or "").split("\n")[0]
        p = study.add_parser(name, help=summary,
                             description=(inspect.getdoc(preset) or "").split("\n\n")[0])
        defaults = _defaults(preset)
        _add(p, [n for n in defaults if n in FLAGS], defaults)
        _add(p.add_argument_group("data and execution"), EXECUTION_OPTIONS, execution)

    p = commands.add_parser("sweep", help="a grid: lr × weight decay × mode × seeds")
    defaults = _defaults(sweep_study)
    p.add_argument("--lr", dest="lr", required=True, metavar="LRS",
                   type=_typed(Flag("lr", "", values.parse_floats)),
                   help="comma list, or start:stop:n log range")
    p.add_argument("--weight-decay", dest="weight_decay", required=True, metavar="WDS",
                   type=_typed(Flag("weight_decay", "", values.parse_floats)),
                   help="raw coefficients: comma list or log range")
    _add(p, [n for n in defaults if n in FLAGS and n not in ("lr", "weight_decay", "name")],
         defaults)
    _add(p.add_argument_group("data and execution"), EXECUTION_OPTIONS, execution)

    p = commands.add_parser("report", help="re-render the report of a study folder")
    p.add_argument("out", help="the study's output folder (holding results.json)")
    return parser


# --- commands -------------------------------------------------------------------------------------
def _options(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k not in ("command", "study")}


def _run_study(args: argparse.Namespace) -> int:
    from optreg import api

    options = _options(args)
    if args.command == "train":
        result = api.train(**options)
    elif args.command == "sweep":
        result = api.run_sweep(**options)
    else:
        result = api.run_study(args.study, **options)
    return _summarise(result, api.study_folder(options.get("out"), result.study.name))


def _summarise(result: Any, out: Path) -> int:
    from optreg.report import results_tables, to_text

    for title, table in results_tables(result):
        print(f"\n{title}\n{to_text(table)}")
    print(f"report: {out / 'report.md'} (and report.html)", file=sys.stderr)
    bad = [r for r in result.runs if not r.ok]
    for r in bad:
        print(f"optreg: {r.status}: {r.error}", file=sys.stderr)
    return EXIT_RUN_FAILED if bad else EXIT_OK


def _run_report(args: argparse.Namespace) -> int:
    from optreg.report import write_report
    from optreg.results import RESULTS_FILE, load_results
    from optreg.studies.output import StudyFolder

    path = Path(args.out)
    folder_path = path.parent if path.name == RESULTS_FILE and not path.is_dir() else path
    if not (folder_path / RESULTS_FILE).exists():
        raise UsageError(f"{args.out}: no {RESULTS_FILE} there")
    result = load_results(folder_path / RESULTS_FILE)  # a damaged file: named, exit 2
    if not result.runs:
        raise UsageError(f"{args.out}: no run has finished yet; nothing to report")
    with StudyFolder.for_report(folder_path) as folder:
        write_report(result, folder.path)
    return _summarise(result, folder_path)


def _run_parity(args: argparse.Namespace) -> int:
    from optreg.parity import format_parity_table, run_parity

    rows = run_parity(steps=args.steps, seed=args.seed)
    print(format_parity_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return EXIT_RUN_FAILED if failed else EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "parity":
        return _run_parity(args)
    if args.command == "check":
        from optreg.check import cli as check_cli

        return check_cli.run(args)
    if args.command == "report":
        return _run_report(args)
    return _run_study(args)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    with _signals_as_interrupts():
        try:
            with _signals_held():  # torch's C++ start-up (optreg.api imports it) must not be
                parser = build_parser()  # interrupted halfway
            args = parser.parse_args(argv)  # exits 2 with a usage message on bad flags
            return _dispatch(args)
        except Interrupted as e:
            print(f"\noptreg: stopped by {signal.Signals(e.signum).name}; finished runs and "
                  "end-of-epoch checkpoints are kept: rerun the same command with --resume to "
                  "continue", file=sys.stderr)
            return 128 + e.signum
        except SystemExit:
            raise
        except Exception as e:
            code = _exit_code(e)
            if code is None:
                raise
            print(f"optreg: error: {_in_flags(str(e))}", file=sys.stderr)
            return code


def _in_flags(message: str) -> str:
    """A library message in the user's words: ``epochs=0: …`` → ``--epochs 0: …``."""
    match = re.match(r"([a-z_]+)=(.*?): ", message)
    if match is None or match[1] not in FLAGS:
        return message
    flag, rest = FLAGS[match[1]], message[match.end():]
    if flag.parse is None:  # a switch: its value is the switch itself
        return f"{flag.flag}: {rest}"
    value = match[2].strip("'") if match[2].startswith("'") and " " not in match[2] else match[2]
    return f"{flag.flag} {value}: {rest}"


def _exit_code(error: Exception) -> int | None:
    """The exit code of an expected error (None: a bug; let its traceback show)."""
    from optreg.config import ConfigError
    from optreg.data import DataError
    from optreg.extras import MissingExtra
    from optreg.results import ResultError
    from optreg.studies.output import OutputError

    if isinstance(error, UsageError | ConfigError | DataError | OutputError | ResultError |
                  MissingExtra | ConnectionError):
        return EXIT_USAGE
    if isinstance(error, OSError):  # e.g. the disk filled up mid-study: runs so far are kept
        return EXIT_RUN_FAILED
    return None


@contextmanager
def _signals_as_interrupts() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP raise :class:`Interrupted` (in the main thread), so every one
    of them stops a study the way Ctrl-C does: workers stopped, checkpoints kept."""
    def interrupt(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    handled = [signal.SIGINT, signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP")
                                                 else [])
    try:
        previous = {s: signal.signal(s, interrupt) for s in handled}
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold the stop signals back (they are delivered, as Interrupted, right after)."""
    stop = {signal.SIGINT, signal.SIGTERM} | ({signal.SIGHUP} if hasattr(signal, "SIGHUP")
                                             else set())
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, stop)


if __name__ == "__main__":
    sys.exit(main())
