"""The one exception type raised for every data problem (missing, corrupt, unsafe, offline)."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(RuntimeError):
    """A data file or download could not be used; the message names the file or URL.

    Raised for missing files, truncated or malformed pickles, pickles that try to
    import anything outside the CIFAR-10 format, wrong shapes or labels, failed
    checksums, unsafe archive members and network errors.  The message is meant
    to be printed as is (the CLI shows it without a traceback).
    """
