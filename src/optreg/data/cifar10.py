"""CIFAR-10 as tensors: read the official batches, hold each split on a device, normalise.

File format (the official "python version", see https://www.cs.toronto.edu/~kriz/cifar.html):
each of ``data_batch_1`` … ``data_batch_5`` and ``test_batch`` is a pickled dict with

* ``b"data"``: uint8 array of shape (N, 3072); each row is one 32×32 image stored as
  three planes, red then green then blue, each plane row-major, so ``row.reshape(3, 32, 32)``
  is channels × height × width;
* ``b"labels"``: N ints in [0, 10);
* ``b"batch_label"`` and ``b"filenames"`` (not used here).

``batches.meta`` holds ``b"label_names"``, the ten class names in label order.

Tensors (airbench style: the whole split lives on the device, converted once):

* :class:`Cifar10Split`: ``images`` uint8 (N, 3, 32, 32) and ``labels`` int64 (N,), in the
  stored order (data_batch_1 first, rows in file order), on one device;
* :func:`normalize`: uint8 → float32 in [-1, 1], computed once for a whole split.

Reading is one ``numpy.frombuffer`` per file, one concatenation, ``torch.from_numpy``
and one copy to the device: no per-image Python.  Nothing is read at import time.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optreg.data.download import ensure_cifar10
from optreg.data.errors import DataError
from optreg.data.locations import META_FILE, TEST_FILE, TRAIN_FILES
from optreg.data.safe_pickle import load_pickle

__all__ = [
    "CHANNELS",
    "IMAGE_SIZE",
    "NUM_CLASSES",
    "ROW_LENGTH",
    "Cifar10",
    "Cifar10Split",
    "load_cifar10",
    "normalize",
    "read_batch",
    "read_label_names",
]

NUM_CLASSES = 10
CHANNELS = 3
IMAGE_SIZE = 32
ROW_LENGTH = CHANNELS * IMAGE_SIZE * IMAGE_SIZE  # 3072 bytes per image


@dataclass(frozen=True)
class Cifar10Split:
    """One split held as tensors on one device.

    Attributes:
        images: uint8, shape (N, 3, 32, 32), channels R, G, B; raw pixel values 0…255.
        labels: int64, shape (N,), values in [0, 10), ``labels[i]`` is the class of ``images[i]``.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        shape = (CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
        if (
            self.images.dtype != torch.uint8
            or self.images.ndim != 4
            or tuple(self.images.shape[1:]) != shape
        ):
            raise ValueError(
                f"images must be uint8 (N, 3, 32, 32), got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise ValueError(
                f"labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if self.labels.device != self.images.device:
            raise ValueError("images and labels must be on the same device")

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def device(self) -> torch.device:
        """The device holding both tensors."""
        return self.images.device

    def to(self, device: str | torch.device) -> Cifar10Split:
        """The same split on ``device`` (self if already there)."""
        return Cifar10Split(self.images.to(device), self.labels.to(device))


@dataclass(frozen=True)
class Cifar10:
    """CIFAR-10: the training split (data_batch_1…5), the test split and the class names."""

    train: Cifar10Split
    test: Cifar10Split
    classes: tuple[str, ...]


def _field(batch: dict[Any, Any], key: str, path: Path) -> Any:
    """``batch[b"key"]`` (the official bytes key), or ``batch["key"]`` from a Python-3 re-pickle."""
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise DataError(f"{path}: no {key!r} entry (keys: {sorted(map(repr, batch))})")


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file: ``(data, labels)``, uint8 (N, 3072) and int64 (N,), checked.

    ``data`` may be a read-only view of the file's bytes.  Raises :class:`DataError` naming
    the file when it is missing, unreadable, not a safe pickle, or has the wrong structure,
    shape, dtype or labels.
    """
    path = Path(path)
    batch = load_pickle(path)
    if not isinstance(batch, dict):
        raise DataError(f"{path}: expected a dict, got {type(batch).__name__}")
    data = _field(batch, "data", path)
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != ROW_LENGTH
    ):
        described = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise DataError(f"{path}: data must be a uint8 array of shape (N, 3072), got {described}")
    raw_labels = _field(batch, "labels", path)
    if isinstance(raw_labels, (list, tuple)) and all(type(y) is int for y in raw_labels):
        # Python ints may be huge; anything outside int64 is out of range anyway.
        big = next((i for i, y in enumerate(raw_labels) if not -(2**63) <= y < 2**63), None)
        if big is not None:
            raise DataError(f"{path}: label at row {big} is outside [0, {NUM_CLASSES})")
        labels = np.asarray(raw_labels, dtype=np.int64) if raw_labels else np.zeros(0, np.int64)
    elif (
        isinstance(raw_labels, np.ndarray)
        and raw_labels.ndim == 1
        and raw_labels.dtype.kind in "iu"
    ):
        labels = raw_labels
    else:
        raise DataError(f"{path}: labels must be a list of ints")
    labels = labels.astype(np.int64)
    if labels.shape[0] != data.shape[0]:
        raise DataError(f"{path}: {data.shape[0]} images but {labels.shape[0]} labels")
    bad = np.flatnonzero((labels < 0) | (labels >= NUM_CLASSES))
    if bad.size:
        raise DataError(
            f"{path}: label {int(labels[bad[0]])} at row {int(bad[0])} is outside "
            f"[0, {NUM_CLASSES})"
        )
    return data, labels


def read_label_names(path: str | Path) -> tuple[str, ...]:
    """The ten class names from ``batches.meta`` (``b"label_names"``), decoded as text."""
    path = Path(path)
    meta = load_pickle(path)
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a dict, got {type(meta).__name__}")
    names = _field(meta, "label_names", path)
    if not (
        isinstance(names, list)
        and len(names) == NUM_CLASSES
        and all(isinstance(name, (bytes, str)) for name in names)
    ):
        raise DataError(f"{path}: label_names must be a list of {NUM_CLASSES} strings")
    return tuple(n.decode("utf-8", errors="replace") if isinstance(n, bytes) else n for n in names)


def _read_split(paths: Sequence[Path], size: int | None, name: str) -> tuple[np.ndarray, ...]:
    """Concatenate batch files in order, reading only as many files as ``size`` needs."""
    if size is not None and (type(size) is not int or size < 0):
        raise ValueError(f"{name}_size must be a non-negative int or None, got {size!r}")
    images = [np.empty((0, ROW_LENGTH), np.uint8)]
    labels = [np.empty(0, np.int64)]
    count = 0
    for path in paths:
        if size is not None and count >= size:
            break
        data, targets = read_batch(path)
        take = data.shape[0] if size is None else min(data.shape[0], size - count)
        images.append(data[:take])
        labels.append(targets[:take])
        count += take
    if size is not None and count < size:
        raise DataError(f"{name}_size={size} but {name} files hold only {count} images")
    # One copy: also makes the arrays writable (the pickled bytes are read-only).
    return np.concatenate(images), np.concatenate(labels)


def _to_split(data: np.ndarray, labels: np.ndarray, device: str | torch.device) -> Cifar10Split:
    images = torch.from_numpy(data).view(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    return Cifar10Split(images.to(device), torch.from_numpy(labels).to(device))


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
    train_size: int | None = None,
    test_size: int | None = None,
    *,
    download: bool = False,
) -> Cifar10:
    """Load CIFAR-10 from the official files into uint8/int64 tensors on ``device``.

    Args:
        root: the data directory (the parent of ``cifar-10-batches-py`` or that folder
            itself); ``None`` means ``$OPTREG_DATA_DIR`` or the cache directory
            (see :func:`~optreg.data.locations.resolve_data_dir`).
        device: where both splits are held.
        train_size: keep only the first ``train_size`` training images (stored order);
            ``None`` keeps all 50,000.
        test_size: likewise for the 10,000 test images.
        download: fetch and unpack the official archive when files are missing
            (:func:`~optreg.data.download.download_cifar10`); otherwise missing files
            are an error.

    Returns:
        :class:`Cifar10` with ``train`` and ``test`` in stored order and the class names.

    Raises:
        DataError: a file is missing (and ``download`` is false), malformed or unsafe, or a
            requested size exceeds what the files hold.
    """
    folder = ensure_cifar10(root, download=download)
    classes = read_label_names(folder / META_FILE)
    train = _to_split(*_read_split([folder / f for f in TRAIN_FILES], train_size, "train"), device)
    test = _to_split(*_read_split([folder / TEST_FILE], test_size, "test"), device)
    return Cifar10(train=train, test=test, classes=classes)


@functools.cache
def _normalization_table() -> torch.Tensor:
    """float32 value of each uint8 pixel, by the CPU ops of ToTensor + Normalize(0.5, 0.5)."""
    pixels = torch.arange(256, dtype=torch.uint8)
    return pixels.to(torch.float32).div(255).sub(0.5).div(0.5)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """Map uint8 pixels to float32 in [-1, 1]: ``(x / 255 − 0.5) / 0.5``, on ``images.device``.

    The values are bit-identical to torchvision's ``ToTensor()`` then
    ``Normalize((0.5,) * 3, (0.5,) * 3)`` (float32, in that order: divide by 255,
    subtract 0.5, divide by 0.5) on any device. On the CPU the three operations run in
    that order, in place (the training loop normalises every batch, so this is on the
    hot path). On other devices each of the 256 possible results is computed once on the
    CPU and looked up, because some backends (CUDA) replace division by a scalar with
    multiplication by its reciprocal, which can differ in the last bit.

    Args:
        images: uint8 tensor of any shape (typically (N, 3, 32, 32)).

    Returns:
        A new contiguous float32 tensor of the same shape on the same device.
    """
    if images.dtype != torch.uint8:
        raise TypeError(f"normalize expects uint8 pixels, got {images.dtype}")
    if images.device.type == "cpu":
        return images.to(torch.float32).div_(255).sub_(0.5).div_(0.5)
    table = _normalization_table().to(images.device)
    flat = images.reshape(-1)
    out = torch.empty(images.shape, dtype=torch.float32, device=images.device)
    out_flat = out.view(-1)
    chunk = 1 << 22  # bounds the int32 index temporary to 16 MiB
    for start in range(0, flat.numel(), chunk):
        index = flat[start : start + chunk].to(torch.int32)
        torch.index_select(table, 0, index, out=out_flat[start : start + chunk])
    return out
