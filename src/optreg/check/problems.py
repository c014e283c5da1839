"""The small random problems every check runs on, and the tolerances measured on them.

One problem is a small conv net (1-D biases beside >1-D weights, as in LeNet-5), CIFAR-shaped
random batches of the exercise's size (32 images, 10 classes) and a few hundred steps. Everything
is drawn from generators seeded by :attr:`CheckOptions.seed`, so every submission of a class sees
the same problem and two runs of the checker give the same numbers.

**Gradients of every size.** The three input channels are scaled by 1, 1e-3 and 1e-6, so the
gradients of the first layer's kernels span ~1e-1 … 1e-8: some coordinates have √v̂ ≫ ε, others
√v̂ ≈ ε. That is where the ε mistakes (ε inside the square root, ε before bias correction) differ
from the correct update; with gradients of one size only they would hide below rounding.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

import torch
from torch import Tensor, nn

BATCH_SIZE = 32  # the exercise's batch size: B in λ/B
N_CLASSES = 10  # CIFAR-10's classes (students hard-code 10 in one_hot)
IMAGE_SHAPE = (3, 8, 8)
CHANNEL_SCALES = (1.0, 1e-3, 1e-6)  # input scale per channel: gradients of every size (above)

# The Adam paper's hyperparameters (Kingma & Ba, Algorithm 1), used by every optimizer check.
LR, BETA1, BETA2, EPS = 1e-3, 0.9, 0.999, 1e-8
L2 = 0.1  # the exercise's λ in "MyCE(l2=0.1)" and "MyAdam(l2=0.1)"



class SmallConvNet(nn.Module):
    """conv 3→4 (3×3), tanh, avg-pool 2 → fc 36→16, tanh → fc 16→10: 6 tensors, 874 parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, kernel_size=3)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(36, 16)
        self.fc2 = nn.Linear(16, N_CLASSES)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(torch.tanh(self.conv(x))).flatten(1)
        return self.fc2(torch.tanh(self.fc1(x)))


@dataclass(frozen=True)
class Problem:
    """A net's initial weights and a sequence of batches, all drawn from ``seed``.

    ``net()`` builds a fresh copy with the same initial weights each time (in ``dtype``), so
    the student's run, torch's run and every replay start from one point. The draws are cached
    per (seed, steps, dtype): every check of a process shares them.
    """

    seed: int = 0
    steps: int = 300
    dtype: torch.dtype = torch.float64

    def net(self) -> SmallConvNet:
        net = SmallConvNet().to(self.dtype)
        with torch.no_grad():
            for name, p in net.named_parameters():
                p.copy_(_initial_state(self.seed)[name])
        return net

    def batches(self) -> Iterator[tuple[Tensor, Tensor]]:
        """``steps`` batches (x: (32, 3, 8, 8) in ``dtype``, y: (32,) class indices)."""
        return iter(_batches(self.seed, self.steps, self.dtype))

    def logits(self, calls: int, scale: float = 1.0) -> list[tuple[Tensor, Tensor]]:
        """``calls`` random (logits (32, 10) · ``scale``, targets (32,)) for the loss checks."""
        gen = torch.Generator().manual_seed(10_007 * self.seed + 2)
        return [
            (
                torch.randn(BATCH_SIZE, N_CLASSES, generator=gen, dtype=torch.float64)
                .mul_(scale).to(self.dtype),
                torch.randint(N_CLASSES, (BATCH_SIZE,), generator=gen),
            )
            for _ in range(calls)
        ]


@cache
def _initial_state(seed: int) -> dict[str, Tensor]:
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
        torch.manual_seed(seed)
        net = SmallConvNet()
    return {k: v.detach().to(torch.float64) for k, v in net.state_dict().items()}


@cache
def _batches(seed: int, steps: int, dtype: torch.dtype) -> tuple[tuple[Tensor, Tensor], ...]:
    gen = torch.Generator().manual_seed(10_007 * seed + 1)
    scale = torch.tensor(CHANNEL_SCALES, dtype=torch.float64).view(1, 3, 1, 1)
    batches = []
    for _ in range(steps):
        x = torch.randn(BATCH_SIZE, *IMAGE_SHAPE, generator=gen, dtype=torch.float64) * scale
        y = torch.randint(N_CLASSES, (BATCH_SIZE,), generator=gen)
        batches.append((x.to(dtype), y))
    return tuple(batches)


# --- tolerances ---------------------------------------------------------------------------------
# An element passes when |a − b| <= atol + rtol·|b| (torch.testing.assert_close's rule). Measured
# on this problem (seed 0, 300 steps); tests/test_check_catalogue.py re-measures the margins.
#
# Optimizer trajectories: the student's parameters against a replay of torch on the student's
# own gradients, at every step.
#   float64: correct implementations in other arithmetic orders (the exercise's natural
#     m = β₁m + (1 − β₁)g, m̂ = m/(1 − β₁ᵗ), θ −= lr·m̂/(√v̂ + ε); the paper's α_t form; AdamW's
#     decay added to the update) stay within 1.2e-15 of torch over all steps. The mistake
#     closest to correct (AdamW's decay applied to the updated θ_t, a second-order lr·λ/B·Δθ)
#     leaves by ~3e-9 per step; all others by ≥ 1e-7. 1e-12 sits ~1000× above the first and
#     ~3000× below the second.
#   float32 (only for state kept in float32): other orders stay within 3e-6 (AdamW: torch
#     rounds 1 − lr·λ/B to float32, a bias of up to 1 % of the decay per step); mistakes grow
#     by ≥ 8e-7 per step and pass 3e-5 within tens of steps, except the second-order decay one
#     (3e-9 per step: below float32 rounding, so not detectable there).
PARAM_TOLERANCE = {torch.float64: (1e-12, 1e-12), torch.float32: (3e-5, 3e-5)}  # (atol, rtol)


@dataclass(frozen=True)
class LossTolerance:
    """Tolerances (atol, rtol) of a loss's value, its logits gradient and its weights gradient."""

    value: tuple[float, float]
    logits_grad: tuple[float, float]
    param_grads: tuple[float, float]


# The loss, on logits ~ N(0, 1) (p_y ≥ ~0.005). The exercise's log(softmax + ε) must pass:
#   value:          ε = 1e-7 gives 1.1e-6 relative (ε = 1e-6: 1.1e-5, 1e-12: 1.1e-11); the CE
#                   mistakes give ≥ 0.18 relative. rtol 1e-3: 900× (ε = 1e-6: 90×) / 180×.
#   logits grad:    ε = 1e-7 gives 6.3e-7 (ε = 1e-6: 6.3e-6); the CE mistakes ≥ 1.8e-2.
#                   atol 3e-4: 480× (ε = 1e-6: 48×) / 60×.
#   weights grad:   the logits are leaves, so this is the penalty's gradient (λ/B)·W alone:
#                   exact to rounding (≤ 1e-17); the penalty mistakes give ≥ 5.6e-4 (their
#                   values differ by as little as 1.9e-4 relative: biases are small).
LOSS_TOLERANCE = LossTolerance(value=(0.0, 1e-3), logits_grad=(3e-4, 0.0),
                               param_grads=(1e-12, 1e-10))
