"""CIFAR-10 for optreg: read safely, download when asked, hold as tensors, batch by slicing.

Typical use::

    from optreg.data import iterate_batches, load_cifar10, normalize

    data = load_cifar10("~/data", device="cuda")          # uint8 images, int64 labels
    x_train = normalize(data.train.images)                # float32 in [-1, 1], once
    for xb, yb in iterate_batches(x_train, data.train.labels, 64):
        ...

Modules: :mod:`~optreg.data.locations` (data directory, file names),
:mod:`~optreg.data.safe_pickle` (restricted unpickler), :mod:`~optreg.data.cifar10`
(format, tensors, normalisation), :mod:`~optreg.data.batches` (slicing),
:mod:`~optreg.data.download` (download, checksum, safe extraction),
:mod:`~optreg.data.fingerprint` (which files a study ran on),
:mod:`~optreg.data.synthetic` (synthetic data in the official layout, for tests).
Every data problem raises :class:`DataError`.  Importing does no I/O.
"""

from optreg.data.batches import iterate_batches, num_batches
from optreg.data.cifar10 import (
    Cifar10,
    Cifar10Split,
    load_cifar10,
    normalize,
    read_batch,
    read_label_names,
)
from optreg.data.download import (
    OFFICIAL_MD5,
    OFFICIAL_URL,
    download_cifar10,
    ensure_cifar10,
    extract_archive,
    file_md5,
)
from optreg.data.errors import DataError
from optreg.data.fingerprint import fingerprint
from optreg.data.locations import DATA_DIR_ENV, cifar10_folder, default_cache_dir, resolve_data_dir
from optreg.data.safe_pickle import load_pickle
from optreg.data.synthetic import (
    synthetic_cifar10,
    write_synthetic_cifar10,
    write_synthetic_cifar10_archive,
)

__all__ = [
    "DATA_DIR_ENV",
    "OFFICIAL_MD5",
    "OFFICIAL_URL",
    "Cifar10",
    "Cifar10Split",
    "DataError",
    "cifar10_folder",
    "default_cache_dir",
    "download_cifar10",
    "ensure_cifar10",
    "extract_archive",
    "file_md5",
    "fingerprint",
    "iterate_batches",
    "load_cifar10",
    "load_pickle",
    "normalize",
    "num_batches",
    "read_batch",
    "read_label_names",
    "resolve_data_dir",
    "synthetic_cifar10",
    "write_synthetic_cifar10",
    "write_synthetic_cifar10_archive",
]
