"""Tests for optreg.training.tensorboard: a run's TensorBoard log, read back by TensorBoard itself.

Event files are read with the EventAccumulator that TensorBoard's server runs on each run
directory (``plugin_event_accumulator``: scalars as float32 tensors, purges applied) and, for the
hparams dashboard, with the hparams plugin's own session-group handler over that data.
"""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorboard.backend.event_processing.plugin_event_accumulator import (
    TENSORS,
    EventAccumulator,
)
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from tensorboard.util.tensor_util import make_ndarray

from optreg.config import RunConfig
from optreg.training.tensorboard import (
    EPOCH_TAGS,
    MISSING_HINT,
    RunLog,
    check_tensorboard,
    flat_hparams,
    run_dir_name,
)

EPOCH = {  # one epoch's scalars; several values are not float32 numbers
    "train_loss": 2.302585092994046,
    "train_objective": 2.4,
    "valid_loss": 1.1,
    "valid_acc": 0.3141,
    "lr": 1e-3,
    "img_per_s": 8123.456,
}


def f32(value: float) -> float:
    """``value`` as TensorBoard stores a scalar: rounded to float32."""
    return float(np.float32(value))


def accumulator(run_dir: Path) -> EventAccumulator:
    events = EventAccumulator(str(run_dir), size_guidance={TENSORS: 0})
    events.Reload()
    return events


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of the run: tag → [(step, value)], values exactly as stored."""
    events = accumulator(run_dir)
    series = {}
    for tag in events.Tags()[TENSORS]:
        if events.SummaryMetadata(tag).plugin_data.plugin_name == "scalars":
            values = [(e.step, make_ndarray(e.tensor_proto)) for e in events.Tensors(tag)]
            assert all(v.dtype == np.float32 and v.shape == () for _, v in values)
            series[tag] = [(step, float(v)) for step, v in values]
    return series


def read_hparams(run_dir: Path) -> tuple[dict[str, Any], int]:
    """The session's hparams (each as the Python value of its proto field) and its end status."""
    content = accumulator(run_dir).PluginTagToContent(metadata.PLUGIN_NAME)
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content[metadata.SESSION_START_INFO_TAG]
    ).session_start_info
    end = plugin_data_pb2.HParamsPluginData.FromString(
        content[metadata.SESSION_END_INFO_TAG]
    ).session_end_info
    values = {key: getattr(v, v.WhichOneof("kind")) for key, v in start.hparams.items()}
    return values, end.status


def epoch(scale: float) -> dict[str, float]:
    return {name: value * scale for name, value in EPOCH.items()}


# --- what a run writes -----------------------------------------------------------------------


def test_epochs_and_hparams_read_back_exactly(tmp_path: Path) -> None:
    config = RunConfig(
        name="adam-l2", seed=3, weight_decay=5e-4, decay_mode="coupled", train_size=512
    )
    name = run_dir_name(config.name, config.seed, config.run_id)
    assert name == f"adam-l2-seed3-{config.run_id}"
    hparams = flat_hparams({**config.to_dict(), "run_id": config.run_id})
    with RunLog(tmp_path, name) as log:
        for e in (1, 2, 3):
            log.log_epoch(e, epoch(1 / e))
        log.log_hparams(hparams, {"train_acc": 0.61, "test_acc": 0.5678, "valid_loss": None})

    run_dir = tmp_path / name
    assert [p.name for p in tmp_path.iterdir()] == [name]  # one run, one directory ...
    assert all(p.is_file() for p in run_dir.iterdir())  # ... without subdirectories
    expected = {
        EPOCH_TAGS[key]: [(e, f32(value / e)) for e in (1, 2, 3)] for key, value in EPOCH.items()
    }
    expected |= {"final/train_acc": [(4, f32(0.61))], "final/test_acc": [(4, f32(0.5678))]}
    assert read_scalars(run_dir) == expected  # exact, and no final/valid_loss (None)

    values, status = read_hparams(run_dir)
    assert status == api_pb2.STATUS_SUCCESS
    assert values == {key: value for key, value in hparams.items() if value is not None}
    assert "test_size" not in values  # None in the config
    assert values["betas[0]"] == 0.9 and values["betas[1]"] == 0.999
    assert values["shuffle"] is False and values["flush_denormal"] is True  # bools stay bools
    assert values["name"] == "adam-l2" and values["run_id"] == config.run_id
    assert values["seed"] == 3.0 and values["weight_decay"] == 5e-4  # numbers as float64


