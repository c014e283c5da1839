"""Mini-batches by slicing tensors that already sit on the device (no DataLoader).

Stored order (the default) yields views ``x[i : i + B]``, as a ``DataLoader`` with
``shuffle=False`` would see the data.  With ``shuffle=True`` one permutation of
``range(N)`` is drawn per call from ``generator`` (seed it for reproducible epochs;
each call advances it, so successive epochs differ), and each batch gathers
``x[perm[i : i + B]]``.  The last, partial batch is kept (``drop_last=False``).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

__all__ = ["iterate_batches", "num_batches"]


def num_batches(n: int, batch_size: int) -> int:
    """How many batches :func:`iterate_batches` yields for ``n`` samples: ⌈n / batch_size⌉."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return -(-n // batch_size)


def iterate_batches(
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    *,
    shuffle: bool = False,
    generator: torch.Generator | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An iterator of ``(x_batch, y_batch)`` pairs that covers every sample once.

    Args:
        x: inputs, batched along dim 0 (e.g. normalised images (N, 3, 32, 32)).
        y: targets with the same length N, on the same device.
        batch_size: B ≥ 1; all batches have B samples except possibly the last.
        shuffle: ``False``: stored order, batches are views (no copy).  ``True``: a
            random permutation drawn with ``torch.randperm`` on the generator's device
            (CPU when ``generator`` is ``None``, using the global RNG), moved to
            ``x.device``; batches are gathered copies.
        generator: the ``torch.Generator`` for the permutation; a seeded one makes the
            order reproducible.

    Arguments are checked and the permutation drawn when this function is called.
    """
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x has {n} samples but y has {y.shape[0]}")
    num_batches(n, batch_size)  # validates batch_size
    if not shuffle:
        return _slices(x, y, batch_size)
    perm_device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(n, generator=generator, device=perm_device)
    return _gathers(x, y, perm, batch_size)


def _slices(
    x: torch.Tensor, y: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, x.shape[0], batch_size):
        yield x[start : start + batch_size], y[start : start + batch_size]


def _gathers(
    x: torch.Tensor, y: torch.Tensor, perm: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    perm_x, perm_y = perm.to(x.device), perm.to(y.device)
    for start in range(0, x.shape[0], batch_size):
        yield x[perm_x[start : start + batch_size]], y[perm_y[start : start + batch_size]]
