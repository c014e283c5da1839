"""optreg.losses against torch's own cross-entropy, and the L2 penalty against optimizer L2."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn import _reduction as torch_reduction
from torch.testing import assert_close

from optim_helpers import torch_signature_matches
from optreg.config import ConfigError
from optreg.losses import CrossEntropyLoss, cross_entropy, l2_penalty
from optreg.regularization import l2_to_weight_decay, param_groups

DTYPES = [torch.float32, torch.float64]
REDUCTIONS = ["mean", "sum", "none"]
N, C = 7, 5


def _tol(dtype: torch.dtype) -> dict:
    return (
        {"rtol": 1e-6, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-12, "atol": 1e-12}
    )


def _targets(kind: str, gen: torch.Generator, n: int = N, c: int = C, dtype=torch.float64):
    if kind == "index":
        return torch.randint(c, (n,), generator=gen)
    if kind == "onehot":
        return F.one_hot(torch.randint(c, (n,), generator=gen), c).to(dtype)
    probs = torch.rand(n, c, generator=gen, dtype=dtype)
    probs[:, 0] = 0.0  # exact zeros must not give 0·log 0 = nan
    return probs / probs.sum(dim=1, keepdim=True)


def _class_weights(gen: torch.Generator, c: int = C, dtype=torch.float64) -> torch.Tensor:
    """Class weights in [0.5, 2.5), class 1 switched off (weight 0)."""
    weight = 0.5 + 2 * torch.rand(c, generator=gen, dtype=dtype)
    weight[1] = 0.0
    return weight


def _compare(logits, target, *, target_grad=False, equal_nan=False, **kw):
    """Loss and d(loss)/d(logits) [and d/d(target)] of ours vs F.cross_entropy.

    Results are compared at the tolerance of the least precise input: float32 logits with a
    float64 target give a float64 result that carries float32's rounding (the exp and log of
    float32 values differ in their last bits between CPUs and between the two formulas). The
    class weights ``kw["weight"]`` count as an input too.
    """
    inputs = (logits, target, kw.get("weight"))
    floats = [t.dtype for t in inputs if t is not None and t.is_floating_point()]
    least_precise = torch.float32 if torch.float32 in floats else torch.float64
    results = []
    for fn in (cross_entropy, F.cross_entropy):
        z = logits.detach().clone().requires_grad_()
        t = target.detach().clone().requires_grad_(target_grad)
        loss = fn(z, t, **kw)
        grads = torch.autograd.grad(loss.sum(), [z, t] if target_grad else [z])
        results.append((loss, *grads))
    ours, ref = results
    for a, b in zip(ours, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert_close(a, b, equal_nan=equal_nan, **_tol(least_precise))
    return ours


# --------------------------------------------------------------------------- equal to torch


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "onehot", "probs"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_torch(dtype, reduction, kind, label_smoothing, weighted):
    gen = torch.Generator().manual_seed(0)
    logits = 3 * torch.randn(N, C, generator=gen, dtype=dtype)
    target = _targets(kind, gen, dtype=dtype)
    kw = {"reduction": reduction, "label_smoothing": label_smoothing}
    if weighted:
        kw["weight"] = _class_weights(gen, dtype=dtype)
    _compare(logits, target, target_grad=kind != "index", **kw)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("ignore_index", [-100, -1, 2, C])
@pytest.mark.parametrize("weighted", [False, True])
def test_ignore_index_matches_torch(dtype, reduction, label_smoothing, ignore_index, weighted):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(N, C, generator=gen, dtype=dtype)
    target = torch.randint(C, (N,), generator=gen)
    target[[0, 3]] = ignore_index
    kw = {"reduction": reduction, "label_smoothing": label_smoothing, "ignore_index": ignore_index}
    if weighted:
        kw["weight"] = _class_weights(gen, dtype=dtype)
    loss, grad = _compare(logits, target, **kw)
    assert torch.all(grad[target == ignore_index] == 0)
    # validate=False never reads the targets on the host and always takes the masked path.
    assert_close(cross_entropy(logits, target, validate=False, **kw), loss, **_tol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weight", [None, torch.tensor([0.5, 2.0, 1.0], dtype=torch.float64)])
def test_all_ignored_matches_torch(reduction, label_smoothing, weight):
    """torch: mean over zero samples is 0/0 = nan; sum is 0; none is all zeros."""
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.full((4,), -100)
    kw = {"reduction": reduction, "label_smoothing": label_smoothing, "weight": weight}
    loss, _ = _compare(logits, target, equal_nan=True, **kw)
    assert loss.isnan().all() if reduction == "mean" else (loss == 0).all()


def test_uint8_targets_match_torch():
    logits = torch.randn(N, C, dtype=torch.float64)
    target = torch.tensor([0, 1, 2, 3, 4, 255, 1], dtype=torch.uint8)
    _compare(logits, target, ignore_index=255)


def test_probability_targets_negative_ignore_index_is_unused():
    """torch 2.13 accepts a negative ignore_index with probability targets and ignores it."""
    gen = torch.Generator().manual_seed(2)
    logits, target = torch.randn(N, C, generator=gen), _targets("probs", gen, dtype=torch.float32)
    _compare(logits, target, ignore_index=-1)


def test_mixed_precision_probability_targets_promote_like_torch():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(N, C, generator=gen)  # float32 logits, float64 target: result float64
    _compare(logits, _targets("probs", gen), label_smoothing=0.1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["index", "onehot", "probs"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
def test_extreme_logits_are_finite_and_match_torch(dtype, kind, label_smoothing, weighted):
    gen = torch.Generator().manual_seed(4)
    logits = 1e4 * torch.randn(N, C, generator=gen, dtype=dtype).sign()  # ±1e4
    logits[0] = torch.tensor([1e4, -1e4, -1e4, -1e4, -1e4])
    target = _targets(kind, gen, dtype=dtype)
    weight = _class_weights(gen, dtype=dtype) if weighted else None
    for reduction in REDUCTIONS:
        loss, grad = _compare(
            logits, target, reduction=reduction, label_smoothing=label_smoothing, weight=weight
        )
        assert loss.isfinite().all() and grad.isfinite().all()
    # A confidently wrong row costs 2e4 nats (no saturation); a confidently right one ~0.
    z = torch.tensor([[1e4, -1e4], [1e4, -1e4]], dtype=dtype)
    assert_close(
        cross_entropy(z, torch.tensor([1, 0]), reduction="none"),
        torch.tensor([2e4, 0], dtype=dtype),
    )


def test_max_detach_is_exact():
    """The path through m = max z carries a zero gradient: dropping it changes nothing."""
    z = (5 * torch.randn(6, 4, dtype=torch.float64)).requires_grad_()
    t = torch.randint(4, (6,))
    m = z.amax(dim=1, keepdim=True)  # NOT detached
    lse = m.squeeze(1) + (z - m).exp().sum(dim=1).log()
    undetached = (lse - z.gather(1, t[:, None]).squeeze(1)).mean()
    (g_ref,) = torch.autograd.grad(undetached, z)
    (g_ours,) = torch.autograd.grad(cross_entropy(z, t), z)
    assert_close(g_ours, g_ref, rtol=1e-13, atol=1e-15)


def test_naive_eps_saturates_where_log_softmax_does_not():
    """The classroom −log(softmax(z) + eps) is biased, and flat once p_y << eps.

    Not part of the API: this shows why optreg uses the log-softmax form instead.
    """
    eps = 1e-8

    def naive(z, t):
        return -(z.softmax(dim=1).gather(1, t[:, None]).squeeze(1) + eps).log()

    t = torch.tensor([1])
    # Moderately wrong (p_y = e^-25 < eps): the naive loss saturates at -log(eps) ≈ 18.4.
    z = torch.tensor([[25.0, 0.0]], dtype=torch.float64, requires_grad=True)
    assert_close(cross_entropy(z, t), F.cross_entropy(z, t))
    assert cross_entropy(z, t).item() == pytest.approx(25.0, rel=1e-9)
    assert naive(z, t).item() == pytest.approx(-math.log(eps), rel=1e-3)
    # Very wrong (margin 1e4): the true loss is 1e4 with gradient ±1; the naive one is stuck.
    z = torch.tensor([[1e4, 0.0]], dtype=torch.float64, requires_grad=True)
    (g_naive,) = torch.autograd.grad(naive(z, t).sum(), z)
    (g_ours,) = torch.autograd.grad(cross_entropy(z, t), z)
    assert naive(z, t).item() == pytest.approx(-math.log(eps))
    assert g_naive.abs().max() == 0  # no signal left to learn from
    assert_close(g_ours, torch.tensor([[1.0, -1.0]], dtype=torch.float64))


def test_nan_logits_propagate_like_torch():
    """Documented choice: no per-step finiteness check; a nan/inf logit makes its row nan."""
    logits = torch.randn(4, 3, dtype=torch.float64)
    logits[1, 2] = float("nan")
    logits[2, 0] = float("inf")
    target = torch.tensor([0, 1, 2, 1])
    loss, _ = _compare(logits, target, equal_nan=True, reduction="none")
    assert loss[[1, 2]].isnan().all() and loss[[0, 3]].isfinite().all()
    # An ignored row with nan logits contributes nothing, as in torch.
    target[1] = -100
    loss = cross_entropy(logits, target, reduction="none")
    assert_close(loss, F.cross_entropy(logits, target, reduction="none"), equal_nan=True)
    assert loss[1] == 0


@st.composite
def _cases(draw):
    n = draw(st.integers(1, 12))
    c = draw(st.integers(1, 8))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0, 1e4]))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(n, c, generator=gen, dtype=torch.float64)
    kind = draw(st.sampled_from(["index", "onehot", "probs"]))
    if kind == "probs":
        target = torch.rand(n, c, generator=gen, dtype=torch.float64)
        target = target * (torch.rand(n, c, generator=gen) < 0.6)  # many exact zeros
        target[:, 0] += 1e-3  # rows are never all-zero
        target = target / target.sum(dim=1, keepdim=True)
    else:
        target = _targets(kind, gen, n, c)
    kw = {
        "reduction": draw(st.sampled_from(REDUCTIONS)),
        "label_smoothing": draw(st.sampled_from([0.0, 1.0]) | st.floats(0.0, 1.0)),
    }
    if kind == "index" and draw(st.booleans()):
        kw["ignore_index"] = draw(st.sampled_from([-100, 0, c - 1]))
        target[torch.rand(n, generator=gen) < 0.3] = kw["ignore_index"]
    if draw(st.booleans()):  # positive weights: a zero-weight batch is tested on its own below
        weight_scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
        kw["weight"] = weight_scale * (0.1 + torch.rand(c, generator=gen, dtype=torch.float64))
    return logits, target, kind, kw


@settings(max_examples=100, deadline=None)
@given(_cases())
def test_matches_torch_hypothesis(case):
    logits, target, kind, kw = case
    _compare(logits, target, equal_nan=True, target_grad=kind != "index", **kw)


# --------------------------------------------------------------------------- class weights


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_weighted_mean_divides_by_the_counted_weight(label_smoothing):
    """Index targets: mean = Σ_K ℓ_i / Σ_K w_{t_i}; probability targets: mean = Σ_i ℓ_i / N."""
    gen = torch.Generator().manual_seed(8)
    logits = torch.randn(N, C, generator=gen, dtype=torch.float64)
    weight = _class_weights(gen)
    target = torch.randint(C, (N,), generator=gen)
    target[[1, 5]] = -100
    kw = {"weight": weight, "label_smoothing": label_smoothing}
    kept = target != -100
    total = cross_entropy(logits, target, reduction="sum", **kw)
    assert_close(cross_entropy(logits, target, **kw), total / weight[target[kept]].sum())
    # Each kept sample: ℓ_i = −Σ_c w_c·q_ic·log p_ic with q_i = (1−ε)·e_{t_i} + ε/C.
    q = (1 - label_smoothing) * F.one_hot(target.clamp_min(0), C) + label_smoothing / C
    expected = -(weight * q * logits.log_softmax(dim=1)).sum(dim=1)
    per_sample = cross_entropy(logits, target, reduction="none", **kw)
    assert_close(per_sample, torch.where(kept, expected, 0.0))
    probs = _targets("probs", gen)
    total = cross_entropy(logits, probs, reduction="sum", **kw)
    assert_close(cross_entropy(logits, probs, **kw), total / N)


@pytest.mark.parametrize("kind", ["index", "probs"])
def test_uniform_weights(kind):
    """Weights of 1 change nothing; weights of 3 triple the sum, and the index mean stays."""
    gen = torch.Generator().manual_seed(9)
    logits = torch.randn(N, C, generator=gen, dtype=torch.float64)
    target = _targets(kind, gen)
    ones = torch.ones(C, dtype=torch.float64)
    for reduction in REDUCTIONS:
        plain = cross_entropy(logits, target, reduction=reduction, label_smoothing=0.1)
        assert_close(
            cross_entropy(logits, target, ones, reduction=reduction, label_smoothing=0.1),
            plain,
            rtol=1e-13,
            atol=1e-14,
        )
        tripled = cross_entropy(logits, target, 3 * ones, reduction=reduction, label_smoothing=0.1)
        scale = 1.0 if (kind, reduction) == ("index", "mean") else 3.0
        assert_close(tripled, scale * plain, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_zero_total_weight_is_nan_like_torch(label_smoothing):
    """Every counted sample has weight 0: the mean is 0/0 = nan in value and gradient, as in
    torch, also with smoothing (whose part alone would be x/0 = inf)."""
    logits = torch.randn(4, 3, dtype=torch.float64)
    target = torch.tensor([0, -100, 2, 0])
    weight = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    loss, grad = _compare(
        logits, target, weight=weight, label_smoothing=label_smoothing, equal_nan=True
    )
    assert loss.isnan() and grad[[0, 2, 3]].isnan().all() and (grad[1] == 0).all()


@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_index_targets_are_differentiable_in_the_weight(label_smoothing):
    """torch refuses a weight that requires grad with index targets, and accepts it with
    probabilities: index targets and their one-hot rows must give the same ∂(sum)/∂w."""
    gen = torch.Generator().manual_seed(10)
    logits = torch.randn(N, C, generator=gen, dtype=torch.float64)
    target = torch.randint(C, (N,), generator=gen)
    one_hot = F.one_hot(target, C).double()
    weight = _class_weights(gen).requires_grad_()
    kw = {"reduction": "sum", "label_smoothing": label_smoothing}
    (ours,) = torch.autograd.grad(cross_entropy(logits, target, weight, **kw), weight)
    (theirs,) = torch.autograd.grad(F.cross_entropy(logits, one_hot, weight, **kw), weight)
    assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_probability_targets_promote_the_weight_like_torch():
    """float32 logits and targets, float64 weight: a float64 loss, as torch gives."""
    gen = torch.Generator().manual_seed(11)
    logits, target = torch.randn(N, C, generator=gen), _targets("probs", gen, dtype=torch.float32)
    loss, _ = _compare(logits, target, weight=_class_weights(gen), label_smoothing=0.1)
    assert loss.dtype == torch.float64


# --------------------------------------------------------------------------- torch's signature


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (CrossEntropyLoss, nn.CrossEntropyLoss),
        (CrossEntropyLoss.forward, nn.CrossEntropyLoss.forward),
        (cross_entropy, F.cross_entropy),
    ],
    ids=["module", "forward", "functional"],
)
def test_signature_matches_torch(ours, theirs):
    torch_signature_matches(ours, theirs)


_W = torch.tensor([1.0, 0.5, 2.0, 0.0, 1.5], dtype=torch.float64)
POSITIONAL = {
    "weight": (_W,),
    "ignore_index third": (None, None, 2),
    "every argument": (_W, None, 2, None, "sum", 0.1),
}


@pytest.mark.parametrize("args", list(POSITIONAL.values()), ids=list(POSITIONAL))
def test_positional_arguments_bind_like_torch(args):
    ours, theirs = CrossEntropyLoss(*args), nn.CrossEntropyLoss(*args)
    assert ours.weight is theirs.weight
    options = ("ignore_index", "reduction", "label_smoothing")
    assert [getattr(ours, o) for o in options] == [getattr(theirs, o) for o in options]
    gen = torch.Generator().manual_seed(12)
    logits = torch.randn(N, C, generator=gen, dtype=torch.float64)
    target = torch.randint(C, (N,), generator=gen)
    target[0] = 2
    assert_close(ours(logits, target), theirs(logits, target), **_tol(torch.float64))
    assert_close(
        cross_entropy(logits, target, *args),
        F.cross_entropy(logits, target, *args),
        **_tol(torch.float64),
    )


LEGACY_FLAGS = [
    (size_average, reduce)
    for size_average in (None, True, False)
    for reduce in (None, True, False)
    if (size_average, reduce) != (None, None)
] + [(0, 1)]  # torch tests truthiness, not identity: 0 and 1 count as False and True


@pytest.mark.parametrize(("size_average", "reduce"), LEGACY_FLAGS)
def test_legacy_flags_map_to_the_reduction_like_torch(size_average, reduce):
    expected = torch_reduction.legacy_get_string(size_average, reduce, emit_warning=False)
    overridden = "mean" if expected == "none" else "none"  # the flags win over `reduction`
    flags = {"size_average": size_average, "reduce": reduce, "reduction": overridden}
    gen = torch.Generator().manual_seed(13)
    logits = torch.randn(N, C, generator=gen, dtype=torch.float64)
    target = torch.randint(C, (N,), generator=gen)
    calls = {
        "module": (lambda: CrossEntropyLoss(**flags), lambda: nn.CrossEntropyLoss(**flags)),
        "functional": (
            lambda: cross_entropy(logits, target, **flags),
            lambda: F.cross_entropy(logits, target, **flags),
        ),
    }
    for name, (ours, theirs) in calls.items():
        with pytest.warns(UserWarning) as their_warnings:
            reference = theirs()
        with pytest.warns(UserWarning) as our_warnings:
            result = ours()
        assert [str(w.message) for w in our_warnings] == [str(w.message) for w in their_warnings]
        assert str(our_warnings[0].message) == (
            f"size_average and reduce args will be deprecated, please use reduction='{expected}' "
            "instead."
        )
        assert our_warnings[0].filename == __file__, name  # it points at the caller's line
        if name == "module":
            assert result.reduction == reference.reduction == expected
            result, reference = result(logits, target), reference(logits, target)
        assert_close(result, reference, **_tol(torch.float64))


def test_without_legacy_flags_there_is_no_warning():
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CrossEntropyLoss(reduction="sum")(logits, target)
        cross_entropy(logits, target, reduction="none")


def test_legacy_flags_resolve_before_the_l2_check():
    params = [torch.ones(2, 2)]
    with (
        pytest.warns(UserWarning, match="reduction='sum'"),
        pytest.raises(ValueError, match="'sum'"),
    ):
        CrossEntropyLoss(size_average=False, params=params, l2=0.1)
    with pytest.warns(UserWarning, match="reduction='mean'"):
        assert CrossEntropyLoss(reduce=True, params=params, l2=0.1).reduction == "mean"


# --------------------------------------------------------------------------- module, L2 penalty


def _model(dtype=torch.float64, seed=0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def test_module_equals_functional_and_torch_module():
    gen = torch.Generator().manual_seed(5)
    logits, target = torch.randn(N, C, generator=gen), torch.randint(C, (N,), generator=gen)
    target[2] = 4
    kw = {"reduction": "sum", "label_smoothing": 0.1, "ignore_index": 4}
    kw["weight"] = _class_weights(gen, dtype=torch.float32)
    loss_fn = CrossEntropyLoss(**kw)
    assert_close(loss_fn(logits, target), nn.CrossEntropyLoss(**kw)(logits, target))
    assert_close(loss_fn(logits, target), cross_entropy(logits, target, **kw))
    assert_close(loss_fn.last_data_term, loss_fn(logits, target))
    assert loss_fn.last_penalty == 0 and loss_fn.penalty(N) == 0  # no L2 configured


def test_weight_is_a_buffer_like_torch():
    """state_dict keys, loading torch's state, and .to(dtype) behave as torch's module does."""
    weight = torch.tensor([1.0, 2.0, 0.5])
    ours, theirs = CrossEntropyLoss(weight), nn.CrossEntropyLoss(weight)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight"]
    assert list(CrossEntropyLoss().state_dict()) == list(nn.CrossEntropyLoss().state_dict()) == []
    fresh = CrossEntropyLoss(torch.ones(3))
    fresh.load_state_dict(theirs.state_dict())
    assert torch.equal(fresh.weight, weight)
    assert ours.double().weight.dtype == theirs.double().weight.dtype == torch.float64
    logits, target = torch.randn(4, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    assert_close(ours(logits, target), theirs(logits, target), **_tol(torch.float64))


def test_l2_penalty_with_class_weights_keeps_the_batch_size():
    """The data term is the weighted mean; the penalty is still λ/(2B)·Σ‖W‖² with B = N."""
    lam, batch = 0.4, 10
    model = _model()
    weight = torch.tensor([2.0, 0.0, 0.5], dtype=torch.float64)
    loss_fn = CrossEntropyLoss(weight, params=model.parameters(), l2=lam)
    x, t = torch.randn(batch, 6, dtype=torch.float64), torch.randint(3, (batch,))
    total = loss_fn(model(x), t)
    penalty = (
        lam / (2 * batch) * sum(p.detach().pow(2).sum() for p in model.parameters() if p.ndim > 1)
    )
    assert_close(loss_fn.last_penalty, penalty, rtol=1e-13, atol=0)
    assert_close(
        loss_fn.last_data_term, F.cross_entropy(model(x), t, weight).detach(), **_tol(torch.float64)
    )
    assert_close(total.detach(), loss_fn.last_data_term + loss_fn.last_penalty, rtol=1e-13, atol=0)


@pytest.mark.parametrize("decay", ["weights", "all"])
def test_l2_penalty_value_and_gradient(decay):
    lam, batch = 0.3, 16
    model = _model()
    x, t = torch.randn(batch, 6, dtype=torch.float64), torch.randint(3, (batch,))
    loss_fn = CrossEntropyLoss(params=model.parameters(), l2=lam, decay=decay)
    decayed = [p for p in model.parameters() if decay == "all" or p.ndim > 1]
    assert [id(p) for p in loss_fn.l2_params] == [id(p) for p in decayed]

    total = loss_fn(model(x), t)
    expected = lam / (2 * batch) * sum(p.pow(2).sum() for p in decayed)
    assert_close(loss_fn.last_penalty, expected.detach(), rtol=1e-13, atol=0)
    assert_close(total.detach(), loss_fn.last_data_term + loss_fn.last_penalty, rtol=1e-13, atol=0)
    assert_close(loss_fn.last_data_term, F.cross_entropy(model(x), t).detach(), rtol=1e-13, atol=0)
    assert not total.detach().requires_grad and loss_fn.last_data_term.grad_fn is None

    grads_total = torch.autograd.grad(total, list(model.parameters()))
    grads_data = torch.autograd.grad(F.cross_entropy(model(x), t), list(model.parameters()))
    for p, gt, gd in zip(model.parameters(), grads_total, grads_data, strict=True):
        penalty_grad = lam / batch * p if (decay == "all" or p.ndim > 1) else torch.zeros_like(p)
        assert_close(gt - gd, penalty_grad.detach(), rtol=1e-12, atol=1e-15)

    # The method and the functional give the same differentiable penalty.
    assert_close(loss_fn.penalty(batch), expected, rtol=1e-13, atol=0)
    assert_close(l2_penalty(decayed, lam, batch), expected, rtol=1e-13, atol=0)
    grads = torch.autograd.grad(l2_penalty(decayed, lam, batch), decayed)
    for p, g in zip(decayed, grads, strict=True):
        assert_close(g, lam / batch * p.detach(), rtol=1e-13, atol=0)


def test_penalty_uses_the_batch_size_of_each_call():
    model = _model()
    loss_fn = CrossEntropyLoss(params=model.parameters(), l2=1.0)
    sq = sum(p.detach().pow(2).sum() for p in model.parameters() if p.ndim > 1)
    for batch in (1, 5, 32):
        loss_fn(model(torch.randn(batch, 6, dtype=torch.float64)), torch.randint(3, (batch,)))
        assert_close(loss_fn.last_penalty, sq / (2 * batch))


def test_generator_params_keep_working_and_see_updates():
    model = _model()
    loss_fn = CrossEntropyLoss(params=model.parameters(), l2=0.5)  # a generator
    x, t = torch.randn(4, 6, dtype=torch.float64), torch.randint(3, (4,))
    loss_fn(model(x), t)
    first = loss_fn.last_penalty
    loss_fn(model(x), t)
    assert first > 0 and loss_fn.last_penalty == first  # not silently dropped on call two
    with torch.no_grad():
        model[0].weight.mul_(2.0)  # an optimizer updates in place: the loss must see it
    loss_fn(model(x), t)
    assert loss_fn.last_penalty > first


@pytest.mark.parametrize(
    ("dtype", "tol"),
    [
        (torch.float64, {"rtol": 1e-10, "atol": 1e-12}),
        (torch.float32, {"rtol": 1e-5, "atol": 1e-5}),
    ],
)
def test_l2_in_loss_equals_l2_in_optimizer(dtype, tol):
    """λ/(2B)Σ‖W‖² + Adam(wd=0)  ==  Adam(wd=λ/B on weights, 0 on biases): same trajectory."""
    lam, batch, steps = 2.0, 16, 300
    loss_model, optim_model = _model(dtype), _model(dtype)
    loss_fn = CrossEntropyLoss(params=loss_model.parameters(), l2=lam)
    opt_a = torch.optim.Adam(loss_model.parameters(), lr=1e-2, weight_decay=0.0)
    opt_b = torch.optim.Adam(param_groups(optim_model.parameters(), lam / batch), lr=1e-2)
    assert [g["weight_decay"] for g in opt_b.param_groups] == [lam / batch, 0.0]
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        x = torch.randn(batch, 6, generator=gen, dtype=dtype)
        t = torch.randint(3, (batch,), generator=gen)
        opt_a.zero_grad()
        loss_fn(loss_model(x), t).backward()
        opt_a.step()
        opt_b.zero_grad()
        cross_entropy(optim_model(x), t).backward()
        opt_b.step()
    for a, b in zip(loss_model.parameters(), optim_model.parameters(), strict=True):
        assert_close(a, b, **tol)
    # ...and the penalty actually mattered: without it the weights end elsewhere.
    free_model = _model(dtype)
    opt_c = torch.optim.Adam(free_model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(7)
    for _ in range(steps):
        x = torch.randn(batch, 6, generator=gen, dtype=dtype)
        t = torch.randint(3, (batch,), generator=gen)
        opt_c.zero_grad()
        cross_entropy(free_model(x), t).backward()
        opt_c.step()
    assert (free_model[0].weight - loss_model[0].weight).abs().max() > 1e-2


# --------------------------------------------------------------------------- bad input

_z = torch.randn(4, 3)
_t = torch.tensor([0, 1, 2, 1])

BAD_INPUTS = [
    ("logits 1-D", torch.randn(3), _t, {}, ValueError, "logits must be 2-D"),
    ("logits 3-D", torch.randn(4, 3, 2), _t, {}, ValueError, "logits must be 2-D"),
    ("logits int", torch.ones(4, 3, dtype=torch.long), _t, {}, TypeError, "floating point"),
    ("logits list", [[0.0, 1.0]], _t, {}, TypeError, "must be tensors"),
    ("empty batch", torch.randn(0, 3), _t[:0], {}, ValueError, "empty batch"),
    ("no classes", torch.randn(4, 0), _t, {}, ValueError, "no classes"),
    ("batch mismatch", _z, torch.tensor([0, 1]), {}, ValueError, "batch size mismatch"),
    ("prob shape", _z, torch.rand(4, 4), {}, ValueError, "shape of logits"),
    ("target 3-D", _z, torch.rand(4, 3, 1), {}, ValueError, r"target must be class indices"),
    ("index too big", _z, torch.tensor([0, 1, 3, 1]), {}, ValueError, r"class index 3 is out of"),
    ("index negative", _z, torch.tensor([0, -1, 2, 1]), {}, ValueError, r"class index -1 is out"),
    (
        "ignored but other bad", _z, torch.tensor([-100, 5, 2, 1]), {},
        ValueError, r"class index 5 is out of range",
    ),
    ("float indices", _z, torch.tensor([0.0, 1.0, 2.0, 1.0]), {}, TypeError, r"\(N, C\)"),
    ("int32 indices", _z, _t.int(), {}, TypeError, "must be int64"),
    ("bool indices", _z, _t.bool(), {}, TypeError, "must be int64"),
    ("int probabilities", _z, torch.ones(4, 3, dtype=torch.long), {}, TypeError, "floating point"),
    ("ignore_index probs", _z, torch.rand(4, 3), {"ignore_index": 0}, ValueError, "ignore_index=0"),
    ("reduction", _z, _t, {"reduction": "avg"}, ValueError, "reduction must be one of"),
    ("smoothing > 1", _z, _t, {"label_smoothing": 1.5}, ValueError, "label_smoothing must be in"),
    ("smoothing nan", _z, _t, {"label_smoothing": float("nan")}, ValueError, "label_smoothing"),
    ("ignore_index float", _z, _t, {"ignore_index": 1.0}, TypeError, "ignore_index must be an int"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("logits", "target", "kw", "exc", "match"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_raises(logits, target, kw, exc, match):
    with pytest.raises(exc, match=match):
        cross_entropy(logits, target, **kw)
    if set(kw) <= {"ignore_index"}:  # the module surfaces the same error from forward
        with pytest.raises(exc, match=match):
            CrossEntropyLoss(**kw)(logits, target)


BAD_WEIGHTS = [
    ("list", [1.0, 1.0, 1.0], True, TypeError, "weight must be a 1-D tensor of class weights"),
    ("2-D", torch.ones(1, 3), True, ValueError, r"weight must be 1-D.*shape \(1, 3\)"),
    ("0-D", torch.tensor(1.0), True, ValueError, r"weight must be 1-D.*shape \(\)"),
    ("int", torch.ones(3, dtype=torch.long), True, TypeError, "weight must be floating point"),
    ("too many", torch.ones(4), False, ValueError, r"C=3, weight has shape \(4,\)"),
    ("too few", torch.ones(2), False, ValueError, r"C=3, weight has shape \(2,\)"),
    (
        "dtype", torch.ones(3, dtype=torch.float64), False,
        TypeError, "weight has dtype torch.float64 but logits torch.float32",
    ),
    ("device", torch.ones(3, device="meta"), False, ValueError, "weight is on meta but logits"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("weight", "at_construction", "exc", "match"),
    [case[1:] for case in BAD_WEIGHTS],
    ids=[case[0] for case in BAD_WEIGHTS],
)
def test_bad_weight_raises(weight, at_construction, exc, match):
    with pytest.raises(exc, match=match):
        cross_entropy(_z, _t, weight)
    if at_construction:  # what needs no logits is refused at the door
        with pytest.raises(exc, match=match):
            CrossEntropyLoss(weight)
    else:
        loss_fn = CrossEntropyLoss(weight)
        with pytest.raises(exc, match=match):
            loss_fn(_z, _t)


def test_bad_weight_with_probability_targets():
    """Probability targets promote a float weight of another dtype (as torch does), but the
    class count and the floating dtype are checked all the same."""
    probs = torch.rand(4, 3).softmax(dim=1)
    assert cross_entropy(_z, probs, torch.ones(3, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match=r"C=3, weight has shape \(4,\)"):
        cross_entropy(_z, probs, torch.ones(4))
    with pytest.raises(TypeError, match="weight must be floating point"):
        cross_entropy(_z, probs, torch.ones(3, dtype=torch.long))


def test_index_equal_to_ignore_index_is_not_out_of_range():
    assert cross_entropy(_z, torch.tensor([-100, 1, 2, 1])).isfinite()
    assert cross_entropy(_z, torch.tensor([7, 1, 2, 1]), ignore_index=7).isfinite()


def test_validate_false_skips_the_range_check():
    with pytest.raises(RuntimeError):  # torch's own gather error, not ours
        cross_entropy(_z, torch.tensor([0, 1, 3, 1]), validate=False)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"l2": 0.1}, "needs params"),
        ({"l2": -0.1, "params": [torch.ones(2, 2)]}, "l2 must be a finite number >= 0"),
        ({"l2": float("nan"), "params": [torch.ones(2, 2)]}, "l2 must be"),
        ({"l2": float("inf"), "params": [torch.ones(2, 2)]}, "l2 must be"),
        ({"l2": 0.1, "params": [torch.ones(3)]}, "no tensor in params is decayed"),
        ({"l2": 0.1, "params": iter([])}, "no tensor in params is decayed"),
        ({"l2": 0.1, "params": [torch.ones(2, 2)], "reduction": "sum"}, "reduction='mean'"),
        ({"decay": "biases"}, "decay must be one of"),
        ({"reduction": "avg"}, "reduction must be one of"),
        ({"label_smoothing": -0.1}, "label_smoothing must be in"),
    ],
)
def test_bad_module_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        CrossEntropyLoss(**kw)


def test_l2_penalty_bad_arguments():
    w = [torch.ones(2, 2)]
    with pytest.raises(ValueError, match="no tensors"):
        l2_penalty(iter([]), 0.1, 4)
    with pytest.raises(ConfigError, match=r"l2=-1.0: must be a finite number >= 0"):
        l2_penalty(w, -1.0, 4)
    with pytest.raises(ConfigError, match=r"l2=nan: must be a finite"):
        l2_penalty(w, float("nan"), 4)
    with pytest.raises(ConfigError, match=r"batch_size=0: must be >= 1"):
        l2_penalty(w, 1.0, 0)


def test_l2_to_weight_decay_is_lambda_over_batch():
    assert l2_to_weight_decay(0.1, 32) == 0.1 / 32
    assert l2_to_weight_decay(0.0, 7) == 0.0


def test_l2_zero_with_params_is_off():
    model = _model()
    loss_fn = CrossEntropyLoss(params=model.parameters(), l2=0.0)
    x, t = torch.randn(4, 6, dtype=torch.float64), torch.randint(3, (4,))
    assert_close(loss_fn(model(x), t), F.cross_entropy(model(x), t))
    assert loss_fn.last_penalty == 0
