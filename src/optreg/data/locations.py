"""Where the CIFAR-10 files live: the data directory and the official file names.

The official "python version" archive unpacks to one folder, ``cifar-10-batches-py/``,
holding ``data_batch_1`` … ``data_batch_5`` (training, 10,000 images each),
``test_batch`` (10,000 images) and ``batches.meta`` (the class names).

A *data directory* is where optreg looks for that folder.  It is chosen, first match
wins, from: the argument (``--data-dir`` on the command line), the environment
variable ``OPTREG_DATA_DIR``, then a cache directory (``$XDG_CACHE_HOME/optreg``, or
``~/.cache/optreg``).  The data directory may be the parent of ``cifar-10-batches-py``
or that folder itself.  Nothing here touches the file system except the lookups in
:func:`cifar10_folder` and :func:`missing_files`.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DATA_DIR_ENV",
    "FOLDER_NAME",
    "LOCAL_COPY_HINT",
    "META_FILE",
    "REQUIRED_FILES",
    "TEST_FILE",
    "TRAIN_FILES",
    "cifar10_folder",
    "default_cache_dir",
    "missing_files",
    "resolve_data_dir",
]

DATA_DIR_ENV = "OPTREG_DATA_DIR"
FOLDER_NAME = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
REQUIRED_FILES = (*TRAIN_FILES, TEST_FILE, META_FILE)
LOCAL_COPY_HINT = (
    f"point optreg at a local copy with --data-dir DIR or the {DATA_DIR_ENV} environment "
    "variable (DIR holding cifar-10-batches-py/, or that folder itself)"
)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/optreg`` if that variable is set (non-empty), else ``~/.cache/optreg``."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "optreg"


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data directory: ``data_dir`` if given, else ``$OPTREG_DATA_DIR``, else the cache dir.

    An empty string counts as not given.  ``~`` is expanded; the path need not exist
    (a download creates it).
    The result may be the parent of ``cifar-10-batches-py`` or that folder itself;
    :func:`cifar10_folder` tells which.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return default_cache_dir()


def cifar10_folder(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The ``cifar-10-batches-py`` folder for a data directory (resolved as above).

    The data directory itself is the folder when it is named ``cifar-10-batches-py``
    or directly holds ``batches.meta`` / ``data_batch_1`` / ``test_batch``; otherwise
    the folder is ``<data_dir>/cifar-10-batches-py`` (which may not exist yet).
    """
    root = resolve_data_dir(data_dir)
    if root.name == FOLDER_NAME:
        return root
    if not (root / FOLDER_NAME).is_dir() and any(
        (root / name).is_file() for name in (META_FILE, TRAIN_FILES[0], TEST_FILE)
    ):
        return root
    return root / FOLDER_NAME


def missing_files(folder: Path) -> list[str]:
    """Names from :data:`REQUIRED_FILES` that are not regular files in ``folder``."""
    return [name for name in REQUIRED_FILES if not (folder / name).is_file()]
