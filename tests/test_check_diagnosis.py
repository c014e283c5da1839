"""The checks on hand-written submissions, in this process: correct ones pass, and each file with
one catalogued mistake fails its check with that mistake named, at the step where it first shows.
(Child processes, time limits and the command line are in test_check_cli.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from optreg.check import CHECK_NAMES, Submission, load_submission
from optreg.check.catalogue import LOSS_MISTAKES, OPTIMIZER_MISTAKES
from optreg.check.checks import CheckOptions, run_check
from optreg.check.isolation import run_in_process

SUBMISSIONS = Path(__file__).parent / "submissions"
MISTAKES = SUBMISSIONS / "mistakes"

# mistake → (the checks that name it, the first bad step or loss call)
AT_STEP_2 = {"step_counted_twice_after_use", "m_not_stored", "v_not_stored", "betas_swapped",
             "m_stored_bias_corrected", "v_stored_bias_corrected",
             "penalty_lost_after_first_call"}
BOTH_DECAYS = ("adam_l2", "adamw")
CHECKS_OF = {
    **{m.id: ("adam",) for m in OPTIMIZER_MISTAKES[:23]},
    "decay_on_biases": BOTH_DECAYS, "l2_not_divided_by_batch_size": BOTH_DECAYS,
    "l2_halved": BOTH_DECAYS, "decay_missing": BOTH_DECAYS,
    "l2_divided_by_batch_size_twice": ("adam_l2",), "l2_added_after_moments": ("adam_l2",),
    "adamw_also_coupled": ("adamw",), "adamw_is_coupled": ("adamw",),
    "decay_after_update": ("adamw",), "decay_times_lr_twice": ("adamw",),
    **{m.id: ("ce",) for m in LOSS_MISTAKES[:6]},
    **{m.id: ("ce_l2",) for m in LOSS_MISTAKES[6:]},
}
TORCH_STYLE = {"l2_divided_by_batch_size_twice": {"optimizer": "MyAdam"}}


def load(path: Path, **names: str):
    return load_submission(path.read_text(), str(path), **names)


def test_there_is_a_submission_for_every_catalogued_mistake():
    every = {m.id for m in (*OPTIMIZER_MISTAKES, *LOSS_MISTAKES)}
    assert set(CHECKS_OF) == every
    assert {p.stem for p in MISTAKES.glob("*.py")} == every
    assert all(p.read_text().startswith(f"# Mistake {p.stem}") for p in MISTAKES.glob("*.py"))


# 100 steps instead of 300: every mistake shows by step 2, and a match must still hold at every
# step; 300 costs 3× the time on 51 runs (the tolerances at 300 are test_check_catalogue's).
SHORT = CheckOptions(steps=100)


@pytest.mark.parametrize("mistake", sorted(CHECKS_OF))
def test_each_mistake_is_named(mistake):
    sub = load(MISTAKES / f"{mistake}.py", **TORCH_STYLE.get(mistake, {}))
    for name in CHECKS_OF[mistake]:
        result = run_check(name, sub, SHORT)
        assert result.status == "failed", (name, result)
        assert result.mistakes[0] == mistake, (name, result.diagnosis, result.details)
        assert result.first_bad_step == (2 if mistake in AT_STEP_2 else 1)
        assert result.fix and result.diagnosis.startswith(next(
            m.title for m in (*OPTIMIZER_MISTAKES, *LOSS_MISTAKES) if m.id == mistake))


def test_a_failure_says_where_and_whether_the_moments_already_differ():
    update_only = run_check("adam", load(MISTAKES / "no_bias_correction.py"), CheckOptions())
    assert "leave those of torch.optim.Adam at step 1 of 300" in update_only.details
    assert "your exp_avg and exp_avg_sq still equal torch's: only the update differs" \
        in update_only.details
    moments = run_check("adam", load(MISTAKES / "m_without_one_minus_beta1.py"), CheckOptions())
    assert "at step 1 your exp_avg (max |Δ|" in moments.details
    assert "already differ from torch's" in moments.details
    counter = run_check("adam", load(MISTAKES / "step_counted_twice.py"), CheckOptions())
    assert "state['step'] is 2 after step 1 (torch: 1)" in counter.details


def test_two_mistakes_are_named_as_a_pair():
    result = run_check("adam", load(SUBMISSIONS / "two_mistakes.py"), CheckOptions())
    assert result.mistakes == ("no_bias_correction", "eps_inside_sqrt")
    assert result.diagnosis == "no bias correction + ε inside the square root"


def test_a_mistake_outside_the_catalogue_says_so_and_where_it_differs():
    result = run_check("adam", load(SUBMISSIONS / "unknown_mistake.py"), CheckOptions())
    assert result.status == "failed" and result.mistakes == ()
    assert result.diagnosis == "no known mistake matches" and result.first_bad_step == 1
    assert "your update there is 0.5 × torch's on every parameter" in result.details


def test_the_correct_submissions_pass_every_check():
    for path, names in ((SUBMISSIONS / "correct_exercise.py", {}),
                        (SUBMISSIONS / "correct_torch_style.py",
                         {"loss": "CrossEntropyWithL2", "optimizer": "MyAdam"})):
        result = run_in_process(load(path, **names), CHECK_NAMES)
        assert result.passed, str(result)
        assert result.score == result.max_score == 10
        assert result["adam"].max_diff < 1e-14  # two separate trainings, end to end
        assert result["l2_equivalence"].max_diff < 1e-14
    assert result["ce_large_logits"].diagnosis == "exact at extreme logits"


def test_the_exercise_s_log_of_softmax_plus_eps_is_information_at_extreme_logits():
    result = run_check("ce_large_logits", load(SUBMISSIONS / "correct_exercise.py"),
                       CheckOptions())
    assert result.status == "info" and result.passed
    assert "capped" in result.diagnosis and "−log ε" in result.details


def test_the_paper_s_adamw_passes_says_which_form_and_fails_when_torch_s_is_required():
    sub = load(SUBMISSIONS / "paper_form_adamw.py")
    either = run_check("adamw", sub, CheckOptions())
    assert either.status == "passed" and "paper's AdamW" in either.diagnosis
    assert "λ_torch = λ_paper / lr" in either.details and "3.125" in either.details
    torch_only = run_check("adamw", sub, CheckOptions(adamw_form="torch"))
    assert torch_only.status == "failed"
    assert torch_only.diagnosis.startswith("paper's form, but torch.optim.AdamW")
    assert "multiply the decay by lr" in torch_only.fix
    paper_only = run_check("adamw", load(SUBMISSIONS / "correct_exercise.py"),
                           CheckOptions(adamw_form="paper"))
    assert paper_only.diagnosis.startswith("torch's form, but the paper's AdamW")


def test_float32_state_is_said_and_checked_in_float32():
    result = run_check("adam", load(SUBMISSIONS / "float32_state.py"), CheckOptions())
    assert result.status == "passed"
    assert result.diagnosis.endswith("(in float32: your state is float32)")
    assert "your state['exp_avg'] is torch.float32 while the parameters are torch.float64" \
        in result.details.lower()


def test_an_exception_in_step_fails_with_the_student_s_traceback():
    result = run_check("adam", load(SUBMISSIONS / "broken" / "exception_in_step.ipynb"),
                       CheckOptions())
    assert result.diagnosis == "your code raised NameError in step() at step 1"
    assert 'exception_in_step.ipynb, code cell 3", line 39, in step' in result.details
    assert "optreg" not in result.details.replace("exception_in_step", "")


def test_the_two_l2_routes_part_where_one_is_wrong():
    lost = load(MISTAKES / "penalty_lost_after_first_call.py").loss_class
    optimizer = load(SUBMISSIONS / "correct_exercise.py").optimizer_class
    result = run_check("l2_equivalence", Submission.from_classes("mixed", lost, optimizer),
                       CheckOptions())
    assert result.status == "failed" and result.first_bad_step == 2
    assert "the penalty's gradient leaves (λ/B)·W at step 2" in result.details
    assert "L2 in the optimizer: it follows torch.optim.Adam(weight_decay=λ/B)" in result.details
