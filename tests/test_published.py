"""The published results (docs/results) are what the presets compute, and say only what is true.

Each folder must hold exactly the runs its preset makes from the settings it records (so a report
cannot show settings the runs did not use), all finished ok; no file may carry a path of the
machine that made it; every figure a report or the README shows must be there.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from optreg.api import STUDIES
from optreg.results import RESULTS_FILE, StudyResult, load_results

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = ROOT / "docs" / "results"
FOLDERS = sorted(p for p in PUBLISHED.iterdir() if (p / RESULTS_FILE).is_file())
# A path of the machine that wrote the file (the data dir, --out, a home folder).
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:home|work|tmp|root|Users|mnt|data|var)/")


def _preset_options(result: StudyResult) -> dict[str, Any]:
    """The preset's keyword arguments as the study recorded them (sweeps keep seeds in the
    grid)."""
    recorded = {**(result.study.grid or {}), **result.study.settings}
    parameters = inspect.signature(STUDIES[result.study.name]).parameters
    return {name: tuple(v) if isinstance(v, list) else v
            for name, v in recorded.items() if name in parameters}


def test_every_study_is_published() -> None:
    assert sorted(f.name for f in FOLDERS) == sorted(STUDIES)


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_published_runs_are_the_presets_runs(folder: Path) -> None:
    result = load_results(folder / RESULTS_FILE)
    assert result.study.name == folder.name
    configs, description = STUDIES[folder.name](**_preset_options(result))
    assert result.study.settings == description["settings"]
    assert {r.id: r.config for r in result.runs} == {c.run_id: c for c in configs}
    assert [r.name for r in result.runs if not r.ok] == []
    assert result.study.finished_at is not None


@pytest.mark.parametrize("folder", FOLDERS, ids=lambda f: f.name)
def test_published_files_name_no_machine_path_and_show_existing_figures(folder: Path) -> None:
    for path in folder.iterdir():
        if path.suffix in (".json", ".md", ".html"):
            text = re.sub(r"data:[^\"')]+", "", path.read_text(encoding="utf-8"))  # no images
            assert not MACHINE_PATH.search(text), f"{path.name}: {MACHINE_PATH.search(text)}"
    report = (folder / "report.md").read_text(encoding="utf-8")
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert figures and all((folder / f).is_file() for f in figures)


def test_the_readme_links_only_existing_files() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", readme)
               if "://" not in t and not t.startswith("#")}
    assert targets, "the README links no files"
    assert [t for t in sorted(targets) if not (ROOT / t).exists()] == []
