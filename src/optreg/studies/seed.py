"""The seed study: the classroom exercise's scenarios, as run configs.

LeNet-5 on CIFAR-10, batch 32, 10 epochs, data in stored order, seed set before each model is
built. L2 = 0.1 follows the exercise's convention (divided by the batch size), so the optimizer
coefficient is wd = 0.1/32 — except in ``torch-adam-wd``, which is how torch users write it
(wd = 0.1 on every tensor) and shows how far the two conventions lie apart.

``optreg-sgd``, the twin of the exercise's ``sgd``, runs optreg's SGD with *torch's*
cross-entropy, so the pair differs in the optimizer alone and must coincide bit for bit. With
optreg's cross-entropy it cannot: at lr 0.1 and momentum 0.9 the dynamics are chaotic. Measured
on the CIFAR-10 copy (``examples/sgd_chaos.py``): a loss that differs from torch's by one rounding
(parameters 7e-9 apart after the first step) leaves the parameters 2e-6 apart after 100 steps and
0.58 apart after 300, while optreg's SGD beside torch's, on the same loss, stays at 0 through
1,000 steps. Adam at lr 1e-3 is stable, so ``adam`` (optreg's Adam and CE) follows ``torch-adam``
to ~1e-6 over the whole run.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from optreg.config import ConfigError, RunConfig
from optreg.studies.scenarios import EXERCISE_L2, Scenario, scenario_study

_TORCH = {"loss": "torch", "implementation": "torch"}
_EXERCISE_SGD = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9}
SCENARIOS: tuple[Scenario, ...] = (
    Scenario("sgd", "torch SGD (lr 0.1, momentum 0.9) + torch CE",
             {**_TORCH, **_EXERCISE_SGD}),
    # torch's CE beside optreg's SGD: at lr 0.1 this SGD is chaotic (module docstring).
    Scenario("optreg-sgd", "optreg SGD (lr 0.1, momentum 0.9) + torch CE",
             {"loss": "torch", **_EXERCISE_SGD}),
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
# The exercise's last cell, with the student's own classes (``--custom PATH``), and their twins.
_CUSTOM = {"loss": "custom", "implementation": "custom"}
CUSTOM_SCENARIOS: tuple[Scenario, ...] = (
    Scenario("my-adam", "your Adam + your CE", _CUSTOM),
    Scenario("my-adam-l2-loss", "your Adam + your CE with L2 = 0.1 in the loss",
             {**_CUSTOM, "decay_mode": "loss"}, exercise_l2=True),
    Scenario("my-adam-l2", "your Adam with L2 = 0.1 + your CE",
             {**_CUSTOM, "decay_mode": "coupled"}, exercise_l2=True),
    Scenario("my-adamw", "your Adam with L2 = 0.1 and adamw=True + your CE",
             {**_CUSTOM, "decay_mode": "decoupled"}, exercise_l2=True),
)
CUSTOM_MATCHES: tuple[tuple[str, ...], ...] = (
    ("torch-adam", "my-adam"),
    ("torch-adam-l2", "my-adam-l2-loss", "my-adam-l2"),
    ("torch-adamw", "my-adamw"),
)
PANELS: dict[str, tuple[str, ...]] = {
    "SGD vs Adam": ("sgd", "optreg-sgd", "torch-adam", "adam"),
    "L2: in the loss vs in the optimizer": ("adam-l2-loss", "adam-l2", "torch-adam-l2",
                                            "torch-adam-wd"),
    "Decoupled weight decay": ("adamw", "torch-adamw"),
}
CUSTOM_PANEL = {"Your classes": ("torch-adam", "my-adam", "torch-adam-l2", "my-adam-l2-loss",
                                 "my-adam-l2", "torch-adamw", "my-adamw")}


def seed_study(
    *,
    seeds: tuple[int, ...] = (RunConfig.seed,),
    epochs: int = RunConfig.epochs,
    batch_size: int = RunConfig.batch_size,
    only: tuple[str, ...] | None = None,
    train_size: int | None = None,
    valid_size: int | None = None,
    test_size: int | None = None,
    custom: str | None = None,
) -> tuple[list[RunConfig], dict[str, Any]]:
    """The exercise's scenarios (SGD vs Adam, optreg vs torch, L2 in the loss, in the optimizer,
    decoupled), one run per scenario and seed; validation on the test split, as the exercise,
    unless ``valid_size`` holds out training images.

    ``custom`` is a student's submission (.py or .ipynb, as ``optreg check`` reads it): its
    ``MyCrossEntropyLoss`` and ``MyAdamOptimizer`` then also run the exercise's last cell,
    ``my-adam``, ``my-adam-l2-loss``, ``my-adam-l2`` and ``my-adamw``, each the twin of torch's
    run of the same thing. The file is named in each config and its SHA-256 goes into the run
    id; its text travels to the workers with the tasks (description key ``sources``).
    """
    scenarios, file, panels = SCENARIOS, {}, PANELS
    if custom is not None:
        panels = {**PANELS, **CUSTOM_PANEL}
        text, digest = _read_submission(custom)
        file = {"custom": Path(custom).name, "custom_sha256": digest}
        scenarios += tuple(Scenario(s.name, s.description, {**s.options, **file}, s.exercise_l2)
                           for s in CUSTOM_SCENARIOS)
    settings = {"seeds": list(seeds), "epochs": epochs, "batch_size": batch_size,
                "only": None if only is None else list(only), "train_size": train_size,
                "valid_size": valid_size, "test_size": test_size, **file}
    configs, description = scenario_study(
        "seed", scenarios, seeds=seeds, only=only, matches=MATCHES + CUSTOM_MATCHES,
        panels=panels, settings=settings, batch_size=batch_size, epochs=epochs,
        train_size=train_size, valid_size=valid_size, test_size=test_size)
    if custom is not None:
        description["sources"] = {file["custom_sha256"]: text}
    return configs, description


def _read_submission(path: str) -> tuple[str, str]:
    """The submission's text and the SHA-256 of its bytes; ConfigError naming a bad path."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(f"custom={path!r}: cannot read the submission "
                          f"({e.strerror or e})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"custom={path!r}: not a text file (a .py file or a notebook)") from None
    return text, hashlib.sha256(raw).hexdigest()
