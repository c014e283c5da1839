"""The seed study: its ten scenarios, subsets, and a tiny end-to-end study through the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest

from optreg.cli import main
from optreg.config import ConfigError, RunConfig
from optreg.executors.base import Resources
from optreg.executors.local import LocalExecutor
from optreg.results import Study
from optreg.runtime import usable_cores
from optreg.studies import MATCHES, SCENARIO_NAMES, seed_study
from optreg.studies.execute import execute_study
from optreg.studies.output import Identity, StudyFolder

ORDER = ("sgd", "optreg-sgd", "torch-adam", "adam", "adam-l2-loss", "adam-l2", "adamw",
         "torch-adam-l2", "torch-adamw", "torch-adam-wd")
L2 = 0.1 / 32
OPTREG = {"optimizer": "adam", "implementation": "optreg", "loss": "optreg", "lr": 1e-3}
TORCH = {"optimizer": "adam", "implementation": "torch", "loss": "torch", "lr": 1e-3}
NO_DECAY = {"weight_decay": 0.0, "decay_mode": "none", "decay": "weights"}
EXPECTED: dict[str, dict[str, Any]] = {
    "sgd": {"optimizer": "sgd", "implementation": "torch", "loss": "torch", "lr": 0.1,
            "momentum": 0.9, **NO_DECAY},
    "optreg-sgd": {"optimizer": "sgd", "implementation": "optreg", "loss": "torch", "lr": 0.1,
                   "momentum": 0.9, **NO_DECAY},
    "torch-adam": {**TORCH, **NO_DECAY},
    "adam": {**OPTREG, **NO_DECAY},
    "adam-l2-loss": {**OPTREG, "weight_decay": L2, "decay_mode": "loss", "decay": "weights"},
    "adam-l2": {**OPTREG, "weight_decay": L2, "decay_mode": "coupled", "decay": "weights"},
    "adamw": {**OPTREG, "weight_decay": L2, "decay_mode": "decoupled", "decay": "weights"},
    "torch-adam-l2": {**TORCH, "weight_decay": L2, "decay_mode": "coupled", "decay": "weights"},
    "torch-adamw": {**TORCH, "weight_decay": L2, "decay_mode": "decoupled", "decay": "weights"},
    "torch-adam-wd": {**TORCH, "weight_decay": 0.1, "decay_mode": "coupled", "decay": "all"},
}
TWINS = [("sgd", "optreg-sgd"), ("adam", "torch-adam"), ("adam-l2-loss", "adam-l2"),
         ("adam-l2-loss", "torch-adam-l2"), ("adamw", "torch-adamw")]


# --- configs -----------------------------------------------------------------------------------


def test_ten_scenarios_in_order_with_the_exercise_settings() -> None:
    configs, study = seed_study()
    assert tuple(c.name for c in configs) == ORDER == SCENARIO_NAMES
    for config in configs:
        expected = EXPECTED[config.name]
        assert {k: getattr(config, k) for k in expected} == expected, config.name
        assert (config.batch_size, config.epochs, config.seed, config.shuffle) == (32, 10, 0, False)
        assert (config.train_size, config.test_size, config.schedule) == (None, None, "constant")
        if config.optimizer == "adam":
            assert (config.betas, config.eps, config.amsgrad, config.momentum) == (
                (0.9, 0.999), 1e-8, False, 0.0)
    assert len({c.run_id for c in configs}) == 10
    assert study["matches"] == [list(g) for g in MATCHES] == [
        ["sgd", "optreg-sgd"], ["torch-adam", "adam"],
        ["adam-l2-loss", "adam-l2", "torch-adam-l2"], ["adamw", "torch-adamw"]]
    assert set(study["descriptions"]) == set(ORDER)
    assert sorted(n for panel in study["panels"].values() for n in panel) == sorted(ORDER)


def test_l2_follows_the_batch_size_except_for_the_torch_users_way() -> None:
    by_name = {c.name: c for c in seed_study(batch_size=64, epochs=3)[0]}
    assert by_name["adam-l2"].weight_decay == 0.1 / 64
    assert by_name["adam-l2-loss"].l2 == pytest.approx(0.1)
    assert by_name["torch-adam-wd"].weight_decay == 0.1
    assert all(c.batch_size == 64 and c.epochs == 3 for c in by_name.values())


def test_seeds_are_seed_major_and_sizes_are_passed_on() -> None:
    configs, _ = seed_study(seeds=(3, 1), train_size=100, test_size=50)
    assert [(c.seed, c.name) for c in configs] == [(3, n) for n in ORDER] + [(1, n) for n in ORDER]
    assert all((c.train_size, c.test_size) == (100, 50) for c in configs)
    assert len({c.run_id for c in configs}) == 20


def test_only_keeps_the_canonical_order_and_trims_matches_and_panels() -> None:
    configs, study = seed_study(only=("torch-adamw", "adam", "torch-adam", "sgd"))
    assert [c.name for c in configs] == ["sgd", "torch-adam", "adam", "torch-adamw"]
    assert study["matches"] == [["torch-adam", "adam"]]  # a group needs two members present
    assert study["panels"] == {"SGD vs Adam": ["sgd", "torch-adam", "adam"],
                               "Decoupled weight decay": ["torch-adamw"]}
    assert set(study["descriptions"]) == {"sgd", "torch-adam", "adam", "torch-adamw"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"only": ("adam", "nadam", "adamax")},
         "unknown scenario(s) adamax, nadam; choose from " + ", ".join(ORDER)),
        ({"seeds": ()}, "seeds: give at least one seed"),
        ({"seeds": (0, 1, 0)}, "seeds: repeated value(s) 0"),
        ({"epochs": 0}, "epochs=0"),
    ],
)
def test_bad_study_options_raise_config_error(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        seed_study(**options)


def test_execute_study_refuses_the_same_run_twice(tmp_path: Path, data: Any) -> None:
    config = RunConfig(train_size=8, test_size=8, epochs=1)
    folder = StudyFolder.claim(tmp_path / "out", Identity("seed", None, 1), resume=False)
    with folder, pytest.raises(ConfigError, match="runs: repeated value"):
        execute_study([config, config.replace()], Study("seed", "seed"), folder,
                      LocalExecutor(data, Resources()), progress=False)
    assert not (tmp_path / "out" / "results.json").exists()  # refused before writing


# --- end to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def study_out(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The ten scenarios, 2 epochs on 256/128 synthetic images, run by ``optreg study seed``."""
    out = tmp_path_factory.mktemp("seed-study") / "out"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["study", "seed", "--data-dir", str(data_dir), "--out", str(out),
                     "--epochs", "2", "--train-size", "256", "--test-size", "128",
                     "--workers", "1", "--device", "cpu", "--no-progress"])
    results = json.loads((out / "results.json").read_text())
    return {"code": code, "out": out, "stdout": stdout.getvalue(), "stderr": stderr.getvalue(),
            "results": results, "runs": {r["name"]: r for r in results["runs"]}}


