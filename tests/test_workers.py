"""Worker processes live and die with their study: kill -9, Ctrl-C, a dead worker, close().

Real ``optreg study seed`` processes run in their own session (as from a terminal), so the test
can signal the whole process group as a terminal does and then look for any process left in
that session (in /proc: these tests are about Linux process lifetimes). Others drive a
:class:`LocalExecutor` in this process and signal its workers directly.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from optreg.cli import main
from optreg.config import RunConfig
from optreg.data import load_cifar10
from optreg.executors.base import Resources, Task
from optreg.executors.local import DataSpec, LocalExecutor, _for_workers, _Pool
from optreg.results import Study, load_results
from optreg.studies import seed_study
from optreg.studies.execute import execute_study
from optreg.studies.output import Identity, StudyFolder
from optreg.studies.sweep import sweep_study
from test_resume import comparable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="reads process states from /proc"),
]

SIZES = {"epochs": 3, "train_size": 512, "test_size": 128}  # 16 steps per epoch
SAFETY_S = 300  # waits for training to reach a point; a safety net, not a timing assertion


def study_args(data_dir: Path, workers: int) -> list[str]:
    return ["study", "seed", "--data-dir", str(data_dir), "--only", "adam,torch-adam,adamw",
            "--epochs", str(SIZES["epochs"]), "--train-size", str(SIZES["train_size"]),
            "--test-size", str(SIZES["test_size"]), "--workers", str(workers), "--no-progress",
            "--device", "cpu"]


def session_processes(sid: int) -> list[int]:
    """Processes of session ``sid`` still alive (zombies are dead: nothing left to reap them)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited meanwhile
            continue
        state, _ppid, _pgrp, session = stat.rpartition(")")[2].split()[:4]
        if int(session) == sid and state != "Z":
            alive.append(int(entry.name))
    return alive


