"""The command line: exit codes, usage errors without tracebacks, the configs it builds, report.

``main(argv)`` is called in-process; one subprocess test checks the installed console script.
Runs train 1 epoch on 256/128 synthetic images (or fewer) on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import optreg
from optreg.cli import main
from optreg.config import RunConfig

Capture = pytest.CaptureFixture[str]


def train_args(data_dir: Path, out: Path, *options: str) -> list[str]:
    """``optreg train`` on the synthetic data, small and quiet, plus ``options``."""
    return ["train", "--data-dir", str(data_dir), "--out", str(out), "--device", "cpu",
            "--no-progress", "--train-size", "256", "--test-size", "128", "--epochs", "1",
            *options]


def stored_run(out: Path) -> dict[str, Any]:
    """The one run of a ``train`` output folder, from results.json."""
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert len(runs) == 1
    return runs[0]


def assert_clean_usage_error(err: str, *fragments: str) -> None:
    assert "Traceback" not in err
    assert "error:" in err
    for fragment in fragments:
        assert fragment in err, err


# --- argparse: exit 2 with the usage line ------------------------------------------------------

BAD_OPTIONS = [
    (["train", "--epochs", "x"], "--epochs: expected a whole number, got 'x'"),
    (["train", "--lr", "fast"], "--lr: expected a number, got 'fast'"),
    (["train", "--betas", "0.9"], "--betas '0.9': expected two numbers like 0.9,0.999"),
    (["train", "--optimizer", "lbfgs"], "--optimizer: invalid choice: 'lbfgs'"),
    (["train", "--decay-mode", "none", "--l2", "0.1"], "--decay-mode: invalid choice"),
    (["train", "--l2", "0.1", "--weight-decay", "0.1"], "not allowed with argument"),
    (["train", "--executor", "dask"], "--executor: invalid choice: 'dask'"),
    (["study", "seed", "--seeds", "0,1,0"], "--seeds '0,1,0': repeated value(s) 0"),
    (["study", "seed", "--seeds", "18446744073709551616"], "outside [0, 18446744073709551615]"),
    (["study", "nine"], "invalid choice: 'nine'"),
    (["sweep", "--lr", "1e-3"], "the following arguments are required: --weight-decay"),
    (["sweep", "--lr", "1e-3:1e-2", "--weight-decay", "1"], "a log range is start:stop:n"),
    (["parity", "--steps", "many"], "--steps: expected a whole number"),
    (["report"], "the following arguments are required: out"),
    (["fly"], "invalid choice: 'fly'"),
    ([], "the following arguments are required: COMMAND"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_OPTIONS,
                         ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_bad_options_exit_2_with_usage_and_no_traceback(
    argv: list[str], message: str, capsys: Capture
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: optreg")
    assert_clean_usage_error(err, message)


# --- errors of the library's checks: exit 2, "optreg: error: ...", before anything runs ---------

BAD_VALUES = [
    (["train", "--epochs", "0"], "--epochs 0: must be >= 1"),
    (["train", "--lr", "0"], "--lr 0.0: must be a finite number > 0"),
    (["train", "--lr=-1"], "--lr -1.0: must be a finite number > 0"),
    (["train", "--lr", "inf"], "--lr inf: must be a finite number > 0"),
    (["train", "--eps", "nan"], "--eps nan: must be a finite number >= 0"),
    (["train", "--betas", "0.9,1"], "--betas (0.9, 1.0): each beta must lie in [0, 1)"),
    (["train", "--momentum", "0.9"], "--momentum 0.9: is an SGD/RMSprop option"),
    (["train", "--decay-mode", "loss"], "needs l2 or weight_decay"),
    (["train", "--l2", "0.1", "--decay-mode", "loss", "--loss", "torch"], "--decay-mode loss:"),
    (["train", "--l2", "0.1", "--decay-mode", "paper", "--implementation", "torch"],
     "'paper' is offered by optreg's Adam only"),
    (["train", "--name", "my run"], "--name 'my run': must be non-empty, without spaces"),
    (["train", "--seed", "-1"], "--seed -1: must be in [0, 2**64 - 1]"),
    (["train", "--seed", str(2**64)], "--seed 18446744073709551616: must be in"),
    (["train", "--no-bias-correction", "--implementation", "torch"],
     "--no-bias-correction: False is offered by optreg's Adam only"),
    (["study", "seed", "--workers", "0"], "--workers 0: must be a whole number >= 1"),
    (["study", "seed", "--batch-size", "-3"], "--batch-size -3: must be >= 1"),
    (["study", "seed", "--only", "adam,nadam"], "unknown scenario(s) nadam; choose from sgd, "),
    (["study", "seed", "--device", "meta"], "device 'meta' cannot train"),
    (["study", "seed", "--device", "tpu"], "unknown device 'tpu'"),
    (["study", "seed", "--ray-address", "127.0.0.1:1"], "ray_address is for the Ray executor"),
    (["study", "seed", "--executor", "ray", "--ray-address", "foo:bar"],
     "ray_address 'foo:bar': expected host:port"),
    (["study", "seed", "--executor", "ray", "--ray-address", "h:99999"], "port 1-65535"),
    (["study", "seed", "--executor", "ray", "--ray-address", "h:1", "--workers", "2"],
     "workers sizes a local Ray instance"),
    (["study", "seed", "--out", ""], "out: give a folder name"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_VALUES,
                         ids=[" ".join(a) for a, _ in BAD_VALUES])
def test_bad_values_exit_2_before_anything_runs(
    argv: list[str], message: str, tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "out"
    argv = [*argv, "--data-dir", str(tmp_path / "none")]
    if "--out" not in argv:
        argv += ["--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("optreg: error: ")
    assert_clean_usage_error(err, message)
    assert not out.exists() and not (tmp_path / "none").exists()


def test_missing_data_says_how_to_point_at_data(
    tmp_path: Path, no_data_env: Path, capsys: Capture
) -> None:
    out = tmp_path / "out"
    assert main(["train", "--out", str(out), "--device", "cpu", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert_clean_usage_error(err, "CIFAR-10 not found", str(no_data_env / "optreg"),
                             "--download", "--data-dir", "OPTREG_DATA_DIR")
    assert not out.exists()
    assert main(["train", "--out", str(out), "--data-dir", str(tmp_path / "elsewhere")]) == 2
    assert_clean_usage_error(capsys.readouterr().err, str(tmp_path / "elsewhere"))


def test_data_too_small_for_the_runs_exits_2_naming_the_data(
    data_dir: Path, tmp_path: Path, capsys: Capture
) -> None:
    argv = ["study", "seed", "--data-dir", str(data_dir), "--out", str(tmp_path / "out"),
            "--train-size", "100000", "--epochs", "1", "--no-progress"]
    assert main(argv) == 2
    assert_clean_usage_error(capsys.readouterr().err, "train_size=100000", str(data_dir),
                             "hold only 1024 images")
    assert not (tmp_path / "out").exists()


def test_data_dir_can_come_from_the_environment(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.setenv("OPTREG_DATA_DIR", str(data_dir))
    args = train_args(data_dir, tmp_path / "out", "--train-size", "32", "--test-size", "32")
    args.remove("--data-dir")
    args.remove(str(data_dir))
    assert main(args) == 0
    assert stored_run(tmp_path / "out")["status"] == "ok"


def test_ray_executor_without_ray_exits_2_with_the_install_hint(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    argv = train_args(data_dir, tmp_path / "out", "--executor", "ray")
    assert main(argv) == 2
    assert_clean_usage_error(capsys.readouterr().err, "pip install 'optreg[ray]'")
    assert not (tmp_path / "out").exists()


def test_tensorboard_without_tensorboard_exits_2_before_training(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    argv = train_args(data_dir, tmp_path / "out", "--tensorboard", str(tmp_path / "tb"))
    assert main(argv) == 2
    assert_clean_usage_error(capsys.readouterr().err, "pip install 'optreg[tensorboard]'")
    assert not (tmp_path / "out").exists()


# --- train: the configs it builds --------------------------------------------------------------


def test_train_without_options_is_the_exercise(
    data_dir: Path, tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "out"
    assert main(train_args(data_dir, out)) == 0
    run = stored_run(out)
    exercise = RunConfig(name="optreg-adam", epochs=1, train_size=256, test_size=128)
    assert run["config"] == exercise.to_dict()
    assert run["status"] == "ok" and run["id"] == exercise.run_id
    for name in ("report.md", "report.html", "loss_curves.png", f"runs/{run['id']}.json"):
        assert (out / name).is_file(), name
    captured = capsys.readouterr()
    assert "optreg-adam" in captured.out and "Traceback" not in captured.err


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--l2", "0.1", "--decay-mode", "loss"], {"weight_decay": 0.1 / 32, "decay_mode": "loss"}),
        (["--l2", "0.1", "--batch-size", "64"], {"weight_decay": 0.1 / 64, "decay_mode": "coupled",
                                                  "batch_size": 64}),
        (["--weight-decay", "0.5", "--decay-mode", "decoupled", "--decay", "all"],
         {"weight_decay": 0.5, "decay_mode": "decoupled", "decay": "all"}),
        (["--optimizer", "sgd", "--lr", "0.1", "--momentum", "0.9"],
         {"optimizer": "sgd", "implementation": "optreg", "lr": 0.1, "momentum": 0.9}),
        (["--implementation", "torch", "--loss", "torch", "--shuffle", "--schedule", "cosine",
          "--seed", "3", "--lr", "2e-3", "--betas", "0.8,0.99", "--amsgrad"],
         {"implementation": "torch", "loss": "torch", "shuffle": True, "schedule": "cosine",
          "seed": 3, "lr": 2e-3, "betas": [0.8, 0.99], "amsgrad": True}),
        (["--valid-size", "64", "--augment", "--label-smoothing", "0.1", "--no-bias-correction",
          "--trace-steps", "5"],
         {"valid_size": 64, "augment": True, "label_smoothing": 0.1, "bias_correction": False,
          "trace_steps": 5}),
    ],
    ids=["l2-loss", "l2-batch-64", "weight-decay", "sgd", "torch-options", "regularisers"],
)
def test_train_options_become_the_run_config(
    data_dir: Path, tmp_path: Path, options: list[str], expected: dict[str, Any]
) -> None:
    """Only the flags given change the config: every other field keeps RunConfig's default."""
    out = tmp_path / "out"
    assert main(train_args(data_dir, out, "--train-size", "32", "--test-size", "32",
                           *options)) == 0
    config = stored_run(out)["config"]
    assert {k: config[k] for k in expected} == expected
    defaults = RunConfig().to_dict()
    unchanged = set(defaults) - set(expected) - {"name", "epochs", "train_size", "test_size"}
    assert {k: config[k] for k in unchanged} == {k: defaults[k] for k in unchanged}


