"""A training run as a plain, frozen, serialisable config.

A :class:`RunConfig` says everything that decides a run's numbers — data subset, model, loss,
optimizer, regularisation, schedule, numerics and seed — and nothing about *how* it is executed
(device, threads, which process). Whoever executes it (this process, a worker process, a Ray
task) gets the same result. Its :attr:`~RunConfig.run_id` is a short hash of its canonical JSON,
so a resumed study recognises runs that already finished.

Regularisation is described once, in the optimizer's units:

* ``weight_decay`` is the raw coefficient wd (as in PyTorch): coupled L2 adds wd·θ to the gradient.
* ``decay_mode`` says where it acts:

  ============== ==========================================================================
  ``none``       no regularisation (``weight_decay`` must be 0)
  ``loss``       penalty in the loss: λ/(2B)·Σ‖W‖² with λ = wd·B, gradient wd·W (optreg CE only)
  ``coupled``    L2 in the optimizer: g ← g + wd·θ (Adam+L2; torch ``Adam(weight_decay)``)
  ``decoupled``  θ ← θ·(1 − lr_t·wd), as ``torch.optim.AdamW``
  ``paper``      θ ← θ·(1 − η_t·wd), η_t = lr_t/lr_0: Loshchilov & Hutter's Alg. 2 (optreg only)
  ============== ==========================================================================

* ``decay`` says which tensors: ``weights`` (ndim > 1) or ``all``.

The classroom convention "L2 = λ at batch size B" is ``weight_decay = λ/B``
(:func:`optreg.regularization.l2_to_weight_decay`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_type_hints

Implementation = Literal["optreg", "torch"]
OptimizerName = Literal["adam", "sgd"]
DecayMode = Literal["none", "loss", "coupled", "decoupled", "paper"]
Schedule = Literal["constant", "cosine"]

DECAY_MODES: tuple[str, ...] = get_args(DecayMode)


class ConfigError(ValueError):
    """A run config (or a value meant for one) is invalid; the message names the field."""


@dataclass(frozen=True)
class RunConfig:
    """One training run of LeNet-5 on CIFAR-10 (or data in its format).

    Defaults are the classroom exercise: optreg Adam (lr 1e-3) + optreg cross-entropy,
    batch 32, 10 epochs, the data in stored order, seed 0.
    """

    # --- identity -----------------------------------------------------------------------------
    name: str = "adam"  # short scenario name, unique within a study
    seed: int = 0  # torch.manual_seed(seed) right before the model is built

    # --- data ---------------------------------------------------------------------------------
    train_size: int | None = None  # first N training images (None: all 50,000)
    test_size: int | None = None  # first N test images (None: all 10,000)
    batch_size: int = 32  # images per optimizer step
    epochs: int = 10  # passes over the training images
    shuffle: bool = False  # False: stored order, as the exercise; True: seeded permutation/epoch

    # --- model and loss -----------------------------------------------------------------------
    model: Literal["lenet5"] = "lenet5"
    loss: Implementation = "optreg"  # cross-entropy: optreg.CrossEntropyLoss or torch's

    # --- optimizer ----------------------------------------------------------------------------
    optimizer: OptimizerName = "adam"
    implementation: Implementation = "optreg"  # optreg.Adam or torch.optim.Adam/AdamW/SGD
    lr: float = 1e-3  # learning rate γ (peak value when a schedule is used)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's β₁, β₂
    eps: float = 1e-8  # Adam's ε, added after bias correction
    amsgrad: bool = False
    momentum: float = 0.0  # SGD only

    # --- regularisation (see module docstring) -------------------------------------------------
    weight_decay: float = 0.0  # raw coefficient wd; "L2 = λ at batch B" is wd = λ/B
    decay_mode: DecayMode = "none"
    decay: Literal["weights", "all"] = "weights"  # which tensors decay: ndim > 1, or every one

    # --- schedule and numerics ----------------------------------------------------------------
    schedule: Schedule = "constant"  # "cosine": lr_t = lr·½(1 + cos(π·t/T)) over all T steps
    flush_denormal: bool = True  # flush subnormal floats to zero (CPU; see README, Performance)

    def __post_init__(self) -> None:
        _check_types(self)
        # 1 and 1.0 must hash alike: store float fields as floats.
        for f in dataclasses.fields(self):
            if f.type == "float":
                object.__setattr__(self, f.name, float(getattr(self, f.name)))
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        self._check_values()

    # ------------------------------------------------------------------------------------------
    def _check_values(self) -> None:
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"{name}={getattr(self, name)!r}: {why}")

        if not self.name or any(c.isspace() or c in "/\\" for c in self.name):
            raise bad("name", "must be non-empty, without spaces or slashes")
        if self.seed < 0:
            raise bad("seed", "must be >= 0")
        for size in ("train_size", "test_size"):
            if getattr(self, size) is not None and getattr(self, size) < 1:
                raise bad(size, "must be >= 1 (or None for the whole split)")
        if self.batch_size < 1:
            raise bad("batch_size", "must be >= 1")
        if self.epochs < 1:
            raise bad("epochs", "must be >= 1")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "must be a finite number > 0")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise bad("betas", "each beta must lie in [0, 1)")
        if not (math.isfinite(self.eps) and self.eps >= 0):
            raise bad("eps", "must be >= 0")
        if not (math.isfinite(self.momentum) and self.momentum >= 0):
            raise bad("momentum", "must be >= 0")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay", "must be a finite number >= 0")
        if self.decay_mode == "none" and self.weight_decay != 0:
            raise bad("weight_decay", "is set but decay_mode is 'none'")
        if self.decay_mode != "none" and self.weight_decay == 0:
            raise bad("decay_mode", "needs weight_decay > 0")
        if self.optimizer == "sgd" and self.amsgrad:
            raise bad("amsgrad", "is an Adam option")
        if self.optimizer == "adam" and self.momentum != 0:
            raise bad("momentum", "is an SGD option (Adam uses betas)")
        if self.decay_mode == "loss" and self.loss != "optreg":
            raise bad("decay_mode", "'loss' needs loss='optreg' (torch's cross-entropy has no L2)")
        if self.decay_mode == "paper" and not (
            self.optimizer == "adam" and self.implementation == "optreg"
        ):
            raise bad("decay_mode", "'paper' is offered by optreg's Adam only")
        if self.decay_mode in ("decoupled", "paper") and self.optimizer != "adam":
            raise bad("decay_mode", f"{self.decay_mode!r} needs optimizer='adam'")
        if self.optimizer == "sgd" and self.implementation != "torch":
            raise bad("implementation", "SGD is torch's (optreg implements Adam)")

    # ------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (tuples become lists)."""
        data = dataclasses.asdict(self)
        data["betas"] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        """Build from a dict, rejecting unknown keys and values of the wrong type."""
        if not isinstance(data, dict):
            raise ConfigError(f"a run config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown config keys: {unknown}")
        values = dict(data)
        if isinstance(values.get("betas"), list):
            values["betas"] = tuple(values["betas"])
        return cls(**values)

    def replace(self, **changes: Any) -> RunConfig:
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    @property
    def run_id(self) -> str:
        """12 hex digits of the SHA-256 of the canonical JSON: equal configs, equal ids."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def l2(self) -> float:
        """The classroom λ for this run: weight_decay·batch_size (penalty λ/(2B)·Σ‖W‖²)."""
        return self.weight_decay * self.batch_size


def _check_types(config: RunConfig) -> None:
    """Reject values whose type does not match the field's annotation (bool is not an int)."""
    hints = get_type_hints(RunConfig)
    for f in dataclasses.fields(RunConfig):
        value = getattr(config, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(f"{f.name}={value!r}: expected {_describe(hints[f.name])}")


def _matches(value: Any, hint: Any) -> bool:
    origin, args = getattr(hint, "__origin__", None), get_args(hint)
    if origin is Literal:
        return value in args
    if args and origin is not tuple:  # a union such as int | None
        return any(_matches(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and len(value) == len(args) and all(
            _matches(v, a) for v, a in zip(value, args, strict=True)
        )
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _describe(hint: Any) -> str:
    args = get_args(hint)
    if getattr(hint, "__origin__", None) is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if isinstance(hint, type) and not args:
        return hint.__name__
    return str(hint).replace("typing.", "")
