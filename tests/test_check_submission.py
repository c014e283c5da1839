"""Reading submissions: what runs and what does not, finding the classes, the two signature
styles and the adapter the study uses. Nothing here runs a check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from optreg.check import SubmissionError, load_student_classes, load_submission
from optreg.check.submission import make_loss, signature_style, student_traceback

SUBMISSIONS = Path(__file__).parent / "submissions"


def read(name: str) -> str:
    return (SUBMISSIONS / name).read_text()


def notebook(*cells: str) -> str:
    """A notebook's JSON with these code cells."""
    return json.dumps({"cells": [{"cell_type": "code", "source": c, "metadata": {},
                                  "outputs": [], "execution_count": None} for c in cells],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


CLASSES = """
import torch
from torch import nn
from torch.optim import Optimizer

class MyCrossEntropyLoss(nn.Module):
    def __init__(self, params, l2=0):
        super().__init__()
        self.l2, self.para = l2, list(params)
    def forward(self, y_predicted, y_target):
        return nn.functional.cross_entropy(y_predicted, y_target)

class MyAdamOptimizer(Optimizer):
    def __init__(self, params, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, l2=0, adamw=False):
        self.adamw = adamw
        super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, l2=l2))
    def step(self, closure=None):
        pass
"""


# --- what runs ----------------------------------------------------------------------------------
def test_the_exercise_notebook_defines_the_classes_and_runs_no_training_cell(tmp_path, monkeypatch):
    marker = tmp_path / "ran.marker"
    monkeypatch.setenv("OPTREG_CHECK_MARKER", str(marker))
    sub = load_submission(read("correct_exercise.ipynb"), "nb.ipynb")
    assert sub.problems == {}
    assert sub.loss_class.__name__ == "MyCrossEntropyLoss"
    assert sub.optimizer_class.__name__ == "MyAdamOptimizer"
    assert sub.style == "exercise"
    # The training cells would write the marker and sleep for an hour; the !pip cell, the
    # %matplotlib and %%time magics and the download never run either.
    assert not marker.exists()
    notes = " ".join(sub.notes)
    assert "No module named 'torchvision'" in notes and "nb.ipynb, code cell 2, line 1" in notes
    assert "skipped nb.ipynb, code cell 8 (it does not parse" in notes  # `optimizer = `


def test_only_imports_definitions_and_plain_constants_run():
    text = CLASSES + """
batch_size = 32
eps, B = 1e-8, 2 * 16
tiny = 10 ** -8
scale: float = B / batch_size
device = 'cuda' if torch.cuda.is_available() else 'cpu'
marker = open('/nonexistent/dir/file', 'w')
raise SystemExit('top-level code ran')
"""
    classes = load_student_classes(text, "s.py")
    namespace = classes.optimizer_class.step.__globals__
    assert namespace["batch_size"] == 32 and namespace["B"] == 32 and namespace["eps"] == 1e-8
    assert namespace["tiny"] == 1e-8 and namespace["scale"] == 1.0
    assert "device" not in namespace and "marker" not in namespace


def test_magic_lines_are_dropped_only_where_the_cell_would_not_parse():
    text = notebook("!pip install torch\n%matplotlib inline\n" + CLASSES,
                    "x = 7 %\\\n 4\n")  # a valid line continuing with `%`: left alone
    sub = load_submission(text, "n.ipynb")
    assert sub.problems == {}
    assert sub.optimizer_class.step.__globals__["x"] == 3


def test_a_py_file_with_cell_markers_is_read_cell_by_cell():
    text = f"# In[1]:\n{CLASSES}\n# In[2]:\noptimizer = \n# %%\nbatch_size = 32\n"
    sub = load_submission(text, "export.py")
    assert sub.problems == {}
    assert sub.optimizer_class.step.__globals__["batch_size"] == 32
    assert sub.notes == ["skipped export.py, lines 21-22 (it does not parse and defines none of "
                         "the classes: invalid syntax at line 22)"]


# --- errors that name what is wrong -----------------------------------------------------------
def test_a_syntax_error_in_a_plain_py_file_names_its_line():
    with pytest.raises(SubmissionError, match=r"syntax_error\.py, line 9: expected default "
                                              r"value expression"):
        load_submission(read("broken/syntax_error.py"), "broken/syntax_error.py")


def test_a_syntax_error_in_a_class_cell_is_that_class_s_problem():
    broken = CLASSES.replace("def step(self, closure=None):", "def step(self, closure=None)")
    sub = load_submission(notebook(broken), "nb.ipynb")
    assert "syntax error at nb.ipynb, code cell 1, line 17" in sub.problems["optimizer"]
    assert "syntax error" in sub.problems["loss"]  # the same cell defines both


def test_missing_classes_say_which_names_were_looked_for_and_what_there_is():
    sub = load_submission(read("broken/missing_classes.py"), "m.py")
    assert "no class MyCrossEntropyLoss (the exercise's name)" in sub.problems["loss"]
    assert "nn.Module classes found: CrossEntropy (choose one with --loss NAME)" \
        in sub.problems["loss"]
    assert "Optimizer classes found: Adam (choose one with --optimizer NAME)" \
        in sub.problems["optimizer"]
    with pytest.raises(SubmissionError, match="no class MyCrossEntropyLoss"):
        load_student_classes(read("broken/missing_classes.py"), "m.py")
    named = load_student_classes(read("broken/missing_classes.py"), "m.py",
                                 loss="CrossEntropy", optimizer="Adam")
    assert named.style == "exercise"
    with pytest.raises(SubmissionError, match=r"no class Nope \(given\)"):
        load_student_classes(CLASSES, "s.py", optimizer="Nope")


def test_an_import_the_classes_need_is_an_error_naming_it_one_they_do_not_need_a_note():
    text = "from torchvision import datasets\nimport not_a_module as helpers\n" + CLASSES.replace(
        "return nn.functional.cross_entropy(y_predicted, y_target)",
        "return helpers.ce(y_predicted, y_target)")
    sub = load_submission(text, "s.py")
    assert "MyCrossEntropyLoss uses `helpers`, but `import not_a_module as helpers` (s.py, " \
           "line 2) failed: ModuleNotFoundError" in sub.problems["loss"]
    assert "optimizer" not in sub.problems  # its checks still run
    assert any("`from torchvision import datasets` (s.py, line 1) failed" in n for n in sub.notes)


def test_a_local_variable_named_like_a_failed_import_is_not_a_use_of_it():
    text = "from torchvision import datasets\n" + CLASSES.replace(
        "pass", "datasets = 1\n        return datasets")
    assert load_submission(text, "s.py").problems == {}


def test_a_name_only_a_skipped_assignment_defines_is_noted():
    text = CLASSES.replace("pass", "return scale") + "scale = torch.ones(1).item()\n"
    sub = load_submission(text, "s.py")
    assert any("uses `scale`, but it is assigned at s.py, line 19 from an expression the "
               "checker does not run" in n for n in sub.notes)


def test_an_exception_while_defining_a_class_shows_the_student_s_traceback():
    text = CLASSES.replace("class MyAdamOptimizer(Optimizer):",
                           "class MyAdamOptimizer(Optimizer):\n    boom = 1 / 0")
    sub = load_submission(text, "s.py")
    assert 'File "s.py", line 14, in MyAdamOptimizer' in sub.problems["optimizer"]
    assert "ZeroDivisionError" in sub.problems["optimizer"]
    assert "optreg" not in sub.problems["optimizer"].split("raised:")[1]


def test_a_class_defined_twice_uses_the_last_definition_and_says_so():
    text = CLASSES + "\nclass MyAdamOptimizer(MyAdamOptimizer):\n    pass\n"
    sub = load_submission(text, "s.py")
    assert sub.optimizer_class.__mro__[1].__name__ == "MyAdamOptimizer"
    assert any("MyAdamOptimizer is defined 2 times" in n for n in sub.notes)


def test_an_invalid_notebook_is_an_error():
    with pytest.raises(SubmissionError, match="not a valid Jupyter notebook"):
        load_submission("{not json", "x.ipynb")


def test_student_traceback_keeps_only_the_submission_s_frames():
    sub = load_submission(read("broken/exception_in_step.ipynb"), "e.ipynb")
    p = nn.Parameter(torch.ones(2, 2))
    p.grad = torch.ones(2, 2)
    optimizer = sub.make_optimizer([p], lr=1e-3)
    with pytest.raises(NameError) as info:
        optimizer.step()
    text = student_traceback(info.value, sub.filenames)
    assert text.splitlines() == [
        "Traceback (most recent call last):",
        '  File "e.ipynb, code cell 3", line 39, in step',
        "    v_hat = exp_avg_sq / (1 - beta_2 ** step)",
        "                              ^^^^^^",
        "NameError: name 'beta_2' is not defined",
    ]


# --- signature styles and the adapter -------------------------------------------------------------
def test_the_exercise_style_builds_with_the_exercise_s_lambda():
    classes = load_student_classes(read("correct_exercise.py"), "c.py")
    net = nn.Linear(3, 2)
    loss = classes.make_loss(net.parameters(), l2=0.1)
    assert loss.l2 == 0.1 and len(loss.para) == 2
    opt = classes.make_optimizer(net.parameters(), lr=2e-3, l2=0.1, adamw=True)
    assert type(opt).__name__ == "MyAdamOptimizer" and opt.adamw
    assert opt.param_groups[0]["l2"] == 0.1 and opt.param_groups[0]["lr"] == 2e-3
    assert opt.param_groups[0]["beta2"] == 0.999  # its own default


def test_the_torch_style_gets_weight_decay_over_batch_size_on_the_weights_only():
    classes = load_student_classes(read("correct_torch_style.py"), "t.py",
                                   loss="CrossEntropyWithL2", optimizer="MyAdam")
    assert classes.style == "torch"
    assert classes.adamw_class.__name__ == "MyAdamW"  # found by its name
    assert any("AdamW class: MyAdamW" in n for n in classes.notes)
    net = nn.Linear(3, 2)
    plain = classes.make_optimizer(net.parameters(), lr=1e-3)
    assert type(plain).__name__ == "MyAdam" and plain.param_groups[0]["weight_decay"] == 0
    decayed = classes.make_optimizer(net.parameters(), lr=1e-3, l2=0.1, adamw=True,
                                     batch_size=32)
    assert type(decayed).__name__ == "MyAdamW"
    groups = {tuple(g["params"][0].shape): g["weight_decay"] for g in decayed.param_groups}
    assert groups == {(2, 3): 0.1 / 32, (2,): 0.0}
    loss = classes.make_loss(net.parameters(), l2=0.1)
    assert loss.l2 == 0.1 and len(loss.weights) == 1


def test_torch_style_without_an_adamw_says_how_to_name_one():
    text = read("correct_torch_style.py").replace("class MyAdamW(MyAdam)", "class Other(MyAdam)")
    classes = load_student_classes(text, "t.py", loss="CrossEntropyWithL2", optimizer="MyAdam")
    with pytest.raises(SubmissionError, match=r"no AdamW.*--adamw NAME"):
        classes.make_optimizer([nn.Parameter(torch.ones(2, 2))], lr=1e-3, adamw=True)
    assert load_submission(text, "t.py", loss="CrossEntropyWithL2", optimizer="MyAdam",
                           adamw="Other").adamw_class.__name__ == "Other"


def test_a_signature_of_neither_style_is_named():
    class Odd(torch.optim.Optimizer):
        def __init__(self, params, learning_rate=1e-3):
            super().__init__(params, {})

    with pytest.raises(SubmissionError, match=r"cannot tell the signature style of "
                                              r"Odd.__init__\(self, params, learning_rate\)"):
        signature_style(Odd)


def test_a_loss_without_l2_cannot_take_a_penalty():
    class Plain(nn.Module):
        def forward(self, z, y):
            return nn.functional.cross_entropy(z, y)

    assert isinstance(make_loss(Plain, iter(()), 0.0), Plain)
    with pytest.raises(SubmissionError, match=r"Plain\.__init__ takes no l2"):
        make_loss(Plain, iter(()), 0.1)
