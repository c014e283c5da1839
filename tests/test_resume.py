"""Resume: an interrupted run or study continues to the same bits as an uninterrupted one.

Runs are interrupted right after an end-of-epoch checkpoint is written (a KeyboardInterrupt
raised from a wrapped ``save_checkpoint``), studies also by a wrapping executor, and one study
is killed with SIGKILL in a subprocess.
"""

from __future__ import annotations

import importlib
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from optreg.cli import main
from optreg.config import RunConfig
from optreg.data import Cifar10
from optreg.executors.base import Resources, Task, failed_result
from optreg.executors.local import LocalExecutor
from optreg.models import LeNet5
from optreg.results import RunResult, Study, StudyResult, load_results
from optreg.studies import seed_study
from optreg.studies.execute import execute_study
from optreg.studies.output import Identity, OutputError, StudyFolder
from optreg.training import run

RUN_MODULE = importlib.import_module("optreg.training.run")  # the module, not the function
Small = Callable[..., RunConfig]
TIMING = {"wall_s", "train_s", "eval_s", "train_img_per_s", "provenance"}
HISTORY_TIMING = {"train_s", "eval_s"}
STUDY_TIMING = {"machine", "started_at", "finished_at", "wall_s"}


def compared(result: RunResult) -> dict[str, Any]:
    """A run result without its timings and provenance."""
    data = {k: v for k, v in result.to_dict().items() if k not in TIMING}
    data["history"] = {k: v for k, v in data["history"].items() if k not in HISTORY_TIMING}
    return data


def comparable(results: StudyResult) -> dict[str, Any]:
    """A study's results without timings, dates and the machine description."""
    study = {k: v for k, v in results.study.to_dict().items() if k not in STUDY_TIMING}
    return {"study": study, "runs": [compared(r) for r in results.runs]}


def study_record(description: dict[str, Any]) -> Study:
    return Study(description["name"], description["kind"], matches=description["matches"])


def folder(out: Path, *, resume: bool) -> StudyFolder:
    return StudyFolder.claim(out, Identity("seed", None, 1), resume=resume)


def interrupt_at_checkpoint(monkeypatch: pytest.MonkeyPatch, nth: int) -> list[int]:
    """Raise KeyboardInterrupt right after the ``nth`` checkpoint is written (1-based).

    Returns the list of epochs checkpointed so far (it grows as runs save).
    """
    original = RUN_MODULE.save_checkpoint
    saved: list[int] = []

    def save_then_interrupt(path: str | Path, state: dict[str, Any]) -> None:
        original(path, state)
        saved.append(state["epoch"])
        if len(saved) == nth:
            raise KeyboardInterrupt

    monkeypatch.setattr(RUN_MODULE, "save_checkpoint", save_then_interrupt)
    return saved


# --- one run -----------------------------------------------------------------------------------

RESUMED = [
    ({}, 1),
    ({}, 2),
    ({"shuffle": True, "schedule": "cosine", "decay_mode": "decoupled", "weight_decay": 0.1}, 1),
    ({"decay_mode": "loss", "weight_decay": 0.1 / 32, "amsgrad": True}, 2),
    ({"optimizer": "sgd", "implementation": "torch", "lr": 0.05, "momentum": 0.9,
      "shuffle": True}, 1),
]


@pytest.mark.parametrize(("changes", "after"), RESUMED,
                         ids=["exercise-1", "exercise-2", "shuffle-cosine-adamw-1",
                              "l2-loss-amsgrad-2", "sgd-shuffle-1"])
def test_interrupted_run_resumes_bit_identically(
    data: Cifar10, small: Small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    changes: dict[str, Any], after: int,
) -> None:
    config = small(epochs=3, **changes)
    uninterrupted = run(config, data)
    checkpoint = tmp_path / "run.pt"
    saved = interrupt_at_checkpoint(monkeypatch, after)
    with pytest.raises(KeyboardInterrupt):
        run(config, data, checkpoint=checkpoint)
    assert saved == list(range(1, after + 1))
    assert torch.load(checkpoint, weights_only=True)["epoch"] == after

    lines: list[str] = []
    resumed = run(config, data, checkpoint=checkpoint, log=lines.append)
    assert lines[0] == f"adam: resumed after epoch {after}"
    assert saved == [1, 2, 3]  # epochs 1..after were not trained (nor saved) again
    assert compared(resumed) == compared(uninterrupted)
    assert len(resumed.history.train_s) == 3


def test_checkpoint_of_a_finished_run_gives_its_result_again(
    data: Cifar10, small: Small, tmp_path: Path
) -> None:
    config = small(epochs=2)
    checkpoint = tmp_path / "run.pt"
    first = run(config, data, checkpoint=checkpoint)
    lines: list[str] = []
    again = run(config, data, checkpoint=checkpoint, log=lines.append)
    assert lines == ["adam: resumed after epoch 2"]  # and no epoch trained
    assert compared(again) == compared(first)


