r"""RMSprop (plain, centered, with momentum) with L2 on chosen tensors, bit-comparable to torch.

The file reads like ``torch/optim/rmsprop.py``: the :class:`RMSprop` class (validation, lazy
state, one step of a param group; its base :class:`optreg.optim._common.Optimizer` does the
rest), then :func:`rmsprop`, the functional entry point, next to the two kernels it chooses
between: :func:`_single_tensor_rmsprop`, the reference (one tensor at a time), and
:func:`_multi_tensor_rmsprop`, the same lines over lists with ``torch._foreach_*``. Each kernel
line is tagged with the equation it implements; the arithmetic is in place and in PyTorch's
order, so each kernel reproduces ``torch.optim.RMSprop`` with the matching ``foreach`` bit for bit.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from optreg.optim import _common as common
from optreg.regularization import DecayScope, check_decay_scope, is_decayed

__all__ = ["RMSprop", "rmsprop"]


class RMSprop(common.Optimizer):
    r"""RMSprop (Tieleman & Hinton), optionally centered (Graves) and with momentum; coupled L2.

    Symbols and arguments: γ = ``lr``, α = ``alpha``, ε = ``eps``, λ = ``weight_decay``,
    μ = ``momentum``, v = ``state["square_avg"]``, ḡ = ``state["grad_avg"]`` (``centered``),
    b = ``state["momentum_buffer"]`` (μ > 0), t = ``state["step"]``, g_t = ∇f(θ_{t-1})
    (−∇f if ``maximize``). v_0 = ḡ_0 = b_0 = 0. Weight decay only touches the tensors selected
    by ``decay``. One step for each tensor θ that has a gradient::

        L2 (coupled)      g_t ← g_t + λ·θ_{t-1}
        square average    v_t = α·v_{t-1} + (1 − α)·g_t²
        denominator       s_t = √v_t + ε
        centered          ḡ_t = α·ḡ_{t-1} + (1 − α)·g_t,   s_t = √(v_t − ḡ_t²) + ε
        update (μ = 0)    θ_t = θ_{t-1} − γ·g_t/s_t
        momentum (μ > 0)  b_t = μ·b_{t-1} + g_t/s_t,   θ_t = θ_{t-1} − γ·b_t

    As computed (PyTorch's order; each kernel line is tagged with its equation)::

        t ← t + 1                                 counted only: RMSprop has no bias correction
        g ← −∇f;  g ← g + λ·θ                     new tensors (p.grad is never written)
        v ← α·v + (1 − α)·g·g                     mul_, addcmul_
        ḡ ← ḡ + (1 − α)·(g − ḡ)                   lerp_ (centered)
        s ← √(v − ḡ·ḡ) + ε   or   √v + ε          addcmul (a new tensor), sqrt_ / sqrt; add_
        b ← μ·b + g/s;  θ ← θ − γ·b               mul_, addcdiv_; add_(alpha=−γ)   (μ > 0)
        θ ← θ − γ·g/s                             addcdiv_(value=−γ)                (μ = 0)

    Notes on conventions:

    * **The idea (Tieleman & Hinton 2012).** Divide each coordinate's gradient by a running
      root mean square of its recent values: the step γ·g/√v no longer depends on the scale of
      the gradient, and coordinates with small, consistent gradients move as fast as those with
      large ones.
    * **RMSprop is Adam's second moment.** v is Adam's ``exp_avg_sq`` with β₂ = α, computed with
      the same ops; RMSprop(alpha=α, eps=ε) is ``optreg.Adam(betas=(0, α), eps=ε,
      bias_correction=False)`` bit for bit (β₁ = 0 makes Adam's m_t = g_t exactly). Adam adds
      the momentum term (its first moment, :class:`optreg.optim.SGD`'s buffer with
      ``dampening=momentum``) and bias correction. RMSprop's own momentum differs from Adam's
      first moment: it averages the already normalised steps g/s, where Adam normalises the
      averaged gradient m/√v.
    * **No bias correction.** v_0 = 0 biases v toward 0 early on: v_1 = (1 − α)·g_1², so the
      first step is γ·|g_1|/(√(1 − α)·|g_1| + ε) ≈ γ/√(1 − α) per coordinate, 10·γ with the
      default α = 0.99; the bias fades as αᵗ, over a few times 1/(1 − α) steps. Adam's division
      by 1 − β₂ᵗ removes exactly this. ``step`` is kept (PyTorch's state key) but the update
      does not use it.
    * **ε outside the root.** s = √v + ε, as in PyTorch; TensorFlow and Graves add ε inside
      (√(v + ε)), so the same ε means a different damping there.
    * **Centered (Graves 2013).** Subtracting ḡ² turns the mean square into an
      estimate of the gradient's variance, so the step is normalised by a standard deviation
      instead of the RMS. v − ḡ² ≥ 0 holds exactly, but rounding can make it slightly negative
      when the gradient barely varies over a long run; as in PyTorch there is no clamp and the
      root is then nan.
    * **Coupled L2.** ``weight_decay`` adds λ·θ to the gradient before it is squared, as in
      PyTorch. The loss ``optreg.CrossEntropyLoss(l2=λ)`` (penalty λ/(2B)·Σ‖W‖², B the batch
      size) matches ``weight_decay=optreg.regularization.l2_to_weight_decay(λ, B)`` (= λ/B).
    * **Which tensors decay.** ``decay="weights"`` (default) decays only tensors with ``ndim > 1``
      (weight matrices, conv kernels; not biases), via ``optreg.regularization.is_decayed``;
      ``decay="all"`` decays every tensor, as PyTorch does. A param group may set its own
      ``weight_decay`` or ``decay``.
    * **Signature and state** are PyTorch's: the positional order (params, lr, alpha, eps,
      weight_decay, momentum, centered, capturable, foreach, maximize, differentiable), the
      param-group keys and the state keys (``step``, a scalar float32 tensor on the CPU, or
      float64 when that is the default dtype; ``square_avg``; ``momentum_buffer`` with μ > 0;
      ``grad_avg`` when centered), so code and state dicts move between ``optreg.RMSprop`` and
      ``torch.optim.RMSprop``. A buffer that is missing because momentum or ``centered`` was
      switched on after the first step is created as zeros (PyTorch raises ``KeyError``).
      optreg's ``decay`` is keyword-only, after torch's. ``capturable`` and ``differentiable``
      exist so that calls bind as in torch; True is refused (``ValueError``). A tensor ``lr`` is
      read as a Python number by both kernels, exactly as PyTorch's ops read it: the same bits.
    * **Kernels.** ``foreach=False``: one tensor at a time; bit-identical to
      ``torch.optim.RMSprop(foreach=False)``. ``foreach=True``: the same lines with
      ``torch._foreach_*``; bit-identical to ``foreach=True`` in PyTorch and, on CPU, to the
      single-tensor kernel. On CPU it runs over cache-sized buckets of consecutive tensors.
      ``foreach=None`` chooses as for Adam (:func:`optreg.optim._common.default_foreach`).
    * **Divergences from PyTorch.** Param groups must be homogeneous (one device and dtype;
      ``ValueError`` otherwise) and real; sparse gradients are refused, as in PyTorch. Values
      α > 1 (a negative weight on g², v may turn negative) and μ ≥ 1 are accepted, as PyTorch
      does; the meaningful range of both is [0, 1).

    Args:
        params: iterable of tensors, of ``(name, tensor)`` pairs, or of param-group dicts.
        lr: learning rate γ, a float or a one-element tensor (default 1e-2).
        alpha: α, the decay rate of the mean square (and of ḡ) (default 0.99).
        eps: ε, added to the root (default 1e-8).
        weight_decay: λ, the raw coefficient of coupled L2 (default 0).
        momentum: μ, momentum factor of the normalised step (default 0).
        centered: divide by the estimated standard deviation √(v − ḡ²) (default False).
        capturable, differentiable: torch's flags; only their defaults are accepted.
        foreach: True: multi-tensor kernel; False: single-tensor kernel; None: choose by device
            and size (see above).
        maximize: maximize the objective instead of minimizing it (default False).
        decay: ``"weights"`` (only tensors with ``ndim > 1``) or ``"all"`` tensors decay.

    References:
        * Tieleman & Hinton, "Lecture 6.5 - rmsprop: Divide the gradient by a running average of
          its recent magnitude", COURSERA: Neural Networks for Machine Learning, 2012.
          https://www.cs.toronto.edu/~tijmen/csc321/slides/lecture_slides_lec6.pdf
        * Graves, "Generating Sequences With Recurrent Neural Networks", 2013 (centered RMSprop
          with momentum). https://arxiv.org/abs/1308.0850
        * Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
          https://arxiv.org/abs/1412.6980
    """

    # A loaded state dict of torch.optim.RMSprop (or of an older PyTorch) may lack these keys.
    _load_defaults: ClassVar[dict[str, Any]] = {
        "momentum": 0,
        "centered": False,
        "foreach": None,
        "maximize": False,
        "differentiable": False,
        "capturable": False,
        "decay": "weights",
    }

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        decay: DecayScope = "weights",
    ) -> None:
        common.reject_unsupported(type(self).__name__, capturable=capturable,
                                  differentiable=differentiable)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "alpha": alpha,
            "eps": eps,
            "centered": centered,
            "weight_decay": weight_decay,
            "capturable": False,
            "foreach": foreach,
            "maximize": maximize,
            "differentiable": False,
            "decay": decay,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(options: dict[str, Any]) -> None:
        common.check_lr(options["lr"])
        common.check_eps(options["eps"])
        common.check_momentum(options["momentum"])
        common.check_weight_decay(options["weight_decay"])
        alpha = options["alpha"]
        common.check_nonnegative(alpha, "alpha", f"Invalid alpha value: {alpha}")
        check_decay_scope(options["decay"])

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        square_avgs: list[Tensor],
        grad_avgs: list[Tensor],
        momentum_buffers: list[Tensor],
        state_steps: list[Tensor],
        decayed: list[bool],
    ) -> None:
        """Fill the parallel lists with the group's tensors that have a gradient; create state."""
        with_momentum = group["momentum"] > 0
        centered = group["centered"]
        decay = group["decay"]
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            common.check_dense(grad, "RMSprop")
            state = self.state[p]
            if len(state) == 0:  # lazy initialization: t = 0, v_0 = 0
                state["step"] = common.new_step()
                state["square_avg"] = common.zero_buffer(p)
            # b_0 = 0 and ḡ_0 = 0, also when momentum or centered is switched on later
            if with_momentum:
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = common.zero_buffer(p)
                momentum_buffers.append(state["momentum_buffer"])
            if centered:
                if "grad_avg" not in state:
                    state["grad_avg"] = common.zero_buffer(p)
                grad_avgs.append(state["grad_avg"])
            params.append(p)
            grads.append(grad)
            square_avgs.append(state["square_avg"])
            state_steps.append(state["step"])
            decayed.append(is_decayed(p, decay))

    def _step_group(self, group: dict[str, Any]) -> None:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        square_avgs: list[Tensor] = []
        grad_avgs: list[Tensor] = []
        momentum_buffers: list[Tensor] = []
        state_steps: list[Tensor] = []
        decayed: list[bool] = []
        self._init_group(group, params, grads, square_avgs, grad_avgs, momentum_buffers,
                         state_steps, decayed)
        if not params:
            return

        rmsprop(
            params,
            grads,
            square_avgs,
            grad_avgs,
            momentum_buffers,
            state_steps,
            decayed,
            foreach=group["foreach"],
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    state_steps: list[Tensor],
    decayed: list[bool] | None = None,
    *,
    foreach: bool | None = None,
    lr: float | Tensor,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    r"""Functional RMSprop: update ``params`` and the state lists in place.

    See :class:`RMSprop` for the algorithm. The lists are parallel (one entry per tensor);
    ``grad_avgs`` is empty unless ``centered``, ``momentum_buffers`` empty unless μ > 0;
    ``state_steps`` holds scalar tensors, incremented here. ``decayed[i]`` says whether tensor i
    decays (None: all do). ``foreach=None`` chooses the kernel with
    :func:`optreg.optim._common.default_foreach`. Tensors must share one device and dtype.
    """
    if decayed is None:
        decayed = [True] * len(params)
    common.run_kernel(
        _single_tensor_rmsprop,
        _multi_tensor_rmsprop,
        (params, grads, square_avgs, grad_avgs, momentum_buffers, state_steps, decayed),
        foreach=foreach, lr=common.scalar(lr), alpha=alpha, eps=eps, weight_decay=weight_decay,
        momentum=momentum, centered=centered, maximize=maximize,
    )  # fmt: skip


def _single_tensor_rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    state_steps: list[Tensor],
    decayed: list[bool],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """Reference kernel: one tensor at a time, PyTorch's order of operations."""
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]  # g_t = ±∇f (never p.grad in place)
        square_avg = square_avgs[i]

        state_steps[i] += 1  # t ← t + 1

        if weight_decay != 0 and decayed[i]:
            grad = grad.add(param, alpha=weight_decay)  # g_t ← g_t + λθ  (a new tensor)

        square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)  # v_t = αv + (1 − α)g_t²

        if centered:
            grad_avg = grad_avgs[i]
            grad_avg.lerp_(grad, 1 - alpha)  # ḡ_t = αḡ + (1 − α)g_t
            avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()  # √(v_t − ḡ_t²)
        else:
            avg = square_avg.sqrt()  # √v_t
        avg.add_(eps)  # s_t = ... + ε

        if momentum > 0:
            buf = momentum_buffers[i]
            buf.mul_(momentum).addcdiv_(grad, avg)  # b_t = μb + g_t/s_t
            param.add_(buf, alpha=-lr)  # θ_t = θ − γb_t
        else:
            param.addcdiv_(grad, avg, value=-lr)  # θ_t = θ − γg_t/s_t


def _multi_tensor_rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    state_steps: list[Tensor],
    decayed: list[bool],
    *,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """Foreach kernel: the single-tensor kernel's lines, each over the whole list."""
    if not params:
        return
    if maximize:
        grads = torch._foreach_neg(grads)  # g_t = −∇f (new tensors, never p.grad in place)

    common.foreach_increment(state_steps)  # t ← t + 1

    if weight_decay != 0:  # g_t ← g_t + λθ (in place only on the copies made for maximize)
        grads = common.foreach_add_decay(grads, params, decayed, weight_decay, in_place=maximize)

    torch._foreach_mul_(square_avgs, alpha)  # v_t = αv ...
    torch._foreach_addcmul_(square_avgs, grads, grads, value=1 - alpha)  # ... + (1 − α)g_t²

    if centered:
        torch._foreach_lerp_(grad_avgs, grads, 1 - alpha)  # ḡ_t = αḡ + (1 − α)g_t
        avg = torch._foreach_addcmul(square_avgs, grad_avgs, grad_avgs, value=-1)  # v_t − ḡ_t²
        torch._foreach_sqrt_(avg)  # √(v_t − ḡ_t²)
    else:
        avg = torch._foreach_sqrt(square_avgs)  # √v_t
    torch._foreach_add_(avg, eps)  # s_t = ... + ε

    if momentum > 0:
        torch._foreach_mul_(momentum_buffers, momentum)  # b_t = μb ...
        torch._foreach_addcdiv_(momentum_buffers, grads, avg)  # ... + g_t/s_t
        torch._foreach_add_(params, momentum_buffers, alpha=-lr)  # θ_t = θ − γb_t
    else:
        torch._foreach_addcdiv_(params, grads, avg, value=-lr)  # θ_t = θ − γg_t/s_t

