"""Fetch the official CIFAR-10 archive, verify its MD5, and unpack it safely.

Steps of :func:`download_cifar10` (each skipped when its result is already there):

1. The ``cifar-10-batches-py`` folder already holds every file: use it, no network.
2. ``cifar-10-python.tar.gz`` already sits beside that folder and has the right MD5:
   use it, no network.
3. Otherwise download ``url`` into a temporary ``.part`` file in the same directory,
   hashing while writing; only when the byte count matches ``Content-Length`` and the
   MD5 matches is it renamed to ``cifar-10-python.tar.gz`` (an atomic ``os.replace``).
   On any failure, including Ctrl-C, the ``.part`` file is removed, so a partial or
   corrupt download never looks like a complete one.
4. Extract with :func:`extract_archive` into a temporary directory, then move the
   files into the ``cifar-10-batches-py`` folder.

:func:`extract_archive` checks every member before writing anything and refuses an
absolute name, a ``..`` component, a symlink or hard link whose target lies outside
the destination, a path or link target that goes through one of the archive's own
symlinks, and device files or FIFOs; the error names the member.  Where the standard
library has it (3.11.4+, 3.12), ``tarfile``'s ``"data"`` filter checks every member
against the destination as it is (its existing symlinks included) in that same first
pass, and again during extraction.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path

from tqdm import tqdm

from optreg.data.errors import DataError
from optreg.data.locations import FOLDER_NAME, LOCAL_COPY_HINT, cifar10_folder, missing_files

__all__ = [
    "ARCHIVE_NAME",
    "OFFICIAL_MD5",
    "OFFICIAL_URL",
    "download_cifar10",
    "download_file",
    "ensure_cifar10",
    "extract_archive",
    "file_md5",
]

OFFICIAL_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
OFFICIAL_MD5 = "c58f30108f718f92721af3b95e74349a"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
_CHUNK = 1 << 20


def file_md5(path: str | Path) -> str:
    """Hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _offline_hint(archive: Path) -> str:
    return (
        f"Without network access, copy {ARCHIVE_NAME} to {archive.parent} (optreg checks and "
        f"unpacks it), or {LOCAL_COPY_HINT}"
    )


def download_file(
    url: str, dest: str | Path, md5: str, *, progress: bool = True, timeout: float = 60.0
) -> Path:
    """Download ``url`` to ``dest``, which appears only once complete and MD5-verified.

    The bytes go to a temporary ``.part`` file beside ``dest``; it is renamed to
    ``dest`` after the size (if the server sent ``Content-Length``) and the MD5 both
    match, and removed on any failure.  A tqdm bar is shown on stderr when
    ``progress`` is true and stderr is a terminal.  ``file://`` URLs work too.

    Raises:
        DataError: network/HTTP error (the message says how to use a local copy),
            incomplete transfer, or MD5 mismatch.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, part_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        raise DataError(f"cannot write to {dest.parent}: {exc.strerror or exc}") from exc
    part = Path(part_name)
    try:
        digest = hashlib.md5()
        received = 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    length = response.headers.get("Content-Length")
                    total = int(length) if length and length.isdigit() else None
                    with tqdm(
                        total=total,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        desc=dest.name,
                        disable=not (progress and sys.stderr.isatty()),
                    ) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            digest.update(chunk)
                            received += len(chunk)
                            bar.update(len(chunk))
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                # URLError wraps the socket error; HTTPError's own text has the status.
                reason = exc.reason if type(exc) is urllib.error.URLError else exc
                raise DataError(f"cannot download {url}: {reason}. {_offline_hint(dest)}") from exc
        if total is not None and received != total:
            raise DataError(
                f"download of {url} incomplete: {received} of {total} bytes; nothing was kept. "
                f"{_offline_hint(dest)}"
            )
        actual = digest.hexdigest()
        if actual != md5.lower():
            raise DataError(
                f"checksum mismatch for {url}: md5 {actual}, expected {md5}; "
                "the downloaded file was removed"
            )
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def _unsafe_reason(member: tarfile.TarInfo, symlinks: set[str]) -> str | None:
    """Why ``member`` could write outside the destination (or be a device), else None.

    ``symlinks`` are the archive's symlink members (normalised names). A path through one of
    them is refused: where it leads depends on what extraction has created by then, which a
    check before extraction cannot see.
    """
    name = member.name
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' in path"
    if (via := _via_symlink(posixpath.dirname(name), symlinks)) is not None:
        return f"path through the archive's symlink {via!r}"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device file or FIFO"
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", link):
            return f"link to absolute path {link!r}"
        # Symlinks resolve from the member's directory, hard links from the archive root.
        target = posixpath.join(posixpath.dirname(name) if member.issym() else "", link)
        resolved = posixpath.normpath(target)
        if resolved == ".." or resolved.startswith("../"):
            return f"link to {link!r} points outside the destination"
        if (via := _via_symlink(target, symlinks)) is not None:
            return f"link to {link!r} goes through the archive's symlink {via!r}"
    elif not (member.isfile() or member.isdir()):
        return "unsupported member type"
    return None


def _via_symlink(path: str, symlinks: set[str]) -> str | None:
    """The first of ``path``'s leading parts (itself included) that is one of ``symlinks``.

    Parts before the first symlink are real folders, so each prefix normalises lexically.
    """
    parts = re.split(r"[/\\]", path)
    for end in range(1, len(parts) + 1):
        prefix = posixpath.normpath("/".join(parts[:end]))
        if prefix in symlinks:
            return prefix
    return None


def _check_members(archive: Path, members: list[tarfile.TarInfo], dest: Path) -> None:
    """Raise DataError naming the first member that is unsafe to extract into ``dest``."""
    symlinks = {posixpath.normpath(m.name) for m in members if m.issym()}
    for member in members:
        reason = _unsafe_reason(member, symlinks)
        if reason is None and hasattr(tarfile, "data_filter"):
            try:  # e.g. a path through a symlink that ``dest`` already holds
                tarfile.data_filter(member, str(dest))
            except tarfile.FilterError as exc:
                reason = str(exc)
        if reason is not None:
            raise DataError(
                f"{archive}: refusing unsafe archive member {member.name!r} ({reason}); "
                "nothing was extracted"
            )


def extract_archive(archive: str | Path, dest: str | Path) -> None:
    """Extract a tar archive (any compression) into ``dest``, refusing unsafe members.

    Every member is checked before anything is written, so a rejected archive writes
    nothing at all (``dest`` is not even created).

    Raises:
        DataError: an unsafe member (the message names it), or an unreadable/corrupt archive.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            _check_members(archive, members, dest)
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Python without the extraction filters
                tar.extractall(dest, members=members)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{archive}: cannot extract ({exc})") from exc


