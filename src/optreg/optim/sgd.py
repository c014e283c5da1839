r"""SGD with momentum, Nesterov momentum and L2 on chosen tensors, bit-comparable to torch.optim.

The file reads like ``torch/optim/sgd.py``: the :class:`SGD` class (validation, state, one step
of a param group; its base :class:`optreg.optim._common.Optimizer` does the rest), then
:func:`sgd`, the functional entry point, next to the two kernels it chooses between:
:func:`_single_tensor_sgd`, the reference (one tensor at a time), and :func:`_multi_tensor_sgd`,
the same lines over lists with ``torch._foreach_*``. Each kernel line is tagged with the equation
it implements; the arithmetic is in place and in PyTorch's order, so each kernel reproduces
``torch.optim.SGD`` with the matching ``foreach`` bit for bit.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim.optimizer import ParamsT

from optreg.optim import _common as common
from optreg.regularization import DecayScope, check_decay_scope, is_decayed

__all__ = ["SGD", "sgd"]


class SGD(common.Optimizer):
    r"""Stochastic gradient descent with (Nesterov) momentum and coupled L2 on chosen tensors.

    Symbols and arguments: γ = ``lr``, μ = ``momentum``, τ = ``dampening``, λ = ``weight_decay``,
    b = ``state["momentum_buffer"]``, g_t = ∇f(θ_{t-1}) (−∇f if ``maximize``). Weight decay only
    touches the tensors selected by ``decay``. One step for each tensor θ that has a gradient::

        L2 (coupled)     g_t ← g_t + λ·θ_{t-1}
        momentum (μ ≠ 0) b_1 = g_1,   b_t = μ·b_{t-1} + (1 − τ)·g_t   (t > 1)
        direction        d_t = g_t (μ = 0),   b_t (heavy ball),   g_t + μ·b_t (``nesterov``)
        update           θ_t = θ_{t-1} − γ·d_t

    As computed (PyTorch's order; each kernel line is tagged with its equation)::

        g ← −∇f                                   maximize: a new tensor (p.grad is never written)
        g ← g + λ·θ                               add(alpha=λ), a new tensor, on decayed tensors
        b ← copy of g (first step)  or  b ← μ·b + (1 − τ)·g           clone / mul_, add_
        d ← g + μ·b (Nesterov, a new tensor)  or  d ← b
        θ ← θ − γ·d                               add_(alpha=−γ)

    Notes on conventions:

    * **Heavy ball (Polyak 1964).** With a constant γ the update is
      θ_t = θ_{t-1} − γ·g_t + μ·(θ_{t-1} − θ_{t-2}) (for τ = 0). PyTorch (and optreg) keep γ
      outside the buffer (b = μ·b + g, θ ← θ − γ·b) where Sutskever et al. accumulate the
      velocity v = μ·v − γ·g; the two agree for a constant γ, but under a schedule a new γ here
      rescales the whole accumulated step at once.
    * **Nesterov (Sutskever et al. 2013).** NAG evaluates the gradient at the look-ahead point
      θ + μ·v. Written in the look-ahead variable (Bengio et al. 2013, the form PyTorch uses) it
      needs no second gradient: d_t = g_t + μ·b_t. It requires μ > 0 and τ = 0.
    * **The first buffer is the gradient**, b_1 = g_1 (not (1 − τ)·g_1): dampening acts from the
      second step on, as in PyTorch.
    * **Momentum as Adam's first moment.** With τ = μ the buffer is an exponential moving
      average, b_t = μ·b_{t-1} + (1 − μ)·g_t: Adam's first moment m_t with β₁ = μ, without bias
      correction and started at b_1 = g_1 instead of m_0 = 0, so b_t = m_t + μᵗ·g_1 (Adam divides
      by 1 − μᵗ instead; both remove the start-up bias, b_1 = m̂_1 = g_1). With the default τ = 0
      the buffer is a plain sum, b_t = Σ_k μ^{t−k}·g_k, about 1/(1 − μ) times that average once it
      has warmed up: the effective learning rate is γ/(1 − μ).
    * **Coupled = decoupled for SGD.** Without momentum, θ − γ·(g + λ·θ) = θ·(1 − γ·λ) − γ·g: L2
      in the gradient and weight decay are the same update (Loshchilov & Hutter 2019, Prop. 1),
      so SGD offers only the coupled form (with momentum they differ: λ·θ enters the buffer).
      ``weight_decay`` is the raw coefficient, as in PyTorch; the loss
      ``optreg.CrossEntropyLoss(l2=λ)`` (penalty λ/(2B)·Σ‖W‖², B the batch size) matches
      ``weight_decay=optreg.regularization.l2_to_weight_decay(λ, B)`` (= λ/B).
    * **Which tensors decay.** ``decay="weights"`` (default) decays only tensors with ``ndim > 1``
      (weight matrices, conv kernels; not biases), via ``optreg.regularization.is_decayed``;
      ``decay="all"`` decays every tensor, as PyTorch does. A param group may set its own
      ``weight_decay`` or ``decay``.
    * **Signature and state** are PyTorch's: the positional order (params, lr, momentum,
      dampening, weight_decay, nesterov), the keyword-only flags, the param-group keys and the
      state key ``momentum_buffer`` (only with μ ≠ 0), so code and state dicts move between
      ``optreg.SGD`` and ``torch.optim.SGD``. optreg's ``decay`` is keyword-only, after torch's.
      ``differentiable`` and ``fused`` exist so that calls bind as in torch; True is refused
      (``ValueError``): optreg implements the two eager kernels only. ``lr`` and
      ``weight_decay`` may be one-element tensors; the kernels read them as Python numbers,
      exactly as PyTorch's ops read them, so the bits are the same.
    * **Kernels.** ``foreach=False``: one tensor at a time; bit-identical to
      ``torch.optim.SGD(foreach=False)``. ``foreach=True``: the same lines with
      ``torch._foreach_*``; bit-identical to ``foreach=True`` in PyTorch and, on CPU, to the
      single-tensor kernel. On CPU it runs over cache-sized buckets of consecutive tensors.
      ``foreach=None`` chooses as for Adam (:func:`optreg.optim._common.default_foreach`).
      A group with a sparse gradient (``nn.Embedding(sparse=True)``) always takes the
      single-tensor kernel, whose ops accept sparse tensors (PyTorch loops per tensor there too);
      a tensor with a sparse gradient must not decay (λθ is dense: a clear ``RuntimeError``,
      where PyTorch fails inside ``add``).
    * **Divergences from PyTorch.** ``p.grad`` is never modified: PyTorch's foreach kernel adds
      μ·b into ``p.grad`` in place for Nesterov (when neither ``maximize`` nor weight decay made
      a copy); optreg computes the same values into new tensors. The Nesterov condition
      (μ > 0, τ = 0) is checked for every param group, not only for the constructor's defaults.
      Param groups must be homogeneous (one device and dtype; ``ValueError`` otherwise) and
      real; momentum values μ ≥ 1, which diverge, are accepted, as PyTorch does.

    Args:
        params: iterable of tensors, of ``(name, tensor)`` pairs, or of param-group dicts.
        lr: learning rate γ, a float or a one-element tensor (default 1e-3).
        momentum: momentum factor μ >= 0 (default 0: plain SGD).
        dampening: τ, the gradient's weight in the buffer is 1 − τ (default 0).
        weight_decay: λ, the raw coefficient of coupled L2, a float or a one-element tensor
            (default 0).
        nesterov: use Nesterov momentum; needs μ > 0 and τ = 0 (default False).
        maximize: maximize the objective instead of minimizing it (default False).
        foreach: True: multi-tensor kernel; False: single-tensor kernel; None: choose by device
            and size (see above).
        differentiable, fused: torch's flags; only their defaults are accepted.
        decay: ``"weights"`` (only tensors with ``ndim > 1``) or ``"all"`` tensors decay.

    References:
        * Polyak, "Some methods of speeding up the convergence of iteration methods", USSR
          Computational Mathematics and Mathematical Physics 4(5), 1964.
          https://doi.org/10.1016/0041-5553(64)90137-5
        * Sutskever, Martens, Dahl & Hinton, "On the importance of initialization and momentum
          in deep learning", ICML 2013. https://proceedings.mlr.press/v28/sutskever13.html
        * Bengio, Boulanger-Lewandowski & Pascanu, "Advances in optimizing recurrent networks",
          ICASSP 2013. https://arxiv.org/abs/1212.0901
        * Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
          https://arxiv.org/abs/1711.05101
    """

    # A loaded state dict of torch.optim.SGD (or of an older PyTorch) may lack these keys.
    _load_defaults: ClassVar[dict[str, Any]] = {
        "nesterov": False,
        "maximize": False,
        "foreach": None,
        "differentiable": False,
        "fused": None,
        "decay": "weights",
    }

    def __init__(
        self,
        params: ParamsT,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        decay: DecayScope = "weights",
    ) -> None:
        common.reject_unsupported(type(self).__name__, differentiable=differentiable, fused=fused)
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "dampening": dampening,
            "weight_decay": weight_decay,
            "nesterov": nesterov,
            "maximize": maximize,
            "foreach": foreach,
            "differentiable": False,
            "fused": None,
            "decay": decay,
        }
        super().__init__(params, defaults)

    @staticmethod
    def _check_group(options: dict[str, Any]) -> None:
        common.check_lr(options["lr"])
        momentum, dampening = options["momentum"], options["dampening"]
        common.check_momentum(momentum)
        if not math.isfinite(common.number(dampening, "dampening")):
            raise ValueError(f"dampening must be a finite number, got {dampening}")
        weight_decay = options["weight_decay"]
        if isinstance(weight_decay, Tensor):
            if weight_decay.numel() != 1:
                raise ValueError("weight_decay: a tensor weight_decay must have exactly one "
                                 f"element, got {weight_decay.numel()}")
            weight_decay = weight_decay.item()
        common.check_weight_decay(weight_decay)
        check_decay_scope(options["decay"])
        if options["nesterov"] and (momentum <= 0 or dampening != 0):
            raise common.invalid(
                f"nesterov=True needs momentum > 0 and dampening = 0, got momentum={momentum}, "
                f"dampening={dampening}",
                "Nesterov momentum requires a momentum and zero dampening",
            )

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        momentum_buffers: list[Tensor | None],
        decayed: list[bool],
    ) -> bool:
        """Fill the parallel lists with the group's tensors that have a gradient.

        ``momentum_buffers`` (only with μ ≠ 0) gets each tensor's buffer, or None where there is
        none yet: the kernel creates it as b_1 = g_1. Returns whether a gradient is sparse.
        """
        with_momentum = group["momentum"] != 0
        decay = group["decay"]
        has_sparse_grad = False
        for p in group["params"]:
            grad = p.grad
            if grad is None:
                continue
            p_decays = is_decayed(p, decay)
            if grad.is_sparse:
                if p_decays and group["weight_decay"] != 0:  # g + λθ: sparse + dense
                    raise RuntimeError(
                        f"optreg.optim.SGD: weight decay needs a dense gradient, got a sparse "
                        f"one for a decayed tensor of shape {tuple(p.shape)}; give it a param "
                        f"group with weight_decay=0 (torch.optim.SGD cannot add them either)"
                    )
                has_sparse_grad = True
            params.append(p)
            grads.append(grad)
            decayed.append(p_decays)
            if with_momentum:  # without momentum SGD keeps no state (as PyTorch)
                momentum_buffers.append(self.state[p].get("momentum_buffer"))
        return has_sparse_grad

    def _step_group(self, group: dict[str, Any]) -> None:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        momentum_buffers: list[Tensor | None] = []
        decayed: list[bool] = []
        has_sparse_grad = self._init_group(group, params, grads, momentum_buffers, decayed)
        if not params:
            return

        sgd(
            params,
            grads,
            momentum_buffers,
            decayed,
            foreach=False if has_sparse_grad else group["foreach"],
            lr=group["lr"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )
        if group["momentum"] != 0:
            for p, buf in zip(params, momentum_buffers, strict=True):
                self.state[p]["momentum_buffer"] = buf


def sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    decayed: list[bool] | None = None,
    *,
    foreach: bool | None = None,
    lr: float | Tensor,
    weight_decay: float | Tensor,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    r"""Functional SGD: update ``params`` and ``momentum_buffers`` in place.

    See :class:`SGD` for the algorithm. The lists are parallel (one entry per tensor);
    ``momentum_buffers`` is empty when μ = 0, and a None entry is replaced by the new buffer
    b_1 = g_1. ``decayed[i]`` says whether tensor i decays (None: all do). ``foreach=None``
    chooses the kernel with :func:`optreg.optim._common.default_foreach`; sparse gradients need
    ``foreach=False``. Tensors must share one device and dtype.
    """
    if decayed is None:
        decayed = [True] * len(params)
    calls = common.run_kernel(
        _single_tensor_sgd,
        _multi_tensor_sgd,
        (params, grads, momentum_buffers, decayed),
        foreach=foreach, lr=common.scalar(lr), weight_decay=common.scalar(weight_decay),
        momentum=momentum, dampening=dampening, nesterov=nesterov, maximize=maximize,
    )  # fmt: skip
    if len(calls) > 1:  # each bucket filled its own copy of the list; buckets are consecutive
        momentum_buffers[:] = [buf for call in calls for buf in call[2]]


def _single_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    decayed: list[bool],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """Reference kernel: one tensor at a time, PyTorch's order of operations."""
    for i, param in enumerate(params):
        grad = grads[i] if not maximize else -grads[i]  # g_t = ±∇f (never p.grad in place)

        if weight_decay != 0 and decayed[i]:
            grad = grad.add(param, alpha=weight_decay)  # g_t ← g_t + λθ  (a new tensor)

        if momentum != 0:
            buf = momentum_buffers[i]
            if buf is None:
                buf = momentum_buffers[i] = grad.clone()  # b_1 = g_1
            else:
                buf.mul_(momentum).add_(grad, alpha=1 - dampening)  # b_t = μb + (1 − τ)g_t
            grad = grad.add(buf, alpha=momentum) if nesterov else buf  # d_t = g_t + μb_t | b_t

        param.add_(grad, alpha=-lr)  # θ_t = θ − γd_t


