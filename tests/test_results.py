"""The result schema: typed records that round-trip through JSON, files of optreg 0.1.0 that still
load, and damaged files that are refused with the file and the field named."""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from optreg.atomic import atomic_write_text, read_json, write_json
from optreg.config import RunConfig
from optreg.report import build_report, render_markdown, results_tables
from optreg.results import (
    SCHEMA_VERSION,
    DivergedAt,
    History,
    ResultError,
    RunResult,
    Study,
    StudyResult,
    load_results,
    read_run,
)

DATA = Path(__file__).parent / "data"


def a_run(**changes: Any) -> RunResult:
    config = RunConfig(name="adam", epochs=2, valid_size=100)
    history = History([2.0, 1.5], [2.1, 1.6], [2.2, 1.9], [0.3, 0.4], [1.0, 1.1], [0.1, 0.1],
                      [1e-3, 1e-3])
    run = RunResult(id=config.run_id, config=config, status="ok", history=history,
                    train_acc=0.5, test_acc=0.4, best_test_acc=0.41, wall_s=3.0,
                    train_s=2.1, eval_s=0.3, train_img_per_s=1000.0,
                    trace={"loss": [2.3, 2.2], "update_rms": [1e-3, 9e-4]},
                    provenance={"cpu": "x", "threads": 1})
    return RunResult(**{**run.__dict__, **changes})


def test_run_round_trips_through_json() -> None:
    for run in (a_run(),
                a_run(status="diverged", diverged_at=DivergedAt(2, 7), error="adam: nan",
                      train_acc=None, test_acc=None, best_test_acc=None),
                RunResult.failed(RunConfig(), "RuntimeError: boom", "Traceback ...")):
        text = json.dumps(run.to_dict(), allow_nan=False)
        assert RunResult.from_dict(json.loads(text)) == run
        assert run.to_dict()["schema"] == SCHEMA_VERSION
        assert (run.to_dict()["name"], run.to_dict()["seed"]) == (run.name, run.seed)


def test_non_finite_history_values_are_written_as_null_and_read_as_nan(tmp_path: Path) -> None:
    run = a_run(history=History([2.0], [2.0], [math.inf], [0.1], [1.0], [0.1], [1e-3]))
    write_json(tmp_path / "run.json", run.to_dict())
    assert read_json(tmp_path / "run.json")["history"]["valid_loss"] == [None]
    assert math.isnan(read_run(tmp_path / "run.json").history.valid_loss[0])


def test_study_round_trips_with_its_settings_apart_from_its_execution() -> None:
    study = Study("decoupling", "sweep", settings={"epochs": 20, "valid_size": 5000},
                  execution={"device": "cpu", "workers": 2, "threads": 1},
                  grid={"lr": [1e-3], "weight_decay": {"coupled": [1e-4]}, "mode": ["coupled"],
                        "seeds": [0]}, data={"fingerprint": "f" * 16})
    result = StudyResult(study, (a_run(),))
    assert StudyResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
    assert study.is_sweep and not Study("seed", "seed").is_sweep


@pytest.mark.parametrize("name", ["results-0.1.0-seed.json", "results-0.1.0-decoupling.json"])
def test_results_of_optreg_0_1_0_still_load_and_report(name: str) -> None:
    path = DATA / name
    raw = json.loads(path.read_text())
    result = load_results(path)
    assert len(result.runs) == len(raw["runs"])
    for run, stored in zip(result.runs, raw["runs"], strict=True):
        assert (run.id, run.name, run.seed, run.status) == (stored["id"], stored["name"],
                                                            stored["seed"], stored["status"])
        assert run.history.train_loss == stored["history"]["train_loss"]
        assert run.history.train_s == stored.get("epoch_train_s", [])
        assert run.test_acc == stored["test_acc"]
    # 0.1.0 mixed how a study ran into its settings: those keys move to `execution`.
    assert "data_dir" not in result.study.settings and "workers" in result.study.execution
    title, blocks = build_report(result, figures={})
    assert "optreg report" in render_markdown(title, blocks)
    assert results_tables(result)


def test_the_failed_run_of_0_1_0_has_no_train_objective_and_still_loads() -> None:
    result = load_results(DATA / "results-0.1.0-seed.json")
    failed = [r for r in result.runs if r.status == "failed"]
    assert len(failed) == 1 and failed[0].history.epochs == 0
    assert failed[0].error == "adam: RuntimeError: boom"


BAD_RESULTS = [
    ({"study": {}, "runs": [1, 2]}, ": runs[0]: expected an object, got an integer"),
    ({"study": 1, "runs": []}, ": study: expected an object, got an integer"),
    ({"study": {}, "runs": 5}, ": runs: expected a list of runs"),
    ({"study": {}, "runs": [{"name": "x"}]}, ": runs[0].config: missing"),
    ({"runs": []}, ": study: missing"),
    ({"schema": 99, "study": {}, "runs": []}, ": written by a newer optreg (schema 99)"),
    ([1, 2], ": expected an object, got a list"),
]


@pytest.mark.parametrize(("data", "message"), BAD_RESULTS)
def test_bad_results_name_the_file_and_the_field(tmp_path: Path, data: Any,
                                                 message: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultError) as error:
        load_results(path)
    assert str(error.value).startswith(f"{path}{message}"), str(error.value)


def test_a_run_with_a_bad_field_names_it() -> None:
    data = a_run().to_dict()
    data["history"]["valid_loss"] = ["1.0"]
    with pytest.raises(ResultError, match=r"run: history\.valid_loss: expected a list of numbers"):
        RunResult.from_dict(data)
    data = a_run().to_dict()
    data["status"] = "great"
    with pytest.raises(ResultError, match=r"run: status: 'great' is not one of"):
        RunResult.from_dict(data)
    data = a_run().to_dict()
    data["config"]["lr"] = -1
    with pytest.raises(ResultError, match=r"run: config: lr=-1.0"):
        RunResult.from_dict(data)
    data = a_run().to_dict()
    data["history"]["valid_acc"] = [0.1]
    with pytest.raises(ResultError, match="1 entries for 2 epochs"):
        RunResult.from_dict(data)


@pytest.mark.parametrize(("content", "message"), [
    (b"\x89\xff\x00garbage", "not a text file"),
    (b'{"schema": 2, "id": "abc', "not valid JSON"),
])
def test_damaged_files_are_refused_naming_them(tmp_path: Path, content: bytes,
                                               message: str) -> None:
    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(ResultError, match=message) as error:
        read_run(path)
    assert str(path) in str(error.value)
    (tmp_path / "dir.json").mkdir()
    with pytest.raises(ResultError, match="is a folder"):
        read_run(tmp_path / "dir.json")


def test_atomic_writes_get_the_usual_permissions(tmp_path: Path) -> None:
    """0666 minus the umask, like any file a program creates (mkstemp alone gives 0600)."""
    umask = os.umask(0o022)
    os.umask(umask)
    path = atomic_write_text(tmp_path / "file.txt", "hello")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask != 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["file.txt"]  # no temporary file left