def test_checkpoint_holds_plain_state_and_loads_with_weights_only(
    data: Cifar10, small: Small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = small(epochs=3, shuffle=True, schedule="cosine", augment=True, valid_size=64,
                   trace_steps=5)
    checkpoint = tmp_path / "run.pt"
    interrupt_at_checkpoint(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run(config, data, checkpoint=checkpoint)
    state = torch.load(checkpoint, weights_only=True)
    assert {"config", "epoch", "model", "optimizer", "scheduler", "torch_rng", "generators",
            "history", "best_weights", "trace"} <= set(state)
    assert state["config"] == config.to_dict() and state["epoch"] == 2
    assert state["model"].keys() == LeNet5().state_dict().keys()
    assert state["scheduler"]["last_epoch"] == 2 * 8  # stepped once per batch
    assert len(state["generators"]) == 2  # the data order's and the augmentation's
    assert all(isinstance(g, torch.Tensor) for g in state["generators"])
    assert state["best_weights"].keys() == state["model"].keys()
    assert len(state["trace"]["update_rms"]) == 5
    assert all(len(values) == 2 for values in state["history"].values())
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


def test_checkpoint_of_another_config_is_refused(
    data: Cifar10, small: Small, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint = tmp_path / "run.pt"
    interrupt_at_checkpoint(monkeypatch, 1)
    with pytest.raises(KeyboardInterrupt):
        run(small(epochs=3), data, checkpoint=checkpoint)
    with pytest.raises(ValueError, match=f"{checkpoint}: this checkpoint belongs to another "
                                         "config than run 'adam'"):
        run(small(epochs=3, lr=2e-3), data, checkpoint=checkpoint)


@pytest.mark.parametrize("damage", ["garbage", "empty", "truncated"])
def test_corrupt_checkpoint_is_a_clear_value_error(
    data: Cifar10, small: Small, tmp_path: Path, damage: str
) -> None:
    config = small(epochs=1)
    checkpoint = tmp_path / "run.pt"
    run(config, data, checkpoint=checkpoint)
    content = checkpoint.read_bytes()
    checkpoint.write_bytes({"garbage": b"not a checkpoint\x00" * 10, "empty": b"",
                            "truncated": content[: len(content) // 2]}[damage])
    with pytest.raises(ValueError) as error:
        run(config, data, checkpoint=checkpoint)
    message = str(error.value)
    assert message.startswith(f"{checkpoint}: unreadable checkpoint (")
    assert message.endswith("); delete it to restart the run")


# --- a study -----------------------------------------------------------------------------------


class CountingExecutor:
    """Passes tasks to ``inner`` and remembers the names of the runs it was given."""

    def __init__(self, inner: LocalExecutor) -> None:
        self.inner, self.given = inner, []

    def map(self, tasks: list[Task]) -> Iterator[RunResult]:
        self.given.extend(RunConfig.from_dict(t.config).name for t in tasks)
        yield from self.inner.map(tasks)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture(scope="module")
def three_runs() -> tuple[list[RunConfig], dict[str, Any]]:
    return seed_study(only=("torch-adam", "adam", "adamw"), epochs=2, train_size=256,
                      test_size=128)


@pytest.fixture(scope="module")
def uninterrupted(
    data: Cifar10, three_runs: tuple[list[RunConfig], dict],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("uninterrupted")
    configs, description = three_runs
    with folder(out, resume=False) as claimed:
        execute_study(configs, study_record(description), claimed,
                      LocalExecutor(data, Resources()), progress=False)
    return load_results(out)


def test_a_study_refuses_a_folder_with_results_unless_resuming(
    data: Cifar10, uninterrupted: StudyResult, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    (out / ".optreg-study.json").write_text('{"optreg_study": {"study": "seed", "data": null, '
                                            '"threads": 1}}')
    (out / "runs" / "abc.json").write_text("{}")
    with pytest.raises(OutputError, match="already holds results; add --resume"):
        folder(out, resume=False)
    (tmp_path / "file").write_text("hello")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        folder(tmp_path / "file", resume=False)


def test_interrupted_study_resumes_skipping_finished_runs(
    data: Cifar10, three_runs: tuple[list[RunConfig], dict], uninterrupted: dict[str, Any],
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    configs, description = three_runs
    study = study_record(description)
    out = tmp_path / "out"
    # 2 epochs per run: checkpoint 3 is the second run's first epoch.
    interrupt_at_checkpoint(monkeypatch, 3)
    first = CountingExecutor(LocalExecutor(data, Resources()))
    with folder(out, resume=False) as claimed, pytest.raises(KeyboardInterrupt):
        execute_study(configs, study, claimed, first, progress=False)
    assert first.given == ["torch-adam", "adam", "adamw"]
    assert [r.name for r in load_results(out).runs] == ["torch-adam"]
    assert [p.stem for p in (out / "checkpoints").glob("*.pt")] == [configs[1].run_id]
    first_session = load_results(out).study

    capsys.readouterr()
    second = CountingExecutor(LocalExecutor(data, Resources()))
    with folder(out, resume=True) as claimed:
        resumed = execute_study(configs, study, claimed, second, progress=False)
    assert second.given == ["adam", "adamw"]  # torch-adam finished: not run again
    captured = capsys.readouterr()
    assert "resume: 1 of 3 runs already finished" in captured.err
    assert "adam: resumed after epoch 1" in captured.err  # per-run lines go to stderr
    assert comparable(load_results(out)) == comparable(uninterrupted)
    assert comparable(resumed) == comparable(uninterrupted)
    assert not (out / "checkpoints").exists()
    # The study started with its first session, and its wall time counts both.
    assert resumed.study.started_at == first_session.started_at
    assert resumed.study.wall_s > first_session.wall_s > 0

    third = CountingExecutor(LocalExecutor(data, Resources()))
    with folder(out, resume=True) as claimed:
        again = execute_study(configs, study, claimed, third, progress=False)
    assert third.given == []
    assert comparable(again) == comparable(uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "workers", "returncode"),
    [
        (signal.SIGKILL, 1, -signal.SIGKILL),  # no cleanup, no finally blocks
        (signal.SIGINT, 2, 130),  # Ctrl-C: the workers are stopped, exit code 130
    ],
    ids=["sigkill-in-process", "sigint-two-workers"],
)
def test_study_killed_mid_run_resumes_to_the_same_results(
    data_dir: Path, tmp_path: Path, sig: signal.Signals, workers: int, returncode: int
) -> None:
    """Signal a real ``optreg study seed`` process after its first checkpoint, resume, compare."""
    common = ["study", "seed", "--data-dir", str(data_dir), "--only", "adam,torch-adam",
              "--epochs", "3", "--workers", str(workers), "--no-progress", "--device", "cpu",
              "--train-size", "512", "--test-size", "128"]  # 16 steps per epoch
    killed = tmp_path / "killed"
    with open(tmp_path / "stdout", "wb") as stdout, open(tmp_path / "stderr", "wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "optreg.cli", *common, "--out",
                                    str(killed)], stdout=stdout, stderr=stderr)
        try:
            deadline = time.monotonic() + 300  # a safety net, not a timing assertion
            while not (list(killed.glob("checkpoints/*.pt")) or list(killed.glob("runs/*.json"))):
                assert process.poll() is None, (tmp_path / "stderr").read_text()
                assert time.monotonic() < deadline, "no checkpoint appeared"
                time.sleep(0.01)
            process.send_signal(sig)
            process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=60)
    assert process.returncode == returncode, (tmp_path / "stderr").read_text()
    partial = load_results(killed)  # results.json is whole, valid JSON
    assert len(partial.runs) < 2, "the study was killed before it finished"
    for stored in killed.glob("runs/*.json"):
        json.loads(stored.read_text())
    for checkpoint in killed.glob("checkpoints/*.pt"):
        assert torch.load(checkpoint, weights_only=True)["epoch"] >= 1

    assert main([*common, "--out", str(killed), "--resume"]) == 0
    reference = tmp_path / "reference"
    assert main([*common, "--out", str(reference)]) == 0
    assert comparable(load_results(killed))["runs"] == comparable(load_results(reference))["runs"]
    assert not (killed / "checkpoints").exists()


class ObservingExecutor:
    """Runs nothing; records what results.json held when the tasks arrived."""

    def __init__(self, out: Path) -> None:
        self.out, self.given, self.listed = out, [], []

    def map(self, tasks: list[Task]) -> Iterator[RunResult]:
        self.given = [RunConfig.from_dict(t.config).name for t in tasks]
        self.listed = [(r.name, r.status) for r in load_results(self.out).runs]
        yield from ()

    def close(self) -> None:
        pass


def test_a_stored_failed_run_is_retried_and_listed_until_then(
    three_runs: tuple[list[RunConfig], dict], uninterrupted: StudyResult, tmp_path: Path
) -> None:
    configs, description = three_runs
    out = tmp_path / "out"
    with folder(out, resume=False) as claimed:
        for result in uninterrupted.runs[:2]:
            claimed.save_run(result)
        claimed.save_run(failed_result(configs[2], "RuntimeError: boom"))
        # A stop between storing a run and removing its checkpoint leaves the checkpoint.
        (out / "checkpoints").mkdir()
        (out / "checkpoints" / f"{configs[0].run_id}.pt").write_bytes(b"stale")
    observer = ObservingExecutor(out)
    with folder(out, resume=True) as claimed:
        result = execute_study(configs, study_record(description), claimed, observer,
                               progress=False)
    assert observer.given == ["adamw"]  # only the failed run runs again
    assert observer.listed == [("torch-adam", "ok"), ("adam", "ok"), ("adamw", "failed")]
    assert [r.status for r in result.runs] == ["ok", "ok", "failed"]
    assert not (out / "checkpoints").exists()  # the finished run's checkpoint is gone
