"""What a data fingerprint costs: whole files hashed vs sizes and both ends only.

Run (from the repository root; DATA_DIR holds the full ``cifar-10-batches-py``)::

    python benchmarks/fingerprint_cost.py DATA_DIR [--repeats 5]

Times, median of ``--repeats``, with the files in the page cache and with them evicted from it
beforehand (``posix_fadvise(DONTNEED)``; Linux): :func:`optreg.data.fingerprint` (SHA-256 of the
whole files), the same with BLAKE2b and MD5, and SHA-256 of each file's size plus its first and
last MiB. The figures are in :mod:`optreg.data.fingerprint`'s docstring. A few seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from optreg.data import cifar10_folder, fingerprint
from optreg.data.locations import REQUIRED_FILES

MIB = 1 << 20


def whole(folder: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    for name in REQUIRED_FILES:
        with open(folder / name, "rb") as f:
            while chunk := f.read(MIB):
                digest.update(chunk)
    return digest.hexdigest()


def ends(folder: Path) -> str:
    digest = hashlib.sha256()
    for name in REQUIRED_FILES:
        with open(folder / name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            digest.update(f"{name}\0{size}\0".encode() + f.read(MIB))
            f.seek(max(MIB, size - MIB))
            digest.update(f.read(MIB))
    return digest.hexdigest()


def evict(folder: Path) -> None:
    for name in REQUIRED_FILES:
        fd = os.open(folder / name, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def median_s(work: Callable[[], object], before: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", help="folder holding the full cifar-10-batches-py")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    folder = cifar10_folder(args.data_dir)
    size = sum((folder / name).stat().st_size for name in REQUIRED_FILES)
    cases: dict[str, Callable[[], object]] = {
        "fingerprint (whole, SHA-256)": lambda: fingerprint(folder),
        "whole, BLAKE2b": lambda: whole(folder, "blake2b"),
        "whole, MD5": lambda: whole(folder, "md5"),
        "sizes + first/last MiB, SHA-256": lambda: ends(folder),
    }
    print(f"{folder}: {size / 1e6:.0f} MB; median of {args.repeats}")
    for label, work in cases.items():
        cached = median_s(work, work, args.repeats)  # a run before each: files cached
        evicted = median_s(work, lambda: evict(folder), args.repeats)
        print(f"{label:<34} cached {cached:.3f} s   evicted {evicted:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
