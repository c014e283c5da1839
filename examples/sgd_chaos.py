"""Why the exercise's SGD (lr 0.1, momentum 0.9) has no from-scratch twin with optreg's own loss.

Trains LeNet-5 three ways from the same initial weights on the first 1,000 batches of CIFAR-10
(stored order, batch 32, one thread) and prints how far each run's parameters are from torch's
SGD + torch's cross-entropy:

* optreg's SGD with torch's cross-entropy: the optimizer alone differs, and stays at 0;
* torch's SGD with optreg's cross-entropy: the loss differs by float rounding (~1e-8), and in
  this chaotic regime the gap grows about tenfold every ~20 steps until it is as large as the
  weights themselves.

    python examples/sgd_chaos.py --data-dir D
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable

import torch

import optreg
from optreg.data import iterate_batches, load_cifar10, normalize

STEPS = 1_000
SHOWN = (1, 10, 30, 100, 300, 1_000)


def trajectory(model: torch.nn.Module, optimizer: type[torch.optim.Optimizer],
               loss_fn: Callable[..., torch.Tensor], x: torch.Tensor,
               y: torch.Tensor) -> list[torch.Tensor]:
    """The flattened parameters after each of the first STEPS steps."""
    model = copy.deepcopy(model)
    opt = optimizer(model.parameters(), lr=0.1, momentum=0.9)
    out = []
    for xb, yb in iterate_batches(x, y, 32):
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        if len(out) == STEPS:
            break
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True, help="folder holding cifar-10-batches-py/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_cifar10(args.data_dir, train_size=32 * STEPS)
    x, y = normalize(data.train.images), data.train.labels
    torch.manual_seed(0)
    model = optreg.LeNet5()
    reference = trajectory(model, torch.optim.SGD, torch.nn.functional.cross_entropy, x, y)
    same_loss = trajectory(model, optreg.SGD, torch.nn.functional.cross_entropy, x, y)
    own_loss = trajectory(model, torch.optim.SGD, optreg.cross_entropy, x, y)
    print("max |Δθ| from torch SGD + torch CE")
    print("  step   optreg SGD + torch CE   torch SGD + optreg CE")
    for k in SHOWN:
        a = (same_loss[k - 1] - reference[k - 1]).abs().max().item()
        b = (own_loss[k - 1] - reference[k - 1]).abs().max().item()
        print(f"{k:6d}   {a:21.2e}   {b:21.2e}")


if __name__ == "__main__":
    main()
