"""How long ``optreg check`` takes on one submission, end to end, diagnosis included.

    python benchmarks/check_speed.py [--repeats 3] [--out benchmarks/results/check_speed.json]

Each submission is checked by a fresh ``python -m optreg.check PATH --quiet`` (interpreter start,
imports, the fork server and its child, every check, the report), the submissions taking turns
so that a change in the machine's load spreads over all of them; the table shows the median and
the range. The submissions: a correct one; one with two mistakes (diagnosed as a pair: the most
work a named diagnosis does); one whose mistake is in no catalogue (every single mistake and
every pair is tried, and none follows). Then, in this process, the time of each check on each
submission (the first check in a process also pays for importing torch's optimizer machinery,
which the command does before its clocks start). The load average before and after is saved:
the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from optreg.atomic import write_json
from optreg.check import CHECK_NAMES, load_submission
from optreg.check.checks import CheckOptions, run_check
from optreg.check.isolation import _warm_up
from optreg.runtime import machine_info, now

ROOT = Path(__file__).resolve().parents[1]
SUBMISSIONS = {
    "correct": ROOT / "tests/submissions/correct_exercise.py",
    "two mistakes": ROOT / "tests/submissions/two_mistakes.py",
    "unknown mistake": ROOT / "tests/submissions/unknown_mistake.py",
}


def end_to_end(path: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "optreg.check", str(path), "--quiet"],
                          capture_output=True, text=True, env=env, timeout=600)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"optreg check {path} exited {done.returncode}: {done.stderr}")
    return seconds


def per_check(path: Path) -> dict[str, float]:
    torch.set_num_threads(1)
    sub = load_submission(path.read_text(), str(path))
    seconds = {}
    for name in CHECK_NAMES:
        start = time.perf_counter()
        run_check(name, sub, CheckOptions())
        seconds[name] = time.perf_counter() - start
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/check_speed.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    times: dict[str, list[float]] = {name: [] for name in SUBMISSIONS}
    for r in range(args.repeats):
        order = list(SUBMISSIONS)[r % len(SUBMISSIONS):] + list(SUBMISSIONS)[:r % len(SUBMISSIONS)]
        for name in order:
            times[name].append(end_to_end(SUBMISSIONS[name]))
            print(f"  {name:16} run {r + 1}: {times[name][-1]:5.1f} s", flush=True)
    _warm_up()
    checks = {name: per_check(path) for name, path in SUBMISSIONS.items()}
    load_after = os.getloadavg()

    print(f"\noptreg check, one submission end to end ({args.repeats} runs, 1-min load "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after):")
    for name, runs in times.items():
        print(f"  {name:16} median {statistics.median(runs):5.1f} s  "
              f"(min {min(runs):.1f}, max {max(runs):.1f})")
    print("\nper check, in process (s):")
    print("  " + " " * 16 + "".join(f"{c[:10]:>11}" for c in CHECK_NAMES))
    for name, row in checks.items():
        print(f"  {name:16}" + "".join(f"{row[c]:11.2f}" for c in CHECK_NAMES))
    out = write_json(args.out, {
        "machine": machine_info(), "date": now(), "repeats": args.repeats,
        "load_average_1_5_15_min": {"before": load_before, "after": load_after},
        "end_to_end_seconds": {n: {"median": statistics.median(t), "runs": t}
                               for n, t in times.items()},
        "per_check_seconds": checks,
    })
    print(f"saved {out}")


if __name__ == "__main__":
    main()
