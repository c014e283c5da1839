"""``optreg study seed --custom PATH``: a student's classes train beside their torch twins.

A correct submission's four runs match torch's twins in the report; a mistaken one's do not; a
changed file is another run (its hash is in the run id) and a resume refuses it; the workers get
the file's text with their tasks, not its path.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import shutil
from pathlib import Path

import pytest

from optreg.cli import main
from optreg.studies import seed_study

SUBMISSIONS = Path(__file__).parent / "submissions"
CORRECT = SUBMISSIONS / "correct_exercise.py"
MISTAKE = SUBMISSIONS / "mistakes" / "no_bias_correction.py"
CUSTOM = ("my-adam", "my-adam-l2-loss", "my-adam-l2", "my-adamw")
TWINS = {"my-adam": "torch-adam", "my-adam-l2-loss": "torch-adam-l2",
         "my-adam-l2": "torch-adam-l2", "my-adamw": "torch-adamw"}
ONLY = "torch-adam,torch-adam-l2,torch-adamw," + ",".join(CUSTOM)

pytestmark = pytest.mark.slow  # trains seven small runs per study


def study(data_dir: Path, out: Path, submission: Path, *extra: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["study", "seed", "--data-dir", str(data_dir), "--out", str(out),
                     "--custom", str(submission), "--only", ONLY, "--epochs", "2",
                     "--train-size", "256", "--test-size", "128", "--no-progress", *extra])
    return code, stdout.getvalue(), stderr.getvalue()


def matches(out: Path) -> dict[str, str]:
    """Scenario → its "matches" cell in report.md."""
    rows = {}
    for line in (out / "report.md").read_text().splitlines():
        cells = [c.strip() for c in line.split("|")]
        if line.startswith("| ") and len(cells) > 12 and cells[1] in CUSTOM:
            rows[cells[1]] = cells[-2]
    return rows


def test_the_custom_scenarios_name_the_file_and_its_hash() -> None:
    configs, description = seed_study(custom=str(CORRECT))
    digest = hashlib.sha256(CORRECT.read_bytes()).hexdigest()
    custom = [c for c in configs if c.name in CUSTOM]
    assert [c.name for c in custom] == list(CUSTOM)
    assert {(c.custom, c.custom_sha256) for c in custom} == {(CORRECT.name, digest)}
    assert {c.loss for c in custom} == {c.implementation for c in custom} == {"custom"}
    assert [(c.decay_mode, c.weight_decay) for c in custom] == [
        ("none", 0.0), ("loss", 0.1 / 32), ("coupled", 0.1 / 32), ("decoupled", 0.1 / 32)]
    assert description["sources"] == {digest: CORRECT.read_text()}
    assert ["torch-adam", "my-adam"] in description["matches"]
    assert str(SUBMISSIONS) not in json.dumps([c.to_dict() for c in configs])  # no paths


def test_a_correct_submission_trains_like_torch(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, stderr = study(data_dir, out, CORRECT, "--workers", "2")
    assert code == 0, stderr
    runs = {r["name"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert all(runs[name]["status"] == "ok" for name in CUSTOM)
    for name, twin in TWINS.items():
        assert matches(out)[name].startswith(f"= {twin} (max Δ"), matches(out)[name]
        for key in ("train_loss", "valid_loss"):
            assert runs[name]["history"][key] == pytest.approx(runs[twin]["history"][key],
                                                               abs=1e-5)
    assert "my-adam" in stdout


def test_a_mistaken_submission_is_shown_not_matching(data_dir: Path, tmp_path: Path) -> None:
    """The correct loss with the catalogue's Adam without bias correction (defined after the
    correct one, so it is the class the file ends up with)."""
    mistaken = tmp_path / "mistaken.py"
    mistaken.write_text(CORRECT.read_text() + "\n\n" + MISTAKE.read_text())
    out = tmp_path / "out"
    code, _, stderr = study(data_dir, out, mistaken, "--workers", "1")
    assert code == 0, stderr  # the runs themselves finish
    shown = matches(out)
    assert shown["my-adam"].startswith("≠ torch-adam (max Δ"), shown
    assert shown["my-adamw"].startswith("≠ torch-adamw"), shown


def test_a_changed_file_is_refused_on_resume(data_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    submission = tmp_path / "alice.py"
    shutil.copyfile(CORRECT, submission)
    out = tmp_path / "out"
    assert study(data_dir, out, submission, "--workers", "1", "--epochs", "1")[0] == 0
    submission.write_text(submission.read_text() + "\n# a late fix\n")
    code, _, stderr = study(data_dir, out, submission, "--workers", "1", "--epochs", "1",
                            "--resume")
    assert code == 2 and "the student file of this study changed" in stderr


def test_a_broken_submission_fails_its_runs_only(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, _, stderr = study(data_dir, out, SUBMISSIONS / "broken" / "syntax_error.py",
                            "--workers", "1", "--epochs", "1")
    assert code == 1  # a run failed
    runs = {r["name"]: r for r in json.loads((out / "results.json").read_text())["runs"]}
    assert all(runs[name]["status"] == "failed" for name in CUSTOM)
    assert "syntax error at syntax_error.py, line 9" in runs["my-adam"]["error"]
    assert all(runs[name]["status"] == "ok" for name in TWINS.values())
    assert "Traceback" not in stderr
