"""Time a small sweep on three executors: sequential, local worker processes, local Ray.

Run (from the repository root, with the project's virtual environment and Ray installed)::

    python benchmarks/sweep_executors.py DATA_DIR [--quick] [--train-size N] [--epochs N]
        [--lrs 1e-3,3e-3] [--weight-decays 1e-4,1e-2] [--modes coupled,decoupled]
        [--cores N] [--out FILE.json]

``DATA_DIR`` holds ``cifar-10-batches-py`` (e.g. ``python /work/shared/data/make-cifar10 DIR``).

What it measures. The grid (default 2 lr × 2 weight decays × 2 modes = 8 runs, seed 0, 1 epoch on
the first 10,000 training images, evaluated on the whole test set) runs three times, each run
with 1 torch thread:

* ``sequential``: :class:`LocalExecutor` with ``workers=1``, every run in this process;
* ``local``: :class:`LocalExecutor` with ``workers = cores`` spawned processes;
* ``ray``: :class:`RayExecutor` on a local Ray instance it starts with ``num_cpus = cores``.

Each executor's wall time covers everything a user waits for: loading the data, starting the
worker processes or Ray (``ray.init``, ~10 s on a small machine) and the runs; ``first_s`` is
the time to the first result, which shows that start-up cost. Ratios are sequential wall time
over the executor's (> 1: faster than sequential). The three must give identical results
(history, accuracies: bit-identical floats), which the script checks; it exits with status 1
if they do not. Results and a machine description (``optreg.runtime.machine_info``) go to
``--out`` (default ``benchmarks/sweep_executors.json``). Measure on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from optreg.executors.base import Executor, Resources, Task
from optreg.executors.local import DataSpec, LocalExecutor
from optreg.runtime import machine_info, now, usable_cores
from optreg.studies.sweep import parse_floats, parse_modes, sweep_study

COMPARED = ("status", "train_acc", "test_acc", "history")
EXECUTORS = ("sequential", "local", "ray")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder holding cifar-10-batches-py")
    parser.add_argument("--lrs", default="1e-3,3e-3", help="learning rates (default %(default)s)")
    parser.add_argument(
        "--weight-decays", default="1e-4,1e-2", help="weight decays (default %(default)s)"
    )
    parser.add_argument(
        "--modes", default="coupled,decoupled", help="decay modes (default %(default)s)"
    )
    parser.add_argument("--epochs", type=int, default=1, help="epochs per run (default 1)")
    parser.add_argument(
        "--train-size", type=int, default=10_000, help="first N training images (default 10000)"
    )
    parser.add_argument(
        "--test-size", type=int, default=None, help="first N test images (default: all)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a functional check, not a measurement: 2000 train, 1000 test images",
    )
    parser.add_argument(
        "--cores",
        type=int,
        default=usable_cores(),
        help="worker processes / Ray CPUs (default: the usable cores, %(default)s)",
    )
    parser.add_argument(
        "--executors",
        default=",".join(EXECUTORS),
        help="which to run, comma list (default %(default)s)",
    )
    parser.add_argument(
        "--out",
        default="benchmarks/results/sweep_executors.json",
        help="JSON output (default %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.train_size, args.test_size = 2000, 1000
    args.executors = [e.strip() for e in args.executors.split(",")]
    unknown = sorted(set(args.executors) - set(EXECUTORS))
    if unknown or not args.executors:
        parser.error(f"--executors: unknown {unknown}; choose from {', '.join(EXECUTORS)}")
    return args


def make_executor(name: str, spec: DataSpec, cores: int) -> Executor:
    resources = Resources(threads=1)
    if name == "sequential":
        return LocalExecutor(spec, resources, workers=1)
    if name == "local":
        return LocalExecutor(spec, resources, workers=cores)
    from optreg.executors.ray import RayExecutor

    return RayExecutor(spec, resources, num_cpus=cores)


def time_executor(executor: Executor, tasks: list[Task]) -> tuple[dict[str, Any], list[dict]]:
    """Wall time of the whole map (start-up included) and of the first result; the results."""
    started = time.perf_counter()
    first = None
    results = []
    try:
        for result in executor.map(tasks):
            first = first if first is not None else time.perf_counter() - started
            results.append(result)
    finally:
        executor.close()
    wall = time.perf_counter() - started
    runs_s = sum(r["wall_s"] or 0.0 for r in results)
    return {
        "wall_s": wall,
        "first_s": first,
        "runs_wall_s_sum": runs_s,
        "statuses": sorted({r["status"] for r in results}),
    }, results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs, study = sweep_study(
        lrs=parse_floats(args.lrs, "--lrs"),
        weight_decays=parse_floats(args.weight_decays, "--weight-decays"),
        modes=parse_modes(args.modes),
        seeds=[0],
        epochs=args.epochs,
        train_size=args.train_size,
        test_size=args.test_size,
        name="sweep-executors",
    )
    spec = DataSpec.covering(args.data_dir, configs)
    tasks = [Task(c.to_dict()) for c in configs]
    print(
        f"{len(tasks)} runs × {args.epochs} epoch(s) × {args.train_size} images, "
        f"{args.cores} cores, executors: {', '.join(args.executors)}",
        flush=True,
    )

    timings: dict[str, dict[str, Any]] = {}
    outputs: dict[str, dict[str, dict]] = {}
    for name in args.executors:
        timing, results = time_executor(make_executor(name, spec, args.cores), tasks)
        timings[name] = timing
        outputs[name] = {r["id"]: {k: r[k] for k in COMPARED} for r in results}
        print(
            f"{name:>10}: {timing['wall_s']:7.1f} s (first result after "
            f"{timing['first_s']:.1f} s; runs' own wall time {timing['runs_wall_s_sum']:.1f} s)",
            flush=True,
        )

    base = timings.get("sequential", {}).get("wall_s")
    for timing in timings.values():
        timing["speedup_vs_sequential"] = base / timing["wall_s"] if base else None
    reference = next(iter(outputs.values()))
    identical = all(out == reference for out in outputs.values())
    if base:
        print(
            "speed-up vs sequential: "
            + ", ".join(f"{n} {t['speedup_vs_sequential']:.2f}×" for n, t in timings.items())
        )
    print(f"identical results across executors: {'yes' if identical else 'NO'}")

    report = {
        "benchmark": "sweep_executors",
        "date": now(),
        "machine": machine_info(),
        "settings": {
            "runs": len(tasks),
            "grid": study["grid"],
            "epochs": args.epochs,
            "train_size": args.train_size,
            "test_size": args.test_size,
            "cores": args.cores,
            "threads_per_run": 1,
            "quick": args.quick,
        },
        "executors": timings,
        "identical": identical,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
