"""Which tensors are regularised, and the batch-size convention that links the two L2 routes.

optreg writes one regulariser two ways:

* **L2 in the loss** (:class:`optreg.CrossEntropyLoss` with ``l2=λ``) adds

      R(θ) = λ / (2·B) · Σ_W ‖W‖²          (B = batch size of the call)

  whose gradient is ``(λ/B)·W``.

* **L2 in the optimizer** (:class:`optreg.Adam` with ``weight_decay=wd``, coupled) adds ``wd·θ``
  to the gradient before the moments are updated.

With ``wd = λ/B`` the two give the same gradient, so the same trajectory up to float rounding.
``weight_decay`` is always the raw coefficient, as in PyTorch; :func:`l2_to_weight_decay` makes the
classroom convention "L2 = λ at batch size B" explicit instead of hiding a division somewhere.

A single predicate, :func:`is_decayed`, decides which tensors the penalty touches. By default only
tensors with ``ndim > 1`` (weight matrices and convolution kernels; not biases), as the classroom
exercise does; ``decay="all"`` decays every tensor, as ``torch.optim.Adam(weight_decay=...)`` does.
Both the loss and the optimizer ask the same predicate, so they always agree on which tensors decay.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from optreg.config import ConfigError

if TYPE_CHECKING:  # no torch needed at run time: study presets import this without it
    import torch

DecayScope = Literal["weights", "all"]
DECAY_SCOPES: tuple[str, ...] = ("weights", "all")


def check_decay_scope(decay: str) -> None:
    """Raise ``ValueError`` unless ``decay`` is one of :data:`DECAY_SCOPES`."""
    if decay not in DECAY_SCOPES:
        raise ValueError(f"decay must be one of {DECAY_SCOPES}, got {decay!r}")


def is_decayed(param: torch.Tensor, decay: DecayScope = "weights") -> bool:
    """Whether ``param`` is regularised: ``ndim > 1`` for ``"weights"``, always for ``"all"``."""
    return decay == "all" or param.ndim > 1


def decayed(params: Iterable[torch.Tensor], decay: DecayScope = "weights") -> list[torch.Tensor]:
    """The tensors of ``params`` that :func:`is_decayed` selects, in order."""
    check_decay_scope(decay)
    return [p for p in params if is_decayed(p, decay)]


def l2_to_weight_decay(l2: float, batch_size: int) -> float:
    """Turn "L2 = λ at batch size B" (penalty λ/(2B)·Σ‖W‖²) into the optimizer's ``wd = λ/B``.

    >>> l2_to_weight_decay(0.1, 32)
    0.003125
    """
    if not (math.isfinite(l2) and l2 >= 0):
        raise ConfigError(f"l2={l2!r}: must be a finite number >= 0")
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r}: must be >= 1")
    return l2 / batch_size


def param_groups(
    params: Iterable[torch.nn.Parameter],
    weight_decay: float,
    decay: DecayScope = "weights",
) -> list[dict]:
    """Split ``params`` into a decayed group (``weight_decay``) and a non-decayed group (0).

    This is how a stock ``torch.optim.Adam``/``AdamW`` is made to decay only the tensors that
    :func:`is_decayed` selects. Empty groups are dropped.
    """
    check_decay_scope(decay)
    params = list(params)
    groups = [
        {"params": [p for p in params if is_decayed(p, decay)], "weight_decay": weight_decay},
        {"params": [p for p in params if not is_decayed(p, decay)], "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
