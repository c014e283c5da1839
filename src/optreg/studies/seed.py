"""The seed study: the classroom exercise's scenarios, as run configs.

LeNet-5 on CIFAR-10, batch 32, 10 epochs, data in stored order, seed set before each model is
built. L2 = 0.1 follows the exercise's convention (divided by the batch size), so the optimizer
coefficient is wd = 0.1/32 — except in ``torch-adam-wd``, which is how torch users write it
(wd = 0.1 on every tensor) and shows how far the two conventions lie apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optreg.config import ConfigError, RunConfig, check_unique
from optreg.regularization import l2_to_weight_decay

EXERCISE_L2 = 0.1  # the exercise's λ, at its batch size


@dataclass(frozen=True)
class Scenario:
    """A named config template; :meth:`build` fills in the study-wide settings.

    ``exercise_l2``: the scenario regularises with the exercise's "L2 = 0.1", i.e.
    ``weight_decay = 0.1 / batch_size`` at whatever batch size the study runs.
    """

    name: str
    description: str
    options: dict[str, Any] = field(default_factory=dict)
    exercise_l2: bool = False

    def build(self, *, seed: int, batch_size: int, epochs: int, **data: Any) -> RunConfig:
        options = dict(self.options)
        if self.exercise_l2:
            options["weight_decay"] = l2_to_weight_decay(EXERCISE_L2, batch_size)
        return RunConfig(name=self.name, seed=seed, batch_size=batch_size, epochs=epochs,
                         **data, **options)


_TORCH = {"loss": "torch", "implementation": "torch"}
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("sgd", "torch SGD (lr 0.1, momentum 0.9) + torch CE",
             {**_TORCH, "optimizer": "sgd", "lr": 0.1, "momentum": 0.9}),
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
    ("torch-adam", "adam"),
    ("adam-l2-loss", "adam-l2", "torch-adam-l2"),
    ("adamw", "torch-adamw"),
)
PANELS: dict[str, tuple[str, ...]] = {
    "SGD vs Adam": ("sgd", "torch-adam", "adam"),
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
    """The run configs of the seed study and its description (matches, panels, descriptions).

    Runs are ordered seed-major (every scenario of seed 0, then of seed 1, …). Validation is the
    test split, as in the exercise, unless ``valid_size`` holds out training images.
    """
    unknown = sorted(set(only or ()) - set(SCENARIO_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIO_NAMES)}"
        )
    if not seeds:
        raise ConfigError("seeds: give at least one seed")
    check_unique(seeds, "seeds")
    chosen = [s for s in SCENARIOS if only is None or s.name in only]
    configs = [
        s.build(seed=seed, batch_size=batch_size, epochs=epochs, train_size=train_size,
                valid_size=valid_size, test_size=test_size)
        for seed in seeds
        for s in chosen
    ]
    names = {s.name for s in chosen}
    description = {
        "name": "seed",
        "kind": "seed",
        "settings": {"seeds": list(seeds), "epochs": epochs, "batch_size": batch_size,
                     "only": None if only is None else list(only), "train_size": train_size,
                     "valid_size": valid_size, "test_size": test_size},
        "descriptions": {s.name: s.description for s in chosen},
        "matches": [[n for n in g if n in names] for g in MATCHES
                    if len(names.intersection(g)) > 1],
        "panels": {title: [n for n in group if n in names] for title, group in PANELS.items()
                   if names.intersection(group)},
    }
    return configs, description
