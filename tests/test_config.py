"""RunConfig: the exercise's defaults, dict round trips, stable run ids, validation at the door."""

from __future__ import annotations

import dataclasses
import json
import math
import re
from typing import Any

import pytest

from optreg.config import RUN_ID_BASELINE, ConfigError, RunConfig
from optreg.studies import seed_study

# --- defaults ----------------------------------------------------------------------------------


def test_defaults_are_the_classroom_exercise() -> None:
    c = RunConfig()
    assert (c.optimizer, c.implementation, c.lr) == ("adam", "optreg", 1e-3)
    assert (c.betas, c.eps, c.amsgrad, c.momentum) == ((0.9, 0.999), 1e-8, False, 0.0)
    assert c.loss == "optreg"
    assert (c.batch_size, c.epochs, c.seed) == (32, 10, 0)
    assert c.shuffle is False  # stored order
    assert (c.train_size, c.test_size) == (None, None)  # the whole splits
    assert (c.weight_decay, c.decay_mode) == (0.0, "none")
    assert (c.model, c.schedule) == ("lenet5", "constant")


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunConfig().lr = 0.1  # type: ignore[misc]


def test_l2_is_weight_decay_times_batch_size() -> None:
    c = RunConfig(weight_decay=0.1 / 32, decay_mode="loss")
    assert c.l2 == pytest.approx(0.1)
    assert RunConfig(weight_decay=0.1 / 64, decay_mode="loss", batch_size=64).l2 == pytest.approx(
        0.1
    )


# --- dicts -------------------------------------------------------------------------------------

EXAMPLES = [
    *seed_study()[0],
    RunConfig(shuffle=True, schedule="cosine", train_size=100, test_size=50, seed=7),
    RunConfig(decay_mode="paper", weight_decay=0.01, amsgrad=True, betas=(0.8, 0.99)),
    RunConfig(flush_denormal=False, eps=0.0, decay="all", decay_mode="coupled", weight_decay=1),
]


@pytest.mark.parametrize("config", EXAMPLES, ids=lambda c: c.name + "-" + c.run_id)
def test_to_dict_from_dict_round_trip_also_through_json(config: RunConfig) -> None:
    data = config.to_dict()
    assert set(data) == {f.name for f in dataclasses.fields(RunConfig)}
    assert data["betas"] == list(config.betas)
    assert RunConfig.from_dict(data) == config
    through_json = RunConfig.from_dict(json.loads(json.dumps(data)))
    assert through_json == config
    assert through_json.run_id == config.run_id


def test_from_dict_rejects_unknown_keys_naming_them() -> None:
    with pytest.raises(ConfigError, match=re.escape("unknown config keys: ['colour', 'depth']")):
        RunConfig.from_dict({"depth": 3, "lr": 1e-3, "colour": "red"})


@pytest.mark.parametrize("data", [[("lr", 0.1)], "lr=0.1", None])
def test_from_dict_needs_a_dict(data: Any) -> None:
    with pytest.raises(ConfigError, match="must be a dict"):
        RunConfig.from_dict(data)


def test_from_dict_checks_types() -> None:
    with pytest.raises(ConfigError, match=r"^epochs='10': expected int"):
        RunConfig.from_dict({"epochs": "10"})


# --- run ids -----------------------------------------------------------------------------------


def test_run_id_is_short_hex_and_equal_for_equal_configs() -> None:
    a = RunConfig(lr=3e-3, epochs=4)
    assert re.fullmatch(r"[0-9a-f]{12}", a.run_id)
    b = RunConfig.from_dict(dict(reversed(list(a.to_dict().items()))))  # key order is irrelevant
    c = RunConfig().replace(epochs=4, lr=3e-3)
    assert a.run_id == b.run_id == c.run_id == RunConfig(epochs=4, lr=3e-3).run_id



def test_run_ids_are_pinned_across_versions() -> None:
    # Stored studies are resumed by id: these literals must never change.
    assert RunConfig().run_id == "44136fa355b3"  # the hash of {}
    assert RunConfig(name="adamw", weight_decay=0.1, decay_mode="decoupled").run_id == (
        "8438fd2dd96e")


def test_every_field_has_a_frozen_id_baseline_equal_to_its_default() -> None:
    # A new field must join RUN_ID_BASELINE with its default, so that old ids stay valid.
    assert set(RUN_ID_BASELINE) == {f.name for f in dataclasses.fields(RunConfig)}
    assert RunConfig(name="adam").to_dict() == RUN_ID_BASELINE
    changed = RunConfig(trace_steps=5)
    assert changed.run_id != RunConfig().run_id