def test_failed_run_is_marked_as_failed(tmp_path: Path) -> None:
    with RunLog(tmp_path, "diverged") as log:
        log.log_epoch(1, {"train_loss": 9.0})
        log.log_hparams({"lr": 10.0}, {"test_acc": None}, succeeded=False)
    assert read_hparams(tmp_path / "diverged") == ({"lr": 10.0}, api_pb2.STATUS_FAILURE)
    assert read_scalars(tmp_path / "diverged") == {"loss/train": [(1, 9.0)]}


def test_tensorboard_hparams_dashboard_lists_each_run(tmp_path: Path) -> None:
    from tensorboard import context
    from tensorboard.backend.event_processing.data_provider import MultiplexerDataProvider
    from tensorboard.backend.event_processing.plugin_event_multiplexer import EventMultiplexer
    from tensorboard.plugins.base_plugin import TBContext
    from tensorboard.plugins.hparams import backend_context, list_session_groups

    for seed, status in ((0, True), (1, False)):
        with RunLog(tmp_path, run_dir_name("adam", seed, f"id{seed}")) as log:
            log.log_epoch(1, {"valid_acc": 0.25 + seed})
            log.log_hparams(
                {"name": "adam", "seed": seed, "shuffle": True},
                {"test_acc": 0.5 + seed},
                succeeded=status,
            )

    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(tmp_path))
    multiplexer.Reload()
    provider = MultiplexerDataProvider(multiplexer, str(tmp_path))
    backend = backend_context.Context(
        TBContext(logdir=str(tmp_path), multiplexer=multiplexer, data_provider=provider)
    )
    request = api_pb2.ListSessionGroupsRequest(
        allowed_statuses=[api_pb2.STATUS_SUCCESS, api_pb2.STATUS_FAILURE], slice_size=10
    )
    response = list_session_groups.Handler(context.RequestContext(), backend, "", request).run()
    groups = {
        group.sessions[0].name: (
            {key: getattr(v, v.WhichOneof("kind")) for key, v in group.hparams.items()},
            {m.name.tag: (m.training_step, m.value) for m in group.metric_values},
            group.sessions[0].status,
        )
        for group in response.session_groups
    }
    assert groups == {
        "adam-seed0-id0": (
            {"name": "adam", "seed": 0.0, "shuffle": True},
            {"accuracy/valid": (1, 0.25), "final/test_acc": (2, 0.5)},
            api_pb2.STATUS_SUCCESS,
        ),
        "adam-seed1-id1": (
            {"name": "adam", "seed": 1.0, "shuffle": True},
            {"accuracy/valid": (1, 1.25), "final/test_acc": (2, 1.5)},
            api_pb2.STATUS_FAILURE,
        ),
    }


# --- resuming --------------------------------------------------------------------------------


def test_resumed_log_has_each_epoch_once(tmp_path: Path) -> None:
    # Attempt 1 logs epochs 1-3 but is killed before epoch 3's checkpoint: it resumes at 3.
    with RunLog(tmp_path, "run") as log:
        for e in (1, 2, 3):
            log.log_epoch(e, {"train_loss": 10.0 + e})
    with RunLog(tmp_path, "run", first_epoch=3) as log:
        for e in (3, 4):
            log.log_epoch(e, {"train_loss": 20.0 + e})
        log.log_hparams({"seed": 0}, {"test_acc": 0.5})
    files = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert len(files) == 2
    assert read_scalars(tmp_path / "run") == {
        "loss/train": [(1, 11.0), (2, 12.0), (3, 23.0), (4, 24.0)],
        "final/test_acc": [(5, 0.5)],
    }


def test_resume_after_the_last_epoch_replaces_the_final_record(tmp_path: Path) -> None:
    # Attempt 1 finished its epochs and wrote its final record, but the run's result was lost.
    with RunLog(tmp_path, "run") as log:
        log.log_epoch(1, {"train_loss": 1.0})
        log.log_hparams({"seed": 0}, {"test_acc": 0.25})
    with RunLog(tmp_path, "run", first_epoch=2) as log:
        log.log_hparams({"seed": 0}, {"test_acc": 0.5})
    assert read_scalars(tmp_path / "run") == {
        "loss/train": [(1, 1.0)],
        "final/test_acc": [(2, 0.5)],
    }
    events = accumulator(tmp_path / "run")
    end_records = events.Tensors(metadata.SESSION_END_INFO_TAG)
    assert [e.step for e in end_records] == [2]  # the first attempt's record is purged


def test_a_fresh_log_replaces_an_unfinished_attempt(tmp_path: Path) -> None:
    with RunLog(tmp_path, "run") as log:
        log.log_epoch(1, {"train_loss": 1.0})
        log.log_epoch(2, {"train_loss": 2.0})
    with RunLog(tmp_path, "run") as log:  # no checkpoint survived: the run starts over
        log.log_epoch(1, {"train_loss": 5.0})
    assert read_scalars(tmp_path / "run") == {"loss/train": [(1, 5.0)]}


