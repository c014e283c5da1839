"""The output folder: one study writes it at a time, nobody else's files are touched, a resume
trusts only what optreg wrote (and only on the same data), and unwritable places fail cleanly."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import optreg.atomic
from optreg.cli import main
from optreg.data import write_synthetic_cifar10
from test_workers import wait_until_gone

Capture = pytest.CaptureFixture[str]


def study(data_dir: Path, out: Path, *options: str) -> list[str]:
    return ["study", "seed", "--data-dir", str(data_dir), "--out", str(out), "--epochs", "1",
            "--train-size", "64", "--test-size", "32", "--only", "adam,adam-l2", "--workers",
            "1", "--no-progress", *options]


def error_of(capsys: Capture) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "optreg: error: " in err, err
    return err


def runs_of(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["runs"]


# --- one writer per folder ----------------------------------------------------------------------


def test_a_second_study_in_the_same_folder_is_refused_while_the_first_runs(
    data_dir: Path, tmp_path: Path, capsys: Capture
) -> None:
    out = tmp_path / "out"
    # The first study: long epochs (all 1024 images, 5 epochs), in its own process.
    long_study = ["study", "seed", "--data-dir", str(data_dir), "--out", str(out), "--epochs",
                  "5", "--only", "adam", "--workers", "1", "--no-progress"]
    first = subprocess.Popen([sys.executable, "-m", "optreg", *long_study],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / ".optreg-study.json").exists():  # written once the lock is held
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        assert main(study(data_dir, out, "--resume")) == 2
        err = error_of(capsys)
        assert f"{out} is in use by another optreg process (pid {first.pid}" in err
        assert main(study(data_dir, out)) == 2  # with or without --resume
    finally:
        first.kill()  # kill -9: the lock dies with its process
        first.wait(timeout=30)
        first.stderr.close()
    assert main([*long_study, "--resume"]) == 0  # no stale lock


# --- nobody else's files -----------------------------------------------------------------------


@pytest.mark.parametrize("files", [
    {"results.json": '{"accuracy": 0.93}', "report.md": "# mine"},
    {"report.md": "# mine"},
    {"notes.txt": "my notes"},
])
def test_a_folder_with_someone_elses_files_is_refused_and_left_alone(
    data_dir: Path, tmp_path: Path, capsys: Capture, files: dict[str, str]
) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    for name, text in files.items():
        (out / name).write_text(text)
    for extra in ([], ["--resume"]):
        assert main(study(data_dir, out, *extra)) == 2
        err = error_of(capsys)
        assert "holds files optreg did not write" in err and "choose a new or empty folder" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(files)  # nothing added
    assert {name: (out / name).read_text() for name in files} == files  # nothing changed


def test_an_empty_folder_and_hidden_files_are_fine(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "empty"
    out.mkdir()
    (out / ".ipynb_checkpoints").mkdir()
    assert main(study(data_dir, out)) == 0
    assert len(runs_of(out)) == 2


# --- resume trusts nothing it did not write ----------------------------------------------------


@pytest.fixture
def finished(data_dir: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    assert main(study(data_dir, out)) == 0
    return out


def run_files(out: Path) -> dict[str, Path]:
    """Run name → its runs/<id>.json."""
    return {json.loads(p.read_text())["name"]: p for p in (out / "runs").glob("*.json")}


@pytest.mark.parametrize(("damage", "message"), [
    ("swap", "holds run 'adam-l2'"),
    ("status-only", "config: missing"),
    ("random-bytes", "not a text file"),
    ("truncated", "not valid JSON"),
    ("list", "expected an object, got a list"),
])
def test_resume_refuses_a_run_file_optreg_did_not_write(
    data_dir: Path, finished: Path, capsys: Capture, damage: str, message: str
) -> None:
    files = run_files(finished)
    target = files["adam"]
    if damage == "swap":  # one run's file copied over another's
        shutil.copyfile(files["adam-l2"], target)
    elif damage == "status-only":
        target.write_text('{"status": "ok"}')
    elif damage == "random-bytes":
        target.write_bytes(os.urandom(64) + b"\xff")
    elif damage == "truncated":
        target.write_text(target.read_text()[:100])
    else:
        target.write_text("[1, 2]")
    before = (finished / "results.json").read_text()
    capsys.readouterr()
    assert main(study(data_dir, finished, "--resume")) == 2
    err = error_of(capsys)
    assert str(target) in err and message in err and "delete it" in err
    assert (finished / "results.json").read_text() == before  # nothing was reported


def test_deleting_a_run_file_reruns_exactly_that_run(
    data_dir: Path, finished: Path, capsys: Capture
) -> None:
    before = runs_of(finished)
    run_files(finished)["adam"].unlink()
    assert main(study(data_dir, finished, "--resume")) == 0
    assert "resume: 1 of 2 runs already finished" in capsys.readouterr().err
    after = runs_of(finished)
    assert [r["history"]["valid_loss"] for r in after] == [
        r["history"]["valid_loss"] for r in before]  # the same numbers again (timings aside)


def test_resume_on_other_data_is_refused(data_dir: Path, finished: Path, tmp_path: Path,
                                        capsys: Capture) -> None:
    other = tmp_path / "other-data"
    write_synthetic_cifar10(other, n_train=1024, n_test=128, seed=1)
    capsys.readouterr()
    argv = study(other, finished, "--resume")
    assert main(argv) == 2
    assert "its runs were trained on other data" in error_of(capsys)
    assert main(study(data_dir, finished, "--resume")) == 0  # the same data: fine


def test_resume_at_another_thread_count_is_refused(data_dir: Path, finished: Path,
                                                   capsys: Capture) -> None:
    recorded = json.loads((finished / ".optreg-study.json").read_text())["optreg_study"]
    other = 1 if recorded["threads"] != 1 else 2
    capsys.readouterr()
    assert main(study(data_dir, finished, "--resume", "--threads", str(other))) == 2
    assert f"runs at {recorded['threads']} torch thread(s) per run" in error_of(capsys)


def test_resume_as_another_study_is_refused(data_dir: Path, finished: Path,
                                            capsys: Capture) -> None:
    argv = ["study", "overfitting", "--data-dir", str(data_dir), "--out", str(finished),
            "--resume", "--epochs", "1", "--train-size", "64", "--valid-size", "64",
            "--test-size", "32", "--only", "none", "--no-progress"]
    capsys.readouterr()
    assert main(argv) == 2
    assert "holds the study 'seed', not 'overfitting'" in error_of(capsys)



def test_a_resume_may_add_runs_but_not_leave_any_out(data_dir: Path, finished: Path,
                                                     capsys: Capture) -> None:
    capsys.readouterr()
    assert main([*study(data_dir, finished, "--resume"), "--only", "adam"]) == 2
    err = error_of(capsys)
    assert "also has the run(s) 'adam-l2'" in err and "a resume may add runs" in err
    assert main([*study(data_dir, finished, "--resume"), "--epochs", "2"]) == 2  # other runs
    assert "'adam', 'adam-l2'" in error_of(capsys)
    assert main([*study(data_dir, finished, "--resume"), "--only", "adam,adam-l2,adamw"]) == 0
    assert "resume: 2 of 3 runs already finished" in capsys.readouterr().err
    assert [r["name"] for r in runs_of(finished)] == ["adam", "adam-l2", "adamw"]


@pytest.mark.parametrize(("stored", "now", "message"), [
    ({"device": "cuda:0"}, [], "train on cuda:0 and a run's bits depend on the device; resume "
                               "with --device cuda:0"),
    ({"submissions": "ab12"}, [], "runs a student file (SHA-256 ab12); resume it with the same "
                                  "--custom FILE"),
])
def test_resume_on_another_device_or_without_the_student_file_is_refused(
    data_dir: Path, finished: Path, capsys: Capture, stored: dict, now: list[str], message: str
) -> None:
    marker = finished / ".optreg-study.json"
    data = json.loads(marker.read_text())
    data["optreg_study"].update(stored)
    marker.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(study(data_dir, finished, "--resume", *now)) == 2
    assert message in error_of(capsys)

# --- places optreg cannot write ----------------------------------------------------------------


def test_an_output_path_under_a_file_exits_2(data_dir: Path, tmp_path: Path,
                                             capsys: Capture) -> None:
    (tmp_path / "afile").write_text("x")
    assert main(study(data_dir, tmp_path / "afile" / "sub")) == 2
    assert "cannot use" in error_of(capsys)
    assert main(study(data_dir, tmp_path / "afile")) == 2
    assert "exists and is not a folder" in error_of(capsys)


def test_an_output_folder_in_proc_exits_2(data_dir: Path, capsys: Capture) -> None:
    assert main(study(data_dir, Path("/proc/optreg-test-out"))) == 2
    assert "/proc/optreg-test-out" in error_of(capsys)


def test_a_full_disk_while_writing_the_report_exits_1_and_resume_finishes(
    data_dir: Path, tmp_path: Path, capsys: Capture, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = optreg.atomic.atomic_write_bytes

    def full_for_reports(path: str | Path, data: bytes) -> Path:
        if Path(path).name in ("report.md", "loss_curves.png"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    out = tmp_path / "out"
    monkeypatch.setattr(optreg.atomic, "atomic_write_bytes", full_for_reports)
    for module in ("optreg.report.document", "optreg.report.figures"):
        monkeypatch.setattr(f"{module}.atomic_write_bytes", full_for_reports)
    assert main(study(data_dir, out)) == 1
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Traceback" not in err
    assert len(runs_of(out)) == 2  # the runs were kept
    assert not list(out.glob(".*.tmp"))  # and nothing half-written is left
    monkeypatch.undo()
    assert main(study(data_dir, out, "--resume")) == 0
    assert (out / "report.md").is_file()


# --- stop signals: the whole study stops, and resumes exactly ----------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_the_study_like_ctrl_c(data_dir: Path, tmp_path: Path,
                                                        name: str) -> None:
    out, whole = tmp_path / "out", tmp_path / "whole"
    common = [sys.executable, "-m", "optreg", "study", "seed", "--data-dir", str(data_dir),
              "--epochs", "3", "--only", "adam,adam-l2,adamw", "--workers", "2", "--no-progress"]
    argv = [*common, "--out", str(out)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    while not list((out / "checkpoints").glob("*.pt")):  # an epoch has finished
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.1)
    process.send_signal(getattr(signal, name))
    _, err = process.communicate(timeout=60)
    number = getattr(signal, name)
    assert process.returncode == 128 + number, err
    assert f"stopped by {name}" in err.decode() and b"Traceback" not in err
    wait_until_gone(process.pid)  # no process of the study's session is left
    assert b"leaked" not in err  # no resource the workers held was left behind
    assert subprocess.run([*argv, "--resume"], capture_output=True).returncode == 0
    resumed = runs_of(out)
    assert subprocess.run([*common, "--out", str(whole)], capture_output=True).returncode == 0
    assert [r["history"]["valid_loss"] for r in resumed] == [
        r["history"]["valid_loss"] for r in runs_of(whole)]  # bit-identical after the stop
