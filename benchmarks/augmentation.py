"""Data augmentation: its cost per training step, and the choice of crop implementation.

    python benchmarks/augmentation.py [--data-dir D] [--pairs 100] [--block 10] [--rounds 7]

**Step cost.** LeNet-5 at batch 32 with optreg's Adam (lr 1e-3) and cross-entropy, each step as
the training loop takes it (a uint8 slice, ``normalize``, forward, loss, backward, step), without
and with :func:`optreg.data.augment.random_crop_flip` (padding 4) before ``normalize``. Two
models train side by side on the same batches, under :func:`optreg.runtime.execution` as a run
does (flush-to-zero on). Blocks of ``--block`` steps of each run back to back in alternating
order, at 1 and at 2 torch threads by turns; each pair of blocks gives a ratio (step with
augmentation / step without), and the median and quartiles over ``--pairs`` pairs are reported,
so a slow period of this shared machine hits both sides alike. The goal is a ratio ≤ 1.10.

**Crop implementations**, µs per call at batch 32 and 512, 1 and 2 threads, each including its
random draws, checked equal to the library on the same draws first:

* ``table gather`` (the library): the 2·9² index maps tabulated once; look up, pad, gather.
* ``index arithmetic + gather``: the same gather with each batch's index computed from the shifts.
* ``unfold + index``: all 81 windows of the padded batch as a strided view, advanced indexing,
  then the flip with ``torch.where``.
* ``airbench masks``: one masked copy per row shift and one per column shift (airbench's
  ``batch_crop`` for r > 2), then the flip with ``torch.where``.

With the defaults it takes about 40 s on an idle 2-core machine. Results go to
``benchmarks/results/augmentation.json`` with a description of the machine and its load average
(1 min) before and after, which says whether the machine was idle. Without
``--data-dir`` the images are optreg's synthetic CIFAR-10 look-alikes (the step's cost does not
depend on the pixels).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F

from optreg import Adam, CrossEntropyLoss, LeNet5
from optreg.atomic import write_json
from optreg.data import load_cifar10, normalize, synthetic_cifar10
from optreg.data.augment import DEFAULT_PADDING, random_crop_flip
from optreg.runtime import execution, machine_info

BATCH = 32
CROP_BATCHES = (32, 512)
THREADS = (1, 2)
P = DEFAULT_PADDING
SIZE = 32

# --- step cost -----------------------------------------------------------------------------------


class Trainer:
    """A model with its loss and optimizer, stepping over slices of uint8 images like the loop."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, augment: bool) -> None:
        torch.manual_seed(0)
        self.model = LeNet5()
        self.criterion = CrossEntropyLoss()
        self.optimizer = Adam(self.model.parameters(), lr=1e-3)
        self.images, self.labels = images, labels
        self.generator = torch.Generator().manual_seed(0) if augment else None
        self.batch = 0  # the next batch; wraps around at the end of the images

    def seconds(self, steps: int) -> float:
        """Wall time of the next ``steps`` training steps."""
        n_batches = len(self.images) // BATCH
        start = time.perf_counter()
        for _ in range(steps):
            rows = slice(self.batch * BATCH, (self.batch + 1) * BATCH)
            self.batch = (self.batch + 1) % n_batches
            x = self.images[rows]
            if self.generator is not None:
                x = random_crop_flip(x, self.generator)
            loss = self.criterion(self.model(normalize(x)), self.labels[rows])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return time.perf_counter() - start


