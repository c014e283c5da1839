"""A study's output folder: owned by one study at a time, trusted only for what optreg wrote.

Layout::

    OUT/
      .optreg-study.json         the marker: which study owns the folder, on which data, how run
      .optreg.lock               an OS file lock (flock) held while a study or report writes here
      runs/<run_id>.json         one finished run (ok, diverged or failed): the resume marker
      checkpoints/<run_id>.pt    end-of-epoch checkpoint of an unfinished run (removed when done)
      results.json               {"schema", "study", "runs"}, rewritten as runs finish
      report.md, report.html, *.png

The promises:

* **One writer.** :meth:`StudyFolder.claim` takes an exclusive, non-blocking ``flock`` on
  ``.optreg.lock`` before anything is written, and keeps it until :meth:`StudyFolder.close`. The
  lock dies with its process (a crash or ``kill -9`` leaves no stale lock, so ``--resume`` works),
  and a second writer is refused, naming the holder (pid, host, command, start time).
* **Nobody else's files.** A study writes only into a new or empty folder, or one that optreg
  made (it has the marker; folders of optreg 0.1.0 are recognised by their results.json). Anything
  else is refused with the names of a few of the foreign entries.
* **Resume trusts nothing it did not write.** A stored run counts only if it parses as a complete
  result whose id and config are the ones the study expects; a damaged or foreign run file stops
  the study with a message naming it. Resuming on other data (another fingerprint), as another
  study, with other student files, at another thread count or on another device is refused, and
  so is a resume that leaves out runs of the study it continues (it may add runs).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optreg.atomic import read_json, write_json
from optreg.config import RunConfig
from optreg.results import (
    RESULTS_FILE,
    ResultError,
    RunResult,
    Study,
    StudyResult,
    load_results,
    read_run,
    write_results,
    write_run,
)
from optreg.runtime import now

__all__ = ["CHECKPOINTS_DIR", "LOCK_FILE", "MARKER_FILE", "RUNS_DIR", "Identity", "OutputError",
           "StudyFolder", "recorded_threads"]

MARKER_FILE = ".optreg-study.json"
LOCK_FILE = ".optreg.lock"
RUNS_DIR = "runs"
CHECKPOINTS_DIR = "checkpoints"
#: What optreg itself writes into a study folder (anything else there is someone else's).
OWN_ENTRIES = frozenset({MARKER_FILE, LOCK_FILE, RUNS_DIR, CHECKPOINTS_DIR, RESULTS_FILE,
                         "report.md", "report.html", "loss_curves.png", "heatmaps.png",
                         "gap_curves.png", "step_sizes.png"})


class OutputError(Exception):
    """The output folder cannot be used (in use, someone else's, other data, unwritable…)."""


@dataclass(frozen=True)
class Identity:
    """What a study folder belongs to; stored in the marker and checked on resume."""

    study: str  # the study's name ("seed", "decoupling", "sweep", "train", ...)
    data: str | None  # the data's fingerprint (optreg.data.fingerprint); None: not recorded
    threads: int  # torch threads per run: a run's bits may depend on it
    submissions: str | None = None  # SHA-256 of the student files its runs use (--custom)
    device: str | None = None  # where the runs train ("cpu", "cuda:0"): their bits depend on it
    runs: Mapping[str, str] | None = None  # run id → name of every run of the study

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "data": self.data, "threads": self.threads,
                "submissions": self.submissions, "device": self.device,
                "runs": None if self.runs is None else dict(self.runs)}


