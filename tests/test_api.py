"""Studies from Python: the same options, defaults and results as the command line; results as
DataFrames and in Jupyter; any finished or partial study folder read back."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import optreg
from optreg import api, runtime
from optreg.cli import main
from optreg.config import ConfigError
from optreg.results import FRAME_COLUMNS, StudyResult

SMALL = {"epochs": 1, "train_size": 64, "test_size": 32, "progress": False, "workers": 1}


def reproducible(result: StudyResult) -> list[dict[str, Any]]:
    """What must be equal between two executions of a study: no times, no provenance."""
    return [{"id": r.id, "status": r.status, "test_acc": r.test_acc, "train_acc": r.train_acc,
             "history": {k: v for k, v in r.history.to_dict().items()
                         if k not in ("train_s", "eval_s")}} for r in result.runs]


def test_run_study_equals_the_command_line(data_dir: Path, tmp_path: Path) -> None:
    python = optreg.run_study("seed", data_dir=str(data_dir), out=str(tmp_path / "py"),
                              only=("adam", "adam-l2"), seeds=(0, 1), **SMALL)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        code = main(["study", "seed", "--data-dir", str(data_dir), "--out",
                     str(tmp_path / "cli"), "--only", "adam,adam-l2", "--seeds", "0,1",
                     "--epochs", "1", "--train-size", "64", "--test-size", "32",
                     "--no-progress", "--workers", "1"])
    assert code == 0
    cli = optreg.load_results(tmp_path / "cli")
    assert [r.name for r in python.runs] == ["adam", "adam-l2", "adam", "adam-l2"]
    assert reproducible(python) == reproducible(cli)
    assert python.study.settings == cli.study.settings
    assert python.study.settings["seeds"] == [0, 1]


def test_run_sweep_equals_the_command_line(data_dir: Path, tmp_path: Path) -> None:
    python = optreg.run_sweep(lr=[1e-3], weight_decay=[1e-2, 1e-1], mode=["coupled"],
                              data_dir=str(data_dir), out=str(tmp_path / "py"), **SMALL)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["sweep", "--lr", "1e-3", "--weight-decay", "1e-2,1e-1", "--mode",
                     "coupled", "--data-dir", str(data_dir), "--out", str(tmp_path / "cli"),
                     "--epochs", "1", "--train-size", "64", "--test-size", "32",
                     "--no-progress", "--workers", "1"]) == 0
    assert reproducible(python) == reproducible(optreg.load_results(tmp_path / "cli"))
    assert python.study.grid == {"lr": [1e-3], "weight_decay": [1e-2, 1e-1],
                                 "mode": ["coupled"], "seeds": [0]}


def test_unknown_options_and_bad_values_are_refused(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) for study 'seed': epoch;"):
        optreg.run_study("seed", epoch=3, data_dir=str(data_dir))
    with pytest.raises(ConfigError, match="unknown study 'nine'"):
        optreg.run_study("nine")
    with pytest.raises(ConfigError, match="workers=0"):
        optreg.run_study("seed", workers=0, data_dir=str(data_dir))
    with pytest.raises(ConfigError, match="epochs=0"):
        optreg.train(epochs=0, data_dir=str(data_dir), out=str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_train_resume_and_the_frames(data_dir: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "out")
    result = optreg.train(data_dir=str(data_dir), out=out, valid_size=32, **SMALL)
    again = optreg.train(data_dir=str(data_dir), out=out, valid_size=32, resume=True, **SMALL)
    assert reproducible(again) == reproducible(result)
    frame = result.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 1
    assert tuple(frame.columns[: len(FRAME_COLUMNS)]) == FRAME_COLUMNS
    run = result.runs[0]
    row = frame.iloc[0]
    assert (row["name"], row["status"], row["test_acc"], row["best_test_acc"]) == (
        run.name, "ok", run.test_acc, run.best_test_acc)
    assert row["config.valid_size"] == 32 and row["config.lr"] == 1e-3
    history = result.history_frame()
    assert list(history.columns) == ["name", "seed", "id", "epoch", "metric", "value"]
    valid = history[history.metric == "valid_loss"]
    assert valid.value.tolist() == run.history.valid_loss and valid.epoch.tolist() == [1]
    assert len(history) == 7  # seven per-epoch metrics, one epoch
    html = result._repr_html_()
    assert "<table>" in html and run.name in html and "Results" in html
    assert run.name in str(result)


def test_load_results_of_a_partial_study(data_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import optreg.training

    real = optreg.training.run
    calls = 0

    def interrupted_second_run(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(optreg.training, "run", interrupted_second_run)
    with pytest.raises(KeyboardInterrupt):
        optreg.run_study("seed", data_dir=str(data_dir), out=str(tmp_path / "out"),
                         only=("adam", "adam-l2", "adamw"), **SMALL)
    partial = optreg.load_results(tmp_path / "out")
    assert [r.name for r in partial.runs] == ["adam"] and partial.study.finished_at is None
    assert len(partial.to_dataframe()) == 1
    monkeypatch.setattr(optreg.training, "run", real)
    finished = optreg.run_study("seed", data_dir=str(data_dir), out=str(tmp_path / "out"),
                                only=("adam", "adam-l2", "adamw"), resume=True, **SMALL)
    assert [r.name for r in finished.runs] == ["adam", "adam-l2", "adamw"]
    assert finished.runs[0] == partial.runs[0]  # kept, not run again
    stored = json.loads((tmp_path / "out" / "results.json").read_text())
    assert stored["study"]["finished_at"] is not None


def test_pandas_is_an_extra_with_a_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "pandas", None)
    from optreg.extras import MissingExtra
    from optreg.results import Study

    with pytest.raises(MissingExtra, match=r"pip install 'optreg\[pandas\]'"):
        StudyResult(Study("s", "seed"), ()).to_dataframe()


# --- planning the cores ---------------------------------------------------------------------


@pytest.mark.parametrize(("runs", "options", "device", "recorded", "planned"), [
    (10, {}, "cpu", None, (2, 1)),  # as many workers as cores, a thread each
    (1, {}, "cpu", None, (1, 2)),  # a lone run gets every core
    (10, {"threads": 2}, "cpu", None, (1, 2)),
    (10, {"workers": 1}, "cpu", None, (1, 2)),
    (1, {}, "cpu", 1, (1, 1)),  # a resumed study keeps its recorded threads
    (10, {"threads": 2}, "cpu", 1, (1, 2)),  # unless told otherwise (the claim then refuses)
    (10, {"executor": "ray"}, "cpu", None, (0, 1)),  # Ray sizes itself; a CPU per task
    (10, {}, "cuda", None, (1, 2)),  # one accelerator: one run at a time
])
def test_the_plan_shares_the_cores(monkeypatch: pytest.MonkeyPatch, runs: int,
                                   options: dict[str, Any], device: str, recorded: int | None,
                                   planned: tuple[int, int]) -> None:
    monkeypatch.setattr(api, "usable_cores", lambda: 2)
    assert api._plan(runs, api.Execution(**options), device, recorded) == planned


@pytest.mark.parametrize(("cpu_max", "cores"), [
    ("max 100000\n", None), ("200000 100000\n", 2), ("150000 100000\n", 1),
    ("50000 100000\n", 1), ("garbage\n", None), ("", None)])
def test_a_cgroup_cpu_quota_caps_the_cores(tmp_path: Path, cpu_max: str,
                                           cores: int | None) -> None:
    (tmp_path / "cpu.max").write_text(cpu_max)
    assert runtime._cgroup_cpu_quota(str(tmp_path / "cpu.max")) == cores
    assert runtime._cgroup_cpu_quota(str(tmp_path / "missing")) is None


def test_train_takes_decay_mode_none_without_a_decay() -> None:
    assert api.train_configs(decay_mode="none")[0][0].decay_mode == "none"
    with pytest.raises(ConfigError, match="decay_mode='coupled' needs l2 or weight_decay"):
        api.train_configs(decay_mode="coupled")
