"""The README's Python example runs as written (so the front page cannot rot)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    match = re.search(r"## Drop-in beside torch\n\n```python\n(.*?)```", README.read_text(), re.S)
    assert match, "the README lost its Python example"
    monkeypatch.chdir(tmp_path)  # the example saves opt.pt
    namespace: dict = {}
    exec(compile(match.group(1), str(README), "exec"), namespace)
    import torch

    state = torch.load(tmp_path / "opt.pt", weights_only=True)
    reloaded = torch.optim.AdamW(namespace["model"].parameters())
    reloaded.load_state_dict(state)  # optreg's state dict loads into torch's optimizer
    assert reloaded.state_dict()["state"][0]["step"] == 1
