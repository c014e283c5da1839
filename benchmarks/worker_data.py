"""How worker processes get the data: each reads the files, or all map one shared copy.

Run (from the repository root; DATA_DIR holds the full ``cifar-10-batches-py``)::

    python benchmarks/worker_data.py DATA_DIR [--workers 2] [--repeats 3] [--out FILE.json]

Three ways for ``--workers`` spawned processes to get the whole data set (50,000 + 10,000 uint8
images, 184 MB), and a baseline, each repeated ``--repeats`` times, the four interleaved:

* ``none``: the workers get no data (Python, torch and the spawn alone);
* ``files``: each worker reads and checks the files itself (:meth:`DataSpec.load`), what the
  worker processes did before the data was loaded in the parent;
* ``shared``: the parent loads the data once, copies it into shared memory and each worker maps
  that copy: what :class:`LocalExecutor` does (``_in_shared_memory`` / ``_from_parent``);
* ``copy``: the same, but the tensors travel as numpy arrays, one copy per worker through its
  start-up pipe: the executor's fallback when shared memory cannot be had.

Each worker, once it holds the data as tensors, reads every byte of it (a sum per split, as an
epoch reads the training images), reports, and waits to be stopped. Figures per repetition:

* ``ready_s``: from the parent's first ``Process.start()`` until every worker holds the data,
  including the parent's own loading first (``shared``, ``copy``); a worker's Python and torch
  start-up is part of every mode alike, and the difference to ``none`` is what the data costs;
* ``prepare_s``: the parent's part of that (loading, copying into shared memory or arrays), and
  ``worker_data_s``: the slowest worker's, from its first line of code to holding the data
  (reading the files; or wrapping what it received, which was mapped or copied as its
  arguments were unpickled, a part this figure does not see);
* ``peak_rss_mb`` / ``peak_pss_mb``: the process tree's (parent + workers) memory, sampled
  every 10 ms from ``/proc/PID/smaps_rollup`` until every worker has read its data, summed over
  the processes. RSS counts a shared page once in every process that maps it; PSS splits it
  among them, so PSS is the tree's real footprint. Linux only.

The JSON (medians and every repetition, with a machine description) goes to ``--out``
(default ``benchmarks/results/worker_data.json``). One to two minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import torch

from optreg.executors.local import DataSpec, _as_arrays, _from_parent, _in_shared_memory
from optreg.runtime import machine_info, now

MODES = ("none", "files", "shared", "copy")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder holding the full cifar-10-batches-py")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per mode (default 3)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" /
                                             "worker_data.json"), help="JSON output file")
    return parser.parse_args(argv)


def _worker(conn: Connection, mode: str, source: Any) -> None:
    if mode == "none":
        conn.send(0.0)
        conn.send(None)
        conn.recv()  # stop
        return
    started = time.perf_counter()
    data = source.load() if mode == "files" else _from_parent(source, "cpu")
    conn.send(time.perf_counter() - started)
    total = sum(int(chunk.sum(dtype=torch.int64))  # in 1 MiB chunks: no big temporary
                for t in (data.train.images, data.train.labels, data.test.images,
                          data.test.labels)
                for chunk in t.view(-1).split(1 << 20))
    conn.send(total)
    conn.recv()  # stop


def _memory_mb(pids: list[int]) -> tuple[float, float]:
    """Summed RSS and PSS of ``pids`` in MB."""
    rss = pss = 0
    for pid in pids:
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        fields = {line.split(":")[0]: line.split()[1] for line in lines[1:]}
        rss, pss = rss + int(fields["Rss"]), pss + int(fields["Pss"])
    return rss / 1024, pss / 1024


def measure(mode: str, spec: DataSpec, workers: int) -> dict[str, Any]:
    context = multiprocessing.get_context("spawn")
    peak = [0.0, 0.0]
    pids = [os.getpid()]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            rss, pss = _memory_mb(list(pids))
            peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    source: Any = spec if mode == "files" else None
    if mode in ("shared", "copy"):
        source = (_in_shared_memory if mode == "shared" else _as_arrays)(spec.load())
    prepare_s = time.perf_counter() - started
    processes, conns = [], []
    for _ in range(workers):
        ours, theirs = context.Pipe()
        process = context.Process(target=_worker, args=(theirs, mode, source), daemon=True)
        process.start()
        theirs.close()
        processes.append(process)
        conns.append(ours)
        pids.append(process.pid)
    worker_s = [conn.recv() for conn in conns]
    ready_s = time.perf_counter() - started
    totals = [conn.recv() for conn in conns]
    sampling.set()
    sampler.join()
    for conn in conns:
        conn.send("stop")
    for process in processes:
        process.join()
    assert len(set(totals)) == 1, "the workers saw different data"
    return {"ready_s": ready_s, "prepare_s": prepare_s, "worker_data_s": max(worker_s),
            "peak_rss_mb": peak[0], "peak_pss_mb": peak[1], "checksum": totals[0]}


def main(argv: list[str] | None = None) -> int:
    if sys.platform != "linux":
        print("needs Linux (/proc/PID/smaps_rollup)", file=sys.stderr)
        return 2
    args = parse_args(argv)
    torch.set_num_threads(1)
    spec = DataSpec(args.data_dir)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    for repeat in range(args.repeats):
        for mode in MODES[repeat % len(MODES):] + MODES[:repeat % len(MODES)]:  # rotate
            runs[mode].append(measure(mode, spec, args.workers))
            print(f"{mode:>6}: {runs[mode][-1]}", file=sys.stderr)
    checksums = {r["checksum"] for mode, rs in runs.items() if mode != "none" for r in rs}
    assert len(checksums) == 1, "the modes saw different data"
    summary = {mode: {key: statistics.median(r[key] for r in rs)
                      for key in ("ready_s", "prepare_s", "worker_data_s", "peak_rss_mb",
                                  "peak_pss_mb")}
               for mode, rs in runs.items()}
    for mode, figures in summary.items():
        extra = figures["ready_s"] - summary["none"]["ready_s"]
        print(f"{mode:>6}: ready {figures['ready_s']:.2f} s ({extra:+.2f} s; parent "
              f"{figures['prepare_s']:.2f} s, in a worker {figures['worker_data_s']:.2f} s), "
              f"peak RSS {figures['peak_rss_mb']:.0f} MB, PSS {figures['peak_pss_mb']:.0f} MB")
    report = {"benchmark": "worker_data", "date": now(), "machine": machine_info(),
              "settings": {"workers": args.workers, "repeats": args.repeats},
              "median": summary, "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
