"""Sweeps: a grid of learning rate × weight decay × decay mode × seed, as run configs.

A sweep asks *where* each way of regularising Adam works: for every decay mode (L2 in the loss,
coupled L2 in the optimizer, decoupled weight decay as in AdamW, the paper's schedule-scaled
decay) it trains the same LeNet-5 at every (lr, weight decay) point of a grid, with several seeds.
The report draws one heatmap of final test accuracy per mode (:mod:`optreg.report.sweep`).

:func:`sweep_study` expands a grid into :class:`~optreg.config.RunConfig` s;
:func:`decoupling_study` is the preset that redoes Loshchilov & Hutter's Fig. 2 on LeNet-5.
Grid values from text (``1e-4:1e-2:5``) are parsed by :mod:`optreg.cli.values`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from optreg.config import ConfigError, RunConfig, check_unique
from optreg.formatting import format_number

__all__ = [
    "MAX_GRID_VALUES",
    "SIGNIFICANT_DIGITS",
    "SWEEP_MODES",
    "decoupling_study",
    "log_range",
    "sweep_name",
    "sweep_study",
]

SWEEP_MODES: tuple[str, ...] = ("loss", "coupled", "decoupled", "paper")  # config decay_modes
SIGNIFICANT_DIGITS = 4  # interior points of a log range are rounded to this many digits
MAX_GRID_VALUES = 1000  # more values than this in one option is surely a typo

MODE_DESCRIPTIONS: dict[str, str] = {
    "loss": "optreg Adam, L2 in the loss (λ = wd·B)",
    "coupled": "optreg Adam + L2 (coupled)",
    "decoupled": "optreg AdamW (decoupled, decay × lr_t)",
    "paper": "optreg AdamW as in the paper (decay × η_t)",
}

WeightDecays = Sequence[float] | Mapping[str, Sequence[float]]


def log_range(start: float, stop: float, n: int) -> list[float]:
    """``n`` log-spaced values from ``start`` to ``stop``, both included.

    The endpoints are returned exactly; interior points are rounded to :data:`SIGNIFICANT_DIGITS`
    significant digits (``float(f"{v:.4g}")``), so the same range always gives the same floats —
    hence the same config hashes and run names — whatever the platform's ``exp``/``log`` do in
    the last bit. Needs ``start, stop > 0``, ``n >= 1``, and ``start == stop`` when ``n == 1``.
    """
    if not (start > 0 and stop > 0 and math.isfinite(start) and math.isfinite(stop)):
        raise ValueError(f"a log range needs finite start and stop > 0, got {start}, {stop}")
    if n < 1:
        raise ValueError(f"a log range needs n >= 1, got {n}")
    if n == 1:
        if start != stop:
            raise ValueError(f"a log range of 1 value needs start == stop, got {start}, {stop}")
        return [start]
    lo, hi = math.log(start), math.log(stop)
    inner = [math.exp(lo + (hi - lo) * i / (n - 1)) for i in range(1, n - 1)]
    return [start, *(float(f"{v:.{SIGNIFICANT_DIGITS}g}") for v in inner), stop]


def sweep_name(mode: str, lr: float, weight_decay: float) -> str:
    """The run name of a grid point, the same for every seed: e.g. ``coupled-lr1e-3-wd1e-2``."""
    return f"{mode}-lr{format_number(lr)}-wd{format_number(weight_decay)}"


def _axis(values: Sequence[Any], name: str) -> list[Any]:
    values = list(values)
    if not values:
        raise ConfigError(f"{name}: give at least one value")
    check_unique(values, name)
    return values


def sweep_study(
    *,
    lr: Sequence[float],
    weight_decay: WeightDecays,
    mode: Sequence[str] = ("coupled", "decoupled"),
    seeds: Sequence[int] = (0,),
    epochs: int = 5,
    batch_size: int = 32,
    train_size: int | None = None,
    valid_size: int | None = None,
    test_size: int | None = None,
    schedule: str = "constant",
    decay: str = "weights",
    augment: bool = False,
    label_smoothing: float = 0.0,
    name: str = "sweep",
) -> tuple[list[RunConfig], dict[str, Any]]:
    """The run configs of a grid sweep, and the study's description.

    Every combination of ``lr`` × ``weight_decay`` × ``mode`` × ``seeds`` is one run of optreg
    Adam + optreg cross-entropy with that learning rate, weight decay (the raw coefficient wd) and
    ``decay_mode``; for mode ``loss`` the loss carries λ = wd·B (:attr:`RunConfig.l2`), whose
    gradient equals coupled L2 with the same wd. ``weight_decay`` is one list for every mode, or
    a list per mode (``{"coupled": [...], "paper": [...]}``: the modes' useful ranges differ by
    orders of magnitude). Runs are ordered seed-major, then mode, weight decay, learning rate, so
    the first seed covers the whole grid first. A run's name (:func:`sweep_name`) is the same for
    every seed; its id differs.

    Mode ``paper`` scales the decay by the schedule multiplier η_t instead of lr_t; with the
    constant schedule the two are the same thing up to the factor lr, which is allowed (the grid
    simply measures that), though the paper's mode is meant for ``schedule="cosine"``.

    Returns:
        ``(configs, description)``: ``description`` holds ``name``, ``kind`` ("sweep"),
        ``grid`` ({"lr", "weight_decay", "mode", "seeds"}; ``weight_decay`` per mode),
        ``settings`` and ``descriptions`` (plain data for the study record and the report).

    Raises:
        ConfigError: an empty or repeated axis, an unknown mode, or a value a RunConfig rejects
            (e.g. a weight decay ≤ 0, a learning rate ≤ 0).
    """
    lrs = [float(v) for v in _axis(lr, "lr")]
    modes = _axis(mode, "mode")
    seeds = _axis(seeds, "seeds")
    unknown = [m for m in modes if m not in SWEEP_MODES]
    if unknown:
        raise ConfigError(f"mode: unknown {unknown[0]!r}; choose from {', '.join(SWEEP_MODES)}")
    if isinstance(weight_decay, Mapping):
        missing = [m for m in modes if m not in weight_decay]
        if missing or set(weight_decay) - set(modes):
            raise ConfigError(f"weight_decay: give one list per mode {modes}, got "
                              f"{sorted(weight_decay)}")
        decays = {m: [float(v) for v in _axis(weight_decay[m], f"weight_decay[{m}]")]
                  for m in modes}
    else:
        shared = [float(v) for v in _axis(weight_decay, "weight_decay")]
        decays = {m: shared for m in modes}
    configs = [
        RunConfig(
            name=sweep_name(m, rate, wd), seed=seed, train_size=train_size, valid_size=valid_size,
            test_size=test_size, batch_size=batch_size, epochs=epochs, lr=rate, weight_decay=wd,
            decay_mode=m, decay=decay, schedule=schedule,  # type: ignore[arg-type]
            augment=augment, label_smoothing=label_smoothing,
        )
        for seed in seeds
        for m in modes
        for wd in decays[m]
        for rate in lrs
    ]
    descriptions = {
        c.name: f"{MODE_DESCRIPTIONS[c.decay_mode]}, lr {format_number(c.lr)}, "
                f"wd {format_number(c.weight_decay)}"
        for c in configs
    }
    shared_axis = not isinstance(weight_decay, Mapping)
    description: dict[str, Any] = {
        "name": name,
        "kind": "sweep",
        "grid": {"lr": lrs, "weight_decay": decays[modes[0]] if shared_axis else decays,
                 "mode": list(modes), "seeds": list(seeds)},
        "settings": {"epochs": epochs, "batch_size": batch_size, "train_size": train_size,
                     "valid_size": valid_size, "test_size": test_size, "schedule": schedule,
                     "decay": decay, "augment": augment, "label_smoothing": label_smoothing},
        "descriptions": descriptions,
    }
    return configs, description


# --- the decoupling preset (Loshchilov & Hutter, Fig. 2) ----------------------------------------
DECOUPLING_LRS: tuple[float, ...] = (3.162e-4, 1e-3, 3.162e-3)
DECOUPLING_WEIGHT_DECAYS: dict[str, tuple[float, ...]] = {  # per mode: their units differ
    "coupled": (1e-5, 1e-4, 1e-3),
    "decoupled": (1e-2, 1e-1, 1.0),
    "paper": (1e-5, 1e-4, 1e-3),
}


def decoupling_study(
    *,
    seeds: Sequence[int] = (0,),
    epochs: int = 20,
    train_size: int | None = None,
    valid_size: int | None = 5_000,
    test_size: int | None = None,
    augment: bool = False,
) -> tuple[list[RunConfig], dict[str, Any]]:
    """Loshchilov & Hutter's Fig. 2 on LeNet-5 / CIFAR-10: where the best weight decay lies for
    each learning rate, with coupled L2, PyTorch's AdamW and the paper's AdamW.

    The paper (Decoupled Weight Decay Regularization, ICLR 2019,
    https://arxiv.org/abs/1711.05101) plots the final test error over a grid of initial learning
    rate × weight decay: with L2 the good region is a diagonal (the best decay depends on the
    learning rate); with decoupled decay in the paper's form (θ shrinks by η_t·λ per step, η_t
    the schedule multiplier) it is closer to a rectangle (the two are nearly separable). In
    PyTorch's AdamW the decay per step is γ_t·λ, so changing the learning rate also changes the
    decay: separability is a claim about the paper's form, and all three modes are swept here.

    Defaults: the whole training set with its last 5,000 images held out for validation (45,000
    trained on), 20 epochs with cosine annealing to 0 (as the paper's Fig. 2 runs), no
    augmentation (so that regularisation is what stands between the model and overfitting),
    lr ∈ {3.162e-4, 1e-3, 3.162e-3}, and per mode three weight decays a decade apart around where
    each mode works (their units differ: coupled λ enters the gradient that Adam normalises;
    PyTorch's λ is multiplied by lr; the paper's is not): coupled {1e-5, 1e-4, 1e-3}, PyTorch
    AdamW {1e-2, 1e-1, 1}, paper AdamW {1e-5, 1e-4, 1e-3}. 27 runs; on a 2-core machine
    (2 workers × 1 thread) about 80–90 minutes.
    """
    configs, description = sweep_study(
        lr=DECOUPLING_LRS, weight_decay=DECOUPLING_WEIGHT_DECAYS, mode=tuple(
            DECOUPLING_WEIGHT_DECAYS), seeds=seeds, epochs=epochs, train_size=train_size,
        valid_size=valid_size, test_size=test_size, schedule="cosine", augment=augment,
        name="decoupling",
    )
    description["reference"] = ("Loshchilov & Hutter, Decoupled Weight Decay Regularization, "
                                "ICLR 2019, Fig. 2; https://arxiv.org/abs/1711.05101")
    return configs, description
