r"""The catalogue: Adam and cross-entropy written plainly, the known mistakes as one-knob changes.

:class:`AdamVariant` is one Adam / Adam + L2 / AdamW step on flat vectors with every knob that a
known mistake turns (bias correction, where ε goes, which moments are stored back, how the decay
is scaled and applied, ...). Its defaults are the correct algorithm. :class:`LossVariant` is the
same for cross-entropy with the L2 penalty. A :class:`Mistake` turns exactly one knob of a
correct variant, so "the reference with one known mistake" is ``mistake.apply(base)``, and two
mistakes on different knobs compose into a pair.

The variants are written in the order a student writes them (m = β₁m + (1 − β₁)g,
m̂ = m/(1 − β₁ᵗ), θ −= lr·m̂/(√v̂ + ε)), not in torch's: the checks compare against torch's own
code, and use these only to name what a failing submission does (:mod:`optreg.check.diagnosis`).

Symbols: θ parameters (flat), g gradient, m, v the moments, t the step (1 on the first step),
γ = lr, λ the exercise's L2 coefficient, B the batch size; the decay coefficient is λ/B.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Correction = Literal["t", "none", "m_only", "v_only", "t+1", "t-1", "2t", "2t-1", "swapped"]
EpsPlace = Literal["after", "in_sqrt", "before_correction"]
Ema = Literal["standard", "no_one_minus", "swapped", "not_squared"]
Store = Literal["kept", "lost", "corrected"]
Direction = Literal["descent", "ascent", "none"]
DecayKind = Literal["none", "coupled", "decoupled", "both"]


@dataclass(frozen=True)
class Hyper:
    """The hyperparameters of a run: γ, β₁, β₂, ε, the exercise's λ and the batch size B."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    l2: float
    batch_size: int


