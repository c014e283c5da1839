"""Executors: run configs in, result dicts out — in this process, in worker processes, or on Ray.

Every executor has the same interface, :class:`~optreg.executors.base.Executor`: ``map(tasks)``
takes :class:`~optreg.executors.base.Task` s (a config as a plain dict and a checkpoint path) and
yields result dicts as runs finish. Only plain data crosses a process boundary, so a config gives
the same result whoever executes it. (``optreg.executors.ray`` imports Ray only when used.)
"""

from optreg.executors.base import Executor, Resources, Task, execute_task
from optreg.executors.local import DataSpec, LocalExecutor, default_workers
from optreg.executors.ray import RayExecutor

__all__ = ["DataSpec", "Executor", "LocalExecutor", "RayExecutor", "Resources", "Task",
           "default_workers", "execute_task"]