def step_cost(images: torch.Tensor, labels: torch.Tensor, pairs: int, block: int) -> dict:
    """Per thread count: ``pairs`` ratios (augmented / plain) of ``block``-step blocks.

    The two blocks of a pair run back to back, and the thread counts take turns. Which thread
    count goes first flips every pair, so a section of one thread count starts right after a
    switch every other pair; which side goes first flips every two pairs, so each side runs first
    after a switch as often as without one. Each section starts with one untimed step of both
    trainers (thread pool, caches). A slow spell of the machine then falls on both sides of most
    ratios, and no side is systematically the first after a change of thread count.
    """
    trainers = {
        threads: (Trainer(images, labels, False), Trainer(images, labels, True))
        for threads in THREADS
    }
    plain: dict[int, list[float]] = {t: [] for t in THREADS}
    augmented: dict[int, list[float]] = {t: [] for t in THREADS}
    for pair in range(-2, pairs):  # the first two pairs warm up (allocator, oneDNN primitives)
        for threads in THREADS if pair % 2 else THREADS[::-1]:
            without, with_ = trainers[threads]
            with execution(threads, flush_denormal=True):
                without.seconds(1), with_.seconds(1)
                if pair // 2 % 2:
                    s_without, s_with = without.seconds(block), with_.seconds(block)
                else:
                    s_with, s_without = with_.seconds(block), without.seconds(block)
            if pair >= 0:
                plain[threads].append(s_without / block)
                augmented[threads].append(s_with / block)
    rows = {}
    for threads in THREADS:
        ratios = [a / p for a, p in zip(augmented[threads], plain[threads], strict=True)]
        q1, median, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        rows[str(threads)] = {
            "ms_per_step_plain_median": 1e3 * statistics.median(plain[threads]),
            "ms_per_step_augmented_median": 1e3 * statistics.median(augmented[threads]),
            "ratio_median": median,
            "ratio_q1": q1,
            "ratio_q3": q3,
        }
    return rows


# --- crop implementations ------------------------------------------------------------------------

