r"""Cross-entropy from scratch (log-sum-exp form) and the L2 penalty, proven equal to PyTorch's.

The file reads: :class:`CrossEntropyLoss` (the module, with the optional L2 penalty), then its
functional twin :func:`cross_entropy`, then :func:`l2_penalty`, then the private input checks.

Cross-entropy for one sample with raw logits :math:`z_i \in \mathbb{R}^C` and a target
distribution :math:`q_i` over the :math:`C` classes::

    ℓ_i    = −Σ_c q_ic · (z_ic − lse(z_i))                 (z − lse(z) is the log-softmax)
    lse(z) = m + log Σ_c exp(z_c − m),   m = max_c z_c      (max-shift: no exp overflows)

The log-softmax ``z − lse(z)`` is computed directly; ``log(softmax(z))`` is never formed, so a
probability that underflows to 0 never meets a ``log`` and ``q_ic = 0`` never gives ``0·(−∞)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor, nn

from optreg.regularization import DecayScope, check_decay_scope, decayed, l2_to_weight_decay

__all__ = ["CrossEntropyLoss", "cross_entropy", "l2_penalty"]

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")


class CrossEntropyLoss(nn.Module):
    r"""Cross-entropy on raw logits, optionally plus the L2 penalty λ/(2B)·Σ‖W‖².

    Symbols and arguments: :math:`z` = ``logits`` (N, C); :math:`y` = ``target``; ε =
    ``label_smoothing``; λ = ``l2``; :math:`B` = ``logits.shape[0]``, the batch size of the call.

    **Targets.** Either class indices, shape (N,), dtype ``int64`` (or ``uint8``, as torch
    allows), turned into one-hot rows :math:`y_i = e_{t_i}`; or class probabilities (soft or
    one-hot), shape (N, C), floating. Label smoothing mixes the target with the uniform
    distribution before the loss is taken::

        q_i = (1 − ε)·y_i + ε/C

        ℓ_i = −Σ_c q_ic · (z_ic − lse(z_i))
        lse(z) = m + log Σ_c exp(z_c − m),   m = max_c z_c

    For index targets this is computed as ``ℓ_i = lse_i − (1−ε)·z_{i,t_i} − (ε/C)·Σ_c z_ic``
    (the same number, as Σ_c q_ic = 1), which needs one gather instead of a full (N, C) product.

    **Reductions** (``reduction``), with :math:`K` = the samples whose index is not
    ``ignore_index``::

        "none": (ℓ_1, …, ℓ_N)          ignored samples give 0
        "sum":  Σ_{i∈K} ℓ_i
        "mean": Σ_{i∈K} ℓ_i / |K|       index targets (nan when |K| = 0, as in torch)
                Σ_i ℓ_i / N             probability targets

    ``ignore_index`` applies to index targets only. As in torch 2.13, probability targets reject
    an ``ignore_index >= 0`` (``ValueError`` here) and silently accept a negative one.

    **L2 penalty.** With ``l2 = λ > 0`` and ``params`` given, the call returns::

        J = data + R,    R = λ/(2B) · Σ_W ‖W‖²,    ∂R/∂W = (λ/B)·W

    over the tensors that :func:`optreg.regularization.is_decayed` selects (``decay="weights"``:
    ``ndim > 1``, so biases are skipped; ``decay="all"``: every tensor). The gradient ``(λ/B)·W``
    is exactly what coupled L2 in the optimizer adds with ``weight_decay = λ/B``
    (:func:`optreg.regularization.l2_to_weight_decay`), so L2 in the loss with
    ``Adam(weight_decay=0)`` and L2 in ``Adam(weight_decay=λ/B)`` are one regulariser written two
    ways. The penalty needs ``reduction="mean"``: its 1/B pairs with the mean over the batch.
    B is ``logits.shape[0]``, ignored samples included, so B is known without a host read.
    ``params`` is copied into a list at construction (a generator such as ``model.parameters()``
    would run dry after one call and silently drop the penalty); the list holds references, so
    in-place updates by the optimizer are seen.

    **Data term vs penalised objective.** ``forward`` returns the penalised objective ``J``
    (what to call ``backward`` on). After each call, :attr:`last_data_term` holds the
    cross-entropy part and :attr:`last_penalty` the penalty part, both detached 0-d tensors:
    nothing is recomputed and nothing is read to the host until the caller asks (``.item()``).
    :meth:`penalty` gives the differentiable penalty for any batch size.

    **Checks.** Shapes and dtypes are checked on every call (free: no data is read). With
    ``validate=True`` (default) index targets are also range-checked: one ``aminmax`` over the
    targets and a read of the two results (a device sync on GPU). ``validate=False`` skips that
    read; an out-of-range index then fails inside ``gather`` (a terse ``RuntimeError`` on CPU),
    and since it is then unknown whether any sample is ignored, the masked path always runs
    (a few more small kernels: worth it on GPU, where the read is a sync; not on CPU).
    NaN/Inf logits are not checked: like torch, they propagate to NaN in the loss of their row.

    Args:
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        label_smoothing: ε in [0, 1].
        ignore_index: class index whose samples contribute neither loss nor gradient.
        params: tensors for the L2 penalty (e.g. ``model.parameters()``); needed when ``l2 > 0``.
        l2: λ >= 0, the penalty coefficient at batch size B; 0 (default) turns it off.
        decay: which of ``params`` are penalised: ``"weights"`` (``ndim > 1``) or ``"all"``.
        validate: range-check index targets (see above).

    Example::

        >>> model = nn.Linear(4, 3)
        >>> loss_fn = CrossEntropyLoss(params=model.parameters(), l2=0.1)
        >>> x, t = torch.randn(8, 4), torch.randint(3, (8,))
        >>> J = loss_fn(model(x), t)
        >>> J.backward()
        >>> bool(torch.isclose(J, loss_fn.last_data_term + loss_fn.last_penalty))
        True

    References:
        Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016
        (label smoothing), https://arxiv.org/abs/1512.00567
    """

    def __init__(
        self,
        *,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        params: Iterable[Tensor] | None = None,
        l2: float = 0.0,
        decay: DecayScope = "weights",
        validate: bool = True,
    ) -> None:
        super().__init__()
        _check_options(reduction, label_smoothing, ignore_index)
        check_decay_scope(decay)
        if not l2 >= 0.0 or l2 == float("inf"):  # `not >=` also rejects nan
            raise ValueError(f"l2 must be a finite number >= 0, got {l2}")
        # Keep a list: a generator (model.parameters()) would be empty on the second call.
        l2_params = [] if params is None else decayed(params, decay)
        if l2 > 0.0:
            if params is None:
                raise ValueError(f"l2={l2} > 0 needs params (e.g. params=model.parameters())")
            if not l2_params:
                raise ValueError(
                    f"l2={l2} > 0 but no tensor in params is decayed with decay={decay!r} "
                    "(was the generator already consumed, or are there only biases?)"
                )
            if reduction != "mean":
                raise ValueError(
                    f"the L2 penalty λ/(2B)·Σ‖W‖² pairs with reduction='mean', got {reduction!r}"
                )
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.l2 = l2
        self.decay = decay
        self.validate = validate
        self.l2_params: list[Tensor] = l2_params
        self.last_data_term: Tensor | None = None
        self._last_penalty: Tensor | None = None

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """Return the penalised objective ``data + λ/(2B)·Σ‖W‖²`` (just ``data`` when ``l2=0``)."""
        data = cross_entropy(
            logits,
            target,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
            validate=self.validate,
        )
        self.last_data_term = data.detach()
        if self.l2 == 0.0:
            self._last_penalty = None
            return data
        penalty = l2_penalty(self.l2_params, self.l2, logits.shape[0])
        self._last_penalty = penalty.detach()
        return data + penalty

    @property
    def last_penalty(self) -> Tensor | None:
        """The detached penalty of the last call (a zero tensor when ``l2=0``; None before)."""
        if self._last_penalty is None and self.last_data_term is not None:
            return torch.zeros_like(self.last_data_term)
        return self._last_penalty

    def penalty(self, batch_size: int) -> Tensor:
        """The differentiable penalty λ/(2B)·Σ‖W‖² at ``B = batch_size`` (zero when ``l2=0``)."""
        if self.l2 == 0.0:
            return torch.zeros(())
        return l2_penalty(self.l2_params, self.l2, batch_size)

    def extra_repr(self) -> str:
        return (
            f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}, "
            f"ignore_index={self.ignore_index}, l2={self.l2}, decay={self.decay!r}, "
            f"n_l2_tensors={len(self.l2_params)}"
        )


def cross_entropy(
    logits: Tensor,
    target: Tensor,
    *,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    validate: bool = True,
) -> Tensor:
    """Cross-entropy of raw ``logits`` (N, C) against index or probability targets.

    See :class:`CrossEntropyLoss` for the equations, the arguments and the checks; this is the
    same computation without the L2 penalty, equal to ``torch.nn.functional.cross_entropy``.
    """
    _check_options(reduction, label_smoothing, ignore_index)
    index_target = _check_inputs(logits, target)
    n_classes = logits.shape[1]
    eps = label_smoothing

    # Max-shift. lse(z) = m + log Σ exp(z − m) holds for *any* m, so the value does not depend on
    # m and neither does the gradient: the path through m contributes ∂lse/∂m = 1 − Σ softmax = 0.
    # Detaching m drops a term that is exactly zero and spares a backward through amax.
    # m = max z makes every exponent <= 0: exp cannot overflow and the largest term is exp(0) = 1,
    # so the sum is in [1, C] and its log never sees 0.
    shifted = logits - logits.detach().amax(dim=1, keepdim=True)  # s = z − m
    log_sum = shifted.exp().sum(dim=1).log()  # lse(z) − m  (the m cancels in every ℓ below)

    if not index_target:
        if ignore_index >= 0:  # torch 2.13 raises here too; a negative one is silently unused
            raise ValueError(
                f"ignore_index={ignore_index} is not supported for probability targets "
                "(use a negative ignore_index, or class-index targets)"
            )
        log_p = shifted - log_sum.unsqueeze(1)  # z − lse(z): log-softmax, finite for finite z
        q = target if eps == 0.0 else target * (1.0 - eps) + eps / n_classes
        loss = -(q * log_p).sum(dim=1)  # ℓ_i = −Σ_c q_ic·log p_ic   (0·finite = 0: no nan)
        return _reduce(loss, reduction, None)

    any_ignored = True  # without validation we cannot know, so always mask
    if validate:
        any_ignored = _check_index_range(target, n_classes, ignore_index)
    if target.dtype != torch.long:  # uint8 is allowed, gather needs int64
        target = target.long()
    keep = None
    if any_ignored:
        keep = target != ignore_index
        target = torch.where(keep, target, 0)  # any valid index: the row is zeroed below

    # ℓ_i = lse − Σ_c q_ic·z_ic with q = (1−ε)·onehot(t) + ε/C, written with s = z − m.
    s_target = shifted.gather(1, target.unsqueeze(1)).squeeze(1)
    if eps == 0.0:
        loss = log_sum - s_target
    else:
        loss = log_sum - (1.0 - eps) * s_target - (eps / n_classes) * shifted.sum(dim=1)
    if keep is not None:
        loss = torch.where(keep, loss, 0.0)  # where, not ×0: a nan in an ignored row stays out
    return _reduce(loss, reduction, keep)


def l2_penalty(params: Iterable[Tensor], l2: float, batch_size: int) -> Tensor:
    """The L2 penalty λ/(2B)·Σ‖W‖² over *every* tensor of ``params``; its gradient is (λ/B)·W.

    Select the tensors first (``optreg.regularization.decayed(model.parameters())`` keeps the
    weights and skips the biases); :class:`CrossEntropyLoss` does that for you. The coefficient is
    ``wd/2`` with ``wd = l2_to_weight_decay(λ, B) = λ/B``, the matching coupled weight decay.
    """
    params = list(params)
    if not params:
        raise ValueError("l2_penalty got no tensors (was the generator already consumed?)")
    wd = l2_to_weight_decay(l2, batch_size)  # λ/B, validates l2 >= 0 and batch_size >= 1
    # One flat vector and one dot product: 2 kernels forward whatever the number of tensors.
    flat = torch.cat([p.reshape(-1) for p in params])
    return (0.5 * wd) * torch.dot(flat, flat)


# ----------------------------------------------------------------------------- private helpers


def _reduce(loss: Tensor, reduction: str, keep: Tensor | None) -> Tensor:
    """Apply ``reduction`` to the per-sample losses; the mean counts only the ``keep`` rows."""
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if keep is None:
        return loss.mean()
    return loss.sum() / keep.sum()  # 0/0 = nan when every sample is ignored, as in torch


def _check_options(reduction: str, label_smoothing: float, ignore_index: int) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:  # also rejects nan
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")


def _check_inputs(logits: Tensor, target: Tensor) -> bool:
    """Check shapes and dtypes (no data is read); return True for class-index targets."""
    if not isinstance(logits, Tensor) or not isinstance(target, Tensor):
        raise TypeError(
            f"logits and target must be tensors, got {type(logits).__name__} "
            f"and {type(target).__name__}"
        )
    if not logits.is_floating_point():
        raise TypeError(f"logits must be floating point, got dtype {logits.dtype}")
    if logits.ndim != 2:
        raise ValueError(f"logits must be 2-D (N, C), got shape {tuple(logits.shape)}")
    n, c = logits.shape
    if n == 0:
        raise ValueError(f"empty batch: logits has shape {tuple(logits.shape)}")
    if c == 0:
        raise ValueError(f"logits has no classes: shape {tuple(logits.shape)}")
    if target.ndim == 1:
        if target.dtype not in (torch.long, torch.uint8):
            hint = (
                " (for class probabilities pass shape (N, C))" if target.is_floating_point() else ""
            )
            raise TypeError(
                f"class-index targets of shape (N,) must be int64 (or uint8), "
                f"got {target.dtype}{hint}"
            )
        if target.shape[0] != n:
            raise ValueError(
                f"batch size mismatch: logits has N={n} rows, target has {target.shape[0]}"
            )
        return True
    if target.ndim == 2:
        if not target.is_floating_point():
            raise TypeError(
                f"probability targets of shape (N, C) must be floating point, got {target.dtype} "
                "(for class indices pass shape (N,))"
            )
        if target.shape != logits.shape:
            raise ValueError(
                f"probability targets must have the shape of logits {tuple(logits.shape)}, "
                f"got {tuple(target.shape)}"
            )
        return False
    raise ValueError(
        f"target must be class indices (N,) or class probabilities (N, C), "
        f"got shape {tuple(target.shape)}"
    )


def _check_index_range(target: Tensor, n_classes: int, ignore_index: int) -> bool:
    """Raise unless every index is in [0, C) or equals ``ignore_index``; say if any may be ignored.

    One ``aminmax`` kernel and a read of its two results. Only when an index falls outside
    [0, C) is the exact offending set computed (it may be ``ignore_index``, which is allowed).
    """
    lo, hi = torch.aminmax(target)
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= n_classes:
        bad = target[(target != ignore_index) & ((target < 0) | (target >= n_classes))]
        if bad.numel():
            raise ValueError(
                f"class index {int(bad[0])} is out of range [0, {n_classes}) "
                f"({bad.numel()} bad of {target.numel()}; ignore_index={ignore_index})"
            )
    return lo <= ignore_index <= hi
