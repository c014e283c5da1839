"""Executors: run configs in, results out — in this process, in worker processes, or on Ray.

Every executor has the same interface, :class:`~optreg.executors.base.Executor`: ``map(tasks)``
takes :class:`~optreg.executors.base.Task` s (a config as a plain dict and a checkpoint path) and
yields :class:`~optreg.results.RunResult` s as runs finish. Only plain data crosses a process
boundary (config dicts in, result dicts out), so a config gives the same result whoever executes
it. (``optreg.executors.ray`` imports Ray only when used.)
"""

from __future__ import annotations

from optreg.data import Cifar10
from optreg.executors.base import Executor, Resources, Task, execute_task
from optreg.executors.local import DataSpec, LocalExecutor
from optreg.executors.ray import RayExecutor

__all__ = ["DataSpec", "Executor", "LocalExecutor", "RayExecutor", "Resources", "Task",
           "execute_task", "make_executor"]


def make_executor(name: str, data: Cifar10, *, device: str, threads: int, workers: int,
                  progress: bool, ray_address: str | None = None,
                  tensorboard: str | None = None) -> Executor:
    """The executor ``name`` (``local`` or ``ray``) over ``data``, already loaded and checked.

    Local: ``workers`` runs at once (1: in this process, with a per-run progress bar; more:
    worker processes that share the data). Ray: one task per run with ``threads`` CPUs, on the
    cluster at ``ray_address`` or a local instance of ``workers`` CPUs (0: all of them). Each
    run writes its TensorBoard log (if ``tensorboard``) into its own folder there.
    """
    if name == "ray":
        return RayExecutor(data, Resources(device, threads, progress=False,
                                           tensorboard=tensorboard),
                           address=ray_address, num_cpus=workers or None)
    # One run at a time may draw a per-epoch progress bar; several would overwrite each other.
    resources = Resources(device, threads, progress=progress and workers == 1,
                          tensorboard=tensorboard)
    return LocalExecutor(data, resources, workers=workers)
