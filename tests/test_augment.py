"""Tests for optreg.data.augment: random crop with zero padding and horizontal flip, per batch.

The reference for one image is torchvision's RandomCrop(32, padding=p) + RandomHorizontalFlip
written out with torch ops (pad with zeros, slice the window, flip): torchvision itself is not a
dependency.
"""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import pytest
import torch
from torch.nn import functional as F

from optreg.data.augment import DEFAULT_PADDING, augmentation_generator, random_crop_flip

SIZE = 32


def noise(batch: int, seed: int = 0) -> torch.Tensor:
    """Random pixels: no two shifted/flipped versions of an image coincide."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)


def reference(image: torch.Tensor, top: int, left: int, flip: bool, padding: int) -> torch.Tensor:
    """torchvision's crop of the zero-padded image at (top, left), then the optional flip."""
    padded = F.pad(image, (padding, padding, padding, padding))
    crop = padded[:, top : top + SIZE, left : left + SIZE]
    return crop.flip(-1) if flip else crop


def matching_transforms(images: torch.Tensor, out: torch.Tensor, padding: int) -> torch.Tensor:
    """bool (B, 2p+1, 2p+1, 2): which (dy + p, dx + p, flip) turn images[i] into out[i].

    Searched exhaustively, without the module's convention for the draws: all crops of the padded
    input as strided windows, compared with the output and with the output flipped back.
    """
    padded = F.pad(images, (padding, padding, padding, padding))
    windows = padded.unfold(2, SIZE, 1).unfold(3, SIZE, 1)  # (B, 3, 2p+1, 2p+1, 32, 32)
    matches = [
        (windows == candidate[:, :, None, None]).flatten(4).all(-1).all(1)
        for candidate in (out, out.flip(-1))  # flip = 0: out is the crop; 1: out flipped back
    ]
    return torch.stack(matches, dim=-1)


def clone(generator: torch.Generator) -> torch.Generator:
    twin = torch.Generator(device=generator.device)
    twin.set_state(generator.get_state())
    return twin


# --- what the output is ----------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 1, DEFAULT_PADDING, 7])
def test_follows_the_documented_draws_and_torchvision_semantics(padding: int) -> None:
    images = noise(40)
    generator = torch.Generator().manual_seed(3)
    n = 2 * padding + 1
    k = torch.randint(2 * n * n, (40,), generator=clone(generator))  # the documented draw
    out = random_crop_flip(images, generator, padding=padding)
    for i in range(40):
        top, left, flip = int(k[i]) // (2 * n), int(k[i]) // 2 % n, int(k[i]) % 2
        assert torch.equal(out[i], reference(images[i], top, left, bool(flip), padding)), i
    # The generator advanced by exactly that one draw.
    twin = torch.Generator().manual_seed(3)
    torch.randint(2 * n * n, (40,), generator=twin)
    assert torch.equal(torch.rand(5, generator=generator), torch.rand(5, generator=twin))


def test_each_output_is_its_own_input_shifted_within_padding_and_maybe_flipped() -> None:
    images = noise(128, seed=1)
    out = random_crop_flip(images, torch.Generator().manual_seed(0))
    matches = matching_transforms(images, out, DEFAULT_PADDING)
    # Exactly one transform of the *same* image explains each output: nothing is reordered (the
    # labels stay with their images), and no shift beyond ±4 occurs (the search covers all of
    # [-4, 4]² with both flips, and random pixels leave no ambiguity).
    assert torch.equal(matches.flatten(1).sum(1), torch.ones(128, dtype=torch.int64))
    # A neighbour's image explains none of them.
    assert not matching_transforms(images.roll(1, dims=0), out, DEFAULT_PADDING).any()


def test_changes_the_batch_and_leaves_the_input_alone() -> None:
    images = noise(32)
    before = images.clone()
    out = random_crop_flip(images, torch.Generator().manual_seed(0))
    assert torch.equal(images, before)
    assert not torch.equal(out, images)
    assert out.untyped_storage().data_ptr() != images.untyped_storage().data_ptr()
    # Shifted pixels are replaced by black (0) padding: a white image gains black borders.
    white = torch.full((64, 3, SIZE, SIZE), 255, dtype=torch.uint8)
    shifted = random_crop_flip(white, torch.Generator().manual_seed(0))
    assert set(shifted.unique().tolist()) == {0, 255}
    assert (shifted[:, :, 4:-4, 4:-4] == 255).all()  # the centre is never padding


def test_dtype_shape_device_and_layout() -> None:
    images = noise(8)
    for batch in (images, images[::2], images.to(memory_format=torch.channels_last)):
        out = random_crop_flip(batch, torch.Generator().manual_seed(5))
        assert out.dtype == torch.uint8 and out.device == batch.device
        assert out.shape == batch.shape and out.is_contiguous()
        expected = random_crop_flip(batch.contiguous(), torch.Generator().manual_seed(5))
        assert torch.equal(out, expected)  # the memory layout does not change the result
    empty = random_crop_flip(images[:0], torch.Generator())
    assert empty.shape == (0, 3, SIZE, SIZE) and empty.dtype == torch.uint8


# --- randomness ------------------------------------------------------------------------------


def test_deterministic_per_seed() -> None:
    images = noise(64)

    def augment(seed: int) -> torch.Tensor:
        return random_crop_flip(images, torch.Generator().manual_seed(seed))

    assert torch.equal(augment(7), augment(7))
    assert not torch.equal(augment(7), augment(8))
    generator = torch.Generator().manual_seed(7)
    first, second = random_crop_flip(images, generator), random_crop_flip(images, generator)
    assert not torch.equal(first, second)  # each call draws afresh


