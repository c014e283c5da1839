"""``optreg parity``: every check passes, the table lists them all, and a broken optimizer fails."""

from __future__ import annotations

import inspect
import re
from typing import Any

import pytest

import optreg.parity
from optreg.cli import main
from optreg.optim import SGD, Adam, RMSprop
from optreg.parity import ParityRow, format_parity_table, run_parity


@pytest.fixture(scope="module")
def rows() -> list[ParityRow]:
    return run_parity(steps=20)


def test_every_parity_check_passes(rows: list[ParityRow]) -> None:
    failed = [(r.component, r.setting, r.max_diff, r.max_grad_diff) for r in rows if not r.passed]
    assert failed == []
    components = {r.component for r in rows}
    assert {"CrossEntropyLoss", "Adam", "Adam + L2 (weights)", "AdamW (weights)",
            "CE(l2=λ) + Adam", "SGD", "SGD Nesterov", "SGD + L2 (weights)", "RMSprop",
            "RMSprop centered, momentum", "RMSprop + L2 (weights)"} <= components
    for dtype in ("float32", "float64"):  # every component in both precisions
        assert components == {r.component for r in rows if r.setting.endswith(dtype)}
    weighted = {f"class weights, {targets}, {dtype}" for targets in ("mean", "probabilities")
                for dtype in ("float32", "float64")}  # class weights, both kinds of target
    assert weighted <= {r.setting for r in rows if r.component == "CrossEntropyLoss"}
    assert any("foreach" in r.setting for r in rows)
    assert any("single-tensor" in r.setting for r in rows)
    assert all("20 steps" in r.setting for r in rows if r.component != "CrossEntropyLoss")


def test_rows_use_the_documented_tolerances(rows: list[ParityRow]) -> None:
    """float32: 1e-6 + 1e-5·|x|, float64: 1e-12 + 1e-10·|x|; the L2-route rows allow 10×."""
    for r in rows:
        atol, rtol = (1e-6, 1e-5) if r.setting.endswith("float32") else (1e-12, 1e-10)
        scale = 10.0 if r.component == "CE(l2=λ) + Adam" else 1.0
        assert (r.atol, r.rtol) == pytest.approx((atol * scale, rtol * scale), rel=1e-12)
        assert r.max_diff >= 0.0 and r.max_grad_diff >= 0.0


def test_table_has_a_line_for_every_row(rows: list[ParityRow]) -> None:
    lines = format_parity_table(rows).splitlines()
    assert lines[0].split()[:2] == ["component", "counterpart"]
    assert set(lines[1]) <= {"-", " "}
    body = lines[2:]
    assert len(body) == len(rows)
    value_end = lines[0].index("max |Δ| value") + len("max |Δ| value")
    grad_end = lines[0].index("max |Δ| grad") + len("max |Δ| grad")
    for line, r in zip(body, rows, strict=True):
        assert line.startswith(r.component) and r.counterpart in line and r.setting in line
        assert line.endswith("pass" if r.passed else "FAIL")
        # the differences are right-aligned under their headers
        assert line[:value_end].endswith(f" {r.max_diff:.2e}")
        assert line[:grad_end].endswith(f" {r.max_grad_diff:.2e}")


def test_cli_parity_prints_the_table_and_the_tally(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parity", "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("component")
    n = len(run_parity(steps=1))  # the number of checks does not depend on the steps
    assert out.rstrip().endswith(f"{n} passed, 0 failed")
    assert "FAIL" not in out


def with_wrong_lr(cls: type) -> type:
    """``cls`` with a learning rate 10% too high: must not pass for torch's."""
    default = inspect.signature(cls).parameters["lr"].default

    class WrongLr(cls):
        def __init__(self, params: Any, lr: float = default, **options: Any) -> None:
            super().__init__(params, lr=lr * 1.1, **options)

    return WrongLr


OPTIMIZERS = {"Adam": Adam, "SGD": SGD, "RMSprop": RMSprop}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_a_broken_optimizer_fails_and_exits_1(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(optreg.parity, name, with_wrong_lr(OPTIMIZERS[name]))
    assert main(["parity", "--steps", "3"]) == 1
    out = capsys.readouterr().out
    match = re.search(r"(\d+) passed, (\d+) failed", out)
    assert match and int(match[2]) > 0
    failing = {line.split("  ")[0] for line in out.splitlines() if line.endswith("FAIL")}
    # Exactly the broken optimizer's rows fail, every option of it ("Adam amsgrad", "SGD
    # Nesterov", ...); AdamW is a class of its own, and the L2 routes and cross-entropy use no
    # broken code (the L2 routes have optreg's Adam on both sides).
    components = {line.split("  ")[0] for line in out.splitlines()[2:-1]}
    assert failing == {c for c in components if c == name or c.startswith(f"{name} ")}
