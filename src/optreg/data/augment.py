"""Data augmentation as batch tensor operations: random crop with zero padding, horizontal flip.

:func:`random_crop_flip` is torchvision's ``RandomCrop(32, padding=4)`` followed by
``RandomHorizontalFlip()``, applied to the raw uint8 pixels (before ``ToTensor``/``Normalize``, so
padding is black), for a whole batch at once and on the batch's device (airbench's approach:
no per-image Python).

Convention, for an image ``img`` of size H × W (32 × 32) and padding p (4), each on its own:

* **Crop.** A top-left corner (top, left) ∈ {0, …, 2p}² is chosen in the image padded with p zero
  rows and columns on every side, and the H × W window there is kept. In terms of the shift
  (dy, dx) = (top − p, left − p) ∈ [−p, p]² the cropped image is

      c[:, y, x] = img[:, y + dy, x + dx]   where 0 ≤ y + dy < H and 0 ≤ x + dx < W, else 0,

  so dy > 0 moves the content up and dx > 0 moves it left; (0, 0) is the image itself.
* **Flip**, after the crop: with flip = 1 the output is ``c[:, y, W − 1 − x]`` (left-right).

**Random draws.** One integer per image, in batch order, and nothing else::

    k = torch.randint(2·(2p+1)², (B,), generator=generator, device=generator.device)
    top = k // (2·(2p+1)),   left = (k // 2) mod (2p+1),   flip = k mod 2

k is uniform over the 2·(2p+1)² = 162 (crop, flip) combinations, so top, left and flip are
independent and uniform: each shift has probability 1/(2p+1)² and each image is flipped with
probability ½. The output is therefore a pure function of the images and the generator's state;
with a CPU generator (what :func:`augmentation_generator` makes) the draws, and so the output, are
the same on every machine and executor, whichever device holds the images.

**Implementation** (measured by ``benchmarks/augmentation.py``). Every combination k is a fixed
map from output pixels to pixels of the padded image; the 162 maps are tabulated once per device
(1.3 MB of indices at p = 4). A batch then costs four tensor operations: draw k, look up each
image's map, zero-pad the batch, gather. Per call on the project's 2-core AMD EPYC (AVX2),
1 thread, each variant drawing its own randomness (medians; the range over five runs on the
shared, often loaded machine; relative to this module's time):

=============================================== ============== ==============
implementation                                  batch 32       batch 512
=============================================== ============== ==============
table gather (this module)                      150–180 µs     2.0–2.9 ms
index arithmetic per batch + the same gather    1.3–1.5×       0.9–1.6×
unfold into 81 windows + advanced indexing      2.0–2.3×       1.7–3.4×
airbench's masked copies (9 row + 9 column)     6–7×           4–6.5×
=============================================== ============== ==============

The table wins at batch 32, the training batch, and ties at 512; the ranking is the same at
2 threads. 150 µs is about 2 % of a LeNet-5 training step at batch 32 on that machine (8 ms).
None of the four operations synchronises a GPU (masked indexing would).
"""

from __future__ import annotations

import functools
import hashlib

import torch

from optreg.data.cifar10 import CHANNELS, IMAGE_SIZE

__all__ = ["DEFAULT_PADDING", "augmentation_generator", "random_crop_flip"]

DEFAULT_PADDING = 4  # pixels of zero padding per side: shifts of up to ±4 pixels


