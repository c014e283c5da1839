"""Run tasks as Ray tasks: on a local Ray instance, or on a cluster given by its address.

The same interface as :class:`~optreg.executors.local.LocalExecutor`: ``map(tasks)`` yields one
result dict per task as runs finish (in completion order, via ``ray.wait``), ``close()`` cleans
up. Ray is optional (``pip install 'optreg[ray]'``) and imported only inside this module's
functions, never at import time.

How data and tasks travel:

* The driver loads the data once (:meth:`DataSpec.load`) and puts its uint8 image and int64 label
  arrays into Ray's object store with one ``ray.put``. Every task receives that one object; on
  the same node, workers read the arrays in place (zero-copy, read-only shared memory), so the
  data is neither re-read from disk nor copied once per run. Nodes other than the driver's get
  the arrays through the object store: only the driver needs the data files.
* Only plain data crosses the boundary: a :class:`~optreg.executors.base.Task` (a config dict and
  a checkpoint path), :class:`~optreg.executors.base.Resources`, and the result dict. Each task
  asks Ray for ``resources.threads`` CPUs (and one GPU when ``resources.device`` is CUDA) and
  calls :func:`~optreg.executors.base.execute_task`, so a config gives the same numbers here as
  in this process or a worker process.
* A task that raises inside Ray, or whose worker dies (killed, out of memory), becomes a
  ``status="failed"`` result for that task (:func:`~optreg.executors.base.failed_result`); the
  other tasks go on. Tasks are not retried: ``--resume`` reruns them, from their checkpoints.

On a multi-node cluster, checkpoint paths (the study's output folder) must be on a filesystem
that every node can read and write, e.g. NFS: a run writes its checkpoints wherever its task
runs, and a resumed run may be scheduled on another node. Every node also needs optreg (the same
version) installed; to pass a ``runtime_env`` or other options, call ``ray.init`` yourself before
the first ``map``: the executor then uses that connection and leaves it open on ``close()``.
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from optreg.config import RunConfig
from optreg.data import Cifar10, Cifar10Split
from optreg.executors.base import Resources, Task, execute_task, failed_result
from optreg.executors.local import DataSpec
from optreg.extras import require
from optreg.results import RunResult

__all__ = ["RayExecutor", "check_reachable", "import_ray"]

def import_ray() -> Any:
    """Import and return the ``ray`` module, or raise MissingExtra with the install hint."""
    return require("ray", extra="ray", purpose="the Ray executor")


class RayExecutor:
    """Executes tasks as Ray tasks, ``resources.threads`` CPUs each.

    Args:
        data: where the data is (a :class:`DataSpec`, loaded once in the driver on the first
            ``map``), or the data itself.
        resources: device, torch threads per run (= CPUs Ray reserves per task), progress.
        address: a running cluster's address (``"auto"``, ``"ray://host:10001"``, …); None
            starts a local Ray instance on the first ``map``.
        num_cpus: CPUs of that local instance (None: all of this machine's). Runs in parallel =
            ``num_cpus // resources.threads``. Not allowed with ``address``.

    If Ray is already initialised in this process when ``map`` is first called, the executor uses
    that instance and never shuts it down. Otherwise ``close()`` shuts down what it started: the
    local instance, or its connection to the cluster (the cluster keeps running).

    Raises:
        ImportError: Ray is not installed (the message says how to install it).
        ValueError: ``num_cpus`` < 1, or given together with ``address``.
    """

    def __init__(
        self,
        data: DataSpec | Cifar10,
        resources: Resources,
        *,
        address: str | None = None,
        num_cpus: int | None = None,
    ) -> None:
        import_ray()  # fail now, with the install hint, rather than at the first run
        if num_cpus is not None and num_cpus < 1:
            raise ValueError(f"num_cpus must be >= 1, got {num_cpus}")
        if num_cpus is not None and address is not None:
            raise ValueError("num_cpus sizes a local Ray instance; a cluster at an address "
                             "has its own CPUs")
        self.data, self.resources = data, resources
        self.address, self.num_cpus = address, num_cpus
        self._started = False  # this executor called ray.init (so close() calls ray.shutdown)
        self._data_ref: Any = None  # the arrays in the object store
        self._pending: dict[Any, Task] = {}  # ObjectRef → task, of runs not yet yielded
        self._target = _execute_remote  # the function each Ray task runs (tests replace it)

    # ------------------------------------------------------------------------------------------
    def map(self, tasks: list[Task]) -> Iterator[RunResult]:
        """Submit every task, then yield each result as it completes."""
        if not tasks:
            return
        ray = import_ray()
        data_ref = self._start(ray)
        remote = ray.remote(self._target).options(**self._task_options())
        resources = _worker_resources(self.resources)
        self._pending = {remote.remote(data_ref, task, resources): task for task in tasks}
        try:
            while self._pending:
                done, _ = ray.wait(list(self._pending), num_returns=1)
                for ref in done:
                    task = self._pending.pop(ref)
                    yield self._get(ray, ref, task)
        finally:
            self._cancel_pending()

    def close(self) -> None:
        """Cancel unfinished tasks; shut Ray down if this executor started it."""
        self._cancel_pending()
        self._data_ref = None
        if self._started:
            ray = import_ray()
            ray.shutdown()
            self._started = False

    # ------------------------------------------------------------------------------------------
    def _start(self, ray: Any) -> Any:
        """Start or join Ray (unless already initialised) and put the data once; its ref."""
        if not ray.is_initialized():
            common = {"log_to_driver": True, "logging_level": logging.WARNING}
            if self.address is None:
                ray.init(num_cpus=self.num_cpus, include_dashboard=False, **common)
            else:
                check_reachable(self.address)
                ray.init(address=self.address, **common)
            self._started = True
            self._data_ref = None
        if self._data_ref is None:
            data = self.data.load("cpu") if isinstance(self.data, DataSpec) else self.data
            self._data_ref = ray.put(_to_arrays(data))
        return self._data_ref

    def _task_options(self) -> dict[str, Any]:
        gpus = 1 if torch.device(self.resources.device).type == "cuda" else 0
        # No retries: a crashed run becomes a failed result now; --resume reruns it later.
        return {"num_cpus": self.resources.threads, "num_gpus": gpus, "max_retries": 0}

    def _get(self, ray: Any, ref: Any, task: Task) -> RunResult:
        """The task's result, or a failed result when Ray could not produce one."""
        try:
            return RunResult.from_dict(ray.get(ref), "the result of a Ray task")
        except ray.exceptions.WorkerCrashedError as e:
            return _failed(task, "its Ray worker died (killed or out of memory); rerun with "
                                 "--resume", str(e))
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None) or e
            return _failed(task, f"{type(cause).__name__}: {cause}", str(e))
        except ray.exceptions.RayError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            return _failed(task, f"Ray: {type(e).__name__}: {first}", str(e))

    def _cancel_pending(self) -> None:
        """Cancel the tasks not yet yielded (an interrupted study); they stop at the next Python
        line, leaving their last end-of-epoch checkpoint for ``--resume``."""
        if not self._pending:
            return
        pending, self._pending = self._pending, {}
        ray = import_ray()
        if ray.is_initialized():
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:  # already finished or its worker gone: nothing to cancel
                    logging.getLogger(__name__).debug("could not cancel %s", ref, exc_info=True)


