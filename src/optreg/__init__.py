"""optreg: optimization and regularization in deep learning, from scratch and proven equal to
PyTorch's — cross-entropy with L2, Adam / Adam+L2 / AdamW, studies that compare them on
LeNet-5 / CIFAR-10.

The package imports its parts lazily: ``import optreg`` costs nothing, ``optreg.Adam`` imports
torch, and ``optreg.report`` / ``optreg.results`` never do (a report renders from results.json
on any machine). Subpackages are reachable the same way (``optreg.training.fit``), and
``optreg.check(...)`` checks a student's classes (the ``optreg.check`` package is callable).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "Adam": "optreg.optim",
    "AdamW": "optreg.optim",
    "ConfigError": "optreg.config",
    "History": "optreg.results",
    "CrossEntropyLoss": "optreg.losses",
    "LeNet5": "optreg.models",
    "RMSprop": "optreg.optim",
    "RunConfig": "optreg.config",
    "RunResult": "optreg.results",
    "SGD": "optreg.optim",
    "StudyResult": "optreg.results",
    "cross_entropy": "optreg.losses",
    "is_decayed": "optreg.regularization",
    "l2_penalty": "optreg.losses",
    "l2_to_weight_decay": "optreg.regularization",
    "load_results": "optreg.results",
    "param_groups": "optreg.regularization",
    "run_study": "optreg.api",
    "run_sweep": "optreg.api",
    "train": "optreg.api",
}

#: Subpackages and modules, imported on first access (``optreg.training``, ``optreg.check``).
_SUBMODULES = frozenset({"api", "atomic", "check", "cli", "config", "data", "executors", "extras",
                         "formatting", "losses", "models", "optim", "parity", "progress",
                         "regularization", "report", "results", "runtime", "studies",
                         "training"})

__all__ = ["__version__", *sorted(_EXPORTS), "check"]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"optreg.{name}")  # also sets the attribute
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'optreg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)
