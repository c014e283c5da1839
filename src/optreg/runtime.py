"""Where and how a run executes: device choice, thread count, flush-to-zero, machine description.

None of this is part of a :class:`~optreg.config.RunConfig`: it decides how fast a run goes, not
what it computes. (One exception is recorded, not hidden: on the CPU a run's bits may depend on
the number of intra-op threads, so optreg runs every CPU run with a fixed count — 1 where a
function such as :func:`optreg.training.run` is called directly; a study fixes it before its
first run (see :mod:`optreg.api`) — and stores it in the result's provenance.)
"""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import torch

import optreg

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
TRAINING_DEVICES = ("cpu", "cuda", "mps")  # device types a run can train on


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit name must be available and able to
    train (``cpu``, ``cuda``, ``cuda:N``, ``mps``; not ``meta`` and the like)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    choices = ", ".join(DEVICE_CHOICES)
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r} (choose from {choices}, or cuda:N)") from None
    if device.type not in TRAINING_DEVICES:
        raise ValueError(f"device {name!r} cannot train a network (choose from {choices})")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} "
                             "CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but MPS is not available on this machine")
    return device


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask where the OS has one, capped by a
    cgroup v2 CPU quota (a container limited to 2 CPUs on a 64-core host gets 2)."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    return max(1, min(cores, quota)) if quota is not None else cores


def _cgroup_cpu_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """CPUs allowed by the cgroup v2 quota (``"max 100000"``: none; ``"200000 100000"``: 2),
    rounded down; None where there is no quota or no cgroup v2."""
    try:
        with open(path) as f:
            quota, period = f.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, int(quota) // int(period))
    except (ValueError, ZeroDivisionError):
        return None


@contextmanager
def execution(threads: int, flush_denormal: bool) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads and flush-to-zero on or off.

    On exit the thread count is restored and flush-to-zero is turned *off* (torch's default;
    the state before cannot be read back), so code after a run computes subnormals as usual.

    ``torch.set_flush_denormal`` sets the FTZ/DAZ bits of the *calling* thread only, and threads
    inherit them when they are created. torch's OpenMP pool outlives such changes, so a pool made
    before FTZ was turned on keeps producing subnormals on every thread but this one (measured:
    half of a 2-thread elementwise op). :func:`set_flush_denormal_everywhere` therefore sets the
    bits on every thread of the pool, after the thread count is set.
    """
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    set_flush_denormal_everywhere(flush_denormal)
    try:
        yield
    finally:
        set_flush_denormal_everywhere(False)
        torch.set_num_threads(old_threads)


def set_flush_denormal_everywhere(on: bool) -> bool:
    """Set flush-to-zero on this thread and on every thread of torch's intra-op pool.

    With one intra-op thread (or none to reach), only this thread computes. Otherwise the call runs
    ``torch.set_flush_denormal`` on each thread of the OpenMP team via libgomp's
    ``GOMP_parallel`` (LLVM's libomp provides the same entry point). Returns False when threads
    could not be reached (another parallel backend): then only this thread is set.
    """
    torch.set_flush_denormal(on)
    if torch.get_num_threads() <= 1:
        return True
    parallel = _gomp_parallel()
    if parallel is None:
        return False
    callback_type, run_on_team = parallel
    callback = callback_type(lambda _data: torch.set_flush_denormal(on))
    run_on_team(callback, None, torch.get_num_threads(), 0)
    return True


@cache
def _gomp_parallel() -> tuple[Any, Any] | None:
    """libgomp's ``GOMP_parallel`` as loaded by torch, with its callback type; None if absent."""
    import ctypes

    torch.ones(2).add_(1)  # make sure torch's OpenMP runtime is loaded
    for library in _loaded_libraries():
        if "gomp" in library or "libomp" in library or "iomp" in library:
            try:
                handle = ctypes.CDLL(library)
                function = handle.GOMP_parallel
            except (OSError, AttributeError):
                continue
            callback_type = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
            function.argtypes = [callback_type, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
            function.restype = None
            return callback_type, function
    return None


def _loaded_libraries() -> list[str]:
    """Shared libraries mapped into this process (Linux: /proc/self/maps; elsewhere none)."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if ".so" in line}
    except OSError:
        return []
    return sorted(paths)


@cache
def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform.processor() elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, Any]:
    """A description of this machine and software, stored beside every result."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "optreg": optreg.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def now() -> str:
    """The current UTC time in ISO 8601, to the second."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