def test_help_shows_the_library_defaults(capsys: Capture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--lr LR learning rate (peak value with a schedule) (default: 1e-3)" in text
    assert "--optimizer {adam,sgd,rmsprop}" in text
    with pytest.raises(SystemExit):
        main(["study", "decoupling", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 20)" in text and "(default: 5000)" in text  # the preset's own defaults
    assert "validate on the test split" not in text  # the seed study's default, not this one's


@pytest.mark.parametrize("command", [["train"], ["study", "seed"], ["study", "overfitting"],
                                     ["study", "decoupling"], ["study", "adam-parts"],
                                     ["sweep"]])
def test_help_states_each_default_once(command: list[str], capsys: Capture) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    options = " ".join(capsys.readouterr().out.split()).split(" --")
    assert len(options) > 10
    twice = [o for o in options if o.count("(default") > 1]
    assert not twice, twice


# --- outcomes: diverged, interrupted, existing output, report ----------------------------------


def test_a_diverging_run_exits_1(data_dir: Path, tmp_path: Path, capsys: Capture) -> None:
    argv = train_args(data_dir, tmp_path / "out", "--weight-decay", "1", "--decay-mode",
                      "decoupled", "--lr", "1e6")
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "optreg: diverged: optreg-adam-decoupled-wd1: loss became" in err
    assert "Traceback" not in err
    assert stored_run(tmp_path / "out")["status"] == "diverged"


def test_existing_output_needs_resume(data_dir: Path, tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "out"
    argv = train_args(data_dir, out, "--train-size", "32", "--test-size", "32")
    assert main(argv) == 0
    first = stored_run(out)
    capsys.readouterr()
    assert main(argv) == 2
    assert_clean_usage_error(capsys.readouterr().err, "already holds results; add --resume")
    assert main([*argv, "--resume"]) == 0
    assert "resume: 1 of 1 runs already finished" in capsys.readouterr().err
    assert stored_run(out) == first  # not run again


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM", "SIGHUP"])
def test_a_stop_signal_exits_128_plus_its_number_and_says_how_to_resume(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture,
    signal_name: str,
) -> None:
    import os
    import signal

    number = getattr(signal, signal_name)

    def stopped(*_args: Any, **_kwargs: Any) -> None:
        os.kill(os.getpid(), number)  # delivered to this (the main) thread at once

    monkeypatch.setattr("optreg.studies.execute.execute_study", stopped)
    assert main(train_args(data_dir, tmp_path / "out")) == 128 + number
    err = capsys.readouterr().err
    assert f"stopped by {signal_name}" in err and "--resume" in err and "Traceback" not in err
    assert signal.getsignal(number) is not None  # main restores the previous handlers


def test_report_rerenders_a_study_folder(data_dir: Path, tmp_path: Path, capsys: Capture) -> None:
    out = tmp_path / "out"
    assert main(train_args(data_dir, out, "--train-size", "32", "--test-size", "32")) == 0
    rendered = {name: (out / name).read_text() for name in ("report.md", "report.html")}
    for name in ("report.md", "report.html", "loss_curves.png"):
        (out / name).unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert {name: (out / name).read_text() for name in rendered} == rendered
    assert (out / "loss_curves.png").is_file()
    assert "optreg-adam" in capsys.readouterr().out  # the results table is printed
    assert main(["report", str(out / "results.json")]) == 0  # the file itself works too


def test_report_without_results_exits_2(tmp_path: Path, capsys: Capture) -> None:
    assert main(["report", str(tmp_path)]) == 2
    assert_clean_usage_error(capsys.readouterr().err, f"{tmp_path}: no results.json there")


@pytest.mark.parametrize(("content", "message"), [
    (b"\x00\xff random bytes", "not a text file"),
    (b'{"study": 1, "runs": 5}', "runs: expected a list of runs, got an integer"),
    (b'{"study": {}, "runs": [1, 2]}', "runs[0]: expected an object, got an integer"),
    (b'{"study": {}, "runs": [{"name": "x"}]}', "runs[0].config: missing"),
])
def test_report_on_a_damaged_results_file_exits_2_naming_it(
    tmp_path: Path, capsys: Capture, content: bytes, message: str
) -> None:
    (tmp_path / "results.json").write_bytes(content)
    assert main(["report", str(tmp_path)]) == 2
    assert_clean_usage_error(capsys.readouterr().err, str(tmp_path / "results.json"), message)


def test_report_on_a_folder_named_results_json_exits_2(tmp_path: Path, capsys: Capture) -> None:
    (tmp_path / "results.json").mkdir()
    assert main(["report", str(tmp_path)]) == 2
    assert_clean_usage_error(capsys.readouterr().err, "results.json")


# --- the console script ------------------------------------------------------------------------


def test_console_script_version_and_help() -> None:
    script = Path(sys.executable).with_name("optreg")
    assert script.is_file(), "the optreg console script is installed next to python"
    version = subprocess.run([script, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0
    assert version.stdout.strip() == f"optreg {optreg.__version__}"
    help_ = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert help_.returncode == 0
    for command in ("parity", "check", "train", "study", "sweep", "report", "Exit codes"):
        assert command in help_.stdout


def test_download_url_is_used_and_its_checksum_checked(tmp_path: Path, capsys: Capture) -> None:
    # A mirror must serve the official archive: anything else fails the md5 check, exit 2,
    # and leaves no archive or data behind that could pass for the real thing.
    from optreg.data import write_synthetic_cifar10_archive

    archive, _ = write_synthetic_cifar10_archive(tmp_path / "mirror" / "cifar-10-python.tar.gz")
    data_dir = tmp_path / "data"
    code = main(["train", "--data-dir", str(data_dir), "--download-url", archive.as_uri(),
                 "--epochs", "1", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and archive.as_uri() in err and "Traceback" not in err
    assert not list(data_dir.rglob("*.tar.gz")) and not list(data_dir.rglob("data_batch_*"))


def test_unreachable_ray_cluster_exits_2(data_dir: Path, tmp_path: Path, capsys: Capture) -> None:
    sweep = ["sweep", "--data-dir", str(data_dir), "--lr", "1e-3", "--weight-decay", "1e-3",
             "--mode", "coupled", "--epochs", "1", "--executor", "ray", "--no-progress"]
    # Ray itself would retry an address nobody listens on for minutes.
    assert main([*sweep, "--ray-address", "127.0.0.1:1", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "no Ray cluster answers at 127.0.0.1:1" in err and "Traceback" not in err
