"""Training throughput: a run as ``optreg train`` makes it, against a bare PyTorch loop.

    python benchmarks/training_throughput.py --data-dir D [--rounds 7] [--steps 300]

LeNet-5, batch 32, Adam (lr 1e-3), on the first ``steps × 32`` CIFAR-10 images in D. Variants,
each with torch's Adam + CE and with optreg's Adam + CE:

* ``bare``: the data pre-loaded as normalised float tensors, batches by slicing; forward, loss,
  backward, step. Nothing else, at **torch's default thread count** (every core).
* ``optreg train``: :func:`optreg.training.run` with the config ``optreg train`` builds and the
  threads it plans for one run (:func:`optreg.api._plan`: every core), timing the training steps
  alone (``train_img_per_s``: per-batch normalisation, losses kept as tensors, NaN/Inf checks,
  flush-to-zero on every thread; not the evaluation after each epoch).
* ``bare`` and ``optreg`` at 1 thread: the loop's own overhead at matched threads.
* ``DataLoader per image`` (torch pieces, every core): the classroom notebook's pipeline, each
  image converted and normalised on its own and batched by ``torch.utils.data.DataLoader``.

Each round runs every variant once, in rotating order, from fresh models; ratios to the bare loop
with the same pieces are taken per round and the median over rounds is reported, so a slow
moment of a shared machine hits both sides of a ratio alike. Results go to JSON with a
description of the machine and the thread counts used.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from optreg import Adam, CrossEntropyLoss, LeNet5, RunConfig
from optreg.api import Execution, _plan
from optreg.atomic import write_json
from optreg.data import Cifar10, Cifar10Split, load_cifar10, normalize
from optreg.runtime import machine_info
from optreg.training import run

BATCH = 32


def pieces(optreg_pieces: bool, model: nn.Module) -> tuple[nn.Module, torch.optim.Optimizer]:
    if optreg_pieces:
        return CrossEntropyLoss(), Adam(model.parameters(), lr=1e-3)
    return nn.CrossEntropyLoss(), torch.optim.Adam(model.parameters(), lr=1e-3)


def bare_loop(images: torch.Tensor, labels: torch.Tensor, steps: int, *, optreg_pieces: bool,
              threads: int) -> float:
    """The reference: pre-normalised tensors, slicing, forward/backward/step; images/s."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LeNet5()
    criterion, optimizer = pieces(optreg_pieces, model)
    start = time.perf_counter()
    for i in range(steps):
        x, y = images[i * BATCH : (i + 1) * BATCH], labels[i * BATCH : (i + 1) * BATCH]
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return steps * BATCH / (time.perf_counter() - start)


def optreg_run(data: Cifar10, steps: int, *, optreg_pieces: bool, threads: int) -> float:
    """One epoch of the run ``optreg train`` makes; its training throughput."""
    torch_pieces = {} if optreg_pieces else {"loss": "torch", "implementation": "torch"}
    config = RunConfig(name="bench", epochs=1, train_size=steps * BATCH, test_size=BATCH,
                       **torch_pieces)
    result = run(config, data, threads=threads)
    assert result.train_img_per_s is not None
    return result.train_img_per_s


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


def dataloader_loop(split: Cifar10Split, threads: int) -> float:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = LeNet5()
    criterion, optimizer = pieces(False, model)
    loader = torch.utils.data.DataLoader(PerImageDataset(split), batch_size=BATCH, shuffle=False)
    start = time.perf_counter()
    for x, y in loader:
        loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return len(split) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=300, help="steps per variant per round")
    parser.add_argument("--out", default="benchmarks/results/training_throughput.json")
    args = parser.parse_args()

    default_threads = torch.get_num_threads()  # torch's default: one per core
    _, planned = _plan(1, Execution(device="cpu"), "cpu", None)  # what `optreg train` uses
    n = args.steps * BATCH
    data = load_cifar10(args.data_dir, train_size=n, test_size=BATCH)
    images, labels = normalize(data.train.images), data.train.labels
    variants: dict[str, tuple[str, Callable[[], float]]] = {}  # name → (its bare reference, run)
    for who, flag in (("torch", False), ("optreg", True)):
        bare, bare_1 = f"bare ({who} Adam + CE)", f"bare ({who} Adam + CE), 1 thread"
        variants[bare] = (bare, lambda f=flag: bare_loop(images, labels, args.steps,
                                                          optreg_pieces=f,
                                                          threads=default_threads))
        variants[f"optreg train ({who} Adam + CE)"] = (bare, lambda f=flag: optreg_run(
            data, args.steps, optreg_pieces=f, threads=planned))
        variants[bare_1] = (bare_1, lambda f=flag: bare_loop(images, labels, args.steps,
                                                             optreg_pieces=f, threads=1))
        variants[f"optreg ({who} Adam + CE), 1 thread"] = (bare_1, lambda f=flag: optreg_run(
            data, args.steps, optreg_pieces=f, threads=1))
    variants["DataLoader per image (torch)"] = ("bare (torch Adam + CE)",
                                                lambda: dataloader_loop(data.train,
                                                                        default_threads))
    for _, measure in variants.values():  # warm-up: allocator, oneDNN primitive caches
        measure()
    img_per_s: dict[str, list[float]] = {name: [] for name in variants}
    ratios: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate who goes first
        measured = {name: variants[name][1]() for name in order}
        for name in names:
            img_per_s[name].append(measured[name])
            ratios[name].append(measured[name] / measured[variants[name][0]])
    rows = {
        name: {
            "reference": variants[name][0],
            "img_per_s_median": statistics.median(img_per_s[name]),
            "ratio_median": statistics.median(ratios[name]),
            "ratio_min": min(ratios[name]),
            "ratio_max": max(ratios[name]),
        }
        for name in names
    }
    print(f"torch's default threads {default_threads}, optreg train's planned threads "
          f"{planned}; {args.rounds} rounds × {args.steps} steps of batch {BATCH}")
    print(f"{'variant':<40} {'img/s (median)':>15} {'× its bare loop':>16} {'range':>14}")
    for name, row in rows.items():
        print(f"{name:<40} {row['img_per_s_median']:>15,.0f} {row['ratio_median']:>16.3f}"
              f" {row['ratio_min']:>6.3f}–{row['ratio_max']:.3f}")
    out = write_json(args.out, {"machine": machine_info(), "default_threads": default_threads,
                                "planned_threads": planned, "rounds": args.rounds,
                                "steps": args.steps, "results": rows})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
