"""Training throughput: optreg's training loop against a bare PyTorch loop and a DataLoader.

    python benchmarks/training_throughput.py --data-dir D [--threads 1] [--rounds 7] [--steps 300]

LeNet-5, batch 32, Adam (lr 1e-3), on the CIFAR-10 images in D. Variants:

* ``bare``: the data pre-loaded as normalised float tensors, batches by slicing; forward,
  ``nn.CrossEntropyLoss``, backward, ``torch.optim.Adam`` step. Nothing else.
* ``optreg (torch Adam + CE)``: :func:`optreg.training.train_epoch` with the same torch
  optimizer and loss — what optreg's loop itself costs (uint8 slices normalised per batch,
  losses kept as tensors, NaN/Inf checks).
* ``optreg (optreg Adam + CE)``: the same loop with optreg's from-scratch Adam and
  cross-entropy: the classroom scenario.
* ``DataLoader per image``: a ``Dataset`` that converts and normalises each image on its own,
  batched by ``torch.utils.data.DataLoader`` (``num_workers=0``), as the classroom notebook does.

Each round runs every variant for ``--steps`` steps, in rotating order, from fresh models; the
throughput ratios to ``bare`` are taken per round and the median over rounds is reported, so
a slow period of this shared machine hits both sides of a ratio alike. Threads are set on
purpose (``--threads``, default 1: how optreg runs each study run). Results go to JSON with a
description of the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from optreg import Adam, CrossEntropyLoss, LeNet5
from optreg.atomic import write_json
from optreg.data import Cifar10Split, load_cifar10, normalize
from optreg.runtime import machine_info
from optreg.training import train_epoch

BATCH = 32


def bare_loop(images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """The reference: pre-normalised tensors, slicing, forward/backward/step. Returns seconds."""
    torch.manual_seed(0)
    model = LeNet5()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for i in range(steps):
        x, y = images[i * BATCH : (i + 1) * BATCH], labels[i * BATCH : (i + 1) * BATCH]
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def optreg_loop(split: Cifar10Split, *, from_scratch: bool) -> float:
    torch.manual_seed(0)
    model = LeNet5()
    if from_scratch:
        criterion, optimizer = CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
    else:
        criterion = nn.CrossEntropyLoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats = train_epoch(model, criterion, optimizer, split, batch_size=BATCH, epoch=1)
    return stats.seconds


class PerImageDataset(torch.utils.data.Dataset):
    """The classroom pipeline: each image converted and normalised on its own."""

    def __init__(self, split: Cifar10Split) -> None:
        self.images, self.labels = split.images, split.labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = self.images[i].to(torch.float32).div(255)  # ToTensor
        x = (x - 0.5) / 0.5  # Normalize((0.5,)*3, (0.5,)*3)
        return x, int(self.labels[i])


def dataloader_loop(split: Cifar10Split) -> float:
    torch.manual_seed(0)
    model = LeNet5()
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = torch.utils.data.DataLoader(PerImageDataset(split), batch_size=BATCH, shuffle=False)
    start = time.perf_counter()
    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="steps per variant per round")
    parser.add_argument("--out", default="benchmarks/results/training_throughput.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    n = args.steps * BATCH
    data = load_cifar10(args.data_dir, train_size=n, test_size=1)
    split = data.train
    images, labels = normalize(split.images), split.labels
    variants: dict[str, Callable[[], float]] = {
        "bare": lambda: bare_loop(images, labels, args.steps),
        "optreg (torch Adam + CE)": lambda: optreg_loop(split, from_scratch=False),
        "optreg (optreg Adam + CE)": lambda: optreg_loop(split, from_scratch=True),
        "DataLoader per image": lambda: dataloader_loop(split),
    }
    for run in variants.values():  # warm-up: allocator, oneDNN primitive caches
        run()
    img_per_s: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        seconds = {name: variants[name]() for name in order}
        for name in names:
            img_per_s[name].append(n / seconds[name])
            ratios[name].append(seconds["bare"] / seconds[name])  # throughput ratio vs bare
    rows = {
        name: {
            "img_per_s_median": statistics.median(img_per_s[name]),
            "ratio_vs_bare_median": statistics.median(ratios[name]),
            "ratio_vs_bare_min": min(ratios[name]),
            "ratio_vs_bare_max": max(ratios[name]),
        }
        for name in names
    }
    print(f"threads {args.threads}, {args.rounds} rounds × {args.steps} steps of batch {BATCH}")
    print(f"{'variant':<28} {'img/s (median)':>15} {'× bare (median)':>16} {'range':>14}")
    for name, row in rows.items():
        print(
            f"{name:<28} {row['img_per_s_median']:>15,.0f} {row['ratio_vs_bare_median']:>16.3f}"
            f" {row['ratio_vs_bare_min']:>6.3f}–{row['ratio_vs_bare_max']:.3f}"
        )
    out = write_json(args.out, {"machine": machine_info(), "threads": args.threads,
                                "rounds": args.rounds, "steps": args.steps, "results": rows})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
