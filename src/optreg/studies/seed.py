"""The seed study: the classroom exercise's scenarios, as run configs.

LeNet-5 on CIFAR-10, batch 32, 10 epochs, data in stored order, seed set before each model is
built. L2 = 0.1 follows the exercise's convention (divided by the batch size), so the optimizer
coefficient is wd = 0.1/32 — except in ``torch-adam-wd``, which is how torch users write it
(wd = 0.1 on every tensor) and shows how far the two conventions lie apart.
"""

from __future__ import annotations

from typing import Any

from optreg.config import RunConfig
from optreg.studies.scenarios import EXERCISE_L2, Scenario, scenario_study

_TORCH = {"loss": "torch", "implementation": "torch"}
_EXERCISE_SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("sgd", "torch SGD (lr 0.1, momentum 0.9) + torch CE",
             {**_TORCH, **_EXERCISE_SGD}),
    Scenario("optreg-sgd", "optreg SGD (lr 0.1, momentum 0.9) + optreg CE", _EXERCISE_SGD),
    Scenario("torch-adam", "torch Adam (lr 1e-3) + torch CE", _TORCH),
    Scenario("adam", "optreg Adam + optreg CE"),
    Scenario("adam-l2-loss", "optreg Adam + optreg CE with L2 = 0.1 in the loss",
             {"decay_mode": "loss"}, exercise_l2=True),
    Scenario("adam-l2", "optreg Adam with L2 = 0.1 (coupled) + optreg CE",
             {"decay_mode": "coupled"}, exercise_l2=True),
    Scenario("adamw", "optreg AdamW (L2 = 0.1, decoupled) + optreg CE",
             {"decay_mode": "decoupled"}, exercise_l2=True),
    Scenario("torch-adam-l2", "torch Adam, weight_decay = 0.1/32 on weights only",
             {**_TORCH, "decay_mode": "coupled"}, exercise_l2=True),
    Scenario("torch-adamw", "torch AdamW, weight_decay = 0.1/32 on weights only",
             {**_TORCH, "decay_mode": "decoupled"}, exercise_l2=True),
    Scenario("torch-adam-wd", "torch Adam, weight_decay = 0.1 on every tensor (torch users' way)",
             {**_TORCH, "decay_mode": "coupled", "weight_decay": EXERCISE_L2, "decay": "all"}),
)
SCENARIO_NAMES: tuple[str, ...] = tuple(s.name for s in SCENARIOS)

# Scenarios that compute the same thing with different code: their histories must coincide.
MATCHES: tuple[tuple[str, ...], ...] = (
    ("sgd", "optreg-sgd"),
    ("torch-adam", "adam"),
    ("adam-l2-loss", "adam-l2", "torch-adam-l2"),
    ("adamw", "torch-adamw"),
)
PANELS: dict[str, tuple[str, ...]] = {
    "SGD vs Adam": ("sgd", "optreg-sgd", "torch-adam", "adam"),
    "L2: in the loss vs in the optimizer": ("adam-l2-loss", "adam-l2", "torch-adam-l2",
                                            "torch-adam-wd"),
    "Decoupled weight decay": ("adamw", "torch-adamw"),
}


def seed_study(
    *,
    seeds: tuple[int, ...] = (0,),
    epochs: int = 10,
    batch_size: int = 32,
    only: tuple[str, ...] | None = None,
    train_size: int | None = None,
    valid_size: int | None = None,
    test_size: int | None = None,
) -> tuple[list[RunConfig], dict[str, Any]]:
    """The exercise's scenarios (SGD vs Adam, optreg vs torch, L2 in the loss, in the optimizer,
    decoupled), one run per scenario and seed; validation on the test split, as the exercise,
    unless ``valid_size`` holds out training images."""
    settings = {"seeds": list(seeds), "epochs": epochs, "batch_size": batch_size,
                "only": None if only is None else list(only), "train_size": train_size,
                "valid_size": valid_size, "test_size": test_size}
    return scenario_study("seed", SCENARIOS, seeds=seeds, only=only, matches=MATCHES,
                          panels=PANELS, settings=settings, batch_size=batch_size,
                          epochs=epochs, train_size=train_size, valid_size=valid_size,
                          test_size=test_size)
