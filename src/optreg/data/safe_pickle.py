"""Load untrusted CIFAR-10 pickles without running code from them.

A pickle can import any callable and call it (``os.system`` via ``__reduce__`` is
the classic), so the files are read with a :class:`pickle.Unpickler` whose
:meth:`~RestrictedUnpickler.find_class` knows the names below and nothing else.
A pickled NumPy array uses three:

* ``numpy.core.multiarray._reconstruct`` (NumPy 2 writes ``numpy._core.multiarray``;
  both are accepted), only with ``numpy.ndarray`` as its first argument;
* ``numpy.ndarray``, usable only as that argument (calling it is refused);
* ``numpy.dtype``, only for plain numeric type codes (``u1``, ``<i8``, ``f4``, …).

Dicts, lists, ints and strings need no import at all, except bytes in a pickle that
Python 3 wrote at protocol 2 (``pickle.dumps(..., protocol=2)``), which has no opcode
for them: it writes ``_codecs.encode(text, "latin1")`` (``text`` the bytes decoded as
latin-1) and, for empty bytes, ``bytes()`` (``__builtin__.bytes``, or ``builtins.bytes``
with ``fix_imports=False``).  Those two names resolve to wrappers that allow exactly
that: ``encode`` takes a ``str`` and ``"latin1"`` or ``"latin-1"`` and returns bytes,
``bytes`` takes no argument and returns ``b""``.

Not even NumPy's own ``__setstate__`` sees untrusted state: a crafted dtype state
can set the "holds objects" flag or add fields, which would make NumPy treat raw
bytes as object pointers.  So ``_reconstruct`` and ``dtype`` return stand-ins whose
``__setstate__`` checks the state (shape, byte order, data length) and builds the
array with :func:`numpy.frombuffer`; the stand-ins are swapped for the real
arrays before the result is returned.  The arrays are read-only views of the
pickle's bytes.

The official files are Python-2 pickles (protocol 2) whose strings are read as
``bytes`` (``encoding="bytes"``), so dict keys are ``b"data"``, ``b"labels"`` and
so on; Python-3 pickles (protocol 2 and up) of the same dicts load too.  Every
failure (missing file, truncated stream, forbidden import, bad array state, …)
becomes a :class:`~optreg.data.errors.DataError` naming the file.
"""

from __future__ import annotations

import io
import math
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np

from optreg.data.errors import DataError

__all__ = ["RestrictedUnpickler", "load_pickle", "loads_pickle"]

_TYPE_CODE = re.compile(r"[<>|=]?(?:b1|[iu][1248]|f[248])")
_BYTE_ORDERS = frozenset("<>|=")


def _text(value: Any) -> Any:
    return value.decode("ascii", errors="replace") if isinstance(value, bytes) else value


class _NdarrayMark:
    """What ``numpy.ndarray`` resolves to: a marker for ``_reconstruct``, not callable."""

    __slots__ = ()


_NDARRAY = _NdarrayMark()


class _DtypeStub:
    """Stands for ``numpy.dtype(code)``; its pickled state may only set the byte order."""

    __slots__ = ("dtype",)

    def __init__(self, code: Any, align: Any = 0, copy: Any = 0) -> None:
        code = _text(code)
        if not isinstance(code, str) or not _TYPE_CODE.fullmatch(code):
            raise pickle.UnpicklingError(f"refusing dtype {code!r} (only numeric type codes)")
        self.dtype = np.dtype(code)

    def __setstate__(self, state: Any) -> None:
        # NumPy writes (version, byteorder, subarray, names, fields, elsize, alignment,
        # flags[, metadata]); for a numeric dtype all but the byte order are fixed.
        if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
            raise pickle.UnpicklingError(f"unexpected dtype state {state!r}")
        order = _text(state[1])
        expected = (None, None, None, -1, -1, self.dtype.flags, None)
        if order not in _BYTE_ORDERS or (*state[2:], None)[:7] != expected:
            raise pickle.UnpicklingError(f"refusing dtype state {state!r} (only a byte order)")
        if order in "<>":
            self.dtype = self.dtype.newbyteorder(order)