def random_crop_flip(
    images: torch.Tensor, generator: torch.Generator, *, padding: int = DEFAULT_PADDING
) -> torch.Tensor:
    """Crop each image at a random shift of up to ``padding`` pixels, then maybe flip it.

    See the module docstring for the exact convention and the random draws.

    Args:
        images: uint8 batch (B, 3, 32, 32) of raw pixels, on any device, any memory layout.
        generator: the source of all randomness; advanced by one draw of B integers. It may
            live on another device than ``images`` (a CPU generator: the same draws everywhere).
        padding: p ∈ [0, 32], the largest shift in each direction (0: flips only).

    Returns:
        A new contiguous uint8 tensor of the same shape on ``images.device``; output image i is
        a shifted, possibly flipped copy of input image i (the batch order is kept, so labels
        still match).

    Raises:
        TypeError: ``images`` is not a uint8 tensor, ``generator`` not a torch.Generator, or
            ``padding`` not an int.
        ValueError: ``images`` is not (B, 3, 32, 32), or ``padding`` is outside [0, 32].
    """
    _check_arguments(images, generator, padding)
    batch, side = images.shape[0], IMAGE_SIZE + 2 * padding
    maps = _source_maps(padding, images.device)
    combination = torch.randint(
        maps.shape[0], (batch,), generator=generator, device=generator.device
    )
    # A host-to-device copy may be non-blocking (it then does not wait for the device's queued
    # work); a copy to the host may not (the host would read the result before it arrives).
    on_host = combination.device.type == "cpu"
    index = maps.index_select(0, combination.to(images.device, non_blocking=on_host))
    padded = images.new_zeros(batch, CHANNELS, side, side)
    padded[:, :, padding : padding + IMAGE_SIZE, padding : padding + IMAGE_SIZE] = images
    index = index.view(batch, 1, IMAGE_SIZE * IMAGE_SIZE).expand(-1, CHANNELS, -1)
    out = padded.view(batch, CHANNELS, side * side).gather(2, index)
    return out.view(batch, CHANNELS, IMAGE_SIZE, IMAGE_SIZE)


@functools.cache
def _source_maps(padding: int, device: torch.device) -> torch.Tensor:
    """int64 (2(2p+1)², 32·32): row k holds, for each output pixel (y, x) in row-major order, the
    flat index (row · (32 + 2p) + column) of its source pixel in the zero-padded image, under the
    crop and flip of combination k (module docstring).
    """
    n = 2 * padding + 1
    top = torch.arange(n).view(n, 1, 1, 1, 1)
    left = torch.arange(n).view(1, n, 1, 1, 1)
    y = torch.arange(IMAGE_SIZE).view(1, 1, 1, IMAGE_SIZE, 1)
    x = torch.arange(IMAGE_SIZE)
    column = torch.stack([x, IMAGE_SIZE - 1 - x]).view(1, 1, 2, 1, IMAGE_SIZE)  # flip = 0, 1
    flat = (top + y) * (IMAGE_SIZE + 2 * padding) + left + column  # (top, left, flip, y, x)
    return flat.view(2 * n * n, IMAGE_SIZE * IMAGE_SIZE).to(device)


def _check_arguments(images: object, generator: object, padding: object) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = images.dtype if isinstance(images, torch.Tensor) else type(images).__name__
        raise TypeError(f"random_crop_flip expects uint8 pixels (B, 3, 32, 32), got {got}")
    if images.ndim != 4 or tuple(images.shape[1:]) != (CHANNELS, IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(
            f"random_crop_flip expects a batch of shape (B, 3, 32, 32), got {tuple(images.shape)}"
        )
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    if type(padding) is not int:
        raise TypeError(f"padding must be an int, got {type(padding).__name__}")
    if not 0 <= padding <= IMAGE_SIZE:
        raise ValueError(f"padding must lie in [0, {IMAGE_SIZE}], got {padding}")


def augmentation_generator(seed: int) -> torch.Generator:
    """A CPU generator for a run's augmentation draws, seeded from the run's ``seed``.

    Its seed is the first 8 bytes (little-endian) of SHA-256(``"optreg.augment:{seed}"``), not
    ``seed`` itself: a generator seeded with ``seed`` already draws the run's shuffling
    permutations, and a separate stream keeps that order the same with augmentation on or off
    (so the two runs differ in the augmentation alone). Torch's CPU generator uses only the low
    32 bits of its seed; the hash makes those differ too.
    """
    if type(seed) is not int or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    digest = hashlib.sha256(f"optreg.augment:{seed}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))
