"""Sweeps: a grid of learning rate × weight decay × decay mode × seed, as run configs.

A sweep asks *where* each way of regularising Adam works: for every decay mode (L2 in the loss,
coupled L2 in the optimizer, decoupled weight decay as in AdamW, the paper's schedule-scaled
decay) it trains the same LeNet-5 at every (lr, weight decay) point of a grid, with several seeds.
The report draws one heatmap of final test accuracy per mode (:mod:`optreg.report.sweep`).

Grid values come from the command line as text; the parsers here turn it into lists and reject
bad text with a :class:`~optreg.config.ConfigError` that names the option:

* floats (:func:`parse_floats`): a comma list ``1e-4,1e-3,0.01``, a log range ``start:stop:n``
  (n log-spaced values from start to stop, both included: ``1e-4:1e-2:5`` is 1e-4, 3.162e-4,
  1e-3, 3.162e-3, 1e-2), or a comma list mixing both;
* integers (:func:`parse_ints`, seeds): a comma list ``0,1,2``, an inclusive range ``0-4``, or
  both;
* decay modes (:func:`parse_modes`): a comma list of ``loss``, ``coupled``, ``decoupled``,
  ``paper``.

:func:`sweep_study` expands a grid into :class:`~optreg.config.RunConfig` s;
:func:`decoupling_study` is the preset that redoes Loshchilov & Hutter's Fig. 2 on LeNet-5.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from optreg.config import ConfigError, RunConfig

__all__ = [
    "DECOUPLING_EPOCHS",
    "DECOUPLING_LRS",
    "DECOUPLING_MODES",
    "DECOUPLING_SCHEDULE",
    "DECOUPLING_SEEDS",
    "DECOUPLING_TEST_SIZE",
    "DECOUPLING_TRAIN_SIZE",
    "DECOUPLING_WEIGHT_DECAYS",
    "MAX_GRID_VALUES",
    "SIGNIFICANT_DIGITS",
    "SWEEP_MODES",
    "decoupling_study",
    "format_value",
    "log_range",
    "parse_floats",
    "parse_ints",
    "parse_modes",
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


# --- parsing ----------------------------------------------------------------------------------
def _bad(option: str, text: str, why: str) -> ConfigError:
    return ConfigError(f"{option} {text!r}: {why}")


def _items(text: str, option: str) -> list[str]:
    """Split a comma list, refusing empty text and empty items (``1e-3,,1e-2``, ``1e-3,``)."""
    if not isinstance(text, str):
        raise ConfigError(f"{option}: expected text, got {type(text).__name__}")
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise _bad(option, text, "give at least one value")
    if any(not item for item in items):
        raise _bad(option, text, "empty item in the comma list")
    return items


def _float(item: str, option: str, text: str, *, positive: bool, what: str = "") -> float:
    try:
        value = float(item)
    except ValueError:
        raise _bad(option, text, f"{item!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(option, text, f"{item!r} is not a finite number")
    if positive and value <= 0:
        raise _bad(option, text, f"{what}{item!r} must be > 0")
    return value


def _no_repeats(values: Sequence[Any], option: str, text: str) -> None:
    seen: set[Any] = set()
    repeated = []
    for v in values:
        if v in seen:
            repeated.append(v)
        seen.add(v)
    if repeated:
        shown = ", ".join(format_value(v) if isinstance(v, float) else str(v)
                          for v in dict.fromkeys(repeated))
        raise _bad(option, text, f"repeated value(s) {shown}")
    if len(values) > MAX_GRID_VALUES:
        raise _bad(option, text, f"{len(values)} values; at most {MAX_GRID_VALUES}")


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


def parse_floats(text: str, option: str, *, positive: bool = True) -> list[float]:
    """Parse a grid option's floats: a comma list whose items are numbers or log ranges.

    Args:
        text: e.g. ``"1e-4,1e-3,0.01"``, ``"1e-4:1e-2:5"`` (:func:`log_range`), or a mix
            ``"1e-4:1e-2:3,0.1"``.
        option: the option's name as the user wrote it (``"--lr"``), used in error messages.
        positive: every value must be > 0 (learning rates, weight decays). Log ranges always
            need start and stop > 0.

    Returns:
        The values in the order given (comma-list numbers exactly as typed, as floats).

    Raises:
        ConfigError: naming ``option`` and the text, for empty text or items, a non-number,
            NaN/Inf, a value ≤ 0 when ``positive``, a malformed range, or a repeated value.
    """
    values: list[float] = []
    for item in _items(text, option):
        if ":" not in item:
            values.append(_float(item, option, text, positive=positive))
            continue
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 3:
            raise _bad(option, text, f"{item!r}: a log range is start:stop:n")
        start, stop = (_float(p, option, text, positive=True, what="log range: ")
                       for p in parts[:2])
        if not re.fullmatch(r"\+?\d+", parts[2]) or int(parts[2]) < 1:
            raise _bad(option, text, f"{item!r}: n must be an integer >= 1, got {parts[2]!r}")
        n = int(parts[2])
        if n > MAX_GRID_VALUES:
            raise _bad(option, text, f"{item!r}: n={n}; at most {MAX_GRID_VALUES}")
        if n == 1 and start != stop:
            raise _bad(option, text, f"{item!r}: a range of 1 value needs start == stop")
        if n > 1 and start == stop:
            raise _bad(option, text, f"{item!r}: start == stop gives {n} equal values")
        values.extend(log_range(start, stop, n))
    _no_repeats(values, option, text)
    return values


def parse_ints(text: str, option: str, *, minimum: int = 0) -> list[int]:
    """Parse a comma list of integers and inclusive ranges ``a-b``, e.g. ``"0-2,7"``.

    Every value must be ≥ ``minimum`` (seeds: 0). Raises :class:`ConfigError` naming ``option``
    for empty text or items, a non-integer, a value below ``minimum``, a range whose end is
    below its start, or a repeated value.
    """
    values: list[int] = []
    for item in _items(text, option):
        if m := re.fullmatch(r"(\d+)\s*-\s*(\d+)", item):
            a, b = int(m[1]), int(m[2])
            if b < a:
                raise _bad(option, text, f"{item!r}: a range a-b needs a <= b")
            if b - a + 1 > MAX_GRID_VALUES:
                raise _bad(option, text, f"{item!r}: {b - a + 1} values; at most "
                                         f"{MAX_GRID_VALUES}")
            values.extend(range(a, b + 1))
        elif re.fullmatch(r"[+-]?\d+", item):
            values.append(int(item))
        else:
            raise _bad(option, text, f"{item!r} is not an integer (or a range a-b)")
    low = [v for v in values if v < minimum]
    if low:
        raise _bad(option, text, f"{low[0]} is below the minimum {minimum}")
    _no_repeats(values, option, text)
    return values


def parse_modes(text: str, option: str = "--modes") -> list[str]:
    """Parse a comma list of decay modes (:data:`SWEEP_MODES`), e.g. ``"coupled,decoupled"``.

    Raises :class:`ConfigError` naming ``option`` and the valid modes for an unknown one (``none``
    included: a sweep over weight decay needs decay somewhere), and for empty or repeated items.
    """
    modes = [item.lower() for item in _items(text, option)]
    unknown = [m for m in modes if m not in SWEEP_MODES]
    if unknown:
        raise _bad(option, text, f"unknown mode {unknown[0]!r}; choose from "
                                 f"{', '.join(SWEEP_MODES)}")
    _no_repeats(modes, option, text)
    return modes


# --- the grid ---------------------------------------------------------------------------------
def format_value(value: float) -> str:
    """The shortest scientific form that reads back as ``value``: 0.001 → ``1e-3``, 3.162e-4 →
    ``3.162e-4``, 1.0 → ``1e0``. Distinct floats give distinct text."""
    text = format(Decimal(repr(float(value))).normalize(), "e")
    return text.replace("e+", "e")


def sweep_name(mode: str, lr: float, weight_decay: float) -> str:
    """The run name of a grid point, the same for every seed: e.g. ``coupled-lr1e-3-wd1e-2``."""
    return f"{mode}-lr{format_value(lr)}-wd{format_value(weight_decay)}"


def _check_axis(values: Sequence[Any], name: str) -> list[Any]:
    values = list(values)
    if not values:
        raise ConfigError(f"{name}: give at least one value")
    if len(set(values)) != len(values):
        raise ConfigError(f"{name}: repeated values in {values}")
    return values


def sweep_study(
    *,
    lrs: Sequence[float],
    weight_decays: Sequence[float],
    modes: Sequence[str],
    seeds: Sequence[int],
    epochs: int,
    batch_size: int = 32,
    train_size: int | None = None,
    test_size: int | None = None,
    schedule: str = "constant",
    decay: str = "weights",
    name: str = "sweep",
) -> tuple[list[RunConfig], dict[str, Any]]:
    """The run configs of a grid sweep, and the study's description.

    Every combination of ``lrs`` × ``weight_decays`` × ``modes`` × ``seeds`` is one run of optreg
    Adam + optreg cross-entropy with ``lr``, ``weight_decay`` (the raw coefficient wd) and
    ``decay_mode``; for mode ``loss`` the loss carries λ = wd·B (:attr:`RunConfig.l2`), whose
    gradient equals coupled L2 with the same wd. Runs are ordered seed-major, then mode, weight
    decay, learning rate, so the first seed covers the whole grid first. A run's name
    (:func:`sweep_name`) is the same for every seed; its id differs.

    Mode ``paper`` scales the decay by the schedule multiplier η_t instead of lr_t; with the
    constant schedule the two are the same thing up to the factor lr, which is allowed (the grid
    simply measures that), though the paper's mode is meant for ``schedule="cosine"``.

    Returns:
        ``(configs, description)``, where ``description`` is ``{"name", "kind": "sweep", "grid":
        {"lr", "weight_decay", "mode", "seeds"}, "settings": {...}, "descriptions": {name: text}}``,
        plain data for :func:`~optreg.studies.execute.execute_study` and the report.

    Raises:
        ConfigError: an empty or repeated axis, an unknown mode, or a value a RunConfig rejects
            (e.g. a weight decay ≤ 0, a learning rate ≤ 0).
    """
    lrs = [float(v) for v in _check_axis(lrs, "lr")]
    weight_decays = [float(v) for v in _check_axis(weight_decays, "weight_decay")]
    modes = _check_axis(modes, "mode")
    seeds = _check_axis(seeds, "seeds")
    unknown = [m for m in modes if m not in SWEEP_MODES]
    if unknown:
        raise ConfigError(f"mode: unknown {unknown[0]!r}; choose from {', '.join(SWEEP_MODES)}")
    configs = [
        RunConfig(
            name=sweep_name(mode, lr, wd), seed=seed, train_size=train_size, test_size=test_size,
            batch_size=batch_size, epochs=epochs, lr=lr, weight_decay=wd, decay_mode=mode,
            decay=decay, schedule=schedule,  # type: ignore[arg-type]
        )
        for seed in seeds
        for mode in modes
        for wd in weight_decays
        for lr in lrs
    ]
    descriptions = {
        c.name: f"{MODE_DESCRIPTIONS[c.decay_mode]}, lr {format_value(c.lr)}, "
                f"wd {format_value(c.weight_decay)}"
        for c in configs
    }
    description: dict[str, Any] = {
        "name": name,
        "kind": "sweep",
        "grid": {"lr": lrs, "weight_decay": weight_decays, "mode": list(modes),
                 "seeds": list(seeds)},
        "settings": {"epochs": epochs, "batch_size": batch_size, "train_size": train_size,
                     "test_size": test_size, "schedule": schedule, "decay": decay},
        "descriptions": descriptions,
    }
    return configs, description


# --- the decoupling preset (Loshchilov & Hutter, Fig. 2) ----------------------------------------
DECOUPLING_LRS: tuple[float, ...] = tuple(log_range(1e-4, 1e-2, 5))  # 1e-4 … 1e-2
DECOUPLING_WEIGHT_DECAYS: tuple[float, ...] = tuple(log_range(1e-4, 1.0, 5))  # 1e-4 … 1
DECOUPLING_MODES: tuple[str, ...] = ("coupled", "decoupled")
DECOUPLING_SEEDS: tuple[int, ...] = (0, 1)
DECOUPLING_SCHEDULE = "cosine"
DECOUPLING_EPOCHS = 4
DECOUPLING_TRAIN_SIZE: int | None = 10_000  # the first 10,000 training images
DECOUPLING_TEST_SIZE: int | None = None  # the whole test set


def decoupling_study(
    *,
    epochs: int = DECOUPLING_EPOCHS,
    seeds: Sequence[int] = DECOUPLING_SEEDS,
    train_size: int | None = DECOUPLING_TRAIN_SIZE,
    test_size: int | None = DECOUPLING_TEST_SIZE,
    batch_size: int = 32,
    name: str = "decoupling",
) -> tuple[list[RunConfig], dict[str, Any]]:
    """Loshchilov & Hutter's Fig. 2 idea on LeNet-5 / CIFAR-10: Adam+L2 vs AdamW over lr × wd.

    The paper (Decoupled Weight Decay Regularization, ICLR 2019,
    https://arxiv.org/abs/1711.05101) plots the final test error over a grid of initial learning
    rate × weight decay, for Adam with L2 and for AdamW: with L2 the good region is a diagonal
    (the best decay depends on the learning rate), with decoupled decay it is closer to a
    rectangle (the two are nearly separable). Its Fig. 2 runs use cosine annealing of the
    learning rate, so this preset does too (``schedule="cosine"``, annealed to 0 over all steps).

    Defaults (module constants ``DECOUPLING_*``):

    * lr: 5 log-spaced values 1e-4 … 1e-2 (Adam's usable range for LeNet-5 at batch 32);
    * weight decay: 5 log-spaced raw coefficients 1e-4 … 1, *the same for both modes*. Coupled
      L2 adds wd·θ to the gradient, which Adam then normalises, so useful wd are small (≲1e-2);
      AdamW shrinks θ by lr·wd per step, so with lr ≤ 1e-2 useful wd are large (≳1e-2). One wide
      log grid covers both ranges, so each heatmap shows its mode's good region and the edges
      where it stops working, on identical axes;
    * modes coupled and decoupled; seeds 0 and 1 (mean ± std per cell);
    * 4 epochs on the first 10,000 training images, evaluated on the whole test set.

    Cost: 5 × 5 × 2 modes × 2 seeds = 100 runs × 4 epochs × 10k images = 4M training images,
    plus per-epoch evaluation on the 10k test images and a final pass over train and test
    (60k forward passes per run). Measured on a 2-core cloud VM at one thread per run: ~3k
    training images/s and ~5k evaluated images/s, i.e. ~25 s per run, ~40 core-minutes in all:
    about 20 minutes with 2 workers, 10 with 4 — well under an hour on a laptop.
    Override ``epochs``, ``seeds`` and ``train_size`` to trade cost for noise.
    """
    configs, description = sweep_study(
        lrs=DECOUPLING_LRS, weight_decays=DECOUPLING_WEIGHT_DECAYS, modes=DECOUPLING_MODES,
        seeds=seeds, epochs=epochs, batch_size=batch_size, train_size=train_size,
        test_size=test_size, schedule=DECOUPLING_SCHEDULE, name=name,
    )
    description["preset"] = "decoupling"
    description["reference"] = ("Loshchilov & Hutter, Decoupled Weight Decay Regularization, "
                                "ICLR 2019, Fig. 2; https://arxiv.org/abs/1711.05101")
    return configs, description