def test_a_resumed_log_sorts_after_a_file_of_the_same_second(tmp_path: Path) -> None:
    # TensorBoard reads event files in name order: <second>.<host>.<pid>.<counter>. Make the
    # earlier attempt's file look as if it came from this very second with a large counter, so
    # that a new file made in this second would sort before it.
    with RunLog(tmp_path, "run") as log:
        log.log_epoch(1, {"train_loss": 1.0})
        log.log_epoch(2, {"train_loss": 2.0})
    (earlier,) = (tmp_path / "run").iterdir()
    parts = earlier.name.split(".")
    parts[3], parts[-1] = f"{int(time.time()):010d}", "99999"
    earlier.rename(earlier.with_name(".".join(parts)))
    with RunLog(tmp_path, "run", first_epoch=2) as log:
        log.log_epoch(2, {"train_loss": 20.0})
    names = sorted(p.name for p in (tmp_path / "run").iterdir())
    assert names[0] == ".".join(parts)
    assert read_scalars(tmp_path / "run") == {"loss/train": [(1, 1.0), (2, 20.0)]}


# --- processes -------------------------------------------------------------------------------


def write_in_child(root: str, seed: int, barrier: Any) -> None:
    """One run's log, written while another process writes its own (spawn target)."""
    with RunLog(root, run_dir_name("adam", seed, f"id{seed}")) as log:
        barrier.wait()
        for e in range(1, 4):
            log.log_epoch(e, {"train_loss": 100.0 * seed + e})
        log.log_hparams({"seed": seed}, {"test_acc": seed / 4})


