"""Results on disk: written atomically, one file per run, gathered into ``results.json``.

An output folder of a study or sweep looks like::

    OUT/
      runs/<run_id>.json         one finished run (ok, diverged or failed): the resume marker
      checkpoints/<run_id>.pt    end-of-epoch checkpoint of an unfinished run (removed when done)
      results.json               {"study": {...}, "runs": [...]}, rewritten as runs finish
      report.md, report.html, *.png

Every file is written to a temporary file in the same folder and then renamed over the target,
so a crash or ``kill -9`` leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

RUNS_DIR = "runs"
CHECKPOINTS_DIR = "checkpoints"
RESULTS_FILE = "results.json"


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically. NaN/Inf are written as null (valid JSON)."""
    return atomic_write_text(path, json.dumps(_finite(data), indent=2) + "\n")


def read_json(path: str | Path) -> Any:
    """Read a JSON file; a corrupt one raises ``ValueError`` naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def run_path(out_dir: str | Path, run_id: str) -> Path:
    return Path(out_dir) / RUNS_DIR / f"{run_id}.json"


def checkpoint_path(out_dir: str | Path, run_id: str) -> Path:
    return Path(out_dir) / CHECKPOINTS_DIR / f"{run_id}.pt"


def save_run(out_dir: str | Path, result: dict[str, Any]) -> Path:
    """Store one finished run under ``runs/<id>.json``."""
    return write_json(run_path(out_dir, result["id"]), result)


def load_finished(out_dir: str | Path, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The stored results among ``run_ids`` (a run counts as finished once its file exists)."""
    found = {}
    for run_id in run_ids:
        path = run_path(out_dir, run_id)
        if path.exists():
            found[run_id] = read_json(path)
    return found


def write_results(out_dir: str | Path, study: dict[str, Any], runs: list[dict[str, Any]]) -> Path:
    """Write ``results.json`` = {"study": study, "runs": runs}."""
    return write_json(Path(out_dir) / RESULTS_FILE, {"study": study, "runs": runs})


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a ``results.json`` (or the folder holding one) and check its outline."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    data = read_json(path)
    if not isinstance(data, dict) or "runs" not in data or "study" not in data:
        raise ValueError(f"{path}: not an optreg results file (needs 'study' and 'runs')")
    return data


def _finite(value: Any) -> Any:
    """Replace NaN and ±Inf by None, recursively: JSON has no spelling for them."""
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
