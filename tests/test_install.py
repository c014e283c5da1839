"""What the package installs is enough for the main job: no optional part on its import path.

``pip install optreg`` (no extras) must train, study and write the report; Ray, TensorBoard,
pandas and Jupyter are extras, imported only where used. The test runs a real seed study in a
fresh interpreter in which every module that only an extra provides fails to import.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirement_names(requirements: list[str]) -> set[str]:
    names = set()
    for requirement in requirements:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if name and not requirement.startswith("optreg") and "extra ==" not in requirement:
            names.add(name[0].lower().replace("_", "-"))
    return names


def _with_dependencies(names: set[str]) -> set[str]:
    """``names`` and everything they require, installed or not (transitively)."""
    found, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        with contextlib.suppress(metadata.PackageNotFoundError):  # not installed here
            todo += _requirement_names(metadata.requires(name) or [])
    return found


def _top_modules(distribution: str) -> set[str]:
    try:
        text = metadata.distribution(distribution).read_text("top_level.txt") or ""
    except metadata.PackageNotFoundError:
        return set()
    modules = {line.strip() for line in text.splitlines() if line.strip()}
    return modules or {distribution.replace("-", "_")}


def extra_only_modules() -> list[str]:
    """Top-level modules that only an extra brings (not the package's own dependencies)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = _with_dependencies(_requirement_names(project["dependencies"]))
    extras = set().union(*map(_requirement_names, project["optional-dependencies"].values()))
    only_extras = {name for name in extras if name not in core}
    modules = set().union(*(_top_modules(name) or {name} for name in only_extras))
    return sorted(m for m in modules if not m.startswith("_"))


def test_matplotlib_is_a_dependency_of_the_package() -> None:
    """The report is the main job's output: its figures cannot need an extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "matplotlib" in _requirement_names(project["dependencies"])
    assert {"ray", "tensorboard", "pandas"} <= set(extra_only_modules())


def test_the_seed_study_and_its_report_need_no_extra(data_dir: Path, tmp_path: Path) -> None:
    blocked = extra_only_modules()
    out = tmp_path / "out"
    code = (
        "import sys\n"
        f"sys.modules.update({{name: None for name in {blocked!r}}})  # import raises\n"
        "from optreg.cli import main\n"
        f"code = main(['study', 'seed', '--data-dir', {str(data_dir)!r}, '--out', {str(out)!r},"
        " '--epochs', '1', '--train-size', '64', '--test-size', '32', '--workers', '2',"
        " '--no-progress', '--only', 'sgd,adam,adam-l2'])\n"
        f"leaked = sorted(set(sys.modules) & set({blocked!r}) - {{n for n, m in"
        " sys.modules.items() if m is None})\n"
        "assert not leaked, leaked\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    results = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in results["runs"]] == ["ok"] * 3
    for name in ("report.md", "report.html", "loss_curves.png"):
        assert (out / name).stat().st_size > 0, name
