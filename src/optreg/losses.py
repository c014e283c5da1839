r"""Cross-entropy from scratch (log-sum-exp form) and the L2 penalty, proven equal to PyTorch's.

The file reads: :class:`CrossEntropyLoss` (the module, with the optional L2 penalty), then its
functional twin :func:`cross_entropy`, then :func:`l2_penalty`, then the private input checks.
Both take torch 2.13's arguments at torch's positions (``weight``, ``size_average``,
``ignore_index``, ``reduce``, ``reduction``, ``label_smoothing``); optreg's own follow,
keyword-only.

Cross-entropy for one sample with raw logits :math:`z_i \in \mathbb{R}^C`, a target distribution
:math:`q_i` over the :math:`C` classes and class weights :math:`w` (all 1 without ``weight``)::

    ℓ_i    = −Σ_c w_c · q_ic · (z_ic − lse(z_i))           (z − lse(z) is the log-softmax)
    lse(z) = m + log Σ_c exp(z_c − m),   m = max_c z_c      (max-shift: no exp overflows)

The log-softmax ``z − lse(z)`` is computed directly; ``log(softmax(z))`` is never formed, so a
probability that underflows to 0 never meets a ``log`` and ``q_ic = 0`` never gives ``0·(−∞)``.
The mean divides by the summed weight of the counted samples for class-index targets and by N
for probability targets, as torch does (see :class:`CrossEntropyLoss`).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Literal

import torch
from torch import Tensor, nn

from optreg.regularization import DecayScope, check_decay_scope, decayed, l2_to_weight_decay

__all__ = ["CrossEntropyLoss", "cross_entropy", "l2_penalty"]

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")
# torch.nn._reduction.legacy_get_string's warning, word for word.
_LEGACY_WARNING = (
    "size_average and reduce args will be deprecated, please use reduction='{}' instead."
)


class CrossEntropyLoss(nn.Module):
    r"""Cross-entropy on raw logits, optionally plus the L2 penalty λ/(2B)·Σ‖W‖².

    Symbols and arguments: :math:`z` = ``input``, the logits (N, C); :math:`y` = ``target``;
    :math:`w` = ``weight`` (all 1 when None); ε = ``label_smoothing``; λ = ``l2``; :math:`B` =
    ``input.shape[0]``, the batch size of the call.

    **Targets.** Either class indices, shape (N,), dtype ``int64`` (or ``uint8``, as torch
    allows), turned into one-hot rows :math:`y_i = e_{t_i}`; or class probabilities (soft or
    one-hot), shape (N, C), floating. Label smoothing mixes the target with the uniform
    distribution before the loss is taken, and each class term is scaled by its weight::

        q_i = (1 − ε)·y_i + ε/C

        ℓ_i = −Σ_c w_c · q_ic · (z_ic − lse(z_i))
        lse(z) = m + log Σ_c exp(z_c − m),   m = max_c z_c

    For index targets this is computed in torch's two parts (``cross_entropy_loss_label_smoothing``
    in ATen's LossNLL.cpp): one gather gives NLL, one matrix-vector product with ``w`` gives S::

        ℓ_i = (1−ε)·NLL_i + (ε/C)·S_i,    NLL_i = w_{t_i}·(lse(z_i) − z_{i,t_i})
                                          S_i   = Σ_c w_c·(lse(z_i) − z_ic)

    **Reductions** (``reduction``), with :math:`K` = the samples whose index is not
    ``ignore_index``::

        "none": (ℓ_1, …, ℓ_N)                  ignored samples give 0
        "sum":  Σ_{i∈K} ℓ_i
        "mean": Σ_{i∈K} ℓ_i / Σ_{i∈K} w_{t_i}   index targets: the weighted mean (|K| without
                                               ``weight``; nan when the sum is 0, as in torch)
                Σ_i ℓ_i / N                    probability targets, with or without ``weight``

    For index targets with ε > 0 the mean is taken of NLL and S apart and then mixed,
    ``(1−ε)·mean(NLL) + (ε/C)·mean(S)``, as torch does: the same number, and nan (not ±inf) when
    the summed weight is 0. ``ignore_index`` applies to index targets only. As in torch 2.13,
    probability targets reject an ``ignore_index >= 0`` (``ValueError`` here) and silently accept
    a negative one.

    **Class weights** (``weight``): a 1-D floating tensor of C weights on the device of the
    logits, kept as the buffer ``weight`` as torch keeps it (so ``state_dict`` keys,
    ``.to(dtype)`` and ``.to(device)`` behave alike). For index targets its dtype must be that of
    the logits (torch raises otherwise); for probability targets it takes part in type promotion,
    as in torch. Integer weights are refused for both (torch accepts them with probabilities
    only). Unlike torch, the index-target loss is differentiable in ``weight`` too.

    **Deprecated flags** (``size_average``, ``reduce``): as in torch, if either is not None they
    decide the reduction and ``reduction`` is ignored: ``reduce=False`` gives ``"none"``,
    otherwise ``size_average=False`` gives ``"sum"``, otherwise ``"mean"`` (None counts as
    True; ``torch.nn._reduction.legacy_get_string``), with torch's ``UserWarning`` "size_average
    and reduce args will be deprecated, please use reduction='…' instead."

    **L2 penalty.** With ``l2 = λ > 0`` and ``params`` given, the call returns::

        J = data + R,    R = λ/(2B) · Σ_W ‖W‖²,    ∂R/∂W = (λ/B)·W

    over the tensors that :func:`optreg.regularization.is_decayed` selects (``decay="weights"``:
    ``ndim > 1``, so biases are skipped; ``decay="all"``: every tensor). The gradient ``(λ/B)·W``
    is exactly what coupled L2 in the optimizer adds with ``weight_decay = λ/B``
    (:func:`optreg.regularization.l2_to_weight_decay`), so L2 in the loss with
    ``Adam(weight_decay=0)`` and L2 in ``Adam(weight_decay=λ/B)`` are one regulariser written two
    ways. The penalty needs ``reduction="mean"``: its 1/B pairs with the mean over the batch.
    B is ``input.shape[0]``, ignored samples included, so B is known without a host read; class
    weights do not change it either: the data term is then the weighted mean (÷ Σ w_{t_i}) and
    the penalty still λ/(2B)·Σ‖W‖², so the equivalence with ``weight_decay = λ/B`` holds as is.
    ``params`` is copied into a list at construction (a generator such as ``model.parameters()``
    would run dry after one call and silently drop the penalty); the list holds references, so
    in-place updates by the optimizer are seen.

    **Data term vs penalised objective.** ``forward`` returns the penalised objective ``J``
    (what to call ``backward`` on). After each call, :attr:`last_data_term` holds the
    cross-entropy part and :attr:`last_penalty` the penalty part, both detached 0-d tensors:
    nothing is recomputed and nothing is read to the host until the caller asks (``.item()``).
    :meth:`penalty` gives the differentiable penalty for any batch size.

    **Checks.** Shapes and dtypes (of ``weight`` too) are checked on every call (free: no data is
    read). With ``validate=True`` (default) index targets are also range-checked: one
    ``aminmax`` over the targets and a read of the two results (a device sync on GPU).
    ``validate=False`` skips that read; an out-of-range index then fails inside ``gather`` (a
    terse ``RuntimeError`` on CPU), and since it is then unknown whether any sample is ignored,
    the masked path always runs (a few more small kernels: worth it on GPU, where the read is a
    sync; not on CPU). NaN/Inf logits are not checked: like torch, they propagate to NaN in the
    loss of their row.

    Args:
        weight: class weights, a 1-D floating tensor of C values, or None (all 1).
        size_average: deprecated (torch's legacy flag, see above); None to use ``reduction``.
        ignore_index: class index whose samples contribute neither loss nor gradient.
        reduce: deprecated (torch's legacy flag, see above); None to use ``reduction``.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        label_smoothing: ε in [0, 1].
        params: tensors for the L2 penalty (e.g. ``model.parameters()``); needed when ``l2 > 0``.
        l2: λ >= 0, the penalty coefficient at batch size B; 0 (default) turns it off.
        decay: which of ``params`` are penalised: ``"weights"`` (``ndim > 1``) or ``"all"``.
        validate: range-check index targets (see above).

    Example::

        >>> model = nn.Linear(4, 3)
        >>> loss_fn = CrossEntropyLoss(torch.tensor([1.0, 2.0, 0.5]), params=model.parameters(),
        ...                            l2=0.1)
        >>> x, t = torch.randn(8, 4), torch.randint(3, (8,))
        >>> J = loss_fn(model(x), t)
        >>> J.backward()
        >>> bool(torch.isclose(J, loss_fn.last_data_term + loss_fn.last_penalty))
        True

    References:
        Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", 2016
        (label smoothing), https://arxiv.org/abs/1512.00567
    """

    weight: Tensor | None

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average: bool | None = None,
        ignore_index: int = -100,
        reduce: bool | None = None,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        *,
        params: Iterable[Tensor] | None = None,
        l2: float = 0.0,
        decay: DecayScope = "weights",
        validate: bool = True,
    ) -> None:
        super().__init__()
        if size_average is not None or reduce is not None:
            reduction = _legacy_reduction(size_average, reduce)
        _check_options(reduction, label_smoothing, ignore_index)
        if weight is not None:
            _check_weight(weight)
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
        self.register_buffer("weight", weight)  # a buffer, as in torch: state_dict, .to(...)
        self.reduction = reduction
        self.label_smoothing = label_smoothing
        self.ignore_index = ignore_index
        self.l2 = l2
        self.decay = decay
        self.validate = validate
        self.l2_params: list[Tensor] = l2_params
        self.last_data_term: Tensor | None = None
        self._last_penalty: Tensor | None = None

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        """Return the penalised objective ``data + λ/(2B)·Σ‖W‖²`` (just ``data`` when ``l2=0``)."""
        data = cross_entropy(
            input,
            target,
            self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            validate=self.validate,
        )
        self.last_data_term = data.detach()
        if self.l2 == 0.0:
            self._last_penalty = None
            return data
        penalty = l2_penalty(self.l2_params, self.l2, input.shape[0])
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
        weight = None if self.weight is None else tuple(self.weight.shape)
        return (
            f"weight={weight}, reduction={self.reduction!r}, "
            f"label_smoothing={self.label_smoothing}, ignore_index={self.ignore_index}, "
            f"l2={self.l2}, decay={self.decay!r}, n_l2_tensors={len(self.l2_params)}"
        )


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: Reduction = "mean",
    label_smoothing: float = 0.0,
    *,
    validate: bool = True,
) -> Tensor:
    """Cross-entropy of raw logits ``input`` (N, C) against index or probability targets.

    See :class:`CrossEntropyLoss` for the equations, the arguments and the checks; this is the
    same computation without the L2 penalty, equal to ``torch.nn.functional.cross_entropy`` and
    called like it (``size_average``/``reduce`` override ``reduction`` with torch's warning).
    """
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce)
    _check_options(reduction, label_smoothing, ignore_index)
    logits = input  # torch's name for the argument; the raw logits z
    index_target = _check_inputs(logits, target)
    if weight is not None:
        _check_weight_fits(weight, logits, index_target)
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
        terms = q * log_p if weight is None else q * log_p * weight  # (0·finite = 0: no nan)
        return _reduce(-terms.sum(dim=1), reduction, None)  # ℓ_i = −Σ_c w_c·q_ic·log p_ic

    any_ignored = True  # without validation we cannot know, so always mask
    if validate:
        any_ignored = _check_index_range(target, n_classes, ignore_index)
    if target.dtype != torch.long:  # uint8 is allowed, gather needs int64
        target = target.long()
    keep = None
    if any_ignored:
        keep = target != ignore_index
        target = torch.where(keep, target, 0)  # any valid index: the row is zeroed below

    # NLL_i = w_{t_i}·(lse − z_{i,t_i}), written with s = z − m; the mean divides by Σ_K w_{t_i}
    # (`counted`: the kept samples' weights, or the keep mask itself; None: all N count 1).
    nll = log_sum - shifted.gather(1, target.unsqueeze(1)).squeeze(1)
    counted = keep
    if weight is not None:
        target_weight = weight[target]
        nll = target_weight * nll
        counted = _kept(target_weight, keep)
    loss = _reduce(_kept(nll, keep), reduction, counted)
    if eps == 0.0:
        return loss
    # S_i = Σ_c w_c·(lse − z_ic) = (Σ_c w_c)·(lse − m) − Σ_c w_c·s_ic: no (N, C) product.
    if weight is None:
        smooth = n_classes * log_sum - shifted.sum(dim=1)
    else:
        smooth = weight.sum() * log_sum - shifted @ weight
    # Reduced apart, then mixed, as torch does: a mean over zero weight is nan, as in torch.
    return (1.0 - eps) * loss + (eps / n_classes) * _reduce(_kept(smooth, keep), reduction, counted)


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


def _kept(values: Tensor, keep: Tensor | None) -> Tensor:
    """``values`` with the ignored samples set to 0 (``where``, not ×0: a nan there stays out)."""
    return values if keep is None else torch.where(keep, values, 0.0)


def _reduce(loss: Tensor, reduction: str, counted: Tensor | None) -> Tensor:
    """Apply ``reduction`` to the per-sample losses; the mean divides by ``Σ counted`` (or N).

    ``counted`` is the per-sample denominator: the keep mask (each kept sample counts 1) or the
    kept samples' class weights; 0/0 = nan when nothing counts, as in torch.
    """
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if counted is None:
        return loss.mean()
    return loss.sum() / counted.sum()


def _legacy_reduction(size_average: bool | None, reduce: bool | None) -> Reduction:
    """torch's deprecated flags as a reduction (``torch.nn._reduction.legacy_get_string``).

    None counts as True; ``reduce`` false gives "none", else ``size_average`` false "sum", else
    "mean". Warns with torch's text, pointing at the caller of the public function.
    """
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    reduction: Reduction = ("mean" if size_average else "sum") if reduce else "none"
    warnings.warn(_LEGACY_WARNING.format(reduction), stacklevel=3)
    return reduction


def _check_options(reduction: str, label_smoothing: float, ignore_index: int) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:  # also rejects nan
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise TypeError(f"ignore_index must be an int, got {type(ignore_index).__name__}")


def _check_weight(weight: object) -> None:
    """What a class-weight tensor must be whatever the logits: a 1-D floating tensor."""
    if not isinstance(weight, Tensor):
        raise TypeError(
            f"weight must be a 1-D tensor of class weights or None, got {type(weight).__name__}"
        )
    if weight.ndim != 1:
        raise ValueError(
            f"weight must be 1-D, one value per class, got shape {tuple(weight.shape)}"
        )
    if not weight.is_floating_point():
        raise TypeError(f"weight must be floating point, got dtype {weight.dtype}")


def _check_weight_fits(weight: Tensor, logits: Tensor, index_target: bool) -> None:
    """``weight`` is a class-weight tensor for these logits: C values, same device (no read)."""
    _check_weight(weight)  # the caller's annotation is no guarantee: a list fails here first
    n_classes = logits.shape[1]
    if weight.shape[0] != n_classes:
        raise ValueError(
            f"weight must have one value per class: logits have C={n_classes}, "
            f"weight has shape {tuple(weight.shape)}"
        )
    if weight.device != logits.device:
        raise ValueError(f"weight is on {weight.device} but logits are on {logits.device}")
    if index_target and weight.dtype != logits.dtype:
        raise TypeError(
            f"weight has dtype {weight.dtype} but logits {logits.dtype}: with class-index "
            "targets they must match, as in torch (convert one of them)"
        )


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