@dataclass(frozen=True)
class AdamVariant:
    r"""One Adam step with knobs; the defaults (and ``decay``) give the correct algorithm.

    ``decay``: ``"coupled"`` is Adam + L2 (g ← g + c·θ before the moments), ``"decoupled"`` is
    AdamW (θ ← θ − γ^p·c·θ beside the Adam step, p = ``decay_lr_power``: 1 is torch's form,
    0 the paper's with a constant schedule η_t = 1), with c = λ / B^``batch_divisions`` (× ½ with
    ``half``) on the weights (``decay_scope="weights"``: tensors with ndim > 1) or on all tensors.
    """

    correction: Correction = "t"
    eps: EpsPlace = "after"
    sqrt: bool = True
    betas_swapped: bool = False
    m_ema: Ema = "standard"
    v_ema: Ema = "standard"
    m_store: Store = "kept"
    v_store: Store = "kept"
    direction: Direction = "descent"
    decay: DecayKind = "none"
    decay_scope: Literal["weights", "all"] = "weights"
    batch_divisions: int = 1
    half: bool = False
    decay_lr_power: int = 1
    decay_after_update: bool = False

    def canonical(self) -> AdamVariant:
        """The same update with the knobs that have no effect reset, so equal updates compare
        equal (without decay, how the decay would be scaled does not matter)."""
        if self.decay == "none":
            return replace(self, decay_scope="weights", batch_divisions=1, half=False,
                           decay_lr_power=1, decay_after_update=False)
        if self.decay == "coupled":
            return replace(self, decay_lr_power=1, decay_after_update=False)
        return self

    def init_state(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        """m_0 = v_0 = 0."""
        return torch.zeros_like(theta), torch.zeros_like(theta)

    def step(
        self,
        theta: Tensor,
        grad: Tensor,
        m: Tensor,
        v: Tensor,
        t: int,
        hyper: Hyper,
        weights: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One step at t (1-based): return (θ_t, the stored m, the stored v). ``weights`` is a
        0/1 mask of the elements that belong to tensors with ndim > 1."""
        beta1, beta2 = (hyper.beta2, hyper.beta1) if self.betas_swapped else (hyper.beta1,
                                                                              hyper.beta2)
        mask = weights if self.decay_scope == "weights" else torch.ones_like(weights)
        c = hyper.l2 / hyper.batch_size**self.batch_divisions * (0.5 if self.half else 1.0)
        if self.decay in ("coupled", "both"):
            grad = grad + c * mask * theta  # g ← g + c·θ
        m_new = _ema(m, grad, beta1, self.m_ema, squared=False)  # m = β₁m + (1 − β₁)g
        v_new = _ema(v, grad, beta2, self.v_ema, squared=True)  # v = β₂v + (1 − β₂)g²
        bc1, bc2 = self._corrections(t, beta1, beta2)
        m_hat, v_hat = m_new / bc1, v_new / bc2  # m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ)
        root = torch.sqrt if self.sqrt else _identity
        if self.eps == "after":
            denom = root(v_hat) + hyper.eps  # √v̂ + ε
        elif self.eps == "in_sqrt":
            denom = root(v_hat + hyper.eps)  # √(v̂ + ε)
        else:
            denom = (root(v_new) + hyper.eps) / (math.sqrt(bc2) if self.sqrt else bc2)
        update = m_hat / denom

        decay = self.decay in ("decoupled", "both")
        shrink = hyper.lr**self.decay_lr_power * c * mask  # γ·c (torch) or c (paper)
        new = theta - shrink * theta if decay and not self.decay_after_update else theta
        if self.direction == "descent":
            new = new - hyper.lr * update  # θ ← θ − γ·m̂/(√v̂ + ε)
        elif self.direction == "ascent":
            new = new + hyper.lr * update
        if decay and self.decay_after_update:
            new = new - shrink * new
        return new, _stored(m_new, m_hat, self.m_store), _stored(v_new, v_hat, self.v_store)

    def _corrections(self, t: int, beta1: float, beta2: float) -> tuple[float, float]:
        """(1 − β₁ᵗ, 1 − β₂ᵗ), or what a mistake puts in their place."""
        c = self.correction
        if c == "none":
            return 1.0, 1.0
        if c == "m_only":
            return 1 - beta1**t, 1.0
        if c == "v_only":
            return 1.0, 1 - beta2**t
        if c == "swapped":
            return 1 - beta2**t, 1 - beta1**t
        te = {"t": t, "t+1": t + 1, "t-1": t - 1, "2t": 2 * t, "2t-1": 2 * t - 1}[c]
        return 1 - beta1**te, 1 - beta2**te


def _identity(x: Tensor) -> Tensor:
    return x


def _ema(prev: Tensor, grad: Tensor, beta: float, kind: Ema, *, squared: bool) -> Tensor:
    x = grad * grad if squared and kind != "not_squared" else grad
    if kind == "no_one_minus":
        return beta * prev + x
    if kind == "swapped":
        return (1 - beta) * prev + beta * x
    return beta * prev + (1 - beta) * x


def _stored(raw: Tensor, corrected: Tensor, store: Store) -> Tensor:
    if store == "lost":
        return torch.zeros_like(raw)  # state[...] never written: it stays m_0 = 0
    return corrected if store == "corrected" else raw


@dataclass(frozen=True)
class LossVariant:
    r"""Cross-entropy (mean over the batch of −log softmax(z)_y) plus the L2 penalty, with knobs.

    The penalty (``penalty="present"``) is c·Σ_W ‖W‖² with c = λ/(2B) (``half``: the ½,
    ``per_batch``: the 1/B), over the weights (ndim > 1) or all tensors, from the live tensors
    (``detached``: from ``p.data``, so it adds to the value but gives no gradient).
    ``"first_call"`` is a penalty that only the first call sees (a consumed generator).
    """

    reduction: Literal["mean", "sum", "mean_all"] = "mean"
    softmax_twice: bool = False
    log: Literal["ln", "log10", "none"] = "ln"
    negated: bool = True
    penalty: Literal["none", "present", "missing", "first_call"] = "none"
    half: bool = True
    per_batch: bool = True
    form: Literal["squared", "norm", "mean_square"] = "squared"
    scope: Literal["weights", "all"] = "weights"
    detached: bool = False

    def canonical(self) -> LossVariant:
        """The same loss with the knobs that have no effect reset (see AdamVariant.canonical)."""
        if self.penalty in ("none", "missing"):
            return replace(self, half=True, per_batch=True, form="squared", scope="weights",
                           detached=False)
        return self

    def __call__(self, logits: Tensor, target: Tensor, params: Sequence[Tensor], l2: float,
                 call: int) -> Tensor:
        """The loss of call number ``call`` (0-based), differentiable in logits and params."""
        z = F.softmax(logits, dim=1) if self.softmax_twice else logits
        log_p = F.log_softmax(z, dim=1)
        if self.log == "log10":
            log_p = log_p / math.log(10)
        elif self.log == "none":
            log_p = log_p.exp()  # the probabilities themselves: −p_y instead of −log p_y
        picked = log_p.gather(1, target.view(-1, 1)).squeeze(1)  # log p_{i,y_i}
        total = picked.sum()
        n = logits.shape[0]
        data = {"mean": total / n, "sum": total, "mean_all": total / logits.numel()}
        loss = -data[self.reduction] if self.negated else data[self.reduction]
        if self.penalty == "present" or (self.penalty == "first_call" and call == 0):
            loss = loss + self._penalty(params, l2, n)
        return loss

    def _penalty(self, params: Sequence[Tensor], l2: float, batch_size: int) -> Tensor:
        coefficient = l2 * (0.5 if self.half else 1.0) / (batch_size if self.per_batch else 1)
        terms = []
        for p in params:
            if self.scope == "weights" and p.ndim <= 1:
                continue
            w = p.detach() if self.detached else p
            if self.form == "squared":
                terms.append((w * w).sum())
            elif self.form == "norm":
                terms.append(w.norm())
            else:
                terms.append((w * w).mean())
        return coefficient * torch.stack(terms).sum()


Variant = AdamVariant | LossVariant


@dataclass(frozen=True)
class Mistake:
    """One known mistake: what it is, how to fix it, and the one knob it turns.

    ``apply(base)`` returns the base variant with this mistake, or None where the mistake does
    not exist for that base (e.g. a decay mistake without decay). Two mistakes combine only when
    they turn different knobs.
    """

    id: str
    title: str  # the short diagnosis shown in the table
    explanation: str  # what the code does instead
    fix: str  # one line
    knob: str
    apply: Callable[[Variant], Variant | None]


def _turn(knob: str, value: object, *, when: Callable[[Variant], bool] = lambda v: True,
          ) -> Callable[[Variant], Variant | None]:
    """A mistake that sets ``knob`` to ``value`` (when ``when(base)`` holds)."""

    def apply(base: Variant) -> Variant | None:
        if not when(base) or getattr(base, knob) == value:
            return None
        return replace(base, **{knob: value})  # type: ignore[arg-type]

    return apply


def _decays(v: Variant) -> bool:
    return isinstance(v, AdamVariant) and v.decay != "none"


def _coupled(v: Variant) -> bool:
    return isinstance(v, AdamVariant) and v.decay == "coupled"


def _decoupled(v: Variant) -> bool:
    return isinstance(v, AdamVariant) and v.decay == "decoupled"


def _lr_twice(base: Variant) -> Variant | None:
    if not _decoupled(base):
        return None
    return replace(base, decay_lr_power=base.decay_lr_power + 1)  # type: ignore[arg-type]


def _with_penalty(v: Variant) -> bool:
    return isinstance(v, LossVariant) and v.penalty == "present"


_BC = "bias correction"
OPTIMIZER_MISTAKES: tuple[Mistake, ...] = (
    Mistake("no_bias_correction", "no bias correction",
            "m and v are used as they are, without dividing by 1 − βᵗ, so the first steps are "
            "too large (≈3.2·lr at step 1)",
            "m_hat = exp_avg / (1 - beta1**step); v_hat = exp_avg_sq / (1 - beta2**step)",
            "correction", _turn("correction", "none")),
    Mistake("bias_correction_off_by_one", f"{_BC} off by one step (t + 1)",
            "the corrections use 1 − βᵗ⁺¹: the step counter is one ahead when it is used",
            "use state['step'] as the skeleton keeps it (1 on the first step) in 1 - beta**step",
            "correction", _turn("correction", "t+1")),
    Mistake("bias_correction_step_minus_one", f"{_BC} one step behind (t − 1)",
            "the corrections use 1 − βᵗ⁻¹, which is 0 at the first step: the first update "
            "divides by zero",
            "use state['step'] as the skeleton keeps it (1 on the first step) in 1 - beta**step",
            "correction", _turn("correction", "t-1")),
    Mistake("step_counted_twice", "state['step'] counted twice per step",
            "the skeleton already increments state['step'] (1 on the first step); incrementing "
            "it again makes the corrections use 1 − β²ᵗ",
            "remove your own state['step'] += 1: the skeleton's counter is already right",
            "correction", _turn("correction", "2t")),
    Mistake("step_counted_twice_after_use", "state['step'] counted twice per step",
            "state['step'] is incremented again after it is used, so the corrections use "
            "1 − β^(2t−1)",
            "remove your own state['step'] += 1: the skeleton's counter is already right",
            "correction", _turn("correction", "2t-1")),
    Mistake("m_not_bias_corrected", "m is not bias-corrected",
            "v̂ = v/(1 − β₂ᵗ) is used but m is not divided by 1 − β₁ᵗ",
            "m_hat = exp_avg / (1 - beta1**step), and use m_hat in the update",
            "correction", _turn("correction", "v_only")),
    Mistake("v_not_bias_corrected", "v is not bias-corrected",
            "m̂ = m/(1 − β₁ᵗ) is used but v is not divided by 1 − β₂ᵗ",
            "v_hat = exp_avg_sq / (1 - beta2**step), and use v_hat in the update",
            "correction", _turn("correction", "m_only")),
    Mistake("bias_corrections_swapped", "bias corrections swapped",
            "m is divided by 1 − β₂ᵗ and v by 1 − β₁ᵗ",
            "m_hat = exp_avg / (1 - beta1**step); v_hat = exp_avg_sq / (1 - beta2**step)",
            "correction", _turn("correction", "swapped")),
    Mistake("eps_inside_sqrt", "ε inside the square root",
            "the denominator is √(v̂ + ε) instead of √v̂ + ε (it matters where √v̂ is not ≫ ε)",
            "denom = v_hat.sqrt() + eps", "eps", _turn("eps", "in_sqrt")),
    Mistake("eps_before_bias_correction", "ε added before bias correction",
            "the denominator is (√v + ε)/√(1 − β₂ᵗ): ε is scaled up by 1/√(1 − β₂ᵗ) "
            "(≈32× at step 1)",
            "bias-correct v first, then add ε: v_hat.sqrt() + eps", "eps",
            _turn("eps", "before_correction")),
    Mistake("no_sqrt", "no square root of v̂", "the update is m̂/(v̂ + ε) instead of m̂/(√v̂ + ε)",
            "denom = v_hat.sqrt() + eps", "sqrt", _turn("sqrt", False)),
    Mistake("m_not_stored", "exp_avg is never stored back",
            "`exp_avg = beta1 * exp_avg + ...` makes a new local tensor, so state['exp_avg'] "
            "stays 0 and m restarts from 0 every step",
            "update in place: exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1) "
            "(or assign state['exp_avg'] = exp_avg)",
            "m_store", _turn("m_store", "lost")),
    Mistake("v_not_stored", "exp_avg_sq is never stored back",
            "`exp_avg_sq = beta2 * exp_avg_sq + ...` makes a new local tensor, so "
            "state['exp_avg_sq'] stays 0 and v restarts from 0 every step",
            "update in place: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2) "
            "(or assign state['exp_avg_sq'] = exp_avg_sq)",
            "v_store", _turn("v_store", "lost")),
    Mistake("m_stored_bias_corrected", "the bias correction is written into exp_avg",
            "exp_avg.div_(1 − β₁ᵗ) changes the stored moment, so the next step starts from m̂ "
            "instead of m",
            "keep m̂ in a new tensor: m_hat = exp_avg / (1 - beta1**step)",
            "m_store", _turn("m_store", "corrected")),
    Mistake("v_stored_bias_corrected", "the bias correction is written into exp_avg_sq",
            "exp_avg_sq.div_(1 − β₂ᵗ) changes the stored moment, so the next step starts from v̂ "
            "instead of v",
            "keep v̂ in a new tensor: v_hat = exp_avg_sq / (1 - beta2**step)",
            "v_store", _turn("v_store", "corrected")),
    Mistake("m_without_one_minus_beta1", "m = β₁·m + g (no 1 − β₁)",
            "the gradient enters the first moment without its weight 1 − β₁",
            "exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)", "m_ema",
            _turn("m_ema", "no_one_minus")),
    Mistake("v_without_one_minus_beta2", "v = β₂·v + g² (no 1 − β₂)",
            "the squared gradient enters the second moment without its weight 1 − β₂",
            "exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)", "v_ema",
            _turn("v_ema", "no_one_minus")),
    Mistake("m_weights_swapped", "m = (1 − β₁)·m + β₁·g",
            "the weights of the old moment and the gradient are swapped in m",
            "exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)", "m_ema",
            _turn("m_ema", "swapped")),
    Mistake("v_weights_swapped", "v = (1 − β₂)·v + β₂·g²",
            "the weights of the old moment and the squared gradient are swapped in v",
            "exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)", "v_ema",
            _turn("v_ema", "swapped")),
    Mistake("v_not_squared", "v averages g, not g²",
            "the second moment is β₂·v + (1 − β₂)·g: the gradient is not squared",
            "exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)", "v_ema",
            _turn("v_ema", "not_squared")),
    Mistake("betas_swapped", "β₁ and β₂ swapped",
            "m is averaged with β₂ and v with β₁",
            "m uses beta1 (0.9), v uses beta2 (0.999)", "betas", _turn("betas_swapped", True)),
    Mistake("update_added", "the update is added (gradient ascent)",
            "θ ← θ + lr·m̂/(√v̂ + ε): the sign is flipped", "p.data.add_(update, alpha=-lr)",
            "direction", _turn("direction", "ascent")),
    Mistake("update_not_applied", "the parameters never change",
            "the update is computed but never written into the parameter (`p = p - ...` only "
            "rebinds a local name)",
            "write into the parameter: p.data.add_(update, alpha=-lr)", "direction",
            _turn("direction", "none")),
    # --- weight decay (Adam + L2 and AdamW) ---------------------------------------------------
    Mistake("decay_on_biases", "decay applied to the biases too",
            "every tensor decays; the exercise (and torch with param groups) decays only the "
            "weights (ndim > 1)",
            "decay only tensors with p.ndim > 1 (the skeleton's `if len(p.data.size()) > 1`)",
            "decay_scope", _turn("decay_scope", "all", when=_decays)),
    Mistake("l2_not_divided_by_batch_size", "λ not divided by the batch size",
            "the decay uses λ instead of λ/B",
            "use l2 / batch_size (the exercise's λ is per batch of B = 32)",
            "batch_divisions", _turn("batch_divisions", 0, when=_decays)),
    Mistake("l2_divided_by_batch_size_twice", "λ divided by the batch size twice",
            "the decay uses λ/B² instead of λ/B",
            "divide l2 by the batch size once (a torch-style weight_decay is already λ/B)",
            "batch_divisions", _turn("batch_divisions", 2, when=_decays)),
    Mistake("l2_halved", "L2 gradient with the penalty's ½",
            "the decay uses λ/(2B)·θ: the ½ belongs to the penalty λ/(2B)·‖W‖², whose gradient "
            "is (λ/B)·W",
            "use (l2 / batch_size) * p.data (no ½)", "half", _turn("half", True, when=_decays)),
    Mistake("decay_missing", "no weight decay at all",
            "the parameters follow plain Adam: l2 never reaches the update",
            "add the decay: see Exercise 2.1 (Adam + L2) / 2.2 (AdamW) of the skeleton",
            "decay", _turn("decay", "none", when=_decays)),
    Mistake("l2_added_after_moments", "L2 added to the update after the moments",
            "(λ/B)·θ is added to m̂/(√v̂ + ε), not to the gradient before m and v: that is "
            "AdamW's decoupled decay, not Adam + L2",
            "add the L2 term to the gradient before the moments: d_p = d_p + l2 / B * p.data",
            "decay", _turn("decay", "decoupled", when=_coupled)),
    Mistake("adamw_also_coupled", "AdamW that still decays through the gradient",
            "with adamw=True the L2 term is still added to the gradient (coupled) as well as "
            "decayed directly",
            "with adamw=True, skip the gradient L2 (the skeleton's `if not self.adamw`)",
            "decay", _turn("decay", "both", when=_decoupled)),
    Mistake("adamw_is_coupled", "AdamW implemented as Adam + L2",
            "with adamw=True the decay still goes through the gradient only: there is no "
            "decoupled decay",
            "with adamw=True, decay the weights directly: θ ← θ − lr·(λ/B)·θ beside the Adam step",
            "decay", _turn("decay", "coupled", when=_decoupled)),
    Mistake("decay_after_update", "decay applied to the updated parameters",
            "the weights are decayed after the Adam step (θ_t), not from θ_{t−1}: a second-order "
            "difference of lr·λ/B·Δθ per step",
            "decay from the old value: p.data.mul_(1 - lr * l2 / B) before the Adam update",
            "decay_after_update", _turn("decay_after_update", True, when=_decoupled)),
    Mistake("decay_times_lr_twice", "decay multiplied by lr twice",
            "the decay is lr·(λ/B)·θ added to the update, and the whole update is multiplied by "
            "lr again: lr²·λ/B",
            "multiply the decay by lr once (torch) or not at all (the paper)",
            "decay_lr_power", _lr_twice),
)

LOSS_MISTAKES: tuple[Mistake, ...] = (
    Mistake("ce_summed", "cross-entropy summed instead of averaged",
            "the loss is the sum over the batch, B = 32 times the mean",
            "average over the samples: divide the sum by y_predicted.shape[0]",
            "reduction", _turn("reduction", "sum")),
    Mistake("ce_averaged_over_classes", "cross-entropy averaged over classes too",
            "torch.mean over the whole (N, C) array also divides by the number of classes",
            "sum over the classes, then average over the samples: (...).sum(dim=1).mean()",
            "reduction", _turn("reduction", "mean_all")),
    Mistake("softmax_twice", "softmax applied twice",
            "forward already applies softmax to y_predicted; a second softmax (or log_softmax, "
            "or nn.CrossEntropyLoss) on those probabilities gives the wrong loss",
            "take torch.log(y_predicted + eps) of the probabilities forward already made",
            "softmax", _turn("softmax_twice", True)),
    Mistake("log10", "log base 10", "torch.log10 instead of the natural log",
            "torch.log(y_predicted + eps)", "log", _turn("log", "log10")),
    Mistake("log_missing", "the log is missing",
            "the loss is −mean(p_y), the probabilities themselves, not their log",
            "take the log: -(one_hot * torch.log(y_predicted + eps)).sum(dim=1).mean()",
            "log", _turn("log", "none")),
    Mistake("not_negated", "the cross-entropy is not negated",
            "Σ q·log p is ≤ 0; the loss is its negative",
            "loss = -(one_hot * torch.log(y_predicted + eps)).sum(dim=1).mean()",
            "negated", _turn("negated", False)),
    Mistake("penalty_missing", "the L2 penalty is missing",
            "the loss is the cross-entropy alone: l2 never reaches it",
            "add l2 / (2 * B) * (p ** 2).sum() for every weight tensor p", "penalty",
            _turn("penalty", "missing", when=_with_penalty)),
    Mistake("penalty_lost_after_first_call", "the penalty is lost after the first call",
            "params is a generator (model.parameters()): self.para = params keeps the generator, "
            "and the loop over it is empty from the second call on",
            "keep a list: self.para = list(params)", "penalty",
            _turn("penalty", "first_call", when=_with_penalty)),
    Mistake("penalty_not_divided_by_batch_size", "penalty not divided by the batch size",
            "the penalty is λ/2·Σ‖W‖² instead of λ/(2B)·Σ‖W‖²",
            "divide by the batch size: l2 / (2 * y_predicted.shape[0])", "per_batch",
            _turn("per_batch", False, when=_with_penalty)),
    Mistake("penalty_without_half", "penalty without its ½",
            "the penalty is λ/B·Σ‖W‖² instead of λ/(2B)·Σ‖W‖² (its gradient must be (λ/B)·W)",
            "l2 / (2 * B) * (p ** 2).sum()", "half", _turn("half", False, when=_with_penalty)),
    Mistake("penalty_on_biases", "penalty on the biases too",
            "the loop also penalises the 1-D bias vectors; the exercise skips them",
            "skip tensors with p.ndim == 1 (the skeleton's `if len(p.data.size()) == 1`)",
            "scope", _turn("scope", "all", when=_with_penalty)),
    Mistake("penalty_norm_not_squared", "‖W‖ instead of ‖W‖²",
            "the penalty uses the norm (torch.norm(p)) rather than the squared norm",
            "(p ** 2).sum(), or torch.norm(p) ** 2", "form",
            _turn("form", "norm", when=_with_penalty)),
    Mistake("penalty_mean_of_squares", "mean of W² instead of the sum",
            "(p ** 2).mean() divides each tensor's squared norm by its number of elements",
            "(p ** 2).sum()", "form", _turn("form", "mean_square", when=_with_penalty)),
    Mistake("penalty_detached", "penalty computed from p.data: no gradient",
            "p.data is detached from autograd: the penalty adds to the loss value but gives "
            "the weights no gradient",
            "use p, not p.data, in the penalty: (p ** 2).sum()", "detached",
            _turn("detached", True, when=_with_penalty)),
)