@pytest.mark.slow
def test_two_processes_write_two_directories(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    barrier = spawn.Barrier(2)
    children = [
        spawn.Process(target=write_in_child, args=(str(tmp_path), seed, barrier)) for seed in (1, 2)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=120)
    assert [child.exitcode for child in children] == [0, 0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adam-seed1-id1", "adam-seed2-id2"]
    for seed in (1, 2):
        run_dir = tmp_path / f"adam-seed{seed}-id{seed}"
        assert read_scalars(run_dir) == {
            "loss/train": [(e, 100.0 * seed + e) for e in (1, 2, 3)],
            "final/test_acc": [(4, seed / 4)],
        }
        assert read_hparams(run_dir) == ({"seed": float(seed)}, api_pb2.STATUS_SUCCESS)


# --- TensorBoard missing ---------------------------------------------------------------------


def test_missing_tensorboard_gives_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for module in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)  # None: "import module" fails
    with pytest.raises(ImportError) as error:
        check_tensorboard()
    assert str(error.value) == MISSING_HINT
    assert MISSING_HINT == (
        "TensorBoard logging needs the tensorboard package: pip install 'optreg[tensorboard]'"
    )
    with pytest.raises(ImportError, match="pip install 'optreg\\[tensorboard\\]'"):
        RunLog(tmp_path, "run")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_importing_optreg_does_not_import_tensorboard() -> None:
    code = (
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'tensorboard' or name.startswith('tensorboard.'):\n"
        "            raise ImportError(f'blocked: {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import optreg, optreg.training, optreg.training.tensorboard as tb\n"
        "assert not any(m.split('.')[0] == 'tensorboard' for m in sys.modules), 'imported'\n"
        "assert 'torch.utils.tensorboard' not in sys.modules\n"
        "try:\n"
        "    tb.check_tensorboard()\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout.strip() == MISSING_HINT


# --- bad use ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "seed", "run_id", "message"),
    [
        ("", 0, "abc", "name must be non-empty"),
        ("a/b", 0, "abc", "without spaces or slashes, got 'a/b'"),
        ("a b", 0, "abc", "without spaces or slashes"),
        ("adam", -1, "abc", "seed must be an int >= 0, got -1"),
        ("adam", True, "abc", "seed must be an int >= 0, got True"),
        ("adam", 0, "", "run_id must be a non-empty string of letters and digits"),
        ("adam", 0, "../x", "run_id must be"),
    ],
)
def test_run_dir_name_rejects_bad_parts(name: str, seed: int, run_id: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_dir_name(name, seed, run_id)


@pytest.mark.parametrize(
    ("dir_name", "first_epoch", "message"),
    [
        ("a/b", 1, "dir_name must be one directory name, got 'a/b'"),
        ("..", 1, "dir_name must be one directory name"),
        ("", 1, "dir_name must be one directory name"),
        ("run", 0, "first_epoch must be an int >= 1, got 0"),
        ("run", 2.0, "first_epoch must be an int >= 1, got 2.0"),
    ],
)
def test_run_log_rejects_bad_arguments(
    tmp_path: Path, dir_name: str, first_epoch: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        RunLog(tmp_path, dir_name, first_epoch=first_epoch)
    assert list(tmp_path.iterdir()) == []


def test_bad_values_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    with RunLog(tmp_path, "run", first_epoch=2) as log:
        with pytest.raises(ValueError, match=r"epoch must be an int > 1 .* got 1"):
            log.log_epoch(1, {"train_loss": 1.0})
        with pytest.raises(ValueError, match=r"unknown epoch scalars \['loss'\]; known: "):
            log.log_epoch(2, {"train_loss": 1.0, "loss": 1.0})
        with pytest.raises(TypeError, match="valid_acc must be a real number, got str"):
            log.log_epoch(2, {"train_loss": 1.0, "valid_acc": "0.5"})
        with pytest.raises(TypeError, match="lr must be a real number, got bool"):
            log.log_epoch(2, {"lr": True})
        log.log_epoch(2, {"train_loss": 2.0})
        with pytest.raises(ValueError, match="got 2"):
            log.log_epoch(2, {"train_loss": 2.0})  # each epoch once
        with pytest.raises(TypeError, match=r"hparam 'betas' is a list; .*flat_hparams"):
            log.log_hparams({"betas": [0.9, 0.999]}, {})
        with pytest.raises(TypeError, match="metric 'test_acc' must be a real number"):
            log.log_hparams({"seed": 0}, {"test_acc": "high"})
    assert read_scalars(tmp_path / "run") == {"loss/train": [(2, 2.0)]}
    assert metadata.PLUGIN_NAME not in accumulator(tmp_path / "run").ActivePlugins()
    with pytest.raises(ValueError, match="is closed"):
        log.log_epoch(3, {"train_loss": 3.0})
    log.close()  # a second close does nothing


def test_nothing_follows_the_final_record(tmp_path: Path) -> None:
    with RunLog(tmp_path, "run") as log:
        log.log_epoch(1, {"train_loss": 1.0})
        log.log_hparams({"seed": 0}, {"test_acc": 0.5})
        with pytest.raises(ValueError, match="already has its final record"):
            log.log_epoch(2, {"train_loss": 2.0})
        with pytest.raises(ValueError, match="already has its final record"):
            log.log_hparams({"seed": 0}, {"test_acc": 0.5})
    assert read_scalars(tmp_path / "run") == {
        "loss/train": [(1, 1.0)],
        "final/test_acc": [(2, 0.5)],
    }


def test_flat_hparams_spreads_sequences() -> None:
    flat = flat_hparams(RunConfig().to_dict())
    assert flat["betas[0]"] == 0.9 and flat["betas[1]"] == 0.999 and "betas" not in flat
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in flat.values())
    assert flat_hparams({"a": (1, "x"), "b": None}) == {"a[0]": 1, "a[1]": "x", "b": None}


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_study_logs_every_run_and_the_events_match_results_json(
    data_dir: Path, tmp_path: Path, executor: str
) -> None:
    """``optreg study seed --tensorboard``: one directory per run, from worker processes or Ray
    tasks, holding what results.json holds (to float32, TensorBoard's storage)."""
    import json

    from optreg.cli import main

    board, out = tmp_path / "tb", tmp_path / "out"
    argv = ["study", "seed", "--data-dir", str(data_dir), "--out", str(out), "--only",
            "adam,adam-l2-loss", "--epochs", "2", "--train-size", "128", "--test-size", "64",
            "--tensorboard", str(board), "--no-progress", "--executor", executor,
            "--workers", "2"]
    if executor == "ray":
        pytest.importorskip("ray")
    assert main(argv) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert sorted(p.name for p in board.iterdir()) == sorted(
        run_dir_name(r["name"], r["seed"], r["id"]) for r in runs)
    for run in runs:
        scalars = read_scalars(board / run_dir_name(run["name"], run["seed"], run["id"]))
        history = run["history"]
        for key, tag in (("train_loss", "loss/train"), ("valid_loss", "loss/valid"),
                         ("valid_acc", "accuracy/valid"), ("lr", "lr")):
            assert scalars[tag] == [(e + 1, f32(v)) for e, v in enumerate(history[key])], tag
        assert ("loss/objective" in scalars) == (run["config"]["decay_mode"] == "loss")
        assert scalars["final/test_acc"][0][1] == f32(run["test_acc"])
