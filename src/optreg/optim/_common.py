"""What optreg's optimizers share: their base class, argument checks in torch's words, state,
kernel choice and cache buckets.

:class:`Optimizer` does what every optimizer does around its algorithm (checks at the door,
homogeneous groups, the keys a loaded state dict lacks, the closure and the loop over groups), so
each optimizer's module holds only its own: hyperparameters, state, functional form, kernels.
Every optimizer validates its hyperparameters with the helpers here, so a bad value gives the
same kind of message everywhere: optreg's wording first, then PyTorch's own text for the same
error (``"Invalid learning rate: -1"``), so code and tests written against ``torch.optim``'s
messages keep working.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

# Largest total number of elements in one call for which ``foreach=None`` picks the multi-tensor
# kernel on CPU. On CPU a ``_foreach_`` op is a C++ loop over the tensors: it saves the Python
# overhead per tensor and op that dominates small models. Measured with
# benchmarks/optimizer_step.py (1 thread; see benchmarks/README.md), optreg Adam foreach / single:
# 0.79-0.82 at LeNet-5 (62k elements, 10 tensors) and, with 150 tensors, 0.92 at 1M, 0.94-1.02
# at 2M, 1.04-1.09 at 4M and 1.05 at 25M (bucketed kernel): the crossover lies near 2M elements.
FOREACH_MAX_NUMEL_CPU = 2_000_000

# Largest bucket (elements) a foreach kernel works on at once on CPU: small enough that a
# bucket's parameters, gradients and state (4 × 4 bytes per element for Adam) stay in L2 cache.
FOREACH_BUCKET_NUMEL_CPU = 1 << 16

# Devices whose native foreach kernels fuse the list into few launches; there foreach always wins
# (PyTorch's own default, ``torch.optim.optimizer._default_to_fused_or_foreach``).
_FOREACH_DEVICES = ("cuda", "xpu")


# --- the optimizer --------------------------------------------------------------------------------
class Optimizer(torch.optim.Optimizer):
    """A ``torch.optim.Optimizer`` with what every optreg optimizer does around its algorithm.

    * ``__init__`` and :meth:`add_param_group` pass the constructor's hyperparameters, and each
      param group's (the defaults merged with its own values), to :meth:`_check_group`; a group
      whose tensors differ in device or dtype is refused (:func:`check_homogeneous`).
    * ``__setstate__`` (``load_state_dict``, ``copy.deepcopy``, unpickling) completes each group
      with :meth:`_fill_loaded_group`.
    * :meth:`step` runs the closure with gradients enabled, then :meth:`_step_group` on every
      group, all under ``torch.no_grad()``.

    A subclass supplies ``_check_group``, ``_load_defaults`` and ``_step_group`` (which calls its
    ``_init_group`` and its functional form once, as ``step`` does in PyTorch).
    """

    # Group keys that a loaded state dict may lack (torch.optim's, those of an older PyTorch and
    # optreg's own), in the order they are filled in, with the value each then gets: torch's
    # default, as torch's own ``__setstate__`` fills it in.
    _load_defaults: ClassVar[dict[str, Any]] = {}
    # The keys of ``_load_defaults`` that get the constructor's value instead (its default above
    # where the constructor has none, as when unpickling an optimizer of optreg 0.1): optreg's own
    # keys, which no torch state dict holds.
    _constructor_keys: ClassVar[frozenset[str]] = frozenset({"decay"})

    def __init__(self, params: ParamsT, defaults: dict[str, Any]) -> None:
        self._check_group(defaults)  # the constructor's values, even if every group overrides them
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(options: dict[str, Any]) -> None:
        """Raise ``ValueError`` (``TypeError`` for a non-number) naming the first invalid
        hyperparameter in ``options`` (the defaults, or a group merged with them)."""
        raise NotImplementedError

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, after checking its own hyperparameters and that it is homogeneous."""
        self._check_group({**self.defaults, **param_group})
        super().add_param_group(param_group)
        try:
            check_homogeneous(self.param_groups[-1]["params"])
        except ValueError:
            self.param_groups.pop()
            raise

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:
            self._fill_loaded_group(group)

    def _fill_loaded_group(self, group: dict[str, Any]) -> None:
        """Fill in the keys of ``_load_defaults`` that ``group`` lacks, and turn plain-number
        ``step`` entries of its tensors' state (old PyTorch) into the scalar tensors that the
        kernels increment in place."""
        for key, value in self._load_defaults.items():
            if key in self._constructor_keys:
                value = self.defaults.get(key, value)
            group.setdefault(key, value)
        tensor_steps(self.state, group["params"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step; return the closure's loss (or None).

        Args:
            closure: optional callable that re-evaluates the model and returns the loss; it runs
                with gradients enabled.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        """Update the tensors of ``group`` that have a gradient."""
        raise NotImplementedError


# --- validation ---------------------------------------------------------------------------------
def invalid(clear: str, torch_text: str) -> ValueError:
    """A ValueError that says what is wrong in optreg's words, then in PyTorch's."""
    return ValueError(f"{clear} ({torch_text})")


def number(value: Any, name: str) -> float:
    """``value`` as a float; TypeError naming ``name`` for anything but a real number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    return float(value)


def check_lr(lr: Any) -> float:
    """``lr`` (a number or a one-element tensor) as a float, checked to be >= 0."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise invalid(f"lr: a tensor lr must have exactly one element, got {lr.numel()}",
                          "Tensor lr must be 1-element")
        value = lr.item()
    elif isinstance(lr, bool) or not isinstance(lr, int | float):
        raise TypeError(f"lr must be a number or a one-element tensor, got "
                        f"{type(lr).__name__} {lr!r}")
    else:
        value = float(lr)
    if not value >= 0.0:  # `not >=` also rejects nan
        raise invalid(f"lr must be a number >= 0, got {lr}", f"Invalid learning rate: {lr}")
    return value


def check_nonnegative(value: Any, name: str, torch_text: str) -> None:
    """``value`` must be a number >= 0 (not nan); ``torch_text`` is PyTorch's message for it."""
    if not number(value, name) >= 0.0:  # `not >=` also rejects nan
        raise invalid(f"{name} must be >= 0, got {value}", torch_text)


def check_eps(eps: Any) -> None:
    """ε >= 0 (Adam, RMSprop)."""
    check_nonnegative(eps, "eps", f"Invalid epsilon value: {eps}")


def check_weight_decay(weight_decay: Any) -> None:
    """λ >= 0, a number (SGD reads a one-element tensor λ before it checks it)."""
    check_nonnegative(weight_decay, "weight_decay", f"Invalid weight_decay value: {weight_decay}")


def check_momentum(momentum: Any) -> None:
    """A momentum factor μ >= 0, as PyTorch checks it (SGD, RMSprop; μ >= 1 is not refused)."""
    check_nonnegative(momentum, "momentum", f"Invalid momentum value: {momentum}")


def check_unit_interval(value: Any, name: str, torch_text: str) -> None:
    """``value`` must lie in [0, 1) (a beta, an EMA coefficient)."""
    if not 0.0 <= number(value, name) < 1.0:
        raise invalid(f"{name} must be in [0, 1), got {value}", torch_text)


def float_pair(betas: Iterable[Any]) -> tuple[float, float]:
    """``betas`` as a tuple of two Python floats (plain data in the param groups)."""
    try:
        items = list(betas)
    except TypeError:
        raise TypeError(f"betas must be a pair (β₁, β₂), got {betas!r}") from None
    if len(items) != 2:
        raise ValueError(f"betas must be a pair (β₁, β₂), got {len(items)} values")
    return tuple(  # type: ignore[return-value]
        float(b.item()) if isinstance(b, Tensor) else number(b, f"betas[{i}]")
        for i, b in enumerate(items)
    )


def reject_unsupported(name: str, *, capturable: bool = False, differentiable: bool = False,
                       fused: bool | None = None) -> None:
    """Refuse torch's flags for CUDA graphs, autograd through the step and fused kernels.

    They are in the signature so that code written for ``torch.optim`` binds the same way; optreg
    implements the eager single-tensor and foreach kernels only.
    """
    for flag, value in (("capturable", capturable), ("differentiable", differentiable),
                        ("fused", fused)):
        if value:
            raise ValueError(
                f"optreg.{name} has no {flag}=True path (it implements the single-tensor and "
                f"foreach kernels only); use torch.optim.{name}({flag}=True) for that"
            )


def check_homogeneous(params: list[Tensor]) -> None:
    """Raise ``ValueError`` unless all of a group's tensors share device and dtype (real only)."""
    first = params[0] if params else None
    for p in params:
        if p.is_complex():
            raise ValueError(f"complex parameters are not supported, got one of dtype {p.dtype}")
        if p.device != first.device or p.dtype != first.dtype:
            raise ValueError(
                "all parameters of one param group must share device and dtype, found "
                f"{first.device}/{first.dtype} and {p.device}/{p.dtype}; "
                "put them in separate param groups"
            )


def check_dense(grad: Tensor, name: str) -> None:
    if grad.is_sparse:
        raise RuntimeError(f"optreg.optim.{name} does not support sparse gradients")


def scalar(value: float | Tensor) -> float:
    """A hyperparameter as a Python number: a one-element tensor is read with ``.item()``.

    PyTorch passes such a tensor as an op's ``alpha``/``value``, which reads it the same way
    (into a double), so the arithmetic, and the bits, are the same as with the tensor.
    """
    return value.item() if isinstance(value, Tensor) else value


# --- state ----------------------------------------------------------------------------------------
def copy_lr(lr: float | Tensor) -> float | Tensor:
    """``lr`` as a group's ``initial_lr``: a copy if it is a tensor (as PyTorch's schedulers)."""
    return lr.clone() if isinstance(lr, Tensor) else lr


def step_dtype() -> torch.dtype:
    """dtype of ``state["step"]``: float32, or float64 when that is the default (as PyTorch)."""
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def new_step() -> Tensor:
    """A step counter t = 0, as PyTorch keeps it: a scalar float tensor on the CPU."""
    return torch.tensor(0.0, dtype=step_dtype())


def zero_buffer(p: Tensor) -> Tensor:
    """A state buffer of zeros like ``p`` (its layout kept, as PyTorch creates its buffers)."""
    return torch.zeros_like(p, memory_format=torch.preserve_format)


def tensor_steps(state: dict[Any, dict[str, Any]], params: Iterable[Tensor]) -> None:
    """Turn plain-number ``step`` entries (state dicts of old PyTorch) into tensor counters."""
    for p in params:
        p_state = state.get(p)
        if p_state and "step" in p_state and not torch.is_tensor(p_state["step"]):
            p_state["step"] = torch.tensor(float(p_state["step"]), dtype=step_dtype())


# --- kernels --------------------------------------------------------------------------------------
def run_kernel(
    single_tensor: Callable[..., None],
    multi_tensor: Callable[..., None],
    lists: tuple[list, ...],
    *,
    foreach: bool | None,
    **hyperparameters: Any,
) -> list[tuple[list, ...]]:
    """Run one optimizer's kernel on its parallel ``lists`` (the parameters first); return the
    calls' lists.

    ``multi_tensor`` if ``foreach`` (None: :func:`default_foreach` decides), on the CPU once per
    cache bucket (:func:`bucketed`); else ``single_tensor``, once. ``hyperparameters`` go to
    every call as keywords.
    """
    params = lists[0]
    if foreach is None:
        foreach = default_foreach(params)
    kernel = multi_tensor if foreach else single_tensor
    calls = bucketed(lists, params, foreach)
    for call in calls:
        kernel(*call, **hyperparameters)
    return calls


def default_foreach(params: list[Tensor]) -> bool:
    """The kernel that ``foreach=None`` picks: True for the multi-tensor (foreach) kernel.

    * CUDA/XPU: True (fused multi-tensor launches; PyTorch's default too).
    * CPU: True when the call updates at most :data:`FOREACH_MAX_NUMEL_CPU` (2M) elements. CPU
      foreach ops loop over the tensors in C++, which saves the per-tensor Python overhead that
      dominates small models (LeNet-5: 62k elements in 10 tensors); for large sets the
      single-tensor kernel, which runs every op on one tensor while it is in cache, is faster.
    * Other devices (MPS, meta, ...): False.
    """
    if not params:
        return False
    device_type = params[0].device.type
    if device_type in _FOREACH_DEVICES:
        return True
    if device_type != "cpu":
        return False
    return sum(p.numel() for p in params) <= FOREACH_MAX_NUMEL_CPU


def cache_buckets(params: list[Tensor]) -> list[list[int]]:
    """Indices of ``params`` in consecutive buckets of at most :data:`FOREACH_BUCKET_NUMEL_CPU`
    elements (a larger tensor is a bucket of its own); one bucket off the CPU.

    Each ``_foreach_`` op sweeps its whole list before the next op starts, so over a large
    parameter set every op streams all of it through memory again. On a CPU, running the kernel
    bucket by bucket keeps a bucket's parameters, gradients and state in cache across the
    kernel's ops. The arithmetic per element is unchanged, so results are bitwise the same.
    """
    if not params or params[0].device.type != "cpu":
        return [list(range(len(params)))]
    buckets: list[list[int]] = [[]]
    numel = 0
    for i, p in enumerate(params):
        if buckets[-1] and numel + p.numel() > FOREACH_BUCKET_NUMEL_CPU:
            buckets.append([])
            numel = 0
        buckets[-1].append(i)
        numel += p.numel()
    return buckets


def bucketed(
    lists: tuple[list, ...], params: list[Tensor], foreach: bool
) -> list[tuple[list, ...]]:
    """The parallel ``lists`` as one call, or (foreach on the CPU) one call per cache bucket.

    Empty lists (e.g. the AMSGrad maxima when AMSGrad is off) stay empty in every call.
    """
    buckets = cache_buckets(params) if foreach else []
    if len(buckets) <= 1:  # single-tensor kernel, or everything fits one bucket (LeNet-5, GPUs)
        return [lists]
    return [tuple([lst[i] for i in bucket] if lst else lst for lst in lists)
            for bucket in buckets]


def foreach_increment(state_steps: list[Tensor]) -> None:
    """t ← t + 1 for every step counter of the list.

    A CPU tensor as the scalar avoids wrapping the number 1 anew for every tensor (as PyTorch).
    """
    if state_steps[0].is_cpu:
        torch._foreach_add_(state_steps, torch.tensor(1.0), alpha=1.0)
    else:
        torch._foreach_add_(state_steps, 1)


def foreach_add_decay(
    grads: list[Tensor],
    params: list[Tensor],
    decayed: list[bool],
    weight_decay: float,
    *,
    in_place: bool,
) -> list[Tensor]:
    """Coupled L2 over lists: g ← g + λ·θ for each tensor i with ``decayed[i]``; return the grads.

    ``in_place=True`` when ``grads`` are the kernel's own copies (e.g. negated for ``maximize``):
    they are updated in place. Otherwise the decayed entries are replaced by new tensors in a new
    list, so ``p.grad`` is never written.
    """
    index = [i for i, d in enumerate(decayed) if d]
    if len(index) == len(params):  # every tensor decays (decay="all"): no sub-lists
        if in_place:
            torch._foreach_add_(grads, params, alpha=weight_decay)
            return grads
        return list(torch._foreach_add(grads, params, alpha=weight_decay))
    if not index:
        return grads
    decay_grads = [grads[i] for i in index]
    decay_params = [params[i] for i in index]
    if in_place:
        torch._foreach_add_(decay_grads, decay_params, alpha=weight_decay)
        return grads
    grads = list(grads)
    for i, g in zip(index, torch._foreach_add(decay_grads, decay_params, alpha=weight_decay),
                    strict=True):
        grads[i] = g
    return grads
