"""Executors: in-process, worker processes and Ray give identical results; resume; failures.

One small sweep (2 learning rates × 1 weight decay × 2 modes, seed 0, 2 epochs on 256 synthetic
images, and one augmented, shuffled run) is run by every executor; the numbers must be
bit-identical. One local Ray instance
(2 CPUs) serves the whole module: it is started by a :class:`RayExecutor` (which therefore owns
it and shuts it down on ``close``) and shut down again at teardown in any case.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from optreg.cli import main
from optreg.config import RunConfig
from optreg.data import write_synthetic_cifar10
from optreg.executors.base import Executor, Resources, Task
from optreg.executors.local import DataSpec, LocalExecutor, _Pool
from optreg.results import RunResult, Study
from optreg.studies.execute import execute_study
from optreg.studies.output import Identity, StudyFolder
from optreg.studies.sweep import sweep_study

pytestmark = pytest.mark.slow

COMPARED = ("id", "name", "seed", "config", "status", "train_acc", "test_acc")
HISTORIES = ("train_loss", "train_objective", "valid_loss", "valid_acc", "lr")


@pytest.fixture(scope="module")
def spec(tmp_path_factory: pytest.TempPathFactory) -> DataSpec:
    root = tmp_path_factory.mktemp("data")
    write_synthetic_cifar10(root, n_train=256, n_test=64)
    return DataSpec(str(root))


@pytest.fixture(scope="module")
def grid() -> tuple[list[RunConfig], dict[str, Any]]:
    """Four grid points, and one run with augmentation and shuffling: the random crops, flips and
    orders must be the same whichever executor draws them."""
    configs, description = sweep_study(lr=[1e-3, 3e-3], weight_decay=[1e-2],
                                       mode=["coupled", "decoupled"], seeds=[0], epochs=2)
    augmented = configs[0].replace(name="augmented", augment=True, shuffle=True)
    return [*configs, augmented], description


def tasks_of(configs: list[RunConfig]) -> list[Task]:
    return [Task(c.to_dict()) for c in configs]


def by_id(results: Any) -> dict[str, dict[str, Any]]:
    """The compared fields of each result, by run id (executors yield in completion order):
    everything but timings and provenance."""
    return {r.id: {**{k: getattr(r, k) for k in COMPARED},
                   **{k: getattr(r.history, k) for k in HISTORIES}} for r in results}


@pytest.fixture(scope="module")
def sequential(spec: DataSpec, grid: tuple[list[RunConfig], dict]) -> dict[str, dict]:
    """The reference: every run in this process, one after another."""
    results = by_id(LocalExecutor(spec, Resources(), workers=1).map(tasks_of(grid[0])))
    assert all(r["status"] == "ok" for r in results.values())
    return results


@pytest.fixture(scope="module")
def ray_run(spec: DataSpec, grid: tuple[list[RunConfig], dict]) -> Iterator[dict[str, Any]]:
    """Start a local Ray instance (2 CPUs) through a RayExecutor, run the grid on it, keep it
    up for the module's other Ray tests, then shut it down."""
    ray = pytest.importorskip("ray")
    from optreg.executors.ray import RayExecutor

    assert not ray.is_initialized()
    owner = RayExecutor(spec, Resources(), num_cpus=2)
    try:
        results = list(owner.map(tasks_of(grid[0])))
        assert owner._started and ray.is_initialized()
        yield {"ray": ray, "owner": owner, "results": results}
        owner.close()
        assert not ray.is_initialized(), "close() shuts down the instance it started"
    finally:
        ray.shutdown()


# --- identical results everywhere -------------------------------------------------------------


def test_worker_processes_match_in_process(spec: DataSpec, grid: tuple, sequential: dict) -> None:
    executor = LocalExecutor(spec, Resources(), workers=2)
    assert by_id(executor.map(tasks_of(grid[0]))) == sequential


def test_ray_matches_in_process(ray_run: dict, sequential: dict) -> None:
    results = ray_run["results"]
    assert len(results) == len(sequential)
    assert by_id(results) == sequential  # bit-identical floats: == on every history entry
    assert all(r.provenance["threads"] == 1 for r in results)