def test_same_result_with_two_threads_and_in_another_process() -> None:
    images = noise(128)
    one = random_crop_flip(images, torch.Generator().manual_seed(11))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        two = random_crop_flip(images, torch.Generator().manual_seed(11))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)
    code = (
        "import hashlib, torch\n"
        "from optreg.data.augment import random_crop_flip\n"
        "g = torch.Generator().manual_seed(0)\n"
        "images = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8, generator=g)\n"
        "out = random_crop_flip(images, torch.Generator().manual_seed(11))\n"
        "print(hashlib.sha256(out.numpy().tobytes()).hexdigest())\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert child.stdout.strip() == hashlib.sha256(one.numpy().tobytes()).hexdigest()


def wilson_hilferty(df: int, z: float) -> float:
    """The χ² quantile with ``df`` degrees of freedom at standard-normal quantile ``z``."""
    a = 2 / (9 * df)
    return df * (1 - a + z * math.sqrt(a)) ** 3


def test_shift_and_flip_distribution() -> None:
    """Counts over 32,400 images against uniform shifts and a fair flip.

    Images whose pixels encode their own coordinates let each output be decoded from its centre
    (never padding for shifts ≤ 4). Bounds are 5σ (a correct implementation fails with
    probability < 1e-6 whatever the seed): for the flip rate, and as χ² quantiles (Wilson–Hilferty)
    for the 9 values of dy, the 9 of dx and the 162 joint cells. An off-by-one shift range, a
    flip rate off by 0.015, or correlated draws each exceed them by far.
    """
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    coordinates = torch.stack([y + 1, x + 1, torch.full_like(y, 255)]).to(torch.uint8)
    generator = torch.Generator().manual_seed(2024)
    n, batch = 162 * 200, 1620
    counts = torch.zeros(9, 9, 2, dtype=torch.int64)
    for _ in range(n // batch):
        out = random_crop_flip(coordinates.expand(batch, -1, -1, -1), generator).long()
        centre, right = out[:, :, 16, 16], out[:, :, 16, 17]
        flip = (right[:, 1] - centre[:, 1] == -1).long()
        assert ((right[:, 1] - centre[:, 1]).abs() == 1).all()
        dy = centre[:, 0] - 1 - 16
        dx = centre[:, 1] - 1 - torch.where(flip == 1, SIZE - 1 - 16, 16)
        assert dy.abs().max() <= 4 and dx.abs().max() <= 4
        counts.index_put_((dy + 4, dx + 4, flip), torch.ones_like(dy), accumulate=True)
    assert counts.sum() == n

    def chi_square(observed: torch.Tensor) -> float:
        expected = n / observed.numel()
        return float(((observed.double() - expected) ** 2 / expected).sum())

    flip_rate = counts[..., 1].sum().item() / n
    assert abs(flip_rate - 0.5) <= 5 * 0.5 / math.sqrt(n)
    assert chi_square(counts.sum((1, 2))) <= wilson_hilferty(8, 5.0)  # dy
    assert chi_square(counts.sum((0, 2))) <= wilson_hilferty(8, 5.0)  # dx
    assert chi_square(counts) <= wilson_hilferty(161, 5.0)  # joint: independence too
    assert counts.min() > 0


# --- the run's generator ---------------------------------------------------------------------


def test_augmentation_generator_is_a_separate_seeded_stream() -> None:
    digest = hashlib.sha256(b"optreg.augment:3").digest()
    generator = augmentation_generator(3)
    assert generator.device == torch.device("cpu")
    assert generator.initial_seed() == int.from_bytes(digest[:8], "little")  # as documented
    draws = torch.randint(1000, (16,), generator=generator)
    assert torch.equal(draws, torch.randint(1000, (16,), generator=augmentation_generator(3)))
    assert not torch.equal(draws, torch.randint(1000, (16,), generator=augmentation_generator(4)))
    shuffle = torch.Generator().manual_seed(3)  # the stream the run's permutations use
    assert not torch.equal(draws, torch.randint(1000, (16,), generator=shuffle))


@pytest.mark.parametrize("seed", [-1, 1.0, True, None])
def test_augmentation_generator_rejects_bad_seeds(seed: object) -> None:
    with pytest.raises(ValueError, match="seed must be an int >= 0"):
        augmentation_generator(seed)  # type: ignore[arg-type]


# --- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("images", "error", "message"),
    [
        (torch.zeros(2, 3, 32, 32), TypeError, r"uint8 pixels .* got torch.float32"),
        (noise(2).numpy(), TypeError, "uint8 pixels .* got ndarray"),
        (noise(2).permute(0, 2, 3, 1), ValueError, r"shape \(B, 3, 32, 32\), got \(2, 32, 32, 3\)"),
        (noise(1)[0], ValueError, r"got \(3, 32, 32\)"),
        (torch.zeros(2, 3, 28, 28, dtype=torch.uint8), ValueError, r"got \(2, 3, 28, 28\)"),
    ],
)
def test_rejects_bad_images(images: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        random_crop_flip(images, torch.Generator())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("generator", "padding", "error", "message"),
    [
        (None, 4, TypeError, "generator must be a torch.Generator, got NoneType"),
        (0, 4, TypeError, "generator must be a torch.Generator, got int"),
        (torch.Generator(), -1, ValueError, r"padding must lie in \[0, 32\], got -1"),
        (torch.Generator(), 33, ValueError, r"padding must lie in \[0, 32\], got 33"),
        (torch.Generator(), 4.0, TypeError, "padding must be an int, got float"),
        (torch.Generator(), True, TypeError, "padding must be an int, got bool"),
    ],
)
def test_rejects_bad_generator_or_padding(
    generator: object, padding: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        random_crop_flip(noise(2), generator, padding=padding)  # type: ignore[arg-type]
