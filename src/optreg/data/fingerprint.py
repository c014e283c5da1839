"""A fingerprint of the CIFAR-10 files: which data a study ran on, to refuse resuming on other.

:func:`fingerprint` is the SHA-256 of the seven files of ``cifar-10-batches-py`` (the five
training batches, ``test_batch`` and ``batches.meta``), in that order, each framed by its name
and size::

    SHA-256( name₁ NUL size₁ NUL bytes₁ ‖ … ‖ name₇ NUL size₇ NUL bytes₇ )

as 64 hexadecimal digits. The same files give the same fingerprint wherever they lie; a change
to any byte of any of them gives another (barring a SHA-256 collision). Other files in the
folder (``readme.html``, the archive) do not count.

Cost on the full set (185 MB), a 2-core AMD EPYC VM (SHA-NI), median of 5; the first figure is
from a quiet moment, the range from three runs while other jobs shared the cores. "Evicted":
dropped from this VM's page cache first (``posix_fadvise``; its host may still cache them).

=====================================  ====================  ====================
what is hashed                         files in page cache   evicted beforehand
=====================================  ====================  ====================
whole files, SHA-256 (this function)   0.14 s (0.14–0.23)    0.19 s (0.16–0.30)
whole files, BLAKE2b / MD5             0.25 / 0.31 s         0.31 / 0.34 s
sizes + first and last MiB of each     0.009 s (0.009–0.03)  0.03 s (0.02–0.06)
=====================================  ====================  ====================

Whole files it is: a fraction of a second once per study, less than loading the data
(0.3–0.9 s), and certain, where sizes and both ends miss a change anywhere in the middle 28 MiB
of a batch (a re-encoded or edited image keeps the sizes). ``benchmarks/fingerprint_cost.py``
measures it.
"""

from __future__ import annotations

import hashlib
import os

from optreg.data.download import ensure_cifar10
from optreg.data.errors import DataError
from optreg.data.locations import REQUIRED_FILES

__all__ = ["fingerprint"]

_CHUNK = 1 << 20


def fingerprint(folder: str | os.PathLike[str]) -> str:
    """The SHA-256 fingerprint (hex) of the CIFAR-10 files in ``folder``.

    Args:
        folder: the data directory (the parent of ``cifar-10-batches-py``) or that folder
            itself, as for :func:`~optreg.data.load_cifar10`.

    Raises:
        DataError: a file is missing or unreadable (the message names it).
    """
    batches = ensure_cifar10(folder)
    digest = hashlib.sha256()
    for name in REQUIRED_FILES:
        path = batches / name
        try:
            with open(path, "rb") as f:
                digest.update(f"{name}\0{os.fstat(f.fileno()).st_size}\0".encode())
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return digest.hexdigest()