def test_ray_executor_joins_a_running_instance_and_leaves_it_running(
    ray_run: dict, spec: DataSpec, grid: tuple, sequential: dict
) -> None:
    from optreg.executors.ray import RayExecutor

    ray = ray_run["ray"]
    guest = RayExecutor(spec, Resources())
    first = grid[0][:1]
    assert by_id(guest.map(tasks_of(first))) == {first[0].run_id: sequential[first[0].run_id]}
    assert not guest._started
    guest.close()
    assert ray.is_initialized()


def test_ray_task_errors_and_dead_workers_become_failed_results(
    ray_run: dict, spec: DataSpec, grid: tuple, sequential: dict
) -> None:
    from optreg.executors.ray import RayExecutor

    configs = grid[0]
    crash_id, raise_id = configs[0].run_id, configs[1].run_id

    def flaky(arrays: dict, task: Task, resources: Resources) -> dict:  # pickled by value
        import os

        from optreg.config import RunConfig
        from optreg.executors.ray import _execute_remote

        run_id = RunConfig.from_dict(task.config).run_id
        if run_id == crash_id:
            os._exit(1)  # the worker process dies mid-task
        if run_id == raise_id:
            raise RuntimeError("boom inside Ray")
        return _execute_remote(arrays, task, resources)

    executor = RayExecutor(spec, Resources())
    executor._target = flaky
    results = {r.id: r for r in executor.map(tasks_of(configs))}
    executor.close()
    assert set(results) == {c.run_id for c in configs}
    assert results[crash_id].status == "failed"
    assert "Ray worker died" in (results[crash_id].error or "")
    assert results[raise_id].status == "failed"
    assert "RuntimeError: boom inside Ray" in (results[raise_id].error or "")
    others = {k: v for k, v in results.items() if k not in (crash_id, raise_id)}
    assert by_id(others.values()) == {k: sequential[k] for k in others}


# --- the data: checked once before any worker, then shared --------------------------------------


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("problem", ["corrupt-file", "train-size-too-large"])
def test_a_data_problem_is_a_clean_error_before_any_worker_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    workers: int, problem: str,
) -> None:
    folder = write_synthetic_cifar10(tmp_path / "data", n_train=256, n_test=64)
    options = ["--train-size", "300"]  # the files hold 256
    if problem == "corrupt-file":
        (folder / "data_batch_3").write_bytes((folder / "data_batch_3").read_bytes()[:1000])
        options = []

    def no_worker(pool: _Pool) -> None:
        raise AssertionError("a worker process started")

    monkeypatch.setattr(_Pool, "_start", no_worker)
    code = main(["study", "seed", "--data-dir", str(tmp_path / "data"), "--only", "adam,adamw",
                 "--epochs", "1", "--workers", str(workers), "--no-progress",
                 "--out", str(tmp_path / "out"), *options])
    err = capsys.readouterr().err
    assert code == 2, err
    expected = {"corrupt-file": f"optreg: error: {folder / 'data_batch_3'}: not a valid CIFAR-10",
                "train-size-too-large": "optreg: error: train_size=300 but train files hold "
                                        "only 256 images"}[problem]
    assert expected in err
    assert "Traceback" not in err and "worker process died" not in err


def maps(pid: int) -> list[tuple[int, int, str, str]]:
    """``/proc/PID/maps``: (start, end, device, inode) of each mapping."""
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span, _perms, _offset, device, inode = line.split()[:5]
        start, end = (int(x, 16) for x in span.split("-"))
        regions.append((start, end, device, inode))
    return regions


@pytest.mark.skipif(sys.platform != "linux", reason="reads the workers' mappings from /proc")
def test_workers_map_the_one_shared_copy_of_given_tensors(
    spec: DataSpec, grid: tuple[list[RunConfig], dict], sequential: dict
) -> None:
    data = spec.load()
    executor = LocalExecutor(data, Resources(), workers=2)
    results = executor.map(tasks_of(grid[0]))  # four runs: both workers busy at the first result
    first = next(results)
    assert executor._pool is not None
    shipped = executor._pool._shipped
    for name, given in [("train_images", data.train.images), ("test_labels", data.test.labels)]:
        assert shipped[name].is_shared() and torch.equal(shipped[name], given)
        assert not given.is_shared(), "the given tensors are left as they are"
        address = shipped[name].data_ptr()
        (region,) = [r for r in maps(os.getpid()) if r[0] <= address < r[1]]
        file = region[2:]  # a file in shared memory (a device and an inode), not a private copy
        assert file[1] != "0"
        for worker in executor._pool._workers:
            assert file in [r[2:] for r in maps(worker.process.pid)], name
    assert by_id([first, *results]) == sequential