def _multi_tensor_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    decayed: list[bool],
    *,
    lr: float,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """Foreach kernel: the single-tensor kernel's lines, each over the whole list."""
    if not params:
        return
    if maximize:
        grads = torch._foreach_neg(grads)  # g_t = −∇f (new tensors, never p.grad in place)

    if weight_decay != 0:  # g_t ← g_t + λθ (in place only on the copies made for maximize)
        grads = common.foreach_add_decay(grads, params, decayed, weight_decay, in_place=maximize)

    if momentum != 0:
        if all(buf is not None for buf in momentum_buffers):
            torch._foreach_mul_(momentum_buffers, momentum)  # b_t = μb ...
            torch._foreach_add_(momentum_buffers, grads, alpha=1 - dampening)  # ... + (1 − τ)g_t
        else:  # a first step for some tensors: the single-tensor lines, tensor by tensor
            for i, buf in enumerate(momentum_buffers):
                if buf is None:
                    momentum_buffers[i] = grads[i].clone()  # b_1 = g_1
                else:
                    buf.mul_(momentum).add_(grads[i], alpha=1 - dampening)  # b_t = μb + (1 − τ)g
        if nesterov:
            grads = torch._foreach_add(grads, momentum_buffers, alpha=momentum)  # d_t = g + μb_t
        else:
            grads = momentum_buffers  # d_t = b_t

    torch._foreach_add_(params, grads, alpha=-lr)  # θ_t = θ − γd_t