def _failed(task: Task, error: str, detail: str) -> RunResult:
    return failed_result(RunConfig.from_dict(task.config), error, detail)


def _worker_resources(resources: Resources) -> Resources:
    """Ray shows a task its GPU as ``cuda:0``: drop any index from a CUDA device."""
    if torch.device(resources.device).type == "cuda":
        return dataclasses.replace(resources, device="cuda")
    return resources


# --- the data: tensors in the driver ↔ arrays in the object store -----------------------------
def _to_arrays(data: Cifar10) -> dict[str, Any]:
    """The splits as numpy arrays (CPU, no copy beyond the object store's own)."""
    return {
        "train_images": data.train.images.cpu().numpy(),
        "train_labels": data.train.labels.cpu().numpy(),
        "test_images": data.test.images.cpu().numpy(),
        "test_labels": data.test.labels.cpu().numpy(),
        "classes": tuple(data.classes),
    }


def _from_arrays(arrays: dict[str, Any]) -> Cifar10:
    """Tensors that share the (read-only, shared-memory) arrays' memory.

    ``torch.from_numpy`` warns that the arrays are not writable, because writing through such a
    tensor would be undefined behaviour. That cannot happen here: a run only slices the images,
    moves them to its device and normalises them into a new tensor; nothing writes to the data.
    Silencing the warning keeps the zero-copy read instead of copying the data in every task.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return Cifar10(
            train=Cifar10Split(torch.from_numpy(arrays["train_images"]),
                               torch.from_numpy(arrays["train_labels"])),
            test=Cifar10Split(torch.from_numpy(arrays["test_images"]),
                              torch.from_numpy(arrays["test_labels"])),
            classes=tuple(arrays["classes"]),
        )


def _execute_remote(arrays: dict[str, Any], task: Task, resources: Resources) -> dict[str, Any]:
    """What one Ray task runs: rebuild the data's tensors, execute the task, return its result
    as plain data."""
    return execute_task(task, _from_arrays(arrays), resources).to_dict()


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast for a ``host:port`` (or ``ray://host:port``) nobody listens on.

    ``ray.init`` itself retries an unreachable cluster for minutes, printing only log lines.
    ``"auto"`` and other forms are left to Ray.
    """
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConnectionError(f"no Ray cluster answers at {address} ({e})") from None
