"""Run tasks on this machine: in this process (one worker) or in worker processes.

Each worker process loads the data once (not once per run) and runs its tasks with a fixed
number of torch threads. Two processes that each use both cores of a 2-core machine ran 12×
slower than one, so ``workers × threads`` should not exceed the cores: :func:`default_workers`
picks ``cores // threads``.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

from optreg.config import RunConfig
from optreg.data import Cifar10, load_cifar10
from optreg.executors.base import Resources, Task, execute_task, failed_result
from optreg.results import RunResult


@dataclass(frozen=True)
class DataSpec:
    """Where a worker finds the data, and how much of each split it needs (None: all)."""

    data_dir: str | None = None
    train_size: int | None = None
    test_size: int | None = None

    def load(self, device: str = "cpu") -> Cifar10:
        return load_cifar10(self.data_dir, device=device, train_size=self.train_size,
                            test_size=self.test_size)

    @classmethod
    def covering(cls, data_dir: str | None, configs: list[RunConfig]) -> DataSpec:
        """The smallest prefix of each split that every config's run needs."""
        def most(sizes: list[int | None]) -> int | None:
            return None if not sizes or None in sizes else max(sizes)  # type: ignore[type-var]

        return cls(data_dir, most([c.train_size for c in configs]),
                   most([c.test_size for c in configs]))


def default_workers(threads: int = 1) -> int:
    """As many workers as fit the cores this process may use, at ``threads`` threads each."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // threads)


class LocalExecutor:
    """Executes tasks here (``workers=1``) or in ``workers`` spawned processes."""

    def __init__(self, data: DataSpec | Cifar10, resources: Resources, workers: int = 1) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.data, self.resources, self.workers = data, resources, workers
        self._pool: ProcessPoolExecutor | None = None

    def map(self, tasks: list[Task]) -> Iterator[RunResult]:
        if self.workers == 1 or len(tasks) <= 1:
            data = self.data.load(self.resources.device) if isinstance(self.data, DataSpec) \
                else self.data
            for task in tasks:
                yield execute_task(task, data, self.resources)
            return
        yield from self._map_processes(tasks)

    def _map_processes(self, tasks: list[Task]) -> Iterator[RunResult]:
        spec = self.data if isinstance(self.data, DataSpec) else None
        if spec is None:
            raise ValueError("worker processes need a DataSpec (a path), not loaded tensors")
        # spawn, not fork: forking a process whose torch thread pools already started can hang.
        self._pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(tasks)),
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(spec, self.resources),
        )
        pending: dict[Future, Task] = {self._pool.submit(_run_in_worker, t): t for t in tasks}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        yield RunResult.from_dict(future.result(), "a worker's result")
                    except BrokenProcessPool:
                        config = RunConfig.from_dict(task.config)
                        yield failed_result(config, "its worker process died (killed or out "
                                                    "of memory); rerun with --resume")
        finally:
            self.close()

    def close(self) -> None:
        """Stop the workers. Runs still executing (after Ctrl-C) are stopped, not awaited:
        their end-of-epoch checkpoints are complete files, so ``--resume`` continues them."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        processes = list(pool._processes.values())  # no public handle before Python 3.14
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.terminate()
        for process in processes:
            process.join(timeout=10)


_worker_data: Cifar10 | None = None
_worker_resources: Resources | None = None


def _init_worker(spec: DataSpec, resources: Resources) -> None:
    """Load the data once per worker process."""
    global _worker_data, _worker_resources
    _worker_resources = resources
    _worker_data = spec.load(resources.device)


def _run_in_worker(task: Task) -> dict[str, Any]:
    assert _worker_data is not None and _worker_resources is not None, "worker not initialised"
    return execute_task(task, _worker_data, _worker_resources).to_dict()