slow = pytest.mark.slow  # trains: the ten scenarios, end to end


@slow
def test_study_exits_0_and_writes_results_and_report(study_out: dict[str, Any]) -> None:
    assert study_out["code"] == 0, study_out["stderr"]
    out: Path = study_out["out"]
    for name in ("results.json", "loss_curves.png", "report.html", "report.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "loss_curves.png").read_bytes().startswith(b"\x89PNG")
    assert len(list((out / "runs").glob("*.json"))) == 10
    assert not (out / "checkpoints").exists()  # removed once every run finished
    assert "Traceback" not in study_out["stderr"]


@slow
def test_results_json_schema(study_out: dict[str, Any]) -> None:
    results = study_out["results"]
    assert set(results) == {"schema", "study", "runs"} and results["schema"] == 2
    study = results["study"]
    assert study["name"] == "seed" and study["matches"]
    # What the study computes, apart from how it ran; no paths of this machine.
    assert study["settings"] == {"seeds": [0], "epochs": 2, "batch_size": 32, "only": None,
                                 "train_size": 256, "valid_size": None, "test_size": 128}
    # One worker (--workers 1): the run gets every core.
    assert study["execution"] == {"device": "cpu", "executor": "local", "workers": 1,
                                  "threads": usable_cores()}
    assert str(study_out["out"]) not in (study_out["out"] / "results.json").read_text()
    assert len(study["data"]["fingerprint"]) >= 16
    assert [r["name"] for r in results["runs"]] == list(ORDER)
    for run in results["runs"]:
        config = RunConfig.from_dict(run["config"])
        assert run["id"] == config.run_id and run["name"] == config.name
        assert (config.epochs, config.train_size, config.test_size) == (2, 256, 128)
        assert run["seed"] == 0 and run["status"] == "ok"
        assert 0.0 <= run["train_acc"] <= 1.0 and 0.0 <= run["test_acc"] <= 1.0
        history = run["history"]
        assert set(history) == {"train_loss", "train_objective", "valid_loss", "valid_acc",
                                "train_s", "eval_s", "lr"}
        assert all(len(values) == 2 for values in history.values())
        assert run["wall_s"] > 0 and run["train_img_per_s"] > 0
        stored = json.loads((study_out["out"] / "runs" / f"{run['id']}.json").read_text())
        assert stored == run


@slow
@pytest.mark.parametrize(("a", "b"), TWINS, ids=["-vs-".join(t) for t in TWINS])
def test_twins_have_the_same_histories(study_out: dict[str, Any], a: str, b: str) -> None:
    runs = study_out["runs"]
    for key in ("train_loss", "valid_loss"):
        diffs = [abs(x - y) for x, y in zip(runs[a]["history"][key], runs[b]["history"][key],
                                            strict=True)]
        assert max(diffs) <= 2e-5, (key, diffs)  # float32 twins: rounding grows over training


@slow
def test_the_ways_of_writing_l2_differ_from_no_l2_and_from_torch_users_l2(
    study_out: dict[str, Any],
) -> None:
    """The twins agree because they compute the same thing, not because L2 does nothing."""
    runs = study_out["runs"]
    adam, l2, wd = (runs[n]["history"]["train_loss"] for n in ("adam", "adam-l2", "torch-adam-wd"))
    assert max(abs(x - y) for x, y in zip(adam, l2, strict=True)) > 1e-4
    assert max(abs(x - y) for x, y in zip(l2, wd, strict=True)) > 1e-2


@slow
def test_report_matches_column_says_the_twins_match(study_out: dict[str, Any]) -> None:
    report = (study_out["out"] / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| scenario"))
    assert header.rstrip(" |").endswith("matches")
    rows = {line.split("|")[1].strip(): line.split("|")[-2].strip()
            for line in report.splitlines() if line.startswith("| ") and line.count("|") > 5}
    for a, b in TWINS:
        assert f"= {b} (max Δ" in rows[a], rows[a]
        assert f"= {a} (max Δ" in rows[b], rows[b]
    assert rows["torch-adam-wd"] == ""  # no twin
    assert "≠" not in report
    assert "= adam (max Δ" in study_out["stdout"]  # the same table is printed
    html = (study_out["out"] / "report.html").read_text()
    assert "= torch-adam (max Δ" in html and "data:image/png;base64," in html
