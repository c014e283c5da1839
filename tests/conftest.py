"""Shared fixtures: one torch thread, and a small synthetic CIFAR-10 written once per session.

Hypothesis runs derandomized (the same examples on every machine and every run, so a red CI is
reproducible); ``HYPOTHESIS_PROFILE=explore`` draws new examples each run instead.

Tests never touch the real data or the network: :func:`optreg.data.write_synthetic_cifar10`
writes learnable look-alike images in the official layout. Runs use the first
``TRAIN_SIZE`` / ``TEST_SIZE`` images; the files hold more training images so that a test can
make epochs longer when it needs time to interrupt a run.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import settings

from optreg.config import RunConfig
from optreg.data import Cifar10, load_cifar10, write_synthetic_cifar10

settings.register_profile("derandomized", derandomize=True, deadline=None)
settings.register_profile("explore", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "derandomized"))

N_TRAIN_FILES, N_TEST_FILES = 1024, 128  # images in the synthetic files
TRAIN_SIZE, TEST_SIZE = 256, 128  # images a small run uses (8 steps per epoch at batch 32)


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """One intra-op thread in this process: its runs then use the same kernels on every machine
    (so runs compared within the test process are bit-equal), and the cores stay free for the
    tests that start worker processes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a synthetic ``cifar-10-batches-py/`` (seed 0)."""
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar10(root, n_train=N_TRAIN_FILES, n_test=N_TEST_FILES, seed=0)
    return root


@pytest.fixture(scope="session")
def data(data_dir: Path) -> Cifar10:
    """The synthetic data set as tensors (read once; runs only slice it)."""
    return load_cifar10(data_dir)


@pytest.fixture(scope="session")
def small() -> Callable[..., RunConfig]:
    """``small(**changes)``: a RunConfig on the first 256/128 images, 2 epochs by default."""

    def make(**changes: Any) -> RunConfig:
        options: dict[str, Any] = {"train_size": TRAIN_SIZE, "test_size": TEST_SIZE, "epochs": 2}
        return RunConfig(**{**options, **changes})

    return make


@pytest.fixture
def no_data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No ``$OPTREG_DATA_DIR`` and an empty cache folder: only ``--data-dir`` finds data."""
    monkeypatch.delenv("OPTREG_DATA_DIR", raising=False)
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return cache
