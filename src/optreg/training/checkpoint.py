"""End-of-epoch checkpoints: enough to resume a run bit-identically, written atomically.

A checkpoint holds the model, optimizer and scheduler ``state_dict``s, the RNG states (torch's
global one and the shuffling generator's), the history so far, the number of finished epochs
and the run's config (to refuse a checkpoint of another run). It is read with
``torch.load(weights_only=True)``: tensors and plain containers only, no code.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from optreg.atomic import atomic_write_bytes


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Serialise ``state`` with ``torch.save`` and write it atomically to ``path``."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or None if there is none. A corrupt one raises ValueError."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for a damaged file
        raise ValueError(
            f"{path}: unreadable checkpoint (damaged, truncated or not written by optreg: "
            f"{type(e).__name__}); delete it to restart the run"
        ) from e
