"""Files written atomically, JSON read with errors that name the file.

Every file optreg writes goes to a temporary file in the same folder, is flushed to disk and then
renamed over the target, so a crash, ``kill -9`` or a full disk leaves either the old file or the
new one, never half of one. New files get the usual permissions (0666 minus the umask), like any
file a program creates with ``open``; ``tempfile.mkstemp`` alone would leave them 0600.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_bytes", "atomic_write_text", "file_mode", "read_json", "write_json"]


@cache
def file_mode() -> int:
    """0666 minus the process umask (read once: setting the umask is the only way to read it)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), file_mode())
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
    """Read a JSON file. ``ValueError`` naming the file when it is not UTF-8 JSON (random bytes,
    truncated) or is a folder; ``FileNotFoundError`` when it does not exist."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a JSON file")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file (not UTF-8), so not JSON") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def _finite(value: Any) -> Any:
    """Replace NaN and ±Inf by None, recursively: JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