def test_without_shared_memory_each_worker_gets_a_copy(
    spec: DataSpec, grid: tuple[list[RunConfig], dict], sequential: dict,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_shm(self: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("unable to allocate shared memory(shm) for file </torch_1_2_3>: "
                           "No space left on device (28)")

    monkeypatch.setattr(torch.Tensor, "share_memory_", no_shm)
    executor = LocalExecutor(spec, Resources(), workers=2)
    with pytest.warns(RuntimeWarning, match=r"the data cannot be put in shared memory \(unable "
                      r"to allocate .*No space left on device \(28\)\); each worker process "
                      "gets its own copy instead"):
        assert by_id(executor.map(tasks_of(grid[0]))) == sequential


# --- resume -------------------------------------------------------------------------------------


class Recording:
    """Wraps an executor: records the tasks it is given and the results it yields; optionally
    raises KeyboardInterrupt (a Ctrl-C) after ``interrupt_after`` results."""

    def __init__(self, inner: Executor, interrupt_after: int | None = None) -> None:
        self.inner, self.interrupt_after = inner, interrupt_after
        self.given: list[Task] = []
        self.yielded: list[str] = []

    def map(self, tasks: list[Task]) -> Iterator[RunResult]:
        self.given.extend(tasks)
        for result in self.inner.map(tasks):
            self.yielded.append(result.id)
            yield result
            if len(self.yielded) == self.interrupt_after:
                raise KeyboardInterrupt

    def close(self) -> None:
        self.inner.close()


def test_resume_after_an_interruption(
    tmp_path: Path, spec: DataSpec, grid: tuple, sequential: dict
) -> None:
    configs, description = grid
    study = Study("sweep", "sweep", grid=description["grid"])
    identity = Identity("sweep", None, 1)
    first = Recording(LocalExecutor(spec, Resources()), interrupt_after=1)
    with StudyFolder.claim(tmp_path, identity, resume=False) as folder, \
            pytest.raises(KeyboardInterrupt):
        execute_study(configs, study, folder, first, progress=False)
    assert len(first.yielded) == 1  # in-process: the other runs never started
    assert len(list((tmp_path / "runs").glob("*.json"))) == 1

    second = Recording(LocalExecutor(spec, Resources()))
    with StudyFolder.claim(tmp_path, identity, resume=True) as folder:
        out = execute_study(configs, study, folder, second, progress=False)
    done = first.yielded[0]
    assert done not in [RunConfig.from_dict(t.config).run_id for t in second.given]
    assert len(second.given) == len(configs) - 1  # the finished run is not run again
    assert sorted(first.yielded + second.yielded) == sorted(c.run_id for c in configs)
    assert [r.id for r in out.runs] == [c.run_id for c in configs]  # the configs' order
    assert by_id(out.runs) == sequential  # identical to the uninterrupted runs
    assert not (tmp_path / "checkpoints").exists()


# --- without Ray ------------------------------------------------------------------------------


def test_ray_executor_without_ray_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, spec: DataSpec
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.delitem(sys.modules, "optreg.executors.ray", raising=False)
    module = importlib.import_module("optreg.executors.ray")  # importing needs no Ray
    with pytest.raises(ImportError, match=re.escape(
            "the Ray executor needs ray: pip install 'optreg[ray]'")):
        module.RayExecutor(spec, Resources())


def test_ray_executor_rejects_bad_arguments(spec: DataSpec) -> None:
    pytest.importorskip("ray")
    from optreg.executors.ray import RayExecutor

    with pytest.raises(ValueError, match="num_cpus must be >= 1"):
        RayExecutor(spec, Resources(), num_cpus=0)
    with pytest.raises(ValueError, match="num_cpus sizes a local Ray instance"):
        RayExecutor(spec, Resources(), address="auto", num_cpus=2)
    assert list(RayExecutor(spec, Resources()).map([])) == []  # nothing to do: no Ray started

