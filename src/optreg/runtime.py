"""Where and how a run executes: device choice, thread count, flush-to-zero, machine description.

None of this is part of a :class:`~optreg.config.RunConfig`: it decides how fast a run goes, not
what it computes. (One exception is recorded, not hidden: on the CPU a run's bits may depend on
the number of intra-op threads, so optreg runs every CPU run with a fixed count, 1 by default, and
stores it in the result's provenance.)
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


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an explicit name must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        choices = ", ".join(DEVICE_CHOICES)
        raise ValueError(f"unknown device {name!r} (choose from {choices})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' requested but MPS is not available on this machine")
    return device


@contextmanager
def execution(threads: int, flush_denormal: bool) -> Iterator[None]:
    """Run the body with ``threads`` intra-op threads and flush-to-zero on or off; restore after.

    ``torch.set_flush_denormal`` sets the FTZ/DAZ bits of the *calling* thread only. With one
    intra-op thread every CPU kernel (forward, autograd's CPU backward, the optimizer) runs on
    this thread, so the setting covers all the arithmetic; with more threads the pool's workers
    keep their own setting and may still produce subnormals.
    """
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.set_flush_denormal(flush_denormal)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)
        torch.set_num_threads(old_threads)


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
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
