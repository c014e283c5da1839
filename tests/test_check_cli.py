"""``optreg check`` end to end: child processes, time limits, crashes, exit codes, Gradescope
JSON and the class summary; the notebook API ``optreg.check(...)``; the reports."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import optreg.check
from optreg.check import CheckResult, SubmissionResult, load_student_classes
from optreg.check.cli import _file_names, main
from optreg.check.report import gradescope_json, summary_csv, summary_markdown, text_report

SUBMISSIONS = Path(__file__).parent / "submissions"
BROKEN = SUBMISSIONS / "broken"
CLASS = {  # file → what its JSON must say
    "correct_exercise": "passed",
    "prints_a_lot": "passed",
    "syntax_error": "syntax error",
    "exception_in_step": "NameError",
    "endless_loop": "timed out",
    "crash_in_step": "died",
    "missing_classes": "no class",
}
CHECKS = "ce,adamw,defaults"  # enough for every broken file (all checks: test_check_diagnosis)


@pytest.fixture(scope="module")
def graded_class(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path, Path]:
    """One `python -m optreg.check` over a class of submissions, as a teacher would run it."""
    out = tmp_path_factory.mktemp("grades")
    marker = out / "training-ran.marker"
    paths = [SUBMISSIONS / "correct_exercise.ipynb", SUBMISSIONS / "prints_a_lot.py",
             BROKEN / "syntax_error.py", BROKEN / "exception_in_step.ipynb",
             BROKEN / "endless_loop.py", BROKEN / "crash_in_step.py",
             BROKEN / "missing_classes.py"]
    env = {**os.environ, "OPTREG_CHECK_MARKER": str(marker)}
    done = subprocess.run(
        [sys.executable, "-m", "optreg.check", *map(str, paths), "--checks", CHECKS,
         "--timeout", "30", "--jobs", "2", "--json-dir", str(out / "json"), "--points", "adamw=5"],
        capture_output=True, text=True, env=env, timeout=600)
    return done, out / "json", marker


def test_a_class_is_graded_with_one_command(graded_class):
    done, folder, marker = graded_class
    assert done.returncode == 1, done.stderr  # some checks failed
    assert not marker.exists()  # no training cell ran
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{n}.json" for n in CLASS] + ["summary.csv", "summary.md"])
    rows = list(csv.DictReader((folder / "summary.csv").open()))
    assert [r["submission"] for r in rows] == [
        str(p) for p in (SUBMISSIONS / "correct_exercise.ipynb", SUBMISSIONS / "prints_a_lot.py",
                         *(BROKEN / f"{n}.py" if n != "exception_in_step" else
                           BROKEN / f"{n}.ipynb" for n in list(CLASS)[2:]))]
    assert rows[0]["score"] == "8" and rows[0]["max_score"] == "8" and rows[0]["adamw"] == "5"
    assert "| ✗ timed out after 30 s |" in (folder / "summary.md").read_text()


@pytest.mark.parametrize("name", CLASS)
def test_each_submission_gets_gradescope_json_that_says_what_happened(graded_class, name):
    _, folder, _ = graded_class
    results = json.loads((folder / f"{name}.json").read_text())
    assert set(results) == {"score", "output", "tests"}
    tests = {t["name"].split(":")[0]: t for t in results["tests"]}
    assert list(tests) == CHECKS.split(",")
    for t in tests.values():
        assert set(t) == {"name", "score", "max_score", "status", "output"}
        assert t["status"] in ("passed", "failed")
    assert tests["adamw"]["max_score"] == 5
    assert results["score"] == sum(t["score"] for t in tests.values())
    outputs = results["output"] + "".join(t["output"] for t in tests.values())
    if CLASS[name] == "passed":
        assert all(t["status"] == "passed" for t in tests.values()), outputs
    else:
        assert CLASS[name] in outputs


def test_an_exception_shows_the_student_s_cell_and_line(graded_class):
    _, folder, _ = graded_class
    adamw = json.loads((folder / "exception_in_step.json").read_text())["tests"][1]
    assert adamw["status"] == "failed"
    assert 'exception_in_step.ipynb, code cell 3", line 39, in step' in adamw["output"]
    assert "v_hat = exp_avg_sq / (1 - beta_2 ** step)" in adamw["output"]
    assert "optreg/" not in adamw["output"]


def test_a_hang_or_a_crash_fails_its_check_and_the_next_checks_still_run(graded_class):
    _, folder, _ = graded_class
    for name, word in (("endless_loop", "timed out after 30 s"), ("crash_in_step", "died")):
        tests = json.loads((folder / f"{name}.json").read_text())["tests"]
        assert [t["status"] for t in tests] == ["passed", "failed", "passed"]  # in a new child
        assert word in tests[1]["output"]
    crash = json.loads((folder / "crash_in_step.json").read_text())["tests"][1]["output"]
    assert "exit code 3" in crash


def test_what_the_student_prints_is_kept_short(graded_class):
    done, folder, _ = graded_class
    ce = json.loads((folder / "prints_a_lot.json").read_text())["tests"][0]["output"]
    printed = ce.split("printed (last lines):\n")[1]
    assert printed.startswith("[… earlier output dropped]")
    assert printed.rstrip().endswith("line 499") and len(printed) < 2100
    assert done.stdout.count("Output shape") < 100  # 20 calls × 500 lines were printed


def test_the_table_and_the_syntax_error_are_printed(graded_class):
    done, _, _ = graded_class
    assert "correct_exercise.ipynb — exercise-style signature, 8/8 points, every check passed" \
        in done.stdout
    assert "syntax error at " + str(BROKEN / "syntax_error.py") + ", line 9" in done.stdout
    assert "not run: the submission could not be read" in done.stdout


def test_one_submission_passing_exits_0_and_writes_results_json(tmp_path, capsys):
    out = tmp_path / "results.json"
    code = main([str(SUBMISSIONS / "correct_exercise.ipynb"), "--checks", "ce,defaults",
                 "--json", str(out), "--quiet"])
    assert code == 0
    assert capsys.readouterr().out.strip().endswith("3/3 points, every check passed")
    results = json.loads(out.read_text())
    assert results["score"] == 3 and [t["status"] for t in results["tests"]] == ["passed"] * 2


@pytest.mark.parametrize("argv, message", [
    (["no/such/file.py"], "no/such/file.py: no such file"),
    (["README.md"], "README.md: not a .py file or a Jupyter notebook"),
    ([str(SUBMISSIONS / "correct_exercise.py"), "--points", "adam"], "expected CHECK=POINTS"),
    ([str(SUBMISSIONS / "correct_exercise.py"), "--points", "nope=1"], "unknown check 'nope'"),
    ([str(SUBMISSIONS / "correct_exercise.py"), "--checks", "adam,nope"], "unknown check"),
    ([str(SUBMISSIONS / "correct_exercise.py"), "--timeout", "0"], "must be > 0"),
    ([str(SUBMISSIONS / "correct_exercise.py"), str(SUBMISSIONS / "two_mistakes.py"),
      "--json", "r.json"], "--json takes one PATH, got 2 (use --json-dir DIR)"),
])
def test_usage_errors_exit_2_and_say_what_is_wrong(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: optreg check") or err.startswith("optreg check: error:")
    assert "optreg check: error:" in err and message in err


# --- in a notebook ------------------------------------------------------------------------------
def test_the_notebook_api_checks_classes_defined_in_this_process():
    classes = load_student_classes((SUBMISSIONS / "correct_exercise.py").read_text(), "nb.py")
    result = optreg.check(loss=classes.loss_class, optimizer=classes.optimizer_class,
                          checks=["ce", "defaults"])
    assert isinstance(result, SubmissionResult) and result.passed
    assert result.json["score"] == 3
    assert "<table>" in result._repr_html_() and "matches nn.CrossEntropyLoss" in str(result)


def test_the_notebook_api_stops_an_endless_loop():
    classes = load_student_classes((SUBMISSIONS / "correct_exercise.py").read_text(), "nb.py")

    class Stuck(classes.optimizer_class):
        def step(self, closure=None):
            print("thinking")
            while True:
                with contextlib.suppress(BaseException):  # even this cannot keep it running
                    pass

    result = optreg.check(optimizer=Stuck, checks=["adam"], timeout=1)
    adam = result["adam"]
    assert adam.timed_out and not result.passed
    assert adam.output == "thinking"


def test_the_notebook_api_rejects_unknown_checks():
    with pytest.raises(ValueError, match="unknown check 'adam2'"):
        optreg.check(optimizer=object, checks=["adam2"])  # type: ignore[arg-type]


# --- the reports --------------------------------------------------------------------------------
def sample() -> SubmissionResult:
    results = [CheckResult("ce", "passed", diagnosis="matches", max_diff=1e-6).scored(2),
               CheckResult("adam", "failed", diagnosis="no bias correction", fix="divide",
                           details="Your parameters leave ...", first_bad_step=1,
                           max_diff=0.1, output="hello").scored(3),
               CheckResult("ce_large_logits", "info", diagnosis="capped").scored(0)]
    return SubmissionResult("a|b.py", results=results, notes=["a note"], style="exercise")


def test_gradescope_json_is_the_autograder_format():
    results = gradescope_json(sample())
    assert results["score"] == 2 and results["output"] == "a note"
    assert [(t["name"], t["score"], t["max_score"], t["status"]) for t in results["tests"]] == [
        ("ce: cross-entropy vs nn.CrossEntropyLoss", 2, 2, "passed"),
        ("adam: Adam vs torch.optim.Adam", 0, 3, "failed"),
        ("ce_large_logits: cross-entropy at extreme logits (information)", 0, 0, "passed")]
    adam = results["tests"][1]["output"]
    assert adam.splitlines()[:4] == ["FAILED: no bias correction", "max |Δ|: 0.1",
                                     "first bad step: 1", "fix: divide"]
    assert adam.endswith("printed (last lines):\nhello")


def test_the_table_and_the_summaries():
    text = text_report(sample())
    assert "a|b.py — exercise-style signature, 2/5 points, failed: adam" in text
    assert "adam             FAILED  0/3     0.1" in text and "fix: divide" in text
    assert "printed (last lines):\n      | hello" in text
    assert summary_csv([sample()], ["ce", "adam", "ce_large_logits"]).splitlines() == [
        "submission,score,max_score,ce,adam,ce_large_logits", "a|b.py,2,5,2,0,info"]
    assert summary_markdown([sample()], ["ce", "adam"]).splitlines()[2] == \
        "| a\\|b.py | 2/5 | ✓ | ✗ no bias correction |"


def test_json_files_get_distinct_names():
    assert _file_names(["a/nb.ipynb", "b/nb.ipynb", "c/x.py", "c/x.py"]) == [
        "a-nb", "b-nb", "x", "x-2"]
    assert _file_names(["s/a/nb.py", "t/a/nb.py"]) == ["s-a-nb", "t-a-nb"]


def test_the_options_fit_a_subcommand_of_the_optreg_command(capsys):
    import argparse

    from optreg.check.cli import add_arguments, run

    parser = argparse.ArgumentParser(prog="optreg")
    add_arguments(parser.add_subparsers(dest="command").add_parser("check"))
    args = parser.parse_args(["check", "missing.ipynb", "--points", "adam=2", "--adamw-form",
                              "paper", "--timeout", "5"])
    assert (args.points, args.adamw_form, args.timeout) == ([("adam", 2.0)], "paper", 5.0)
    assert run(args) == 2
    assert "optreg check: error: missing.ipynb: no such file" in capsys.readouterr().err
