r"""Adam, Adam + L2 and AdamW, written from scratch and bit-comparable to ``torch.optim``.

The file reads like ``torch/optim/adam.py``: the :class:`Adam` class (validation, lazy state,
one step of a param group; its base :class:`optreg.optim._common.Optimizer` does the rest), then
:func:`adam`, the functional entry point, next to the two kernels it chooses between:
:func:`_single_tensor_adam`, the reference (one tensor at a time), and :func:`_multi_tensor_adam`,
the same lines over lists with ``torch._foreach_*``. Each kernel line is tagged with the equation
it implements; the arithmetic is in place and in PyTorch's order, so the single-tensor kernel
reproduces ``torch.optim.Adam(foreach=False)`` bit for bit.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from optreg.optim import _common as common
from optreg.regularization import DecayScope, check_decay_scope, is_decayed

__all__ = ["Adam", "AdamW", "adam"]

DecayScale = Literal["lr", "schedule"]
DECAY_SCALES: tuple[str, ...] = ("lr", "schedule")


class Adam(common.Optimizer):
    r"""Adam (Kingma & Ba), with coupled L2 or decoupled weight decay (AdamW) on chosen tensors.

    Symbols and arguments: γ = ``lr`` (γ_t: its current value, γ_0: the group's ``initial_lr``),
    (β₁, β₂) = ``betas``, ε = ``eps``, λ = ``weight_decay``, t = ``state["step"]``,
    η_t = γ_t / γ_0 (the schedule multiplier), g_t = ∇f(θ_{t-1}) (−∇f if ``maximize``).
    m_0 = v_0 = v_0^max = 0. Weight decay only touches the tensors selected by ``decay``.

    One step for each tensor θ that has a gradient, with m̂_t = m_t/(1 − β₁ᵗ), v̂_t = v_t/(1 − β₂ᵗ)::

        Adam                 m_t = β₁·m_{t-1} + (1 − β₁)·g_t
                             v_t = β₂·v_{t-1} + (1 − β₂)·g_t²
                             θ_t = θ_{t-1} − γ_t·m̂_t/(√v̂_t + ε)

        Adam + L2 (coupled)  g_t ← g_t + λ·θ_{t-1}, then the Adam lines with this g_t

        AdamW (PyTorch)      θ_t = θ_{t-1} − γ_t·λ·θ_{t-1} − γ_t·m̂_t/(√v̂_t + ε)

        AdamW (paper)        θ_t = θ_{t-1} − η_t·λ·θ_{t-1} − γ_t·m̂_t/(√v̂_t + ε)
                                 = θ_{t-1} − η_t·(γ_0·m̂_t/(√v̂_t + ε) + λ·θ_{t-1})  (Alg. 2, α=γ_0)

        AMSGrad              v_t^max = max(v_{t-1}^max, v_t) replaces v_t in v̂_t

        no bias correction   m̂_t = m_t, v̂_t = v_t      (``bias_correction=False``; an ablation)

    Adam + L2 is ``decoupled_weight_decay=False`` (= ``torch.optim.Adam(weight_decay=λ)``); AdamW
    (PyTorch) is ``decoupled_weight_decay=True, decay_scale="lr"`` (= ``torch.optim.AdamW``);
    AdamW (paper) is ``decoupled_weight_decay=True, decay_scale="schedule"``. As computed
    (PyTorch's order; each kernel line is tagged with its equation)::

        t ← t + 1
        θ ← θ·(1 − γ_t·λ)  or  θ·(1 − η_t·λ)                decoupled decay, before the moments
        m ← m + (1 − β₁)·(g − m)                            lerp_, = β₁·m + (1 − β₁)·g
        v ← β₂·v + (1 − β₂)·g·g                             mul_, addcmul_
        θ ← θ − γ_t/(1 − β₁ᵗ) · m / (√v/√(1 − β₂ᵗ) + ε)     addcdiv_; 1 − βᵗ as Python floats

    Notes on conventions:

    * **ε after bias correction.** The denominator is √v_t/√(1 − β₂ᵗ) + ε, i.e. ε is added to
      √v̂_t (as in PyTorch and the Adam paper's Algorithm 1), not to √v_t.
    * **Bias correction.** m_0 = v_0 = 0 bias both averages toward 0 early on: after one step
      m_1 = (1 − β₁)·g_1 and v_1 = (1 − β₂)·g_1². Dividing by 1 − βᵗ undoes that, so the first
      step has size ≈ γ whatever the scale of g. Without it (``bias_correction=False``) the first
      update is γ·(1 − β₁)/√(1 − β₂)·sign(g) ≈ 3.16·γ with the default betas, and the ratio
      approaches 1 only after a few thousand steps (√v lags m).
    * **Decay × lr (PyTorch) or × schedule multiplier (paper).** PyTorch's AdamW shrinks θ by
      γ_t·λ, so the decay per step depends on the base learning rate. The paper writes
      θ_t = θ_{t-1} − η_t·(α·m̂_t/(√v̂_t + ε) + λ·θ_{t-1}) with α the base learning rate and η_t
      the schedule multiplier, so its decay per step is η_t·λ, independent of α; the same
      decay needs λ_paper = γ_0·λ_torch. Here η_t = ``lr`` / ``initial_lr`` of the group.
      ``initial_lr`` is set (``setdefault``) at construction to the group's ``lr``, the key that
      PyTorch's LR schedulers use; schedulers that overwrite it (``OneCycleLR`` sets it to
      ``max_lr / div_factor``) redefine η_t relative to that value. Decaying θ before the Adam step
      (as PyTorch does) equals the paper's simultaneous update because the Adam step does not read
      θ.
    * **Batch-size convention.** ``weight_decay`` is the raw coefficient, as in PyTorch. The loss
      ``optreg.CrossEntropyLoss(l2=λ)`` adds λ/(2B)·Σ‖W‖² (B the batch size), whose gradient is
      (λ/B)·W, so coupled Adam with ``weight_decay=optreg.regularization.l2_to_weight_decay(λ, B)``
      (= λ/B) follows the same trajectory (up to float rounding).
    * **Which tensors decay.** ``decay="weights"`` (default) decays only tensors with ``ndim > 1``
      (weight matrices, conv kernels; not biases), via ``optreg.regularization.is_decayed``;
      ``decay="all"`` decays every tensor, as PyTorch does. A param group may set its own
      ``weight_decay`` (e.g. 0 for a bias group) or ``decay``.
    * **Signature and state** are PyTorch's: the positional order (params, lr, betas, eps,
      weight_decay, amsgrad), the keyword-only flags, the param-group keys and the state keys
      (``step``, a scalar float32 tensor on the CPU, or float64 when that is the default dtype;
      ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq``), so code and state dicts move between
      ``optreg.Adam`` and ``torch.optim.Adam``. State dicts whose ``step`` is a plain number (old
      PyTorch), and those of optreg 0.1 (group key ``decoupled``), load too. optreg's own options
      (``decay``, ``decay_scale``, ``bias_correction``) are keyword-only, after torch's.
      ``capturable``, ``differentiable`` and ``fused`` exist so that calls bind as in torch; True
      is refused (``ValueError``): optreg implements the two eager kernels only.
    * **Kernels.** ``foreach=False``: one tensor at a time; bit-identical to
      ``torch.optim.Adam(foreach=False)``. ``foreach=True``: the same lines with
      ``torch._foreach_*``; bit-identical to ``foreach=True`` in PyTorch and, on CPU, to the
      single-tensor kernel. On CPU it runs over cache-sized buckets of consecutive tensors (≤ 64k
      elements each), so the data of a bucket stays in cache across the kernel's operations.
      ``foreach=None``: foreach on CUDA/XPU; on CPU foreach for small parameter sets (≤ 2M
      elements, where it saves Python overhead) and single-tensor above
      (:func:`optreg.optim._common.default_foreach`). A tensor ``lr`` is read as a Python float by
      the foreach kernel, so there it agrees with the single-tensor kernel to rounding, not bitwise.
    * **Param groups must be homogeneous**: all tensors of one group on one device with one dtype
      (``ValueError`` otherwise; put them in separate groups). PyTorch instead buckets each group by
      device and dtype in its foreach kernel. Complex parameters are not supported.

    Args:
        params: iterable of tensors, of ``(name, tensor)`` pairs, or of param-group dicts.
        lr: learning rate γ, a float or a one-element tensor (default 1e-3).
        betas: (β₁, β₂), decay rates of the first and second moment (default (0.9, 0.999)).
        eps: ε, added to the bias-corrected √v̂ (default 1e-8).
        weight_decay: λ, the raw coefficient of coupled L2 or decoupled decay (default 0).
        amsgrad: use AMSGrad's running maximum of v (default False).
        foreach: True: multi-tensor kernel; False: single-tensor kernel; None: choose by device
            and size (see above).
        maximize: maximize the objective instead of minimizing it (default False).
        capturable, differentiable, fused: torch's flags; only their defaults are accepted.
        decoupled_weight_decay: False: L2 added to the gradient (Adam + L2); True: decoupled
            decay (AdamW), as in torch.
        decay: ``"weights"`` (only tensors with ``ndim > 1``) or ``"all"`` tensors decay.
        decay_scale: ``"lr"`` (decay × γ_t, PyTorch) or ``"schedule"`` (decay × η_t = γ_t/γ_0,
            the paper); ``"schedule"`` requires decoupled decay.
        bias_correction: divide the moments by 1 − βᵗ (default True; False is the ablation).
        decoupled: optreg 0.1's name of ``decoupled_weight_decay`` (an alias).

    References:
        * Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
          https://arxiv.org/abs/1412.6980
        * Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
          https://arxiv.org/abs/1711.05101
        * Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018.
          https://openreview.net/forum?id=ryQu7f-RZ
    """

    # A loaded state dict of torch.optim.Adam, an older PyTorch or optreg 0.1 may lack these keys.
    _load_defaults: ClassVar[dict[str, Any]] = {
        "decoupled_weight_decay": False,
        "amsgrad": False,
        "maximize": False,
        "foreach": None,
        "capturable": False,
        "differentiable": False,
        "fused": None,
        "decay": "weights",
        "decay_scale": "lr",
        "bias_correction": True,
    }
    _constructor_keys: ClassVar[frozenset[str]] = frozenset(
        {"decoupled_weight_decay", "decay", "decay_scale", "bias_correction"}
    )

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        decay: DecayScope = "weights",
        decay_scale: DecayScale = "lr",
        bias_correction: bool = True,
        decoupled: bool | None = None,
    ) -> None:
        common.reject_unsupported(type(self).__name__, capturable=capturable,
                                  differentiable=differentiable, fused=fused)
        if decoupled is not None:
            if decoupled_weight_decay and not decoupled:
                raise ValueError("decoupled is an alias of decoupled_weight_decay; give one")
            decoupled_weight_decay = decoupled
        defaults = {
            "lr": lr,
            "betas": common.float_pair(betas),
            "eps": eps,
            "weight_decay": weight_decay,
            "amsgrad": amsgrad,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": False,
            "differentiable": False,
            "fused": None,
            "decoupled_weight_decay": decoupled_weight_decay,
            "decay": decay,
            "decay_scale": decay_scale,
            "bias_correction": bias_correction,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(options: dict[str, Any]) -> None:
        lr = common.check_lr(options["lr"])
        for i, beta in enumerate(options["betas"]):
            common.check_unit_interval(beta, f"betas[{i}]",
                                       f"Invalid beta parameter at index {i}: {beta}")
        common.check_eps(options["eps"])
        common.check_weight_decay(options["weight_decay"])
        check_decay_scope(options["decay"])
        decay_scale = options["decay_scale"]
        if decay_scale not in DECAY_SCALES:
            raise ValueError(f"decay_scale must be one of {DECAY_SCALES}, got {decay_scale!r}")
        if decay_scale == "schedule":
            if not options["decoupled_weight_decay"]:
                raise ValueError(
                    "decay_scale='schedule' (decay × γ_t/γ_0, the paper's AdamW) requires "
                    "decoupled_weight_decay=True; coupled L2 has no schedule-scaled form"
                )
            if lr == 0.0:
                raise ValueError(
                    "lr must be > 0 with decay_scale='schedule' (η_t = lr / initial_lr)"
                )

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group, after checking its own hyperparameters and that it is homogeneous.

        Sets the group's ``initial_lr`` (γ_0, the reference of ``decay_scale="schedule"``) to its
        ``lr`` unless the group already has one.
        """
        if "betas" in param_group:
            param_group["betas"] = common.float_pair(param_group["betas"])
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.setdefault("initial_lr", common.copy_lr(group["lr"]))

    def _fill_loaded_group(self, group: dict[str, Any]) -> None:
        legacy = group.pop("decoupled", None)  # optreg 0.1's name of decoupled_weight_decay
        if legacy is not None:
            group.setdefault("decoupled_weight_decay", legacy)
        super()._fill_loaded_group(group)
        group.setdefault("initial_lr", common.copy_lr(group["lr"]))

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        exp_avgs: list[Tensor],
        exp_avg_sqs: list[Tensor],
        max_exp_avg_sqs: list[Tensor],
        state_steps: list[Tensor],
        decayed: list[bool],
    ) -> None:
        """Fill the parallel lists with the group's tensors that have a gradient; create state."""
        amsgrad = group["amsgrad"]
        decay = group["decay"]
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            common.check_dense(grad, "Adam")
            state = self.state[p]
            if len(state) == 0:  # lazy initialization: t = 0, m_0 = v_0 = 0
                state["step"] = common.new_step()
                state["exp_avg"] = common.zero_buffer(p)
                state["exp_avg_sq"] = common.zero_buffer(p)
            if amsgrad:
                if "max_exp_avg_sq" not in state:  # v_0^max = 0 (also if amsgrad turned on later)
                    state["max_exp_avg_sq"] = common.zero_buffer(p)
                max_exp_avg_sqs.append(state["max_exp_avg_sq"])
            params.append(p)
            grads.append(grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            state_steps.append(state["step"])
            decayed.append(is_decayed(p, decay))

    def _step_group(self, group: dict[str, Any]) -> None:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        exp_avgs: list[Tensor] = []
        exp_avg_sqs: list[Tensor] = []
        max_exp_avg_sqs: list[Tensor] = []
        state_steps: list[Tensor] = []
        decayed: list[bool] = []
        self._init_group(
            group, params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, decayed
        )
        if not params:
            return
        beta1, beta2 = group["betas"]  # read every step: OneCycleLR cycles β₁
        lr = group["lr"]
        # Multiplier of λ in decoupled decay: γ_t (PyTorch) or η_t = γ_t / γ_0 (paper).
        decay_multiplier = lr / group["initial_lr"] if group["decay_scale"] == "schedule" else lr

        adam(
            params,
            grads,
            exp_avgs,
            exp_avg_sqs,
            max_exp_avg_sqs,
            state_steps,
            decayed,
            foreach=group["foreach"],
            amsgrad=group["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=lr,
            weight_decay=group["weight_decay"],
            decay_multiplier=decay_multiplier,
            eps=group["eps"],
            maximize=group["maximize"],
            decoupled=group["decoupled_weight_decay"],
            bias_correction=group["bias_correction"],
        )


class AdamW(Adam):
    r"""AdamW: :class:`Adam` with decoupled weight decay and ``weight_decay=1e-2`` by default.

    The same signature and defaults as ``torch.optim.AdamW`` (plus optreg's keyword-only
    ``decay``, ``decay_scale`` and ``bias_correction``); see :class:`Adam` for the update, the
    two forms of the decay and the conventions. As in PyTorch, a state dict loaded into an AdamW
    always keeps ``decoupled_weight_decay=True``.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decay: DecayScope = "weights",
        decay_scale: DecayScale = "lr",
        bias_correction: bool = True,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
            decay=decay,
            decay_scale=decay_scale,
            bias_correction=bias_correction,
        )

    def _fill_loaded_group(self, group: dict[str, Any]) -> None:
        super()._fill_loaded_group(group)
        group["decoupled_weight_decay"] = True  # whatever the state dict says, as in PyTorch


def adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    decayed: list[bool] | None = None,
    *,
    foreach: bool | None = None,
    amsgrad: bool,
    beta1: float,
    beta2: float,
    lr: float | Tensor,
    weight_decay: float,
    decay_multiplier: float | Tensor | None = None,
    eps: float,
    maximize: bool,
    decoupled: bool,
    bias_correction: bool = True,
) -> None:
    r"""Functional Adam / Adam + L2 / AdamW: update ``params`` and the state lists in place.

    See :class:`Adam` for the algorithm. The lists are parallel (one entry per tensor);
    ``state_steps`` holds scalar tensors, incremented here. ``decayed[i]`` says whether tensor i
    decays (None: all do). ``decay_multiplier`` multiplies λ in decoupled decay: ``lr`` if None
    (PyTorch's AdamW), γ_t/γ_0 for the paper's form. ``foreach=None`` chooses the kernel with
    :func:`optreg.optim._common.default_foreach`. Tensors must share one device and dtype.
    """
    if decayed is None:
        decayed = [True] * len(params)
    if decay_multiplier is None:
        decay_multiplier = lr
    common.run_kernel(
        _single_tensor_adam,
        _multi_tensor_adam,
        (params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, decayed),
        foreach=foreach, amsgrad=amsgrad, beta1=beta1, beta2=beta2, lr=lr,
        weight_decay=weight_decay, decay_multiplier=decay_multiplier, eps=eps, maximize=maximize,
        decoupled=decoupled, bias_correction=bias_correction,
    )  # fmt: skip


def _single_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    decayed: list[bool],
    *,
    amsgrad: bool,
    beta1: float,
    beta2: float,
    lr: float | Tensor,
    weight_decay: float,
    decay_multiplier: float | Tensor,
    eps: float,
    maximize: bool,
    decoupled: bool,
    bias_correction: bool,
) -> None:
    """Reference kernel: one tensor at a time, PyTorch's order of operations."""
    if isinstance(lr, Tensor):  # a one-element tensor lr stays a (0-dim) tensor, as in PyTorch
        lr = lr.squeeze()
    if isinstance(decay_multiplier, Tensor):
        decay_multiplier = decay_multiplier.squeeze()
    shrink = 1 - decay_multiplier * weight_decay  # 1 − γ_t·λ  or  1 − η_t·λ

    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]  # g_t = ±∇f (never p.grad in place)
        exp_avg = exp_avgs[i]
        exp_avg_sq = exp_avg_sqs[i]
        step_t = state_steps[i]

        step_t += 1  # t ← t + 1

        if weight_decay != 0 and decayed[i]:
            if decoupled:
                param.mul_(shrink)  # θ ← θ·(1 − γ_t·λ)  (paper: θ·(1 − η_t·λ))
            elif maximize:
                grad.add_(param, alpha=weight_decay)  # g_t ← g_t + λθ  (grad is our copy)
            else:
                grad = grad.add(param, alpha=weight_decay)  # g_t ← g_t + λθ  (a new tensor)

        exp_avg.lerp_(grad, 1 - beta1)  # m_t = β₁m + (1 − β₁)g_t
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)  # v_t = β₂v + (1 − β₂)g_t²

        if bias_correction:
            step = step_t.item()
            bias_correction1 = 1 - beta1**step  # 1 − β₁ᵗ
            bias_correction2_sqrt = (1 - beta2**step) ** 0.5  # √(1 − β₂ᵗ)
            step_size = lr / bias_correction1  # γ/(1 − β₁ᵗ)
        else:
            step_size = lr  # m̂ = m, v̂ = v

        if amsgrad:
            torch.maximum(max_exp_avg_sqs[i], exp_avg_sq, out=max_exp_avg_sqs[i])  # v^max_t
            denom = max_exp_avg_sqs[i].sqrt()  # √v^max_t
        else:
            denom = exp_avg_sq.sqrt()  # √v_t
        if bias_correction:
            denom.div_(bias_correction2_sqrt)  # √v_t/√(1 − β₂ᵗ) ...
        denom.add_(eps)  # ... + ε

        param.addcdiv_(exp_avg, denom, value=-step_size)  # θ_t = θ − γ/(1 − β₁ᵗ)·m_t/denom


def _multi_tensor_adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor],
    state_steps: list[Tensor],
    decayed: list[bool],
    *,
    amsgrad: bool,
    beta1: float,
    beta2: float,
    lr: float | Tensor,
    weight_decay: float,
    decay_multiplier: float | Tensor,
    eps: float,
    maximize: bool,
    decoupled: bool,
    bias_correction: bool,
) -> None:
    """Foreach kernel: the single-tensor kernel's lines, each over the whole list."""
    if not params:
        return
    if isinstance(lr, Tensor):  # foreach scalars must be Python numbers
        lr = lr.item()
    if isinstance(decay_multiplier, Tensor):
        decay_multiplier = decay_multiplier.item()
    shrink = 1 - decay_multiplier * weight_decay  # 1 − γ_t·λ  or  1 − η_t·λ

    if maximize:
        grads = torch._foreach_neg(grads)  # g_t = −∇f (new tensors, never p.grad in place)

    common.foreach_increment(state_steps)  # t ← t + 1

    if weight_decay != 0:
        if decoupled:
            decay_params = [p for p, d in zip(params, decayed, strict=True) if d]
            if decay_params:
                torch._foreach_mul_(decay_params, shrink)  # θ ← θ·(1 − γ_t·λ)  (paper: η_t·λ)
        else:  # g_t ← g_t + λθ (in place only on the copies made for maximize)
            grads = common.foreach_add_decay(grads, params, decayed, weight_decay,
                                             in_place=maximize)

    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)  # m_t = β₁m + (1 − β₁)g_t
    torch._foreach_mul_(exp_avg_sqs, beta2)  # v_t = β₂v ...
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)  # ... + (1 − β₂)g_t²
    del grads  # free the copies made for maximize / L2 before allocating the denominators

    if amsgrad:
        torch._foreach_maximum_(max_exp_avg_sqs, exp_avg_sqs)  # v^max_t
        denom = torch._foreach_sqrt(max_exp_avg_sqs)  # √v^max_t
    else:
        denom = torch._foreach_sqrt(exp_avg_sqs)  # √v_t
    if bias_correction:
        steps = [s.item() for s in state_steps]
        step_size = [-(lr / (1 - beta1**step)) for step in steps]  # −γ/(1 − β₁ᵗ)
        bias_correction2_sqrt = [(1 - beta2**step) ** 0.5 for step in steps]  # √(1 − β₂ᵗ)
        torch._foreach_div_(denom, bias_correction2_sqrt)  # √v_t/√(1 − β₂ᵗ) ...
    else:
        step_size = [-lr] * len(params)  # m̂ = m, v̂ = v
    torch._foreach_add_(denom, eps)  # ... + ε

    torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)  # θ_t = θ − γ/(1 − β₁ᵗ)·m_t/denom