def test_ints_and_floats_give_the_same_id() -> None:
    as_int = RunConfig(lr=1, weight_decay=1, decay_mode="coupled", betas=(0, 0.5), eps=0)
    as_float = RunConfig(lr=1.0, weight_decay=1.0, decay_mode="coupled", betas=(0.0, 0.5), eps=0.0)
    assert as_int == as_float
    assert as_int.run_id == as_float.run_id
    assert isinstance(as_int.lr, float) and isinstance(as_int.betas[0], float)


SGD = {"optimizer": "sgd", "implementation": "torch"}
# One valid change per field (the model has a single choice, so it cannot change).
CHANGES: dict[str, dict[str, Any]] = {
    "name": {"name": "other"},
    "seed": {"seed": 1},
    "train_size": {"train_size": 1000},
    "test_size": {"test_size": 1000},
    "batch_size": {"batch_size": 64},
    "epochs": {"epochs": 11},
    "shuffle": {"shuffle": True},
    "loss": {"loss": "torch"},
    "optimizer": SGD,
    "implementation": {"implementation": "torch"},
    "lr": {"lr": 1.1e-3},
    "betas": {"betas": (0.9, 0.99)},
    "eps": {"eps": 1e-7},
    "amsgrad": {"amsgrad": True},
    "momentum": {**SGD, "momentum": 0.9},
    "weight_decay": {"weight_decay": 1e-2, "decay_mode": "coupled"},
    "decay_mode": {"weight_decay": 1e-2, "decay_mode": "decoupled"},
    "decay": {"weight_decay": 1e-2, "decay_mode": "coupled", "decay": "all"},
    "schedule": {"schedule": "cosine"},
    "flush_denormal": {"flush_denormal": False},
    "valid_size": {"valid_size": 5000},
    "augment": {"augment": True},
    "label_smoothing": {"label_smoothing": 0.1},
    "bias_correction": {"bias_correction": False},
    "dampening": {**SGD, "momentum": 0.9, "dampening": 0.9},
    "alpha": {"optimizer": "rmsprop", "alpha": 0.999},
    "custom": {"loss": "custom", "custom": "alice.py", "custom_sha256": "ab" * 32},
    "custom_sha256": {"loss": "custom", "custom": "alice.py", "custom_sha256": "cd" * 32},
    "trace_steps": {"trace_steps": 100},
}


def test_every_field_change_gives_a_new_id() -> None:
    assert set(CHANGES) | {"model"} == {f.name for f in dataclasses.fields(RunConfig)}
    configs = [RunConfig(), *(RunConfig(**change) for change in CHANGES.values())]
    configs.append(RunConfig(weight_decay=2e-2, decay_mode="coupled"))  # wd alone changes
    ids = [c.run_id for c in configs]
    assert len(set(ids)) == len(ids)


# --- validation --------------------------------------------------------------------------------