def ensure_cifar10(
    root: str | os.PathLike[str] | None = None, *, download: bool = False, url: str = OFFICIAL_URL
) -> Path:
    """The ``cifar-10-batches-py`` folder for ``root``, complete; downloaded from ``url`` first
    when files are missing and ``download`` is true.

    Raises:
        DataError: files are missing (and ``download`` is false, or the download failed).
    """
    folder = cifar10_folder(root)
    missing = missing_files(folder)
    if missing and download:
        folder = download_cifar10(root, url)
        missing = missing_files(folder)
    if missing:
        raise DataError(
            f"CIFAR-10 not found: {folder} lacks {', '.join(missing)}. Download it (--download "
            f"on the command line, download=True in Python), or {LOCAL_COPY_HINT}"
        )
    return folder


def download_cifar10(
    root: str | os.PathLike[str] | None = None,
    url: str = OFFICIAL_URL,
    md5: str = OFFICIAL_MD5,
    progress: bool = True,
    *,
    timeout: float = 60.0,
) -> Path:
    """Make sure the CIFAR-10 files are in ``root``, downloading only if needed.

    Args:
        root: the data directory (parent of ``cifar-10-batches-py`` or that folder
            itself); ``None`` means ``$OPTREG_DATA_DIR`` or the cache directory.
        url: where to fetch ``cifar-10-python.tar.gz`` (a mirror, or a ``file://`` URL).
        md5: expected MD5 of the archive (hex).
        progress: show a tqdm bar (only when stderr is a terminal).
        timeout: socket timeout in seconds.

    Returns:
        The ``cifar-10-batches-py`` folder, holding all seven files.

    The archive is kept beside the folder as ``cifar-10-python.tar.gz``; an archive
    found there is used when its MD5 matches and downloaded again otherwise.

    Raises:
        DataError: network error, checksum mismatch, unsafe or incomplete archive.
    """
    folder = cifar10_folder(root)
    if not missing_files(folder):
        return folder
    workdir = folder.parent
    archive = workdir / ARCHIVE_NAME
    if not (archive.is_file() and file_md5(archive) == md5.lower()):
        download_file(url, archive, md5, progress=progress, timeout=timeout)
    try:
        scratch = Path(tempfile.mkdtemp(dir=workdir, prefix=".cifar-10-extract-"))
    except OSError as exc:
        raise DataError(f"cannot write to {workdir}: {exc.strerror or exc}") from exc
    try:
        extract_archive(archive, scratch)
        unpacked = scratch / FOLDER_NAME
        if not unpacked.is_dir() or missing_files(unpacked):
            lacking = missing_files(unpacked) if unpacked.is_dir() else [f"{FOLDER_NAME}/"]
            raise DataError(f"{archive}: not the CIFAR-10 archive (lacks {', '.join(lacking)})")
        folder.mkdir(parents=True, exist_ok=True)
        for entry in unpacked.iterdir():
            if entry.is_file():
                os.replace(entry, folder / entry.name)
    except OSError as exc:
        raise DataError(f"cannot move the unpacked files into {folder}: {exc}") from exc
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder
