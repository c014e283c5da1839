"""Tests for optreg.data: official layout, safe pickles, tensors, batching, download, extraction.

Only synthetic data is used; downloads go to a local HTTP server on 127.0.0.1 (or
file:// URLs), never to the network.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import hashlib
import http.server
import io
import os
import pickle
import pickletools
import shutil
import socket
import subprocess
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import optreg.data.download as download_module
from optreg.data import (
    OFFICIAL_MD5,
    OFFICIAL_URL,
    Cifar10Split,
    DataError,
    cifar10_folder,
    default_cache_dir,
    download_cifar10,
    extract_archive,
    file_md5,
    fingerprint,
    iterate_batches,
    load_cifar10,
    load_pickle,
    normalize,
    num_batches,
    read_batch,
    resolve_data_dir,
    synthetic_cifar10,
    write_synthetic_cifar10,
    write_synthetic_cifar10_archive,
)
from optreg.data.locations import FOLDER_NAME, REQUIRED_FILES, TRAIN_FILES
from optreg.data.safe_pickle import loads_pickle

try:
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
except ImportError:  # NumPy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct

N_TRAIN, N_TEST = 53, 17  # 53 = 11 + 11 + 11 + 10 + 10 over the five training batches


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A data directory holding synthetic cifar-10-batches-py/."""
    write_synthetic_cifar10(tmp_path / "data", N_TRAIN, N_TEST, seed=3)
    return tmp_path / "data"


@pytest.fixture
def folder(data_root: Path) -> Path:
    return data_root / FOLDER_NAME


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPTREG_DATA_DIR", raising=False)


class LocalServer:
    """Routes: path -> (body, mode); counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, str]] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.port = 0

    def serve(self, path: str, body: bytes, mode: str = "ok") -> str:
        self.routes[path] = (body, mode)
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    state = LocalServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests[self.path] += 1
            if self.path not in state.routes:
                self.send_error(404)
                return
            body, mode = state.routes[self.path]
            self.send_response(200)
            if mode != "no-length":
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            # "truncate" and "no-length" send half the body, then close the connection.
            self.wfile.write(body if mode == "ok" else body[: len(body) // 2])

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def archive(tmp_path: Path) -> tuple[bytes, str]:
    path, md5 = write_synthetic_cifar10_archive(tmp_path / "src" / "c.tar.gz", N_TRAIN, N_TEST, 3)
    return path.read_bytes(), md5


def leftovers(directory: Path) -> list[str]:
    """Temporary download/extraction files left in a directory."""
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --- official layout round trip ---------------------------------------------------------------


def test_round_trip_shapes_dtypes_order(data_root: Path, folder: Path) -> None:
    data = load_cifar10(data_root)
    assert data.train.images.shape == (N_TRAIN, 3, 32, 32)
    assert data.test.images.shape == (N_TEST, 3, 32, 32)
    assert data.train.images.dtype == torch.uint8 and data.train.labels.dtype == torch.int64
    assert data.train.labels.shape == (N_TRAIN,) and data.test.labels.shape == (N_TEST,)
    assert data.classes[:3] == ("airplane", "automobile", "bird") and len(data.classes) == 10
    for split in (data.train, data.test):
        assert split.labels.min() >= 0 and split.labels.max() < 10
        assert split.device == torch.device("cpu") and len(split) == split.labels.shape[0]
    # Stored order: data_batch_1 rows first, each row reshaped (3, 32, 32) R, G, B planes.
    rows, labels = zip(*(read_batch(folder / name) for name in TRAIN_FILES), strict=True)
    assert [len(r) for r in rows] == [11, 11, 11, 10, 10]
    stored = torch.from_numpy(np.concatenate(rows)).view(-1, 3, 32, 32)
    assert torch.equal(data.train.images, stored)
    assert torch.equal(data.train.labels, torch.from_numpy(np.concatenate(labels)))
    assert torch.equal(
        data.train.images[12, 1].flatten(), torch.from_numpy(np.array(rows[1][1][1024:2048]))
    )
    # Same as the in-memory generator with the same seed; every class present.
    same = synthetic_cifar10(N_TRAIN, N_TEST, seed=3)
    assert torch.equal(data.train.images, same.train.images)
    assert torch.equal(data.test.labels, same.test.labels)
    assert set(data.train.labels.tolist()) == set(range(10))


def test_synthetic_files_are_python2_style_pickles(folder: Path) -> None:
    raw = (folder / "data_batch_1").read_bytes()
    ops = [(op.name, arg) for op, arg, _ in pickletools.genops(raw)]
    assert ops[0] == ("PROTO", 2)
    assert ("GLOBAL", "numpy.core.multiarray _reconstruct") in ops
    assert ("SHORT_BINSTRING", "data") in ops  # a Python-2 str, read back as b"data"
    batch = load_pickle(folder / "data_batch_1")
    assert set(batch) == {b"data", b"labels", b"batch_label", b"filenames"}
    assert batch[b"data"].dtype == np.uint8 and batch[b"data"].shape == (11, 3072)
    meta = load_pickle(folder / "batches.meta")
    assert meta[b"label_names"][9] == b"truck" and meta[b"num_vis"] == 3072


@pytest.mark.parametrize(("protocol", "fix_imports"), [(2, True), (2, False), (3, True),
                                                      (4, True)])
def test_python3_repickled_batch_loads(folder: Path, protocol: int, fix_imports: bool) -> None:
    data, labels = read_batch(folder / "test_batch")
    record = {b"data": np.array(data), b"labels": labels.tolist(), b"batch_label": b"",
              b"filenames": [b"\xff\x00.png"]}
    path = folder.parent / "repickled"
    path.write_bytes(pickle.dumps(record, protocol=protocol, fix_imports=fix_imports))
    again, again_labels = read_batch(path)
    assert np.array_equal(again, data) and np.array_equal(again_labels, labels)
    assert load_pickle(path)[b"filenames"] == [b"\xff\x00.png"]
    assert load_pickle(path)[b"batch_label"] == b""


def test_protocol_2_bytes_use_only_what_they_need(tmp_path: Path) -> None:
    """Python 3 writes bytes at protocol 2 as _codecs.encode(text, 'latin1'), b"" as bytes()."""
    raw = pickle.dumps({b"data": np.zeros((0, 3072), np.uint8)}, protocol=2)
    globals_used = {arg for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}
    assert {"_codecs encode", "__builtin__ bytes"} <= globals_used  # what is tested here
    assert loads_pickle(raw)[b"data"].shape == (0, 3072)
    path = tmp_path / "batch"
    for payload, reason in [
        (_Reduce(codecs.encode, "abc", "rot13"), r"refusing _codecs\.encode\('abc', 'rot13'\)"),
        (_Reduce(codecs.encode, "abc", "utf-8"), r"refusing _codecs\.encode\('abc', 'utf-8'\)"),
        (_Reduce(codecs.encode, b"abc", "latin1"), r"_codecs\.encode\(bytes, 'latin1'\)"),
        (_Reduce(codecs.encode, "abc"), r"refusing _codecs\.encode\('abc'\)"),
        (_Reduce(bytes, 10**9), r"refusing bytes\(\) with arguments"),
        (_Reduce(codecs.decode, "abc", "latin1"), "forbidden global _codecs.decode"),
        (_Reduce(bytearray, "abc", "latin-1"), "forbidden global __builtin__.bytearray"),
    ]:
        path.write_bytes(pickle.dumps({"data": payload}, protocol=2))
        with pytest.raises(DataError, match=f"batch: not a valid CIFAR-10 pickle .*{reason}"):
            load_pickle(path)


def test_prefix_sizes_and_device(data_root: Path) -> None:
    full = load_cifar10(data_root)
    part = load_cifar10(data_root, device=torch.device("cpu"), train_size=25, test_size=5)
    assert torch.equal(part.train.images, full.train.images[:25])
    assert torch.equal(part.test.labels, full.test.labels[:5])
    assert part.train.images.is_contiguous()
    assert len(load_cifar10(data_root, train_size=0).train) == 0
    with pytest.raises(DataError, match=f"train_size=54 but train files hold only {N_TRAIN}"):
        load_cifar10(data_root, train_size=N_TRAIN + 1)
    with pytest.raises(ValueError, match="test_size"):
        load_cifar10(data_root, test_size=-1)
    moved = full.test.to("meta")
    assert moved.images.device.type == "meta" and moved.labels.device.type == "meta"


def test_split_rejects_wrong_tensors() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Cifar10Split(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        Cifar10Split(
            torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64)
        )


def test_synthetic_data_is_learnable() -> None:
    data = synthetic_cifar10(200, 10, seed=0)
    x, y = normalize(data.train.images).flatten(1), data.train.labels
    torch.manual_seed(0)
    model = torch.nn.Linear(3072, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(2):
        for xb, yb in iterate_batches(x, y, 20):
            loss = torch.nn.functional.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# --- data directory resolution ---------------------------------------------------------------


def test_resolve_data_dir_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert resolve_data_dir(None) == tmp_path / "home" / ".cache" / "optreg"
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "optreg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_data_dir(None) == tmp_path / "xdg" / "optreg"
    monkeypatch.setenv("OPTREG_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"  # the argument wins
    assert resolve_data_dir(str(tmp_path / "arg")) == tmp_path / "arg"
    assert resolve_data_dir("~/d") == tmp_path / "home" / "d"


def test_parent_or_folder_itself(
    data_root: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cifar10_folder(data_root) == folder
    assert cifar10_folder(folder) == folder
    via_parent = load_cifar10(data_root)
    via_folder = load_cifar10(str(folder))
    assert torch.equal(via_parent.train.images, via_folder.train.images)
    # A folder with another name that holds the files directly also works.
    renamed = data_root.parent / "my-cifar"
    folder.rename(renamed)
    assert cifar10_folder(renamed) == renamed
    assert torch.equal(load_cifar10(renamed).test.labels, via_parent.test.labels)
    monkeypatch.setenv("OPTREG_DATA_DIR", str(renamed))
    assert torch.equal(load_cifar10().test.images, via_parent.test.images)


# --- normalisation ---------------------------------------------------------------------------


def test_normalize_matches_classroom_pipeline() -> None:
    pixels = torch.arange(256, dtype=torch.uint8)
    expected = (np.arange(256, dtype=np.float32) / np.float32(255) - np.float32(0.5)) / np.float32(
        0.5
    )
    out = normalize(pixels)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.from_numpy(expected))  # bit for bit, all 256 values
    assert out[0] == -1.0 and out[255] == 1.0 and out.min() >= -1 and out.max() <= 1
    # torchvision: ToTensor (x.float().div(255)) then Normalize (sub/div by (3,1,1) tensors).
    images = torch.randint(
        0, 256, (7, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    half = torch.tensor([0.5, 0.5, 0.5])[:, None, None]
    reference = images.to(torch.float32).div(255).sub(half).div(half)
    assert torch.equal(normalize(images), reference)
    strided = images.transpose(1, 3)[:, ::2]  # non-contiguous input
    assert torch.equal(normalize(strided), strided.to(torch.float32).div(255).sub(0.5).div(0.5))
    assert normalize(images).shape == images.shape


def test_lookup_table_for_other_devices_matches_cpu_arithmetic() -> None:
    # Off the CPU, normalize() looks values up in this table; it must hold the CPU's bits.
    from optreg.data.cifar10 import _normalization_table

    pixels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(_normalization_table(), normalize(pixels))
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    assert torch.equal(_normalization_table()[images.long()], normalize(images))


def test_normalize_rejects_float() -> None:
    with pytest.raises(TypeError, match="uint8"):
        normalize(torch.zeros(2, 3))


# --- batching --------------------------------------------------------------------------------


def test_batches_stored_order_views_and_last_partial() -> None:
    x = torch.arange(10 * 3, dtype=torch.float32).view(10, 3)
    y = torch.arange(10)
    batches = list(iterate_batches(x, y, 4))
    assert [len(b[0]) for b in batches] == [4, 4, 2] == [len(b[1]) for b in batches]
    assert num_batches(10, 4) == 3 and num_batches(8, 4) == 2 and num_batches(0, 4) == 0
    assert torch.equal(torch.cat([b[1] for b in batches]), y)  # stored order
    assert torch.equal(torch.cat([b[0] for b in batches]), x)
    for xb, _ in batches:  # views, no copies
        assert xb.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
    assert [len(b[0]) for b in iterate_batches(x, y, 64)] == [10]


def test_batches_shuffle_is_seeded_permutation() -> None:
    x = torch.arange(23).float()[:, None] * 10
    y = torch.arange(23)

    def order(seed: int) -> list[torch.Tensor]:
        return list(
            iterate_batches(x, y, 5, shuffle=True, generator=torch.Generator().manual_seed(seed))
        )

    first, again, other = order(0), order(0), order(1)
    assert [len(b[1]) for b in first] == [5, 5, 5, 5, 3]
    labels = torch.cat([b[1] for b in first])
    assert sorted(labels.tolist()) == list(range(23)) and labels.tolist() != list(range(23))
    assert torch.equal(labels, torch.cat([b[1] for b in again]))
    assert not torch.equal(labels, torch.cat([b[1] for b in other]))
    for xb, yb in first:  # inputs and targets stay paired
        assert torch.equal(xb[:, 0], yb.float() * 10)
    generator = torch.Generator().manual_seed(0)
    epoch1 = torch.cat([b[1] for b in iterate_batches(x, y, 5, shuffle=True, generator=generator)])
    epoch2 = torch.cat([b[1] for b in iterate_batches(x, y, 5, shuffle=True, generator=generator)])
    assert torch.equal(epoch1, labels) and not torch.equal(epoch1, epoch2)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 40),
    batch_size=st.integers(1, 45),
    shuffle=st.booleans(),
    seed=st.integers(0, 9),
)
def test_batches_cover_every_sample_once(n: int, batch_size: int, shuffle: bool, seed: int) -> None:
    x, y = torch.arange(n).float(), torch.arange(n)
    generator = torch.Generator().manual_seed(seed)
    batches = list(iterate_batches(x, y, batch_size, shuffle=shuffle, generator=generator))
    sizes = [len(yb) for _, yb in batches]
    assert len(batches) == num_batches(n, batch_size)
    assert all(size == batch_size for size in sizes[:-1]) and 0 < (sizes or [1])[-1] <= batch_size
    order = torch.cat([yb for _, yb in batches]) if batches else torch.zeros(0, dtype=torch.int64)
    assert sorted(order.tolist()) == list(range(n))
    if not shuffle:
        assert order.tolist() == list(range(n))
    for xb, yb in batches:
        assert torch.equal(xb, yb.float())


def test_batches_reject_bad_arguments() -> None:
    x, y = torch.zeros(4, 2), torch.zeros(4)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(x, y, 0)
    with pytest.raises(ValueError, match="4 samples but y has 3"):
        iterate_batches(x, y[:3], 2)


# --- untrusted and broken files ------------------------------------------------------------


@pytest.mark.parametrize("keep", [0, 40, 0.5, -1])
def test_truncated_file_names_file(folder: Path, keep: float) -> None:
    path = folder / "data_batch_3"
    raw = path.read_bytes()
    size = int(len(raw) * keep) if isinstance(keep, float) else keep % len(raw)
    path.write_bytes(raw[:size])
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10(folder)


class _Reduce:
    """Pickles as a call of ``func(*args)``: what a malicious file would contain."""

    def __init__(self, func: object, *args: object, state: object = None) -> None:
        self.value = (func, args) if state is None else (func, args, state)

    def __reduce__(self) -> tuple:
        return self.value


def _attack(index: int, marker: Path) -> tuple[_Reduce, str]:
    """A pickle payload that would create ``marker``, and the name of the global it needs."""
    code = f"open({str(marker)!r}, 'w').close()"
    func, args = [
        (os.system, (f"touch {marker}",)),
        (subprocess.call, (["touch", str(marker)],)),
        (builtins.exec, (code,)),
        (builtins.eval, (code,)),
        (builtins.open, (str(marker), "w")),
    ][index]
    return _Reduce(func, *args), func.__name__


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("protocol", [2, 4])
@pytest.mark.parametrize("nested", [False, True])
def test_code_executing_pickle_is_refused(
    folder: Path, tmp_path: Path, index: int, protocol: int, nested: bool
) -> None:
    marker = tmp_path / "pwned"
    attack, name = _attack(index, marker)
    payload = {b"data": attack, b"labels": [0]} if nested else attack
    (folder / "data_batch_2").write_bytes(pickle.dumps(payload, protocol=protocol))
    with pytest.raises(DataError, match=rf"data_batch_2: .*forbidden global \S+\.{name} "):
        load_cifar10(folder)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (np.array([1, "x"], dtype=object), "refusing dtype 'O8'"),
        (np.zeros(3, dtype=[("a", "u1")]), "refusing dtype 'V1'"),
        (np.rec.array(np.zeros(2, dtype=[("a", "u1")])), "forbidden global numpy.rec.recarray"),
        # A numeric dtype whose state sets the "holds objects" flags, with and without fields:
        # NumPy itself would accept both and then read raw bytes as object pointers.
        (
            _Reduce(np.dtype, "u8", 0, 1, state=(3, "|", None, ("a",), {}, -1, -1, 63)),
            "dtype state",
        ),
        (
            _Reduce(np.dtype, "u8", 0, 1, state=(3, "|", None, None, None, -1, -1, 63)),
            "dtype state",
        ),
        (_Reduce(np.ndarray, (10**6,)), "not callable"),  # calling ndarray directly
        (_Reduce(_np_reconstruct, np.dtype, (0,), b"b"), "refusing to reconstruct"),
        (_Reduce(_np_reconstruct, np.ndarray, (0,), b"b"), "ndarray without state"),
    ],
)
def test_numpy_state_attacks_are_refused(tmp_path: Path, payload: object, reason: str) -> None:
    path = tmp_path / "batch"
    path.write_bytes(pickle.dumps({"data": payload, "labels": []}, protocol=4))
    with pytest.raises(DataError, match=f"batch: not a valid CIFAR-10 pickle .*{reason}"):
        load_pickle(path)


def test_numeric_arrays_round_trip_exactly() -> None:
    for array in (np.arange(6, dtype=">u4").reshape(2, 3), np.asfortranarray(np.ones((2, 3)))):
        loaded = loads_pickle(pickle.dumps({"a": array}, protocol=4))["a"]
        assert loaded.dtype == array.dtype and np.array_equal(loaded, array)
        assert loaded.flags.f_contiguous == array.flags.f_contiguous


def _write_batch(path: Path, data: object, labels: object, protocol: int = 4) -> None:
    record = {b"data": data, b"labels": labels, b"batch_label": b"x"}
    path.write_bytes(pickle.dumps(record, protocol=protocol))


@pytest.mark.parametrize(
    ("data", "labels", "message"),
    [
        (
            np.zeros((3, 3071), np.uint8),
            [0, 1, 2],
            r"shape \(N, 3072\), got uint8 array of shape \(3, 3071\)",
        ),
        (np.zeros((3, 3072), np.float32), [0, 1, 2], "got float32"),
        (np.zeros(3072, np.uint8), [0], r"shape \(3072,\)"),
        ([b"\x00" * 3072], [0], "got list"),
        (np.zeros((3, 3072), np.uint8), [0, 1], "3 images but 2 labels"),
        (np.zeros((3, 3072), np.uint8), [0, 10, 2], r"label 10 at row 1 is outside \[0, 10\)"),
        (np.zeros((3, 3072), np.uint8), [0, 1, -1], "label -1 at row 2"),
        (np.zeros((3, 3072), np.uint8), [0, 1, 2**70], "row 2 is outside"),
        (np.zeros((3, 3072), np.uint8), [0.0, 1.0, 2.0], "labels must be a list of ints"),
        (np.zeros((3, 3072), np.uint8), [True, False, True], "labels must be a list of ints"),
        (np.zeros((3, 3072), np.uint8), b"abc", "labels must be a list of ints"),
    ],
)
@pytest.mark.parametrize("protocol", [2, 4])
def test_wrong_shapes_and_labels(
    folder: Path, data: object, labels: object, message: str, protocol: int
) -> None:
    _write_batch(folder / "data_batch_4", data, labels, protocol)
    with pytest.raises(DataError, match=f"data_batch_4: .*{message}"):
        load_cifar10(folder)


def test_malformed_structure(folder: Path) -> None:
    (folder / "test_batch").write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    with pytest.raises(DataError, match="test_batch: expected a dict, got list"):
        load_cifar10(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((1, 3072), np.uint8)}))
    with pytest.raises(DataError, match="test_batch: no 'labels' entry"):
        load_cifar10(folder)
    (folder / "test_batch").write_bytes(b"not a pickle at all")
    with pytest.raises(DataError, match="test_batch: not a valid CIFAR-10 pickle"):
        load_cifar10(folder)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"a"] * 9}))
    with pytest.raises(DataError, match=r"batches\.meta: label_names must be a list of 10"):
        load_cifar10(folder)


def test_missing_files(folder: Path, tmp_path: Path) -> None:
    (folder / "test_batch").unlink()
    with pytest.raises(DataError, match="lacks test_batch") as caught:
        load_cifar10(folder)
    assert "--data-dir" in str(caught.value) and "OPTREG_DATA_DIR" in str(caught.value)
    with pytest.raises(DataError, match=", ".join(REQUIRED_FILES)):
        load_cifar10(tmp_path / "empty")
    with pytest.raises(DataError, match="nowhere/data_batch_1: cannot read"):
        read_batch(tmp_path / "nowhere" / "data_batch_1")


# --- download -------------------------------------------------------------------------------


def test_download_extract_and_reuse(
    tmp_path: Path, server: LocalServer, archive: tuple[bytes, str]
) -> None:
    body, md5 = archive
    url = server.serve("/cifar.tar.gz", body)
    root = tmp_path / "cache"
    folder = download_cifar10(root, url=url, md5=md5, progress=False)
    assert folder == root / FOLDER_NAME and sorted(os.listdir(folder)) == sorted(REQUIRED_FILES)
    assert (root / "cifar-10-python.tar.gz").read_bytes() == body
    assert leftovers(root) == []
    assert server.requests["/cifar.tar.gz"] == 1
    expected = synthetic_cifar10(N_TRAIN, N_TEST, seed=3)
    assert torch.equal(load_cifar10(root).train.images, expected.train.images)
    # Files already present: no second request (through either path to the folder).
    assert download_cifar10(root, url=url, md5=md5) == folder
    assert download_cifar10(folder, url=url, md5=md5) == folder
    assert server.requests["/cifar.tar.gz"] == 1
    # Folder gone but a verified archive present: unpack it, still no request.
    for name in REQUIRED_FILES:
        (folder / name).unlink()
    download_cifar10(root, url=url, md5=md5)
    assert server.requests["/cifar.tar.gz"] == 1 and len(load_cifar10(root).classes) == 10
    # A corrupt archive already present is fetched again.
    for name in REQUIRED_FILES:
        (folder / name).unlink()
    (root / "cifar-10-python.tar.gz").write_bytes(body[:100])
    download_cifar10(root, url=url, md5=md5)
    assert (
        server.requests["/cifar.tar.gz"] == 2 and file_md5(root / "cifar-10-python.tar.gz") == md5
    )


def test_download_when_pointing_at_the_folder_itself(
    tmp_path: Path, server: LocalServer, archive: tuple[bytes, str]
) -> None:
    body, md5 = archive
    url = server.serve("/a.tgz", body)
    target = tmp_path / "d" / FOLDER_NAME
    assert download_cifar10(target, url=url, md5=md5, progress=False) == target
    assert len(load_cifar10(target).test) == N_TEST


def test_load_with_download_flag(
    tmp_path: Path, server: LocalServer, archive: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body, md5 = archive
    url = server.serve("/x", body)
    monkeypatch.setattr(download_module, "OFFICIAL_URL", url)

    def fake_download(root: object, _url: str) -> Path:  # the synthetic archive's md5
        return download_cifar10(root, url=url, md5=md5, progress=False)

    monkeypatch.setattr(download_module, "download_cifar10", fake_download)
    assert len(load_cifar10(tmp_path / "x", download=True).train) == N_TRAIN


def test_download_from_file_url(tmp_path: Path, archive: tuple[bytes, str]) -> None:
    body, md5 = archive
    source = tmp_path / "mirror" / "cifar-10-python.tar.gz"
    source.parent.mkdir()
    source.write_bytes(body)
    folder = download_cifar10(tmp_path / "d", url=source.as_uri(), md5=md5, progress=True)
    assert len(load_cifar10(folder).train) == N_TRAIN


def test_checksum_failure_removes_file(
    tmp_path: Path,
    server: LocalServer,
    archive: tuple[bytes, str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    body, _ = archive
    url = server.serve("/c.tgz", body)
    root = tmp_path / "d"
    with pytest.raises(
        DataError, match=r"checksum mismatch.*expected 0{32}; the downloaded file was removed"
    ):
        download_cifar10(root, url=url, md5="0" * 32, progress=True)
    assert os.listdir(root) == []  # no archive, no .part, no folder
    assert capsys.readouterr().err == ""  # progress bar off: stderr is not a terminal


@pytest.mark.parametrize("mode", ["truncate", "no-length"])
def test_partial_download_never_passes(
    tmp_path: Path, server: LocalServer, archive: tuple[bytes, str], mode: str
) -> None:
    body, md5 = archive
    url = server.serve("/p.tgz", body, mode)
    root = tmp_path / "d"
    message = "incomplete" if mode == "truncate" else "checksum mismatch"
    with pytest.raises(DataError, match=message):
        download_cifar10(root, url=url, md5=md5, progress=False)
    assert os.listdir(root) == []


def test_interrupted_download_leaves_nothing(
    tmp_path: Path, server: LocalServer, archive: tuple[bytes, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    body, md5 = archive
    url = server.serve("/i.tgz", body)

    class InterruptingBar:
        def __init__(self, **kwargs: object) -> None:
            pass

        def __enter__(self) -> InterruptingBar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def update(self, n: int) -> None:
            raise KeyboardInterrupt

    monkeypatch.setattr(download_module, "tqdm", InterruptingBar)
    root = tmp_path / "d"
    with pytest.raises(KeyboardInterrupt):
        download_cifar10(root, url=url, md5=md5)
    assert os.listdir(root) == []


def test_network_errors_say_how_to_use_a_local_copy(tmp_path: Path, server: LocalServer) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    for url, reason in [
        (f"http://127.0.0.1:{closed_port}/c.tgz", "refused"),
        (server.serve("/elsewhere", b"") + "-missing", "404"),
        ((tmp_path / "absent.tgz").as_uri(), "No such file"),
    ]:
        with pytest.raises(DataError, match=f"cannot download .*{reason}") as caught:
            download_cifar10(tmp_path / "d", url=url, md5=OFFICIAL_MD5, progress=False)
        message = str(caught.value)
        assert "--data-dir" in message and "OPTREG_DATA_DIR" in message
        assert "cifar-10-python.tar.gz" in message
        assert os.listdir(tmp_path / "d") == []


def test_unwritable_target_is_a_data_error(tmp_path: Path, archive: tuple[bytes, str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")  # a file where the data directory should be
    with pytest.raises(DataError, match="cannot write to"):
        download_cifar10(blocker / "sub", url="http://127.0.0.1:9/x", md5=archive[1])


def test_official_defaults() -> None:
    assert OFFICIAL_URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert OFFICIAL_MD5 == "c58f30108f718f92721af3b95e74349a"


def test_archive_without_cifar_files(tmp_path: Path, server: LocalServer) -> None:
    body = _tar([_file("something/else.txt")])
    url = server.serve("/w.tgz", body)
    with pytest.raises(DataError, match="not the CIFAR-10 archive"):
        download_cifar10(tmp_path / "d", url=url, md5=hashlib.md5(body).hexdigest(), progress=False)
    assert leftovers(tmp_path / "d") == []


# --- safe extraction -----------------------------------------------------------------------


def _file(name: str, payload: bytes = b"pwned") -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    return info, payload


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for info, payload in members:
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return buffer.getvalue()


def _unsafe_archives(outside: Path) -> dict[str, tuple[list, str]]:
    """name -> (members, the member the error must name)."""
    return {
        "absolute": ([_file(str(outside / "abs.txt"))], str(outside / "abs.txt")),
        "dotdot": ([_file("ok.txt"), _file("../outside/dd.txt")], "../outside/dd.txt"),
        "nested-dotdot": (
            [_file(f"{FOLDER_NAME}/../../outside/x")],
            f"{FOLDER_NAME}/../../outside/x",
        ),
        "symlink-out": (
            [_link("lnk", "../outside", tarfile.SYMTYPE), _file("lnk/sym.txt")],
            "lnk",
        ),
        "symlink-absolute": ([_link("abs", str(outside), tarfile.SYMTYPE)], "abs"),
        "symlink-deep": ([_link("a/b/up", "../../../outside", tarfile.SYMTYPE)], "a/b/up"),
        "hardlink-out": ([_link("hard", "../outside/secret.txt", tarfile.LNKTYPE)], "hard"),
        "hardlink-absolute": (
            [_link("hard2", str(outside / "secret.txt"), tarfile.LNKTYPE)],
            "hard2",
        ),
        "chardev": ([_special("dev", tarfile.CHRTYPE)], "dev"),
        "blockdev": ([_special("blk", tarfile.BLKTYPE)], "blk"),
        "fifo": ([_special("fifo", tarfile.FIFOTYPE)], "fifo"),
    }


@pytest.mark.parametrize("case", list(_unsafe_archives(Path("/x"))))
def test_unsafe_archive_members_are_rejected(tmp_path: Path, case: str) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    members, culprit = _unsafe_archives(outside)[case]
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(_tar(members))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match="refusing unsafe archive member") as caught:
        extract_archive(path, dest)
    assert repr(culprit) in str(caught.value)
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_bytes() == b"secret"
    assert not dest.exists()  # checked before anything is written


def test_archive_through_its_own_symlinks_writes_nothing(tmp_path: Path) -> None:
    """Each member is harmless where nothing exists yet, so tarfile's data filter, run on the
    empty destination, passes them all; extracted in order, ``e`` would resolve through the
    symlink ``d/lnk`` just created (to the destination itself) and point outside it."""
    (tmp_path / "outside").mkdir()
    members = [_file("d/ok.txt", b"fine"), _link("d/lnk", "..", tarfile.SYMTYPE),
               _link("e", "d/lnk/../outside", tarfile.SYMTYPE)]
    path = tmp_path / "chain.tar.gz"
    path.write_bytes(_tar(members))
    dest = tmp_path / "dest"
    for info, _ in members:
        tarfile.data_filter(info, str(dest))  # no error
    with pytest.raises(DataError, match=r"refusing unsafe archive member 'e' .*through the "
                                        r"archive's symlink 'd/lnk'"):
        extract_archive(path, dest)
    assert not dest.exists()
    path.write_bytes(_tar([_file("x/y/z.txt"), _link("x/y", "..", tarfile.SYMTYPE)]))
    with pytest.raises(DataError, match=r"'x/y/z\.txt' .*path through the archive's symlink"):
        extract_archive(path, dest)
    assert not dest.exists()


def test_data_filter_sees_the_destination_before_anything_is_written(tmp_path: Path) -> None:
    """A link already in the destination: only tarfile's data filter can tell that a member
    would land outside; it is asked about every member before the first one is written."""
    outside, dest = tmp_path / "outside", tmp_path / "dest"
    outside.mkdir()
    dest.mkdir()
    (dest / "escape").symlink_to(outside)
    path = tmp_path / "evil.tar.gz"
    path.write_bytes(_tar([_file("ok/first.txt", b"fine"), _file("escape/evil.txt")]))
    with pytest.raises(DataError, match=r"refusing unsafe archive member 'escape/evil\.txt' "
                                        r"\('escape/evil\.txt' would be extracted to .*outside"):
        extract_archive(path, dest)
    assert os.listdir(dest) == ["escape"] and os.listdir(outside) == []


def test_unsafe_archive_via_download(tmp_path: Path, server: LocalServer) -> None:
    body = _tar([_file(f"{FOLDER_NAME}/data_batch_1"), _file("../escaped.txt")])
    url = server.serve("/evil.tgz", body)
    root = tmp_path / "d"
    with pytest.raises(DataError, match=r"'\.\./escaped\.txt'"):
        download_cifar10(root, url=url, md5=hashlib.md5(body).hexdigest(), progress=False)
    assert not (tmp_path / "escaped.txt").exists() and not (root / "escaped.txt").exists()
    assert leftovers(root) == [] and not (root / FOLDER_NAME).exists()


def test_links_inside_the_target_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "ok.tar.gz"
    path.write_bytes(
        _tar([_file("dir/real.txt", b"hello"), _link("dir/alias", "real.txt", tarfile.SYMTYPE)])
    )
    extract_archive(path, tmp_path / "dest")
    assert (tmp_path / "dest" / "dir" / "alias").read_bytes() == b"hello"


def test_corrupt_archive(tmp_path: Path) -> None:
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(b"\x1f\x8b" + b"garbage" * 10)
    with pytest.raises(DataError, match=r"bad\.tar\.gz: cannot extract"):
        extract_archive(path, tmp_path / "dest")


# --- fingerprint -------------------------------------------------------------------------------


def test_fingerprint_identifies_the_files_contents(data_root: Path, folder: Path) -> None:
    first = fingerprint(data_root)
    assert first == fingerprint(folder) and len(first) == 64 and int(first, 16) >= 0
    expected = hashlib.sha256()
    for name in REQUIRED_FILES:
        content = (folder / name).read_bytes()
        expected.update(f"{name}\0{len(content)}\0".encode() + content)
    assert first == expected.hexdigest()  # the documented formula

    copy = shutil.copytree(folder, data_root.parent / "copy" / FOLDER_NAME)
    (copy / "readme.html").write_text("not a data file")
    assert fingerprint(copy) == first  # where the files lie, and other files, do not count
    batch = copy / "data_batch_3"
    raw = bytearray(batch.read_bytes())
    raw[len(raw) // 2] ^= 1  # one bit of one pixel in the middle of one file
    batch.write_bytes(raw)
    assert fingerprint(copy) != first
    other = write_synthetic_cifar10(data_root.parent / "other", N_TRAIN, N_TEST, seed=4)
    assert fingerprint(other) not in (first, fingerprint(copy))


def test_fingerprint_of_missing_files_is_a_data_error(folder: Path, tmp_path: Path) -> None:
    (folder / "batches.meta").unlink()
    with pytest.raises(DataError, match=r"lacks batches\.meta"):
        fingerprint(folder)
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        fingerprint(tmp_path / "nowhere")
