"""``optreg parity``: every check passes, the table lists them all, and a broken optimizer fails."""

from __future__ import annotations

import re
from typing import Any

import pytest

import optreg.parity
from optreg.cli import main
from optreg.optim import Adam
from optreg.parity import ParityRow, format_parity_table, run_parity


@pytest.fixture(scope="module")
def rows() -> list[ParityRow]:
    return run_parity(steps=20)


def test_every_parity_check_passes(rows: list[ParityRow]) -> None:
    failed = [(r.component, r.setting, r.max_diff, r.max_grad_diff) for r in rows if not r.passed]
    assert failed == []
    components = {r.component for r in rows}
    assert {"CrossEntropyLoss", "Adam", "Adam + L2 (weights)", "AdamW (weights)",
            "CE(l2=λ) + Adam"} <= components
    for dtype in ("float32", "float64"):  # every component in both precisions
        assert components == {r.component for r in rows if r.setting.endswith(dtype)}
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
    for line, r in zip(body, rows, strict=True):
        assert line.startswith(r.component) and r.counterpart in line and r.setting in line
        assert line.endswith("pass" if r.passed else "FAIL")
        assert f"{r.max_diff:.2e}" in line


def test_cli_parity_prints_the_table_and_the_tally(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["parity", "--steps", "10"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("component")
    n = len(run_parity(steps=1))  # the number of checks does not depend on the steps
    assert out.rstrip().endswith(f"{n} passed, 0 failed")
    assert "FAIL" not in out


class WrongLrAdam(Adam):
    """optreg's Adam with a learning rate 10% too high: must not pass for torch's."""

    def __init__(self, params: Any, lr: float = 1e-3, **options: Any) -> None:
        super().__init__(params, lr=lr * 1.1, **options)


def test_a_broken_optimizer_fails_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(optreg.parity, "Adam", WrongLrAdam)
    assert main(["parity", "--steps", "3"]) == 1
    out = capsys.readouterr().out
    match = re.search(r"(\d+) passed, (\d+) failed", out)
    assert match and int(match[2]) > 0
    failing = {line.split("  ")[0] for line in out.splitlines() if line.endswith("FAIL")}
    assert {"Adam", "Adam + L2 (weights)", "Adam + L2 (all)", "Adam amsgrad"} <= failing
    # Untouched components still pass; so do the L2 routes, which use optreg's Adam on both sides.
    assert not failing & {"CrossEntropyLoss", "AdamW (weights)", "AdamW (all)", "CE(l2=λ) + Adam"}
