"""Optional parts (Ray, TensorBoard, pandas, Jupyter): imported only where used, with a hint.

Each optional part is an extra of the package (``pip install 'optreg[ray]'``, …). Code that
needs one calls :func:`require`, which imports it or raises :class:`MissingExtra` saying what
needs it and how to install it; the command line checks every part a study will need before any
long work starts.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingExtra", "require"]


class MissingExtra(ImportError):
    """An optional dependency is not installed; the message says how to install it."""


def require(module: str, *, purpose: str, extra: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtra`: "``purpose`` needs ``module``: pip
    install 'optreg[extra]'" (or the package itself, for a dependency that is not an extra)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        hint = f"'optreg[{extra}]'" if extra else package
        raise MissingExtra(f"{purpose} needs {package}: pip install {hint}") from e
