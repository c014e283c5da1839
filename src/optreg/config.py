"""A training run as a plain, frozen, serialisable config.

A :class:`RunConfig` says everything that decides a run's numbers — data subset, model, loss,
optimizer, regularisation, schedule, numerics and seed — and nothing about *how* it is executed
(device, threads, which process). Whoever executes it (this process, a worker process, a Ray
task) gets the same result. Its :attr:`~RunConfig.run_id` is a short hash of the fields that
differ from a frozen baseline, so a resumed study recognises runs that already finished, across
optreg versions.

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_type_hints

Implementation = Literal["optreg", "torch", "custom"]
OptimizerName = Literal["adam", "sgd", "rmsprop"]
DecayMode = Literal["none", "loss", "coupled", "decoupled", "paper"]
Schedule = Literal["constant", "cosine"]

DECAY_MODES: tuple[str, ...] = get_args(DecayMode)
MAX_SEED = 2**64 - 1  # torch.manual_seed takes an unsigned 64-bit seed


class ConfigError(ValueError):
    """A run config (or a value meant for one) is invalid; the message names the field."""


@dataclass(frozen=True)
class RunConfig:
    """One training run of LeNet-5 on CIFAR-10 (or data in its format).

    Defaults are the classroom exercise: optreg Adam (lr 1e-3) + optreg cross-entropy,
    batch 32, 10 epochs, the data in stored order, validation on the test split, seed 0.
    """

    # --- identity -----------------------------------------------------------------------------
    name: str = "adam"  # short scenario name, unique within a study
    seed: int = 0  # torch.manual_seed(seed) right before the model is built; data order/augment

    # --- data ---------------------------------------------------------------------------------
    train_size: int | None = None  # train on the first N training images (None: all of them)
    valid_size: int | None = None  # validate on the LAST N training images, never trained on
    #                                (None: validate on the test split, as the exercise does)
    test_size: int | None = None  # first N test images (None: all 10,000)
    batch_size: int = 32  # images per optimizer step
    epochs: int = 10  # passes over the training images
    shuffle: bool = False  # False: stored order, as the exercise; True: seeded permutation/epoch
    augment: bool = False  # random crop (4-pixel zero padding) + horizontal flip, seeded per run

    # --- model and loss -----------------------------------------------------------------------
    model: Literal["lenet5"] = "lenet5"
    loss: Implementation = "optreg"  # cross-entropy: optreg's, torch's, or the custom file's
    label_smoothing: float = 0.0  # ε of the training loss (evaluation is always plain CE)

    # --- optimizer ----------------------------------------------------------------------------
    optimizer: OptimizerName = "adam"
    implementation: Implementation = "optreg"  # optreg.optim, torch.optim, or the custom file's
    lr: float = 1e-3  # learning rate γ (peak value when a schedule is used)
    betas: tuple[float, float] = (0.9, 0.999)  # Adam's β₁, β₂
    eps: float = 1e-8  # Adam's / RMSprop's ε
    amsgrad: bool = False  # Adam only
    bias_correction: bool = True  # Adam only; False is the ablation m̂ = m, v̂ = v (optreg's)
    momentum: float = 0.0  # SGD's / RMSprop's momentum
    dampening: float = 0.0  # SGD only; dampening = momentum makes the buffer an EMA of g
    alpha: float = 0.99  # RMSprop's smoothing constant (its second-moment decay, Adam's β₂)

    # --- regularisation (see module docstring) -------------------------------------------------
    weight_decay: float = 0.0  # raw coefficient wd; "L2 = λ at batch B" is wd = λ/B
    decay_mode: DecayMode = "none"
    decay: Literal["weights", "all"] = "weights"  # which tensors decay: ndim > 1, or every one

    # --- schedule and numerics ----------------------------------------------------------------
    schedule: Schedule = "constant"  # "cosine": lr_t = lr·½(1 + cos(π·t/T)) over all T steps
    flush_denormal: bool = True  # flush subnormal floats to zero (CPU; see README, Performance)

    # --- the student's own classes (``optreg study seed --custom``) ------------------------------
    custom: str | None = None  # the submission file, as named on the command line
    custom_sha256: str | None = None  # its content's hash: a changed file is another run

    # --- measurement --------------------------------------------------------------------------
    trace_steps: int = 0  # record per-step update sizes and losses for the first N steps

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
        if not 0 <= self.seed <= MAX_SEED:
            raise bad("seed", "must be in [0, 2**64 - 1] (torch's seed range)")
        for size in ("train_size", "valid_size", "test_size"):
            if getattr(self, size) is not None and getattr(self, size) < 1:
                raise bad(size, "must be >= 1 (or None)")
        for count in ("batch_size", "epochs"):
            if getattr(self, count) < 1:
                raise bad(count, "must be >= 1")
        if self.trace_steps < 0:
            raise bad("trace_steps", "must be >= 0")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise bad("lr", "must be a finite number > 0")
        if not all(0.0 <= b < 1.0 for b in self.betas):  # a pair: _check_types saw to it
            raise bad("betas", "each beta must lie in [0, 1)")
        for name in ("eps", "momentum", "dampening"):
            if not (math.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise bad(name, "must be a finite number >= 0")
        if not 0.0 <= self.alpha < 1.0:
            raise bad("alpha", "must lie in [0, 1)")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise bad("label_smoothing", "must lie in [0, 1)")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise bad("weight_decay", "must be a finite number >= 0")
        self._check_combinations(bad)

    def _check_combinations(self, bad: Any) -> None:
        """Options that belong to another optimizer, implementation or decay mode."""
        defaults = RunConfig.__dataclass_fields__
        only_for = {"amsgrad": "adam", "bias_correction": "adam", "betas": "adam",
                    "dampening": "sgd", "alpha": "rmsprop"}
        for name, optimizer in only_for.items():
            if self.optimizer != optimizer and getattr(self, name) != defaults[name].default:
                raise bad(name, f"is an option of optimizer={optimizer!r}, not {self.optimizer!r}")
        if self.optimizer == "adam" and self.momentum != 0:
            raise bad("momentum", "is an SGD/RMSprop option (Adam uses betas)")
        if self.optimizer == "sgd" and self.eps != defaults["eps"].default:
            raise bad("eps", "is not an SGD option")
        if not self.bias_correction and self.implementation != "optreg":
            raise bad("bias_correction", "False is offered by optreg's Adam only")
        if self.decay_mode == "none" and self.weight_decay != 0:
            raise bad("weight_decay", "is set but decay_mode is 'none'")
        if self.decay_mode != "none" and self.weight_decay == 0:
            raise bad("decay_mode", "needs weight_decay > 0")
        if self.decay_mode == "loss" and self.loss == "torch":
            raise bad("decay_mode", "'loss' needs optreg's or the custom cross-entropy "
                                    "(torch's has no L2)")
        if self.decay_mode in ("decoupled", "paper") and self.optimizer != "adam":
            raise bad("decay_mode", f"{self.decay_mode!r} needs optimizer='adam'")
        if self.decay_mode == "paper" and self.implementation != "optreg":
            raise bad("decay_mode", "'paper' is offered by optreg's Adam only")
        uses_custom = "custom" in (self.loss, self.implementation)
        if uses_custom != (self.custom is not None) or (self.custom is None) != (
            self.custom_sha256 is None
        ):
            raise bad("custom", "loss or implementation 'custom' needs custom (the file) and "
                                "custom_sha256, and they need it")
        if self.implementation == "custom" and self.optimizer != "adam":
            raise bad("implementation", "a custom optimizer is the exercise's Adam")
        if self.implementation == "custom" and self.decay_mode == "paper":
            raise bad("decay_mode", "the custom optimizer has one decoupled form ('decoupled')")
        if self.loss == "custom" and self.label_smoothing:
            raise bad("label_smoothing", "the custom loss has no label smoothing")

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
        """12 hex digits of the SHA-256 of the fields that differ from :data:`RUN_ID_BASELINE`.

        Equal configs get equal ids, and a field added in a later version (with a default that
        keeps the old behaviour) leaves every earlier id as it was.
        """
        differing = {k: v for k, v in self.to_dict().items() if RUN_ID_BASELINE[k] != v}
        canonical = json.dumps(differing, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]

    @property
    def l2(self) -> float:
        """The classroom λ for this run: weight_decay·batch_size (penalty λ/(2B)·Σ‖W‖²)."""
        return self.weight_decay * self.batch_size


# The field values that run ids are taken relative to, frozen as of optreg 0.2. Never edit an
# entry: that would change the id of every run that has the old value. A new field gets an entry
# equal to its default (tests/test_config.py checks that every field has one).
RUN_ID_BASELINE: dict[str, Any] = {
    "name": "adam", "seed": 0, "train_size": None, "valid_size": None, "test_size": None,
    "batch_size": 32, "epochs": 10, "shuffle": False, "augment": False, "model": "lenet5",
    "loss": "optreg", "label_smoothing": 0.0, "optimizer": "adam", "implementation": "optreg",
    "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "amsgrad": False, "bias_correction": True,
    "momentum": 0.0, "dampening": 0.0, "alpha": 0.99, "weight_decay": 0.0, "decay_mode": "none",
    "decay": "weights", "schedule": "constant", "flush_denormal": True, "custom": None,
    "custom_sha256": None, "trace_steps": 0,
}

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


def check_unique(values: Sequence[Any], what: str, *,
                 name: Callable[[Any], str] = str) -> None:
    """Raise ConfigError naming ``what`` and the repeated values (shown with ``name``)."""
    seen: set[Any] = set()
    repeated: list[Any] = []
    for value in values:
        if value in seen:
            repeated.append(value)
        seen.add(value)
    if repeated:
        shown = ", ".join(name(v) for v in dict.fromkeys(repeated))
        raise ConfigError(f"{what}: repeated value(s) {shown}")