def wait_until_gone(sid: int, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    while (left := session_processes(sid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"still running after {within_s} s: {[cmdline(p) for p in left]}"


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "(exited)"


def workers_of(sid: int) -> list[int]:
    """The spawned worker processes of session ``sid``."""
    return [p for p in session_processes(sid) if "--multiprocessing-fork" in cmdline(p)]


def blocks_sigint(pid: int) -> bool:
    """Whether ``pid`` has SIGINT blocked (a worker does until it has started)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # exited meanwhile
        return False
    blocked = int(next(line for line in status.splitlines() if line.startswith("SigBlk:"))
                  .split()[1], 16)
    return bool(blocked & (1 << (signal.SIGINT - 1)))


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below ``folder``: its size and modification time."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def wait_for(condition: Any, process: subprocess.Popen | None = None, what: str = "") -> None:
    deadline = time.monotonic() + SAFETY_S
    while not condition():
        assert process is None or process.poll() is None, f"the study ended before {what}"
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.01)


def kill_leftovers(process: subprocess.Popen) -> None:
    """Leave no process of the study's session behind, whatever failed."""
    if process.poll() is None:
        process.kill()
    for pid in session_processes(process.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def start_study(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """``optreg`` in a new session (its own process group, as a terminal's job)."""
    with open(tmp_path / "stderr", "wb") as stderr:
        return subprocess.Popen([sys.executable, "-m", "optreg.cli", *args],
                                stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def test_kill_9_of_the_parent_ends_every_process_and_resume_matches(
    data_dir: Path, tmp_path: Path
) -> None:
    configs, _ = seed_study(only=("adam", "torch-adam", "adamw"), **SIZES)
    out = tmp_path / "killed"
    args = [*study_args(data_dir, workers=2), "--out", str(out)]
    process = start_study(args, tmp_path)
    try:
        wait_for(lambda: list(out.glob("checkpoints/*.pt")), process, "a checkpoint")
        assert len(workers_of(process.pid)) == 2
        process.kill()
        process.wait(timeout=60)
        wait_until_gone(process.pid)  # the workers, and multiprocessing's resource tracker
    finally:
        kill_leftovers(process)
    after_kill = snapshot(out)
    time.sleep(1.0)
    assert snapshot(out) == after_kill, "something wrote into --out after the kill"
    queued = configs[2].run_id  # two workers: the third run was waiting for one
    assert not any(queued in name for name in after_kill), "the queued run started"

    assert main([*args, "--resume"]) == 0
    reference = tmp_path / "reference"
    # One run at a time, at the threads per run of the killed study (the bits may depend on it).
    threads = load_results(out).study.execution["threads"]
    assert main([*study_args(data_dir, workers=1), "--threads", str(threads),
                 "--out", str(reference)]) == 0
    assert comparable(load_results(out))["runs"] == comparable(load_results(reference))["runs"]


STARTUP_ATTEMPTS = 5  # how often to try to catch the workers while they start up


@pytest.mark.parametrize("moment", ["while-workers-start", "while-runs-train"])
def test_ctrl_c_in_a_terminal_stops_everything_without_worker_tracebacks(
    data_dir: Path, tmp_path: Path, moment: str
) -> None:
    # The start-up window (spawn + import torch) lasts a second or so: on a fast machine a poll
    # can miss it, so the start-up case tries again until the SIGINT did land in it.
    for attempt in range(STARTUP_ATTEMPTS if moment == "while-workers-start" else 1):
        caught_startup = interrupt_a_study(data_dir, tmp_path / f"attempt{attempt}", moment)
        if moment != "while-workers-start" or caught_startup:
            return
    pytest.fail(f"the workers had always started already ({STARTUP_ATTEMPTS} attempts): "
                "Ctrl-C during start-up was not tested")


def interrupt_a_study(data_dir: Path, tmp_path: Path, moment: str) -> bool:
    """Ctrl-C a study at ``moment`` and check that it stopped cleanly; whether a worker was
    still starting."""
    tmp_path.mkdir()
    out = tmp_path / "out"
    process = start_study([*study_args(data_dir, workers=2), "--out", str(out)], tmp_path)
    starting = [False]
    try:
        if moment == "while-workers-start":
            wait_for(lambda: len(workers_of(process.pid)) == 2, process, "two workers")
            starting = [blocks_sigint(pid) for pid in workers_of(process.pid)]
        else:
            wait_for(lambda: list(out.glob("checkpoints/*.pt")), process, "a checkpoint")
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        process.wait(timeout=60)
        wait_until_gone(process.pid)
    finally:
        kill_leftovers(process)
    stderr = (tmp_path / "stderr").read_text()
    assert process.returncode == 130, stderr
    assert "stopped by SIGINT" in stderr and "leaked" not in stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    return any(starting)


# --- one executor in this process ------------------------------------------------------------


@pytest.fixture(scope="module")
def grid() -> list[RunConfig]:
    configs, _ = sweep_study(lr=[1e-3, 3e-3], weight_decay=[1e-2],
                             mode=["coupled", "decoupled"], seeds=[0], **SIZES)
    return configs


def test_a_killed_worker_fails_only_its_run_and_is_replaced(
    data_dir: Path, tmp_path: Path, grid: list[RunConfig]
) -> None:
    """Four runs on two workers; one worker is killed during its first run."""
    executor = LocalExecutor(DataSpec(str(data_dir)), Resources(), workers=2)
    checkpoints = tmp_path / "out" / "checkpoints"
    victim: dict[str, Any] = {}
    pids: set[int] = set()
    done = threading.Event()

    def kill_one_worker() -> None:
        while not done.is_set():
            pool = executor._pool
            busy = [w for w in (pool._workers if pool else []) if w.task is not None]
            pids.update(w.process.pid for w in busy)
            for worker in busy if not victim else []:
                run_id = RunConfig.from_dict(worker.task.config).run_id
                if (checkpoints / f"{run_id}.pt").exists():  # its first epoch is done
                    victim["id"] = run_id
                    os.kill(worker.process.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_one_worker)
    watcher.start()
    study, identity = Study("grid", "sweep"), Identity("grid", None, 1)
    try:
        with StudyFolder.claim(tmp_path / "out", identity, resume=False) as folder:
            first = execute_study(grid, study, folder, executor, progress=False)
    finally:
        done.set()
        watcher.join()
    status = {r.id: r.status for r in first.runs}
    assert status == {c.run_id: "failed" if c.run_id == victim["id"] else "ok" for c in grid}
    failed = next(r for r in first.runs if r.status == "failed")
    assert (failed.error or "").endswith(
        ": its worker process died (signal 9: SIGKILL); rerun with --resume")
    assert len(pids) == 3, "a new worker replaced the dead one"
    assert (checkpoints / f"{victim['id']}.pt").exists()  # kept for --resume

    with StudyFolder.claim(tmp_path / "out", identity, resume=True) as folder:
        resumed = execute_study(grid, study, folder, LocalExecutor(
            DataSpec(str(data_dir)), Resources(), workers=2), progress=False)
    with StudyFolder.claim(tmp_path / "reference", identity, resume=False) as folder:
        reference = execute_study(grid, study, folder, LocalExecutor(
            DataSpec(str(data_dir)), Resources()), progress=False)
    assert comparable(resumed)["runs"] == comparable(reference)["runs"]


def test_close_kills_a_worker_that_ignores_sigterm(data_dir: Path, grid: list[RunConfig]) -> None:
    quick, slow = grid[0], RunConfig.from_dict({**grid[1].to_dict(), "epochs": 50})
    executor = LocalExecutor(DataSpec(str(data_dir)), Resources(), workers=2)
    results = executor.map([Task(quick.to_dict()), Task(slow.to_dict())])
    ignored = signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the workers inherit SIG_IGN
    try:
        assert next(results).id == quick.run_id  # the workers start here
    finally:
        signal.signal(signal.SIGTERM, ignored)
    assert executor._pool is not None
    (busy,) = [w for w in executor._pool._workers if w.task is not None]
    executor.close()
    assert busy.exitcode == -signal.SIGKILL
    results.close()


def test_a_task_sent_to_a_dead_worker_goes_to_a_new_one(
    data_dir: Path, grid: list[RunConfig]
) -> None:
    """A worker that died after sending its result: the next task goes to a replacement."""
    pool = _Pool(_for_workers(load_cifar10(data_dir, train_size=64, test_size=32)), Resources())
    try:
        dead = pool._start()
        os.kill(dead.process.pid, signal.SIGKILL)
        dead.process.join(timeout=60)
        task = Task(grid[0].to_dict())
        queue = deque([task])
        pool._give(dead, queue)
        assert not queue and dead.exitcode == -signal.SIGKILL
        assert [w.task for w in pool._workers] == [task]
    finally:
        pool.close()
    assert pool._workers == []


def test_a_worker_exits_when_its_pipe_from_this_process_closes(data_dir: Path) -> None:
    """The watchdog, all that ends workers where PR_SET_PDEATHSIG does not exist: this process
    holds the write end of each worker's start-up pipe, which closes when it dies."""
    pool = _Pool(_for_workers(load_cifar10(data_dir, train_size=64, test_size=32)), Resources())
    try:
        worker = pool._start()
        wait_for(lambda: not blocks_sigint(worker.process.pid), what="the worker is set up")
        worker.process._popen.finalizer()  # closes this side of the pipe, as dying would
        wait_for(lambda: worker.process.exitcode is not None, what="the worker exits")
        assert worker.process.exitcode == 1  # the watchdog's exit, not a signal
    finally:
        pool.close()
