"""Run tasks on this machine: in this process (one worker) or in a pool of worker processes.

The data is loaded and checked here, once, before any worker starts: a data problem (a bad file,
``train_size`` beyond the data) is a :class:`~optreg.data.DataError` from ``map``, as with every
other executor, and never a crash of each worker. The workers then receive the loaded tensors,
not paths: they are copied once into shared memory, and every worker maps that one copy (torch's
reductions pass its file descriptor to the spawned process; runs only read the data). Measured
with ``benchmarks/worker_data.py`` on the full CIFAR-10 (184 MB of uint8 images), 2 workers, a
busy 2-core machine: a worker spends no time on the data, where reading the files itself took it
2.4 s (this process now spends 1.0 s, once), and the process tree's peak memory (PSS: shared
pages counted once) falls from 1.34 to 0.84 GB, of which 0.61 GB are the bare processes. Where
shared memory cannot be had (``/dev/shm`` missing or too small), a warning says so and each
worker gets a copy through its start-up pipe (1.18 GB; the workers then start one after the
other, as each start waits until the worker has read its copy).

The pool is our own, small: with ``concurrent.futures.ProcessPoolExecutor`` one dead worker
breaks the pool and fails every run. Here:

* ``workers`` processes are spawned (not forked: forking a process whose torch thread pools have
  started can hang), each with one pipe to this process.
* Tasks are handed out one at a time: a worker gets its next task (or, when none is left, the
  order to stop) in reply to its result, so this process knows which task each worker holds.
  It waits on the pipes and the workers' sentinels at once and yields results as they arrive.
* A worker that dies (killed, out of memory) fails only the run it held: "its worker process
  died (signal 9: SIGKILL); rerun with --resume". While tasks remain, a new worker replaces it.
* Workers die with this process however it ends, ``kill -9`` included: on Linux the kernel kills
  them (``PR_SET_PDEATHSIG``); everywhere, a watchdog thread in each worker exits as soon as its
  pipe from this process closes. Workers ignore SIGINT and SIGHUP, which a terminal sends to the
  whole process group: this process owns them (no worker tracebacks on Ctrl-C), and ``close()``
  stops every worker, with SIGTERM and then SIGKILL after a grace period.

Two processes that each use both cores of a 2-core machine ran 12× slower than one, so
``workers × threads`` should not exceed the cores (``optreg.api`` plans them so). Worker
processes need POSIX signals (Linux, macOS).
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

import torch
import torch.multiprocessing  # registers the reductions that pass tensors via shared memory
from tqdm import tqdm

from optreg.config import RunConfig
from optreg.data import Cifar10, Cifar10Split, load_cifar10
from optreg.data.splits import covering_sizes
from optreg.executors.base import Resources, Task, execute_task, failed_result
from optreg.results import RunResult

GRACE_S = 2.0  # close(): seconds between SIGTERM and SIGKILL for a worker still alive
TERMINAL_SIGNALS = frozenset({signal.SIGINT, signal.SIGHUP})  # sent to a whole process group
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


@dataclass(frozen=True)
class DataSpec:
    """Where the data is, and how much of each split the runs need (None: all)."""

    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None

    def load(self, device: str = "cpu") -> Cifar10:
        return load_cifar10(self.data_dir, device=device, train_size=self.train_size,
                            test_size=self.test_size)

    @classmethod
    def covering(cls, data_dir: str | None, configs: list[RunConfig]) -> DataSpec:
        """The smallest prefix of each split that every config's run needs."""
        return cls(data_dir, *covering_sizes(configs))