Crop = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def arithmetic_gather(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    batch, side = images.shape[0], SIZE + 2 * P
    padded = F.pad(images, (P, P, P, P))
    rows = torch.arange(SIZE) + top[:, None]
    x = torch.arange(SIZE)
    cols = torch.where(flip[:, None], SIZE - 1 - x, x) + left[:, None]
    index = (rows[:, :, None] * side + cols[:, None, :]).view(batch, 1, -1).expand(-1, 3, -1)
    return padded.view(batch, 3, -1).gather(2, index).view_as(images)


def unfold_index(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    windows = F.pad(images, (P, P, P, P)).unfold(2, SIZE, 1).unfold(3, SIZE, 1)
    out = windows[torch.arange(images.shape[0]), :, top, left]
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def airbench_masks(
    images: torch.Tensor, top: torch.Tensor, left: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    padded = F.pad(images, (P, P, P, P))
    rows = images.new_empty(images.shape[0], 3, SIZE, SIZE + 2 * P)
    for s in range(2 * P + 1):
        mask = top == s
        rows[mask] = padded[mask, :, s : s + SIZE, :]
    out = torch.empty_like(images)
    for s in range(2 * P + 1):
        mask = left == s
        out[mask] = rows[mask, :, :, s : s + SIZE]
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


ALTERNATIVES: dict[str, Crop] = {
    "index arithmetic + gather": arithmetic_gather,
    "unfold + index": unfold_index,
    "airbench masks": airbench_masks,
}
LIBRARY = "table gather"


def documented_draws(batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """(top, left, flip) from the library's one draw per image (its module docstring)."""
    n = 2 * P + 1
    k = torch.randint(2 * n * n, (batch,), generator=generator)
    return k // (2 * n), k // 2 % n, (k % 2).bool()


def check_alternatives(images: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(1)
    state = generator.get_state()
    expected = random_crop_flip(images, generator)
    generator.set_state(state)
    draws = documented_draws(len(images), generator)
    for name, crop in ALTERNATIVES.items():
        if not torch.equal(crop(images, *draws), expected):
            raise AssertionError(f"{name} differs from random_crop_flip")


def crop_timings(images: torch.Tensor, rounds: int, calls: int) -> dict:
    """µs per call of each implementation, each drawing its randomness as it naturally would."""
    generator = torch.Generator().manual_seed(0)
    batch = len(images)

    def alternative(crop: Crop) -> Callable[[], torch.Tensor]:
        def call() -> torch.Tensor:
            corner = torch.randint(2 * P + 1, (batch, 2), generator=generator)
            flip = torch.randint(2, (batch,), generator=generator).bool()
            return crop(images, corner[:, 0], corner[:, 1], flip)

        return call

    variants = {LIBRARY: lambda: random_crop_flip(images, generator)}
    variants |= {name: alternative(crop) for name, crop in ALTERNATIVES.items()}
    names = list(variants)
    us: dict[str, list[float]] = {name: [] for name in names}
    for r in range(-1, rounds):  # round -1 warms up
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            for _ in range(calls):
                variants[name]()
            if r >= 0:
                us[name].append(1e6 * (time.perf_counter() - start) / calls)
    return {
        name: {
            "us_per_call_median": statistics.median(us[name]),
            "ratio_vs_library_median": statistics.median(
                [a / b for a, b in zip(us[name], us[LIBRARY], strict=True)]
            ),
        }
        for name in names
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", help="CIFAR-10 files (default: synthetic images)")
    parser.add_argument("--pairs", type=int, default=100, help="block pairs per thread count")
    parser.add_argument("--block", type=int, default=10, help="training steps per block")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of crop timings")
    parser.add_argument(
        "--calls",
        type=int,
        default=100,
        help="crop calls per variant per round at batch 32 (fewer at 512)",
    )
    parser.add_argument("--out", default="benchmarks/results/augmentation.json")
    args = parser.parse_args()

    n = 100 * BATCH  # the step blocks cycle through these images (≥ the largest crop batch)
    if args.data_dir:
        data, source = load_cifar10(args.data_dir, train_size=n, test_size=1), args.data_dir
    else:
        data, source = synthetic_cifar10(n_train=n, n_test=1), "synthetic"
    images, labels = data.train.images, data.train.labels
    load_before = os.getloadavg()[0]

    print(
        f"step cost: LeNet-5, batch {BATCH}, optreg Adam + CE, {args.pairs} pairs of "
        f"{args.block}-step blocks, images: {source}"
    )
    steps = step_cost(images, labels, args.pairs, args.block)
    print(
        f"{'threads':>7} {'ms/step plain':>14} {'ms/step aug':>12} {'ratio (median)':>15} "
        f"{'[q1, q3]':>14}"
    )
    for threads, row in steps.items():
        print(
            f"{threads:>7} {row['ms_per_step_plain_median']:>14.3f} "
            f"{row['ms_per_step_augmented_median']:>12.3f} {row['ratio_median']:>15.3f} "
            f"  [{row['ratio_q1']:.3f}, {row['ratio_q3']:.3f}]"
        )

    crops: dict[str, dict[str, dict]] = {}
    print(
        f"\ncrop implementations, µs per call (× table gather), {args.rounds} rounds × "
        f"{args.calls} calls"
    )
    for batch in CROP_BATCHES:
        check_alternatives(images[:batch])
        crops[str(batch)] = {}
        for threads in THREADS:
            with execution(threads, flush_denormal=True):
                rows = crop_timings(images[:batch], args.rounds, max(1, args.calls * 32 // batch))
            crops[str(batch)][str(threads)] = rows
            cells = ", ".join(
                f"{name} {row['us_per_call_median']:,.0f} ({row['ratio_vs_library_median']:.2f}×)"
                for name, row in rows.items()
            )
            print(f"batch {batch:>4}, {threads} thread(s): {cells}")

    out = write_json(
        args.out,
        {
            "machine": machine_info(),
            "load_avg_1min": [load_before, os.getloadavg()[0]],
            "images": source,
            "batch": BATCH,
            "padding": P,
            "pairs": args.pairs,
            "block": args.block,
            "rounds": args.rounds,
            "calls": args.calls,
            "step_cost": steps,
            "crop_us": crops,
        },
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
