"""The ``optreg`` command line: parses options and hands off to the library.

Commands::

    optreg parity                     prove the from-scratch parts equal PyTorch's
    optreg train [options]            one run (default: the exercise's optreg Adam + optreg CE)
    optreg study seed [options]       the exercise's nine scenarios
    optreg study decoupling [opts]    lr × weight-decay grid, Adam+L2 vs AdamW (L&H Fig. 2)
    optreg sweep --lr .. [options]    any lr × weight-decay × mode × seed grid
    optreg report OUT                 re-render the report of a finished (or partial) study

Exit codes: 0 every run finished (and parity passed); 1 a run failed or diverged (or parity
failed); 2 usage or input error (bad option, bad value, data missing); 130 interrupted (the work
done so far is kept: rerun with ``--resume``).

``main(argv)`` takes the arguments as a list, so tests call it without a subprocess.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class UsageError(Exception):
    """Bad input from the command line: printed as ``optreg: error: ...``, exit code 2."""


# --- option parsing ----------------------------------------------------------------------------
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def _pos_float(text: str) -> float:
    value = _nonneg_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _betas(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected two numbers like 0.9,0.999, got {text!r}")
    return (_nonneg_float(parts[0]), _nonneg_float(parts[1]))


def _add_execution_options(p: argparse.ArgumentParser, *, out_default: str) -> None:
    g = p.add_argument_group("data and execution")
    g.add_argument("--data-dir", help="folder holding cifar-10-batches-py/ (default: "
                   "$OPTREG_DATA_DIR, else the cache folder ~/.cache/optreg)")
    g.add_argument("--download", action="store_true",
                   help="download CIFAR-10 (official site, md5-checked) if it is missing")
    g.add_argument("--download-url", metavar="URL",
                   help="a mirror of cifar-10-python.tar.gz to download from (same md5)")
    g.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N, mps")
    g.add_argument("--out", default=out_default, help=f"output folder (default: {out_default})")
    g.add_argument("--resume", action="store_true",
                   help="continue the study in --out: skip finished runs, resume checkpoints")
    g.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="local: worker processes on this machine; ray: one Ray task per run")
    g.add_argument("--workers", type=_positive_int,
                   help="runs at once (local executor; default: CPU cores / --threads)")
    g.add_argument("--threads", type=_positive_int, default=1,
                   help="torch threads per run (default 1; results may differ in the last "
                   "bits with another count)")
    g.add_argument("--ray-address", help="an existing Ray cluster (default: start a local one)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _add_size_options(p: argparse.ArgumentParser, *, epochs: int, batch_size: bool = True) -> None:
    p.add_argument("--epochs", type=_positive_int, default=epochs, help=f"default {epochs}")
    if batch_size:
        p.add_argument("--batch-size", type=_positive_int, default=32, help="default 32")
    p.add_argument("--train-size", type=_positive_int,
                   help="train on the first N training images (default: all 50,000)")
    p.add_argument("--test-size", type=_positive_int,
                   help="evaluate on the first N test images (default: all 10,000)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="optreg",
        description="Optimization and regularization, from scratch and proven equal to PyTorch.",
        epilog="Exit codes: 0 ok; 1 a run failed or diverged (or parity failed); "
        "2 usage or input error; 130 interrupted (rerun with --resume).",
    )
    from optreg import __version__

    parser.add_argument("--version", action="version", version=f"optreg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("parity", help="check the from-scratch parts against PyTorch")
    p.add_argument("--steps", type=_positive_int, default=300, help="optimizer steps (default 300)")
    p.add_argument("--seed", type=int, default=0)

    p = commands.add_parser(
        "train", help="train one scenario (default: optreg Adam + optreg CE, batch 32, 10 epochs)"
    )
    p.add_argument("--name", default=None, help="run name (default: derived from the options)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument("--implementation", choices=("optreg", "torch"),
                   help="whose optimizer (default optreg; SGD is torch's)")
    p.add_argument("--loss", choices=("optreg", "torch"), default="optreg",
                   help="whose cross-entropy")
    p.add_argument("--lr", type=_pos_float, help="learning rate (default 1e-3; SGD 0.1)")
    p.add_argument("--betas", type=_betas, help="Adam's β₁,β₂ (default 0.9,0.999)")
    p.add_argument("--eps", type=_nonneg_float, help="Adam's ε (default 1e-8)")
    p.add_argument("--momentum", type=_nonneg_float, help="SGD momentum (default 0.9)")
    p.add_argument("--amsgrad", action="store_true")
    reg = p.add_mutually_exclusive_group()
    reg.add_argument("--l2", type=_pos_float,
                     help="L2 = λ the classroom way: coefficient λ / batch size")
    reg.add_argument("--weight-decay", type=_pos_float, help="raw coefficient, as in torch")
    p.add_argument("--decay-mode", choices=("loss", "coupled", "decoupled", "paper"),
                   help="where the L2 / weight decay acts (default: coupled)")
    p.add_argument("--decay", choices=("weights", "all"), default="weights",
                   help="which tensors decay: ndim > 1 (default) or all")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shuffle", action="store_true", help="shuffle each epoch (default: stored "
                   "order, as the exercise)")
    p.add_argument("--no-flush-denormal", action="store_true",
                   help="keep subnormal floats (slow on some CPUs; see README)")
    _add_size_options(p, epochs=10)
    _add_execution_options(p, out_default="out/train")

    study = commands.add_parser("study", help="run a named study").add_subparsers(
        dest="study", required=True, metavar="STUDY")
    p = study.add_parser("seed", help="the exercise's nine scenarios (SGD vs Adam, custom vs "
                         "torch, L2 in the loss / optimizer / decoupled)")
    p.add_argument("--seeds", default="0", help="comma list or a-b range (default 0)")
    p.add_argument("--only", help="comma list of scenario names (default: all nine)")
    _add_size_options(p, epochs=10)
    _add_execution_options(p, out_default="out/seed")

    p = study.add_parser("decoupling", help="lr × weight decay, Adam+L2 vs AdamW (L&H Fig. 2)")
    p.add_argument("--seeds", default=None, help="comma list or a-b range (default 0,1)")
    _add_size_options(p, epochs=4, batch_size=False)
    _add_execution_options(p, out_default="out/decoupling")

    p = commands.add_parser("sweep", help="a grid: lr × weight decay × mode × seeds")
    p.add_argument("--lr", required=True, help="comma list, or start:stop:n log range")
    p.add_argument("--weight-decay", required=True, help="raw coefficients: list or log range")
    p.add_argument("--mode", default="coupled,decoupled",
                   help="where decay acts: loss, coupled, decoupled, paper (comma list)")
    p.add_argument("--seeds", default="0", help="comma list or a-b range (default 0)")
    p.add_argument("--schedule", choices=("constant", "cosine"), default="constant")
    p.add_argument("--decay", choices=("weights", "all"), default="weights")
    _add_size_options(p, epochs=5)
    _add_execution_options(p, out_default="out/sweep")

    p = commands.add_parser("report", help="re-render the report of a study folder")
    p.add_argument("out", help="the study's output folder (holding results.json)")
    return parser


# --- commands ----------------------------------------------------------------------------------
def _train_configs(args: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    from optreg.config import RunConfig
    from optreg.regularization import l2_to_weight_decay

    sgd = args.optimizer == "sgd"
    if args.l2 is not None:
        weight_decay = l2_to_weight_decay(args.l2, args.batch_size)
    else:
        weight_decay = args.weight_decay or 0.0
    if args.decay_mode and not weight_decay:
        raise UsageError("--decay-mode needs --l2 or --weight-decay")
    decay_mode = (args.decay_mode or "coupled") if weight_decay else "none"
    options = {
        "seed": args.seed, "epochs": args.epochs, "batch_size": args.batch_size,
        "train_size": args.train_size, "test_size": args.test_size, "shuffle": args.shuffle,
        "optimizer": args.optimizer,
        "implementation": "torch" if sgd else (args.implementation or "optreg"),
        "loss": args.loss, "lr": args.lr or (0.1 if sgd else 1e-3),
        "weight_decay": weight_decay, "decay_mode": decay_mode, "decay": args.decay,
        "schedule": args.schedule, "flush_denormal": not args.no_flush_denormal,
    }
    if sgd:
        adam_only = [flag for flag, given in (
            ("--betas", args.betas is not None), ("--eps", args.eps is not None),
            ("--amsgrad", args.amsgrad),
            ("--implementation optreg", args.implementation == "optreg"),
        ) if given]
        if adam_only:
            raise UsageError(f"{', '.join(adam_only)}: not for --optimizer sgd (torch's SGD)")
        options["momentum"] = 0.9 if args.momentum is None else args.momentum
    else:
        if args.momentum is not None:
            raise UsageError("--momentum is an SGD option (Adam uses --betas)")
        options.update(betas=args.betas or (0.9, 0.999),
                       eps=1e-8 if args.eps is None else args.eps, amsgrad=args.amsgrad)
    name = args.name or "-".join(
        [options["implementation"], args.optimizer]
        + ([] if decay_mode == "none" else [decay_mode, f"wd{weight_decay:.3g}"])
    )
    config = RunConfig(name=name, **options)
    return [config], {"name": "train", "kind": "train"}


def _study_configs(args: argparse.Namespace) -> tuple[list, dict[str, Any]]:
    from optreg.studies import sweep

    if args.command == "train":
        return _train_configs(args)
    sizes = {"train_size": args.train_size, "test_size": args.test_size}
    seeds = tuple(sweep.parse_ints(args.seeds, "--seeds")) if args.seeds else None
    if args.command == "sweep":
        return sweep.sweep_study(
            lrs=sweep.parse_floats(args.lr, "--lr"),
            weight_decays=sweep.parse_floats(args.weight_decay, "--weight-decay"),
            modes=sweep.parse_modes(args.mode, "--mode"), seeds=seeds, epochs=args.epochs,
            batch_size=args.batch_size, schedule=args.schedule, decay=args.decay, **sizes,
        )
    if args.study == "decoupling":
        options = {k: v for k, v in sizes.items() if v is not None}
        if seeds is not None:
            options["seeds"] = seeds
        return sweep.decoupling_study(epochs=args.epochs, **options)
    from optreg.studies import seed_study

    only = tuple(n.strip() for n in args.only.split(",")) if args.only else None
    return seed_study(seeds=seeds, epochs=args.epochs, batch_size=args.batch_size, only=only,
                      **sizes)


def _make_executor(args: argparse.Namespace, configs: list, device: str):
    from optreg.data import OFFICIAL_URL, ensure_cifar10
    from optreg.executors.base import Resources
    from optreg.executors.local import DataSpec, LocalExecutor, default_workers

    # Check (or fetch) the files here, once, so workers never meet missing data.
    folder = ensure_cifar10(args.data_dir, download=args.download or bool(args.download_url),
                            url=args.download_url or OFFICIAL_URL)
    data = DataSpec.covering(str(folder), configs)
    progress = not args.no_progress
    if args.executor == "ray":
        from optreg.executors.ray import RayExecutor

        if args.ray_address and args.workers:
            raise UsageError("--workers sizes a local Ray instance; a cluster at --ray-address "
                             "has its own CPUs")
        try:
            return RayExecutor(data, Resources(device, args.threads, progress=False),
                               address=args.ray_address, num_cpus=args.workers)
        except ImportError as e:  # Ray is an optional extra; the message says how to install it
            raise UsageError(str(e)) from None
    workers = args.workers or (default_workers(args.threads) if device == "cpu" else 1)
    workers = min(workers, len(configs)) or 1
    # One run at a time may draw a per-epoch progress bar; several would overwrite each other.
    resources = Resources(device, args.threads, progress=progress and workers == 1)
    return LocalExecutor(data, resources, workers=workers)


def _run_study(args: argparse.Namespace) -> int:
    from optreg.runtime import resolve_device
    from optreg.studies import execute_study

    configs, study = _study_configs(args)
    try:
        device = str(resolve_device(args.device))
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    executor = _make_executor(args, configs, device)
    settings = {k: v for k, v in vars(args).items() if k not in ("command", "study")}
    study["settings"] = {**settings, "device": device,
                         "workers": getattr(executor, "workers", None)}
    print(f"optreg: {len(configs)} run(s) → {args.out}", file=sys.stderr)
    results = execute_study(configs, study, args.out, executor, resume=args.resume,
                            progress=not args.no_progress)
    return _report(results, Path(args.out))


def _report(results: dict[str, Any], out: Path) -> int:
    from optreg.report import results_tables, to_text, write_report

    for title, table in results_tables(results):
        print(f"\n{title}\n{to_text(table)}")
    paths = write_report(results, out)
    for kind, path in paths.items():
        print(f"{kind}: {path}", file=sys.stderr)
    bad = [r for r in results["runs"] if r["status"] != "ok"]
    for r in bad:
        print(f"optreg: {r['status']}: {r['error']}", file=sys.stderr)
    return EXIT_RUN_FAILED if bad else EXIT_OK


def _run_report(args: argparse.Namespace) -> int:
    from optreg.results import load_results

    out = Path(args.out)
    try:
        results = load_results(out)
    except FileNotFoundError:
        raise UsageError(f"{args.out}: no results.json there") from None
    except ValueError as e:  # not JSON, or not an optreg results file
        raise UsageError(str(e)) from None
    if not results["runs"]:
        raise UsageError(f"{args.out}: no run has finished yet; nothing to report")
    return _report(results, out.parent if out.is_file() else out)


def _run_parity(args: argparse.Namespace) -> int:
    from optreg.parity import format_parity_table, run_parity

    rows = run_parity(steps=args.steps, seed=args.seed)
    print(format_parity_table(rows))
    failed = [r for r in rows if not r.passed]
    print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return EXIT_RUN_FAILED if failed else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 and a usage message on bad options
    from optreg.config import ConfigError
    from optreg.data import DataError
    from optreg.studies import OutputExistsError

    try:
        if args.command == "parity":
            return _run_parity(args)
        if args.command == "report":
            return _run_report(args)
        return _run_study(args)
    except (UsageError, ConfigError, DataError, OutputExistsError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ConnectionError as e:  # e.g. --ray-address names no reachable cluster
        print(f"{parser.prog}: error: cannot connect: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"\n{parser.prog}: interrupted; finished runs and end-of-epoch checkpoints are "
              "kept: rerun the same command with --resume to continue", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