class _ArrayStub:
    """Stands for an ndarray until its state (shape, dtype, order, raw bytes) arrives."""

    __slots__ = ("array",)

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not (isinstance(state, tuple) and len(state) == 4):
            raise pickle.UnpicklingError("unexpected ndarray state")
        shape, dtype, fortran, raw = state
        if not (
            isinstance(shape, tuple)
            and all(type(n) is int and n >= 0 for n in shape)
            and isinstance(dtype, _DtypeStub)
            and isinstance(fortran, (bool, int))
            and isinstance(raw, (bytes, bytearray))
        ):
            raise pickle.UnpicklingError("refusing ndarray state (only numeric raw data)")
        expected = math.prod(shape) * dtype.dtype.itemsize
        if len(raw) != expected:
            raise pickle.UnpicklingError(
                f"ndarray data has {len(raw)} bytes, shape {shape} needs {expected}"
            )
        flat = np.frombuffer(raw, dtype=dtype.dtype)
        self.array = flat.reshape(shape, order="F" if fortran else "C")


def _reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> _ArrayStub:
    """``numpy.core.multiarray._reconstruct``, limited to plain ``numpy.ndarray``."""
    if subtype is not _NDARRAY:
        raise pickle.UnpicklingError(f"refusing to reconstruct {subtype!r}")
    return _ArrayStub()


def _latin1_encode(*args: Any) -> bytes:
    """``_codecs.encode`` as Python 3 uses it at protocol 2: ``(text, "latin1")`` → bytes."""
    if len(args) == 2 and type(args[0]) is str and args[1] in ("latin1", "latin-1"):
        return args[0].encode("latin-1")
    shown = ", ".join(repr(a) if type(a) is str and len(a) <= 20 else type(a).__name__
                      for a in args)
    raise pickle.UnpicklingError(f"refusing _codecs.encode({shown}) (only text and 'latin1')")


def _empty_bytes(*args: Any) -> bytes:
    """``bytes()`` as Python 3 writes empty bytes at protocol 2; nothing else."""
    if args:
        raise pickle.UnpicklingError("refusing bytes() with arguments (only bytes())")
    return b""


_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeStub,
    ("_codecs", "encode"): _latin1_encode,
    ("__builtin__", "bytes"): _empty_bytes,
    ("builtins", "bytes"): _empty_bytes,
}


def _finish(obj: Any) -> Any:
    """Replace the stand-ins by the arrays and dtypes they built, through dicts/lists/tuples."""
    if isinstance(obj, _ArrayStub):
        if obj.array is None:
            raise pickle.UnpicklingError("ndarray without state")
        return obj.array
    if isinstance(obj, _DtypeStub):
        return obj.dtype
    if isinstance(obj, _NdarrayMark):
        raise pickle.UnpicklingError("stray numpy.ndarray reference")
    if isinstance(obj, dict):
        return {_finish(key): _finish(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [_finish(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_finish(item) for item in obj)
    return obj


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals a pickled NumPy array (and protocol-2
    bytes) use.

    Any other ``module.name`` (``os.system``, ``builtins.eval``, …) raises
    :class:`pickle.UnpicklingError` before anything is imported or called, and so
    do persistent ids.  ``load()`` may return stand-ins for arrays; use
    :func:`loads_pickle` or :func:`load_pickle`, which replace them.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"forbidden global {module}.{name} (only numpy arrays and bytes are allowed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed")


def loads_pickle(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` safely (``encoding="bytes"``); arrays come back as read-only ndarrays.

    Raises :class:`DataError` naming ``source`` for any failure.
    """
    try:
        obj = _finish(RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load())
    except Exception as exc:  # untrusted input: every failure is a data error
        raise DataError(
            f"{source}: not a valid CIFAR-10 pickle ({type(exc).__name__}: {exc})"
        ) from exc
    return obj


def load_pickle(path: str | Path) -> Any:
    """Read and unpickle the file at ``path`` safely; see :func:`loads_pickle`.

    A missing or unreadable file also raises :class:`DataError` naming it.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    return loads_pickle(data, source=str(path))