class LocalExecutor:
    """Executes tasks here (``workers=1``, or a single task) or in ``workers`` processes.

    ``data`` is loaded (a :class:`DataSpec`) or taken as given (:class:`Cifar10`) by each
    ``map``, before any run starts; :class:`~optreg.data.DataError` comes from there.
    """

    def __init__(self, data: DataSpec | Cifar10, resources: Resources, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.data, self.resources, self.workers = data, resources, workers
        self._pool: _Pool | None = None

    def map(self, tasks: list[Task]) -> Iterator[RunResult]:
        """Yield one result per task, in order of completion."""
        if not tasks:
            return
        if self.workers == 1 or len(tasks) == 1:
            data = self._load(self.resources.device)
            for task in tasks:
                yield execute_task(task, data, self.resources)
            return
        self._pool = pool = _Pool(_for_workers(self._load("cpu")), self.resources)
        try:
            yield from pool.run(tasks, size=min(self.workers, len(tasks)))
        finally:
            pool.close()

    def close(self) -> None:
        """Stop the workers now, runs still executing included (after Ctrl-C): their last
        end-of-epoch checkpoints are complete files, so ``--resume`` continues them."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def _load(self, device: str) -> Cifar10:
        return self.data.load(device) if isinstance(self.data, DataSpec) else self.data


# --- this process's side of the pool ------------------------------------------------------------
@dataclass(eq=False)
class _Worker:
    """One worker process, its pipe, and the task it holds (None: idle or told to stop)."""

    process: BaseProcess
    conn: Connection
    task: Task | None = None
    exitcode: int | None = None  # set when the process is reaped


class _Pool:
    """Worker processes running one task at a time; see the module docstring."""

    def __init__(self, shipped: dict[str, Any], resources: Resources) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._shipped, self._resources = shipped, resources
        self._workers: list[_Worker] = []  # started and not yet reaped

    def run(self, tasks: list[Task], size: int) -> Iterator[RunResult]:
        """Execute ``tasks`` on ``size`` workers; yield each result as it arrives."""
        queue = deque(tasks)
        for _ in range(min(size, len(queue))):
            self._give(self._start(), queue)
        while busy := [w for w in self._workers if w.task is not None]:
            ready = multiprocessing.connection.wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy])
            for worker in busy:
                result = _receive(worker.conn) if worker.conn in ready else None
                if result is not None:
                    worker.task = None
                    self._give(worker, queue)
                    yield RunResult.from_dict(result, "a worker's result")
                elif worker.process.sentinel in ready:  # it died holding its task
                    task = worker.task
                    self._stop([worker])
                    if queue:
                        self._give(self._start(), queue)
                    yield _died(task, worker.exitcode)

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        self._stop(list(self._workers))

    def _start(self) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(target=_serve, name="optreg-worker", daemon=True,
                                        args=(theirs, self._shipped, self._resources))
        # The child inherits this thread's signal mask: it starts with the terminal's signals
        # blocked and ignores them before unblocking, so a Ctrl-C while it imports torch (seconds)
        # prints no traceback there. (The first start would launch multiprocessing's resource
        # tracker, which unblocks SIGINT on its way: launch it first.)
        resource_tracker.ensure_running()
        with _blocked(TERMINAL_SIGNALS):
            process.start()
        theirs.close()  # else its end never reads EOF when the worker dies
        worker = _Worker(process, ours)
        self._workers.append(worker)
        return worker

    def _give(self, worker: _Worker, queue: deque[Task]) -> None:
        """Send ``worker`` the next task, or the order to stop (None) when none is left."""
        task = queue.popleft() if queue else None
        try:
            worker.conn.send(task)
        except OSError:  # it died after sending its last result: the task never reached it
            self._stop([worker])
            if task is not None:
                queue.appendleft(task)
                self._give(self._start(), queue)
            return
        worker.task = task

    def _stop(self, workers: list[_Worker]) -> None:
        """SIGTERM, up to ``GRACE_S`` to exit, then SIGKILL; reap and forget the workers."""
        for worker in workers:
            worker.process.terminate()  # a no-op for one already exited
        deadline = time.monotonic() + GRACE_S
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
        for worker in workers:
            if worker.process.exitcode is None:
                worker.process.kill()
                worker.process.join(GRACE_S)  # an unkillable process is not waited for
            worker.exitcode = worker.process.exitcode
            worker.conn.close()
            if worker.exitcode is not None:
                worker.process.close()
            self._workers.remove(worker)


def _receive(conn: Connection) -> dict[str, Any] | None:
    """The result a worker sent, or None when its end of the pipe closed (it died)."""
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _died(task: Task, exitcode: int | None) -> RunResult:
    """The failed result of a run whose worker process died."""
    if exitcode is None:  # it closed its pipes but would not exit, even when killed
        how = "exit status unknown"
    elif exitcode < 0:
        how = f"signal {-exitcode}: {_signal_name(-exitcode)}"
    else:
        how = f"exit code {exitcode}"
    return failed_result(RunConfig.from_dict(task.config),
                         f"its worker process died ({how}); rerun with --resume")


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return "unknown signal"


@contextlib.contextmanager
def _blocked(signals: Iterable[signal.Signals]) -> Iterator[None]:
    """Block ``signals`` in this thread for the duration (they stay pending, not lost)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# --- the data, from this process to the workers ------------------------------------------------
def _for_workers(data: Cifar10) -> dict[str, Any]:
    """The data as the workers receive it: in shared memory if possible, else copied."""
    try:
        return _in_shared_memory(data)
    except RuntimeError as e:  # e.g. "unable to allocate shared memory(shm) ...: No space left"
        warnings.warn(f"the data cannot be put in shared memory ({e}); each worker process "
                      "gets its own copy instead", RuntimeWarning, stacklevel=2)
        return _as_arrays(data)


def _in_shared_memory(data: Cifar10) -> dict[str, Any]:
    """Copies of the tensors in shared memory, which every worker maps: one copy in all. (The
    given tensors are left as they are.)"""
    return {**{name: torch.empty(t.shape, dtype=t.dtype).share_memory_().copy_(t)
               for name, t in _tensors(data).items()},
            "classes": data.classes}


def _as_arrays(data: Cifar10) -> dict[str, Any]:
    """The tensors as numpy arrays, which pickle by value: each worker gets its own copy."""
    return {**{name: t.cpu().numpy() for name, t in _tensors(data).items()},
            "classes": data.classes}


def _tensors(data: Cifar10) -> dict[str, torch.Tensor]:
    return {"train_images": data.train.images, "train_labels": data.train.labels,
            "test_images": data.test.images, "test_labels": data.test.labels}


def _from_parent(shipped: dict[str, Any], device: str) -> Cifar10:
    """The data as :func:`_for_workers` shipped it, as tensors on ``device`` (no copy on CPU)."""
    def split(name: str) -> Cifar10Split:
        return Cifar10Split(torch.as_tensor(shipped[f"{name}_images"]),
                            torch.as_tensor(shipped[f"{name}_labels"])).to(device)

    return Cifar10(train=split("train"), test=split("test"), classes=tuple(shipped["classes"]))


# --- a worker process --------------------------------------------------------------------------
def _serve(conn: Connection, shipped: dict[str, Any], resources: Resources) -> None:
    """A worker's life: run each task it is sent and send back its result, until told to stop."""
    _die_with_parent()
    for number in TERMINAL_SIGNALS:
        signal.signal(number, signal.SIG_IGN)  # also discards one that arrived while blocked
    signal.pthread_sigmask(signal.SIG_UNBLOCK, TERMINAL_SIGNALS)
    # tqdm's default lock is a multiprocessing semaphore, which a worker that is killed (close())
    # never releases: the resource tracker would then warn about it. A worker draws no bar.
    tqdm.set_lock(threading.RLock())
    data = _from_parent(shipped, resources.device)
    while (task := conn.recv()) is not None:
        conn.send(execute_task(task, data, resources).to_dict())  # plain data across processes


def _die_with_parent() -> None:
    """End this worker when the process that started it ends, however it ends."""
    if sys.platform == "linux":  # the kernel sends SIGKILL the moment the parent exits
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # Everywhere, and should the parent have ended before prctl: the parent holds the write end
    # of this pipe and never writes to it, so it turns readable (EOF) exactly when the parent is
    # gone.
    parent = multiprocessing.parent_process()
    assert parent is not None, "not a worker process"
    threading.Thread(target=_exit_when_readable, args=(parent.sentinel,), daemon=True,
                     name="optreg-parent-watchdog").start()


def _exit_when_readable(sentinel: int) -> None:
    multiprocessing.connection.wait([sentinel])
    os._exit(1)
