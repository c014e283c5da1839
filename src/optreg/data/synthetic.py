"""Small synthetic CIFAR-10 look-alikes for tests and demos (no network needed).

:func:`write_synthetic_cifar10` writes the official layout byte for byte in kind:
``cifar-10-batches-py/data_batch_1`` … ``data_batch_5`` (the training images split as
evenly as possible), ``test_batch`` and ``batches.meta``, each a protocol-2 pickle
written the way Python 2 wrote the originals (strings are Python-2 ``str``, so they
load as ``bytes`` keys ``b"data"``, ``b"labels"``, ``b"batch_label"``, ``b"filenames"``,
``b"label_names"``; ``b"data"`` is a uint8 array (n, 3072) pickled through
``numpy.core.multiarray._reconstruct``, rows are 3×32×32 R, G, B planes, row-major).
:func:`write_synthetic_cifar10_archive` packs the same files as
``cifar-10-python.tar.gz`` and returns its MD5, to test download and extraction
against a local server.

The images are *learnable*: class ``c`` has its own mean colour and a stripe
pattern (orientation and frequency depend on ``c``), plus Gaussian pixel noise, so a
few training steps of LeNet-5 visibly lower the loss.  Labels are balanced (every
class ``n // 10`` or ``n // 10 + 1`` times) and shuffled.  Everything is a
deterministic function of ``seed``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optreg.data.cifar10 import (
    CHANNELS,
    IMAGE_SIZE,
    NUM_CLASSES,
    ROW_LENGTH,
    Cifar10,
    Cifar10Split,
)
from optreg.data.locations import FOLDER_NAME, META_FILE, TEST_FILE, TRAIN_FILES

__all__ = [
    "CLASS_NAMES",
    "synthetic_arrays",
    "synthetic_cifar10",
    "write_synthetic_cifar10",
    "write_synthetic_cifar10_archive",
]

CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
NOISE_STD = 40.0  # pixel noise, in 0…255 units


def _class_means() -> np.ndarray:
    """Mean image of each class, float (10, 3, 32, 32): a colour plus a class-specific stripe."""
    colours = np.array(
        [[200, 60, 60], [60, 200, 60], [60, 60, 200], [200, 200, 60], [200, 60, 200],
         [60, 200, 200], [150, 100, 50], [50, 100, 150], [230, 230, 230], [40, 40, 40]],
        dtype=np.float64,
    )  # fmt: skip
    rows, cols = np.meshgrid(np.arange(IMAGE_SIZE), np.arange(IMAGE_SIZE), indexing="ij")
    means = np.empty((NUM_CLASSES, CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
    for c in range(NUM_CLASSES):
        axis = rows if c % 2 == 0 else cols
        stripes = np.sin(2 * np.pi * (1 + c // 2) * axis / IMAGE_SIZE)
        means[c] = colours[c][:, None, None] + 40.0 * stripes
    return means


def synthetic_arrays(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` synthetic images as the file format stores them: uint8 (n, 3072), int64 (n,)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    noise = rng.normal(0.0, NOISE_STD, (n, CHANNELS, IMAGE_SIZE, IMAGE_SIZE))
    pixels = _class_means()[labels] + noise
    data = np.clip(np.rint(pixels), 0, 255).astype(np.uint8).reshape(n, ROW_LENGTH)
    return data, labels


def synthetic_cifar10(
    n_train: int = 500, n_test: int = 100, seed: int = 0, device: str | torch.device = "cpu"
) -> Cifar10:
    """The same data :func:`write_synthetic_cifar10` writes, built in memory as tensors."""
    rng = np.random.default_rng(seed)
    splits = []
    for n in (n_train, n_test):
        data, labels = synthetic_arrays(n, rng)
        images = torch.from_numpy(data).view(-1, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
        splits.append(Cifar10Split(images.to(device), torch.from_numpy(labels).to(device)))
    return Cifar10(train=splits[0], test=splits[1], classes=CLASS_NAMES)


# --- A protocol-2 pickle writer that stores strings the way Python 2 did. ---------------------
# Python 3's pickle would write bytes via _codecs.encode at protocol 2; the official files
# use plain Python-2 strings (SHORT_BINSTRING / BINSTRING), which load as bytes.


def _py2(obj: Any) -> bytes:
    if obj is None:
        return b"N"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"
    if isinstance(obj, int):
        if 0 <= obj < 256:
            return b"K" + bytes([obj])
        if 0 <= obj < 65536:
            return b"M" + struct.pack("<H", obj)
        return b"J" + struct.pack("<i", obj)
    if isinstance(obj, str):
        obj = obj.encode("ascii")
    if isinstance(obj, bytes):
        if len(obj) < 256:
            return b"U" + bytes([len(obj)]) + obj
        return b"T" + struct.pack("<i", len(obj)) + obj
    if isinstance(obj, tuple):
        return b"(" + b"".join(map(_py2, obj)) + b"t"
    if isinstance(obj, list):
        return (b"](" + b"".join(map(_py2, obj)) + b"e") if obj else b"]"
    if isinstance(obj, dict):
        items = b"".join(_py2(k) + _py2(v) for k, v in obj.items())
        return b"}(" + items + b"u"
    if isinstance(obj, np.ndarray):
        array = np.ascontiguousarray(obj)
        code = array.dtype.str[1:]  # e.g. "u1"
        order = array.dtype.str[0]  # "|" for one-byte types, else "<" or ">"
        dtype = (
            b"cnumpy\ndtype\n" + _py2((code, 0, 1)) + b"R"
            + _py2((3, order, None, None, None, -1, -1, 0)) + b"b"
        )  # fmt: skip
        return (
            b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n"
            + _py2((0,)) + _py2(b"b") + b"\x87R"
            + b"(" + _py2(1) + _py2(array.shape) + dtype + b"\x89" + _py2(array.tobytes()) + b"tb"
        )  # fmt: skip
    raise TypeError(f"cannot write {type(obj).__name__} as a Python-2 pickle")


def _py2_pickle(obj: Any) -> bytes:
    return b"\x80\x02" + _py2(obj) + b"."


def _batch(data: np.ndarray, labels: np.ndarray, batch_label: str, first: int) -> bytes:
    filenames = [f"synthetic_{CLASS_NAMES[y]}_{first + i:05d}.png" for i, y in enumerate(labels)]
    return _py2_pickle(
        {
            "batch_label": batch_label,
            "labels": [int(y) for y in labels],
            "data": data,
            "filenames": filenames,
        }
    )


def _official_files(n_train: int, n_test: int, seed: int) -> dict[str, bytes]:
    """The seven files of the official layout, by name, as bytes."""
    rng = np.random.default_rng(seed)
    train_data, train_labels = synthetic_arrays(n_train, rng)
    test_data, test_labels = synthetic_arrays(n_test, rng)
    sizes = [len(part) for part in np.array_split(np.arange(n_train), len(TRAIN_FILES))]
    files = {}
    lo = 0
    for i, (name, size) in enumerate(zip(TRAIN_FILES, sizes, strict=True)):
        label = f"training batch {i + 1} of {len(TRAIN_FILES)}"
        files[name] = _batch(train_data[lo : lo + size], train_labels[lo : lo + size], label, lo)
        lo += size
    files[TEST_FILE] = _batch(test_data, test_labels, "testing batch 1 of 1", 0)
    meta = {
        "num_cases_per_batch": sizes[0],
        "label_names": list(CLASS_NAMES),
        "num_vis": ROW_LENGTH,
    }
    files[META_FILE] = _py2_pickle(meta)
    return files


def write_synthetic_cifar10(
    root: str | os.PathLike[str], n_train: int = 500, n_test: int = 100, seed: int = 0
) -> Path:
    """Write synthetic data in the official layout under ``root``; return the batches folder.

    Args:
        root: directory to create ``cifar-10-batches-py/`` in (created if needed).
        n_train: training images, split over ``data_batch_1`` … ``data_batch_5`` in order
            as evenly as possible (earlier batches get the extra ones).
        n_test: images in ``test_batch``.
        seed: makes the data reproducible; the same as :func:`synthetic_cifar10`'s.

    Returns:
        ``root / "cifar-10-batches-py"``.
    """
    folder = Path(root) / FOLDER_NAME
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in _official_files(n_train, n_test, seed).items():
        (folder / name).write_bytes(payload)
    return folder


def write_synthetic_cifar10_archive(
    path: str | os.PathLike[str], n_train: int = 500, n_test: int = 100, seed: int = 0
) -> tuple[Path, str]:
    """Write ``path`` as a ``.tar.gz`` in the official archive layout; return ``(path, md5)``.

    The archive holds the directory ``cifar-10-batches-py/`` and the seven files of
    :func:`write_synthetic_cifar10` (same data for the same arguments).  It is
    reproducible: the same arguments give the same bytes (fixed timestamps and
    owners, gzip mtime 0, no file name in the gzip header).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(FOLDER_NAME)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name, payload in _official_files(n_train, n_test, seed).items():
            info = tarfile.TarInfo(f"{FOLDER_NAME}/{name}")
            info.size, info.mode = len(payload), 0o644
            tar.addfile(info, io.BytesIO(payload))
    archive = gzip.compress(buffer.getvalue(), mtime=0)
    path.write_bytes(archive)
    return path, hashlib.md5(archive).hexdigest()
