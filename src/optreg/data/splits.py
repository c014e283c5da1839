"""The three splits of a run: what it trains on, what it validates on, what it is tested on.

CIFAR-10 has a training and a test split. A run trains on the first ``train_size`` training
images (stored order). It validates either on the test split, as the classroom exercise does
(``valid_size=None``: every "best epoch" is then chosen by looking at the test set, which is fine
for the replica and wrong for research), or on the **last** ``valid_size`` training images, which
it never trains on (held-out validation: the test split is then read only by the final
evaluation). The test split is the first ``test_size`` test images.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from optreg.data.cifar10 import Cifar10, Cifar10Split
from optreg.data.errors import DataError

if TYPE_CHECKING:
    from optreg.config import RunConfig

__all__ = ["Splits", "covering_sizes", "make_splits"]

Validation = Literal["test", "held-out"]


@dataclass(frozen=True)
class Splits:
    """Train, validation and test splits; ``valid is test`` when validating on the test split."""

    train: Cifar10Split
    valid: Cifar10Split
    test: Cifar10Split

    @property
    def validation(self) -> Validation:
        return "test" if self.valid is self.test else "held-out"

    def to(self, device: str) -> Splits:
        train, test = self.train.to(device), self.test.to(device)
        valid = test if self.valid is self.test else self.valid.to(device)
        return Splits(train, valid, test)


def make_splits(data: Cifar10, *, train_size: int | None = None, valid_size: int | None = None,
                test_size: int | None = None) -> Splits:
    """Cut ``data`` into a run's splits (views, no copies).

    Raises:
        DataError: the data holds fewer images than the sizes ask for (the message says how many).
    """
    n_train, n_test = len(data.train), len(data.test)
    trainable = n_train - (valid_size or 0)
    if valid_size is not None and trainable < 1:
        raise DataError(f"valid_size={valid_size} leaves no training images: the training split "
                        f"holds {n_train}")
    if train_size is not None and train_size > trainable:
        held = f" after holding out the last {valid_size} for validation" if valid_size else ""
        raise DataError(f"train_size={train_size} but only {trainable} training images are "
                        f"available{held}")
    if test_size is not None and test_size > n_test:
        raise DataError(f"test_size={test_size} but the test split holds only {n_test} images")
    train = _slice(data.train, 0, trainable if train_size is None else train_size)
    test = _slice(data.test, 0, n_test if test_size is None else test_size)
    valid = test if valid_size is None else _slice(data.train, trainable, n_train)
    return Splits(train, valid, test)


def covering_sizes(configs: Iterable[RunConfig]) -> tuple[int | None, int | None]:
    """(train_size, test_size): the prefixes of the two files that every run of ``configs``
    needs, to load once (None: all of it). Held-out validation takes the *last* training images,
    so it needs the whole training split."""
    configs = list(configs)

    def most(sizes: list[int | None]) -> int | None:
        return None if not sizes or None in sizes else max(s for s in sizes if s is not None)

    train = None if any(c.valid_size is not None for c in configs) else most(
        [c.train_size for c in configs])
    return train, most([c.test_size for c in configs])


def _slice(split: Cifar10Split, start: int, stop: int) -> Cifar10Split:
    if start == 0 and stop == len(split):
        return split
    return Cifar10Split(split.images[start:stop], split.labels[start:stop])
