"""The seed study's wall time and peak memory, runs one after another vs several at once.

    python benchmarks/seed_study.py --data-dir D [--epochs 2] [--train-size N] [--workers 2]

Runs ``optreg study seed`` twice as a subprocess on the same settings: with ``--workers 1``
(sequential) and with ``--workers N`` (concurrent), one torch thread per run either way
(``--threads 1``, so that the bits agree), and reports for each the total wall time, each
scenario's own wall time and the peak memory of the whole process tree, sampled every 0.1 s from
/proc: the sum of RSS (which counts the data that workers share once per process) and of PSS
(which splits shared pages among the processes that map them: what the tree really uses). It
checks that both give bit-identical histories (a run's result must not depend on how many ran
beside it) and prints the ratio concurrent / sequential. Results go to JSON with the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from optreg.atomic import write_json
from optreg.runtime import machine_info

COMPARED = ("train_loss", "train_objective", "valid_loss", "valid_acc")  # no timings


def tree_memory_bytes(root: int) -> tuple[int, int]:
    """Sums of RSS and of PSS over ``root`` and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    rss = pss = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def run_study(args: argparse.Namespace, workers: int, out: Path) -> dict:
    command = [
        sys.executable,
        "-m",
        "optreg.cli",
        "study",
        "seed",
        "--data-dir",
        args.data_dir,
        "--epochs",
        str(args.epochs),
        "--workers",
        str(workers),
        "--threads",
        "1",
        "--out",
        str(out),
        "--no-progress",
    ]
    if args.train_size:
        command += ["--train-size", str(args.train_size)]
    start = time.perf_counter()
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    peak_rss = peak_pss = 0
    stderr: list[str] = []
    reader = threading.Thread(target=lambda: stderr.extend(process.stderr), daemon=True)
    reader.start()
    while process.poll() is None:
        rss, pss = tree_memory_bytes(process.pid)
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.1)
    wall = time.perf_counter() - start
    reader.join()
    if process.returncode != 0:
        raise SystemExit(f"study failed ({process.returncode}):\n{''.join(stderr[-20:])}")
    runs = json.loads((out / "results.json").read_text())["runs"]
    return {
        "workers": workers,
        "wall_s": wall,
        "peak_rss_mb": peak_rss / 2**20,
        "peak_pss_mb": peak_pss / 2**20,
        "runs": {
            r["name"]: {
                "wall_s": r["wall_s"],
                "train_img_per_s": r["train_img_per_s"],
                "history": {k: r["history"][k] for k in COMPARED},
                "test_acc": r["test_acc"],
            }
            for r in runs
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int)
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--out", default="benchmarks/results/seed_study.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        sequential = run_study(args, 1, Path(tmp) / "sequential")
        concurrent = run_study(args, args.workers, Path(tmp) / "concurrent")
    identical = all(
        sequential["runs"][name]["history"] == concurrent["runs"][name]["history"]
        for name in sequential["runs"]
    )
    print(f"seed study, {args.epochs} epoch(s), train size {args.train_size or 50000}")
    print(f"{'scenario':<15} {'sequential s':>13} {'concurrent s':>13}")
    for name in sequential["runs"]:
        print(
            f"{name:<15} {sequential['runs'][name]['wall_s']:>13.1f} "
            f"{concurrent['runs'][name]['wall_s']:>13.1f}"
        )
    ratio = concurrent["wall_s"] / sequential["wall_s"]
    for label, r in (("sequential", sequential), (f"{args.workers} workers", concurrent)):
        print(f"{label:<15} total {r['wall_s']:7.1f} s   peak RSS {r['peak_rss_mb']:7.0f} MB"
              f"   peak PSS {r['peak_pss_mb']:7.0f} MB")
    print(f"concurrent / sequential wall time: {ratio:.3f}; identical histories: {identical}")
    out = write_json(args.out, {"machine": machine_info(), "epochs": args.epochs,
                                "train_size": args.train_size, "ratio": ratio,
                                "identical": identical, "sequential": sequential,
                                "concurrent": concurrent})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