INF, NAN = math.inf, math.nan
WD = {"weight_decay": 0.1, "decay_mode": "coupled"}
INVALID: list[tuple[dict[str, Any], str]] = [
    # wrong types (a bool is not an int, an int is not a bool, a list is not a tuple)
    ({"epochs": True}, "epochs"),
    ({"seed": False}, "seed"),
    ({"batch_size": 32.0}, "batch_size"),
    ({"train_size": "256"}, "train_size"),
    ({"test_size": 1.5}, "test_size"),
    ({"lr": "1e-3"}, "lr"),
    ({"lr": True}, "lr"),
    ({"betas": [0.9, 0.999]}, "betas"),
    ({"betas": (0.9,)}, "betas"),
    ({"betas": (0.9, "0.999")}, "betas"),
    ({"shuffle": 1}, "shuffle"),
    ({"amsgrad": "yes"}, "amsgrad"),
    ({"flush_denormal": None}, "flush_denormal"),
    ({"name": 3}, "name"),
    ({"model": "resnet18"}, "model"),
    ({"loss": "keras"}, "loss"),
    ({"optimizer": "lbfgs"}, "optimizer"),
    ({"implementation": "jax"}, "implementation"),
    ({"decay_mode": "l1"}, "decay_mode"),
    ({"decay": "biases"}, "decay"),
    ({"schedule": "step"}, "schedule"),
    # ranges
    ({"name": ""}, "name"),
    ({"name": "my run"}, "name"),
    ({"name": "a/b"}, "name"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),  # beyond torch's seed range
    ({"valid_size": 0}, "valid_size"),
    ({"trace_steps": -1}, "trace_steps"),
    ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"optimizer": "rmsprop", "alpha": 1.0}, "alpha"),
    ({"train_size": 0}, "train_size"),
    ({"test_size": 0}, "test_size"),
    ({"batch_size": 0}, "batch_size"),
    ({"epochs": 0}, "epochs"),
    ({"lr": 0}, "lr"),
    ({"lr": -1e-3}, "lr"),
    ({"lr": INF}, "lr"),
    ({"lr": NAN}, "lr"),
    ({"betas": (1.0, 0.999)}, "betas"),
    ({"betas": (0.9, -0.1)}, "betas"),
    ({"eps": -1e-8}, "eps"),
    ({"eps": NAN}, "eps"),
    ({**SGD, "momentum": -0.5}, "momentum"),
    ({**WD, "weight_decay": -0.1}, "weight_decay"),
    ({**WD, "weight_decay": INF}, "weight_decay"),
    # combinations
    ({"weight_decay": 0.1}, "weight_decay"),  # decay_mode "none"
    ({"decay_mode": "coupled"}, "decay_mode"),  # weight_decay 0
    ({"decay_mode": "loss", "weight_decay": 0.1, "loss": "torch"}, "decay_mode"),
    ({"decay_mode": "paper", "weight_decay": 0.1, "implementation": "torch"}, "decay_mode"),
    ({**SGD, "decay_mode": "paper", "weight_decay": 0.1}, "decay_mode"),
    ({**SGD, "decay_mode": "decoupled", "weight_decay": 0.1}, "decay_mode"),
    ({"momentum": 0.9}, "momentum"),  # an SGD option on Adam
    ({**SGD, "amsgrad": True}, "amsgrad"),  # an Adam option on SGD
    ({**SGD, "betas": (0.8, 0.9)}, "betas"),  # an Adam option on SGD
    ({"dampening": 0.5}, "dampening"),  # an SGD option on Adam
    ({"alpha": 0.9}, "alpha"),  # an RMSprop option on Adam
    ({**SGD, "eps": 1e-6}, "eps"),  # SGD has no ε
    ({"bias_correction": False, "implementation": "torch"}, "bias_correction"),
    ({"loss": "custom"}, "custom"),  # custom needs the file and its hash
    ({"custom": "a.py", "custom_sha256": "00"}, "custom"),  # ... and they need custom
    ({"implementation": "custom", "optimizer": "sgd", "custom": "a.py",
      "custom_sha256": "00"}, "implementation"),
]


@pytest.mark.parametrize(("changes", "field"), INVALID, ids=[repr(c) for c, _ in INVALID])
def test_invalid_values_raise_config_error_naming_the_field(
    changes: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError) as error:
        RunConfig(**changes)
    assert str(error.value).startswith(f"{field}="), str(error.value)
    assert isinstance(error.value, ValueError)  # callers may catch ValueError


@pytest.mark.parametrize(("changes", "field"), INVALID[:5] + INVALID[-4:])
def test_from_dict_and_replace_validate_too(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=f"^{field}="):
        RunConfig.from_dict(changes)
    with pytest.raises(ConfigError, match=f"^{field}="):
        RunConfig().replace(**changes)


@pytest.mark.parametrize(
    "changes",
    [
        {**SGD, "momentum": 0.9, "decay_mode": "coupled", "weight_decay": 5e-4},
        {**SGD, "decay_mode": "loss", "weight_decay": 1e-3},
        {"decay_mode": "paper", "weight_decay": 0.1, "schedule": "cosine"},
        {"decay_mode": "decoupled", "weight_decay": 0.1, "implementation": "torch"},
        {"eps": 0.0, "betas": (0.0, 0.0), "amsgrad": True},
        {"train_size": 1, "test_size": 1, "batch_size": 1, "epochs": 1},
        {"optimizer": "sgd", "implementation": "optreg", "momentum": 0.9, "dampening": 0.9},
        {"optimizer": "rmsprop", "alpha": 0.999, "momentum": 0.5, "eps": 1e-6},
        {"seed": 2**64 - 1, "valid_size": 5000, "augment": True, "label_smoothing": 0.1},
        {"implementation": "custom", "loss": "custom", "custom": "a.ipynb",
         "custom_sha256": "0f" * 32, "decay_mode": "decoupled", "weight_decay": 0.1 / 32},
    ],
)
def test_valid_combinations_are_accepted(changes: dict[str, Any]) -> None:
    config = RunConfig(**changes)
    assert all(getattr(config, k) == v for k, v in changes.items())