class StudyFolder:
    """An output folder claimed (locked, marked) by one study."""

    def __init__(self, path: Path, lock_fd: int) -> None:
        self.path = path
        self._lock_fd: int | None = lock_fd

    # --- claiming --------------------------------------------------------------------------------
    @classmethod
    def claim(cls, path: str | Path, identity: Identity, *, resume: bool) -> StudyFolder:
        """Check that ``path`` may receive this study, lock it and write the marker.

        Raises:
            OutputError: in use by another process; holds someone else's files; holds another
                study's results and ``resume`` is false; on resume, the marker names another
                study, other data, other student files, another thread count or device, or
                leaves out some of its runs; cannot be created or written.
        """
        path = Path(path)
        _check_folder(path)
        foreign = _foreign_entries(path)
        if foreign:
            raise OutputError(f"{path} holds files optreg did not write ({_list(foreign)}); "
                              "choose a new or empty folder for --out")
        folder = cls(path, _lock(path))
        try:
            marker = folder._check_claim(identity, resume)
            created = (marker or {}).get("created_at") or now()
            write_json(path / MARKER_FILE, {"optreg_study": identity.to_dict(),
                                            "created_at": created})
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def for_report(cls, path: str | Path) -> StudyFolder:
        """Lock an existing study folder to (re)write its report."""
        path = Path(path)
        _check_folder(path, create=False)
        foreign = _foreign_entries(path)
        if foreign:
            raise OutputError(f"{path} holds files optreg did not write ({_list(foreign)}); "
                              "optreg writes reports only into its own study folders")
        return cls(path, _lock(path))

    def _check_claim(self, identity: Identity, resume: bool) -> dict[str, Any] | None:
        """Raise OutputError unless this study may write here; return the current marker."""
        marker = _read_marker(self.path)
        if not resume:
            if self.holds_results():
                raise OutputError(f"{self.path} already holds results; add --resume to continue "
                                  "that study, or choose another --out")
            return marker
        if marker is None:
            return None  # nothing of a study here yet (or an optreg 0.1.0 folder)
        stored = marker.get("optreg_study") or {}
        if stored.get("study") != identity.study:
            raise OutputError(f"{self.path} holds the study {stored.get('study')!r}, not "
                              f"{identity.study!r}; choose another --out")
        if stored.get("data") not in (None, identity.data):
            raise OutputError(
                f"{self.path}: its runs were trained on other data (fingerprint "
                f"{stored.get('data')}, now {identity.data}); resume with the same --data-dir, or "
                "start the study in another --out")
        _check_submissions(self.path, stored.get("submissions"), identity.submissions)
        if stored.get("threads") != identity.threads:
            raise OutputError(
                f"{self.path}: this study runs at {stored.get('threads')} torch thread(s) per run "
                f"and a run's bits may depend on it; resume with --threads "
                f"{stored.get('threads')} (or without --threads)")
        if stored.get("device") not in (None, identity.device):
            raise OutputError(
                f"{self.path}: this study's runs train on {stored['device']} and a run's bits "
                f"depend on the device; resume with --device {stored['device']}")
        left_out = {i: n for i, n in (stored.get("runs") or {}).items()
                    if identity.runs is not None and i not in identity.runs}
        if left_out:
            raise OutputError(
                f"{self.path}: the study there also has the run(s) "
                f"{_list(sorted(map(repr, left_out.values())))}, which these options leave out "
                "(another --only, --epochs, size or seed?); resume with the options it started "
                "with (a resume may add runs, not drop them), or choose another --out")
        return marker

    def holds_results(self) -> bool:
        """Finished runs, checkpoints, or a results.json listing runs (or unreadable)."""
        if any((self.path / d).is_dir() and any((self.path / d).iterdir())
               for d in (RUNS_DIR, CHECKPOINTS_DIR)):
            return True
        if not (self.path / RESULTS_FILE).exists():
            return False
        try:
            return bool(load_results(self.path / RESULTS_FILE).runs)
        except ResultError:
            return True  # unreadable: not ours to overwrite

    # --- runs ------------------------------------------------------------------------------------
    def run_path(self, run_id: str) -> Path:
        return self.path / RUNS_DIR / f"{run_id}.json"

    def checkpoint_path(self, run_id: str) -> Path:
        return self.path / CHECKPOINTS_DIR / f"{run_id}.pt"

    def stored_run(self, config: RunConfig) -> RunResult | None:
        """The stored result of ``config``, or None if it has none yet.

        Raises:
            OutputError: the file is damaged, incomplete, or holds another run (naming the file
                and what is wrong with it).
        """
        path = self.run_path(config.run_id)
        if not path.exists():
            return None
        try:
            result = read_run(path)
        except ResultError as e:
            raise OutputError(f"{e}. optreg did not write this file as it is; delete it to "
                              "run that run again") from None
        if result.id != config.run_id or result.config != config:
            raise OutputError(
                f"{path}: holds run {result.name!r} (id {result.id}), not {config.name!r} (id "
                f"{config.run_id}) that this study expects there; delete it to run that run "
                "again")
        return result

    def stored_study(self) -> Study | None:
        """The study as results.json last recorded it (None: no results.json yet)."""
        if not (self.path / RESULTS_FILE).exists():
            return None
        try:
            return load_results(self.path / RESULTS_FILE).study
        except ResultError as e:
            raise OutputError(f"{e}. optreg did not write this file as it is; move it away to "
                              "continue the study") from None

    def save_run(self, result: RunResult) -> None:
        write_run(self.run_path(result.id), result)

    def remove_checkpoint(self, run_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.checkpoint_path(run_id).unlink()

    def write_results(self, result: StudyResult) -> None:
        write_results(self.path / RESULTS_FILE, result)

    def tidy(self) -> None:
        """Remove the checkpoints folder once it is empty."""
        checkpoints = self.path / CHECKPOINTS_DIR
        if checkpoints.is_dir() and not any(checkpoints.iterdir()):
            shutil.rmtree(checkpoints)

    def close(self) -> None:
        """Release the lock (the lock file stays: its existence means nothing)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> StudyFolder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recorded_threads(path: str | Path) -> int | None:
    """Threads per run recorded by the study that made the folder ``path`` (None: none)."""
    path = Path(path)
    marker = _read_marker(path) if path.is_dir() else None
    threads = None if marker is None else marker["optreg_study"].get("threads")
    return threads if isinstance(threads, int) and threads >= 1 else None


# --- helpers --------------------------------------------------------------------------------------
def _read_marker(path: Path) -> dict[str, Any] | None:
    marker = path / MARKER_FILE
    if not marker.exists():
        return None
    try:
        data = read_json(marker)
    except ValueError as e:
        raise OutputError(f"{e}; it is optreg's marker of the study in this folder") from None
    if not isinstance(data, dict) or not isinstance(data.get("optreg_study"), dict):
        raise OutputError(f"{marker}: not optreg's study marker")
    return data


def _check_submissions(path: Path, stored: str | None, now: str | None) -> None:
    """A resume uses the same student files as the study it continues, or none as it did."""
    if stored == now:
        return
    if stored is None:
        raise OutputError(f"{path}: this study ran without --custom; resume it without "
                          "--custom, or run the student file in another --out")
    if now is None:
        raise OutputError(f"{path}: this study runs a student file (SHA-256 {stored}); resume "
                          "it with the same --custom FILE")
    raise OutputError(f"{path}: the student file of this study changed since it started (its "
                      f"SHA-256 was {stored}, now {now}); run the changed file in another --out")


def _check_folder(path: Path, *, create: bool = True) -> None:
    """``path`` is (or can be made) a writable folder; OutputError in plain words otherwise."""
    try:
        if path.exists() and not path.is_dir():
            raise OutputError(f"--out {path} exists and is not a folder")
        if not path.exists():
            if not create:
                raise OutputError(f"{path}: no such folder")
            path.mkdir(parents=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"{path}: this folder is not writable")
    except OSError as e:
        raise OutputError(f"cannot use {path} as the output folder: {_reason(e)}") from None


def _foreign_entries(path: Path) -> list[str]:
    """Entries of ``path`` that optreg would not have written (empty when the folder is ours).

    A folder is ours when it has the marker, or is empty (hidden entries such as editors' and
    notebooks' are ignored). Without a marker, optreg's own names count as ours only beside an
    optreg results.json: a folder of optreg 0.1.0, which wrote no marker.
    """
    try:
        names = sorted(n for n in os.listdir(path) if not n.startswith("."))
    except OSError as e:
        raise OutputError(f"cannot read {path}: {_reason(e)}") from None
    if not names or (path / MARKER_FILE).exists():
        return []
    if RESULTS_FILE in names:
        try:
            load_results(path / RESULTS_FILE)
        except (ResultError, OSError):
            return names
        return [n for n in names if n not in OWN_ENTRIES]
    return names


def _lock(path: Path) -> int:
    """An exclusive, non-blocking flock on ``path/.optreg.lock``; its holder's note inside."""
    lock = path / LOCK_FILE
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    except OSError as e:
        raise OutputError(f"cannot write into {path}: {_reason(e)}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise OutputError(f"{path} is in use by another optreg process ({holder}); wait for it "
                          "to finish, or choose another --out") from None
    except OSError as e:
        os.close(fd)
        raise OutputError(f"cannot lock {lock}: {_reason(e)}") from None
    note = {"pid": os.getpid(), "host": socket.gethostname(), "since": now(),
            "command": " ".join(["optreg", *sys.argv[1:]])[:300]}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(note) + "\n").encode(), 0)
    return fd


def _holder(fd: int) -> str:
    try:
        note = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return (f"pid {note.get('pid', '?')} on {note.get('host', '?')} since "
            f"{note.get('since', '?')}: {note.get('command', '?')}")


def _list(names: list[str], shown: int = 3) -> str:
    head = ", ".join(names[:shown])
    return head + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _reason(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on the device"
    return error.strerror or str(error)
