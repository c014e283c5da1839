"""optreg.SGD against torch.optim.SGD: same trajectories, same state dicts, same optimizer API.

:class:`TestSGD` runs every optimizer's contract (``optim_helpers.OptimizerContract``: parity
with torch on real training runs, bucketed foreach, schedulers, state dicts, the optimizer API,
argument validation) with SGD's cases. The rest is SGD's own: property tests (hypothesis) of
bitwise equality with torch and between optreg's two kernels; the equations (heavy ball,
Nesterov, the first buffer, momentum as Adam's first moment); OneCycleLR's momentum; sparse
gradients; the positional arguments.
"""

from __future__ import annotations

import itertools
from functools import partial
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import optreg.optim.sgd as sgd_module
from optim_helpers import (
    DECAYS,
    DTYPES,
    SHAPES,
    OptimizerContract,
    assert_bitwise_equal_to_torch,
    assert_decay_halves_only_the_selected_tensors,
    assert_equal_params,
    assert_kernels_agree_bitwise_on_cpu,
    named,
    optimizer_pair,
    property_settings,
    spy_on_kernels,
    train,
    twins,
)
from optreg.optim import SGD, Adam

WD = 0.05
# variant -> (options for both optimizers, which tensors decay, sign of the loss). torch gets the
# decay through param groups (only ndim > 1 decays for "weights"), optreg through ``decay``.
VARIANTS: dict[str, tuple[dict[str, Any], str, float]] = {
    "plain": ({"lr": 0.05}, "all", 1.0),
    "momentum": ({"lr": 0.02, "momentum": 0.9}, "all", 1.0),
    "ema": ({"lr": 0.1, "momentum": 0.9, "dampening": 0.9}, "all", 1.0),
    "nesterov": ({"lr": 0.02, "momentum": 0.9, "nesterov": True}, "all", 1.0),
    "l2_weights": ({"lr": 0.02, "momentum": 0.9, "weight_decay": WD}, "weights", 1.0),
    "l2_all_nesterov": ({"lr": 0.02, "momentum": 0.8, "nesterov": True, "weight_decay": WD},
                        "all", 1.0),
    "maximize_l2": ({"lr": 1e-3, "momentum": 0.5, "dampening": 0.1, "weight_decay": WD,
                     "maximize": True}, "weights", -1.0),
}  # fmt: skip


def sgd_pair(options: dict[str, Any], decay: str = "all"):
    return optimizer_pair(SGD, torch.optim.SGD, options, decay)


class TestSGD(OptimizerContract):
    ours, theirs = SGD, torch.optim.SGD
    configured = sgd_pair({"lr": 0.05, "momentum": 0.9, "nesterov": True}, "weights")
    repr_fragments = ("lr: 0.05", "momentum: 0.9", "nesterov: True", "decay: weights")
    scheduled = sgd_pair({"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": WD})
    own_group_keys = frozenset({"decay"})
    added_group = ({"lr": 0.05, "momentum": 0.9, "weight_decay": WD},
                   {"momentum": 0.5, "nesterov": True})  # fmt: skip
    bad_group = ({"nesterov": True, "dampening": 0.1}, "nesterov")

    variants = named(**{name: (*sgd_pair(options, decay), sign)
                        for name, (options, decay, sign) in VARIANTS.items()})  # fmt: skip
    bucket_cases = named(  # buffers are created in several buckets, some late
        momentum=sgd_pair({"lr": 0.1, "momentum": 0.9}),
        nesterov_l2=sgd_pair({"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
        dampening_maximize_l2=sgd_pair({"lr": 0.1, "momentum": 0.5, "dampening": 0.5,
                                        "maximize": True, "weight_decay": 0.05}),
    )  # fmt: skip
    state_cases = named(
        plain=partial(SGD, lr=0.05),
        momentum_l2=partial(SGD, lr=0.05, momentum=0.9, weight_decay=WD),
        nesterov=partial(SGD, lr=0.05, momentum=0.9, nesterov=True),
    )
    # torch's group keys (no ``decay``: the constructor's applies) and momentum buffers load
    from_torch = named(nesterov_l2=(
        partial(SGD, lr=0.5, momentum=0.1, decay="all"),
        partial(torch.optim.SGD, lr=0.05, momentum=0.9, nesterov=True, weight_decay=WD),
    ))  # fmt: skip
    into_torch = named(dampening_l2=(
        partial(SGD, lr=0.05, momentum=0.9, dampening=0.2, weight_decay=WD, decay="all"),
        torch.optim.SGD,
    ))  # fmt: skip
    # ``momentum_buffer`` per tensor with momentum; no state at all without, as torch
    state_keys = named(plain=({"momentum": 0.0}, frozenset()),
                       momentum=({"momentum": 0.9}, frozenset({"momentum_buffer"})))  # fmt: skip
    left_alone = named(momentum_l2=(partial(SGD, lr=0.1, momentum=0.9, weight_decay=0.5),
                                    frozenset({"momentum_buffer"})))  # fmt: skip
    # Not even by foreach Nesterov, where torch adds μ·b into p.grad when no copy was made.
    never_modified = named(**{
        f"nesterov={nesterov}-maximize={maximize}-wd={wd}": partial(
            SGD, momentum=0.9, nesterov=nesterov, weight_decay=wd, maximize=maximize
        )
        for nesterov, maximize, wd in itertools.product([False, True], [False, True], [0.0, 0.3])
    })  # fmt: skip
    bad_arguments = (
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": torch.tensor([1e-3, 1e-3])}, "lr"),
        ({"momentum": -0.1}, "momentum"),
        ({"momentum": float("nan")}, "momentum"),
        ({"dampening": float("inf")}, "dampening"),
        ({"dampening": float("nan")}, "dampening"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"weight_decay": torch.tensor([0.1, 0.1])}, "weight_decay"),
        ({"decay": "biases"}, "decay"),
        ({"nesterov": True}, "nesterov"),  # momentum 0
        ({"nesterov": True, "momentum": 0.9, "dampening": 0.1}, "nesterov"),
    )
    torch_errors = (
        ({"lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"lr": torch.tensor([1e-3, 1e-3])}, "Tensor lr must be 1-element"),
        ({"momentum": -0.5}, "Invalid momentum value: -0.5"),
        ({"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
        ({"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
        ({"nesterov": True, "momentum": 0.9, "dampening": 0.5},
         "Nesterov momentum requires a momentum and zero dampening"),
    )  # fmt: skip
    non_numbers = (("lr", "0.1"), ("momentum", None), ("dampening", "0"), ("weight_decay", [0.1]))
    torch_only_flags = ("differentiable", "fused")


# ----------------------------------------------------------------------------- properties


def valid_nesterov(hyper: dict[str, Any]) -> dict[str, Any]:
    """Nesterov only where it is defined (μ > 0, τ = 0)."""
    hyper["nesterov"] &= hyper["momentum"] > 0 and hyper["dampening"] == 0
    return hyper


HYPER = st.fixed_dictionaries(
    {
        "lr": st.sampled_from([1e-3, 3e-2, 0.5]),
        "momentum": st.sampled_from([0.0, 0.5, 0.9]),
        "dampening": st.sampled_from([0.0, 0.5, 0.9]),
        "weight_decay": st.sampled_from([0.0, 1e-2, 0.3]),
        "nesterov": st.booleans(),
        "maximize": st.booleans(),
    }
).map(valid_nesterov)


@property_settings
@given(shapes=SHAPES, hyper=HYPER, decay=DECAYS, foreach=st.booleans(), dtype=DTYPES)
def test_bitwise_equal_to_torch(shapes, hyper, decay, foreach, dtype):
    """Any hyperparameters, shapes (incl. 0-D), skipped gradients (buffers created late): optreg
    == torch, bit for bit, on each path against torch's matching path, parameters and buffers."""
    assert_bitwise_equal_to_torch(sgd_pair(hyper, decay), shapes, dtype, foreach)


@property_settings
@given(shapes=SHAPES, hyper=HYPER, decay=DECAYS)
def test_single_and_foreach_kernels_agree_bitwise_on_cpu(shapes, hyper, decay):
    assert_kernels_agree_bitwise_on_cpu(partial(SGD, **hyper, decay=decay), shapes)


@pytest.mark.parametrize("foreach", [False, True])
def test_tensor_lr_and_weight_decay_are_bitwise_torchs(foreach):
    """One-element tensors for lr and weight_decay: both kernels read them as PyTorch's ops do."""
    ours, theirs = twins("mlp", torch.float32)
    options = {"lr": torch.tensor([0.01]), "momentum": 0.9, "weight_decay": torch.tensor(WD),
               "nesterov": True, "foreach": foreach}
    opt_ours = SGD(ours.parameters(), decay="all", **options)
    opt_theirs = torch.optim.SGD(theirs.parameters(), **options)
    train(ours, opt_ours, 50)
    train(theirs, opt_theirs, 50)
    assert_equal_params(ours, theirs)


# ----------------------------------------------------------------------------- the equations


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize(
    ("momentum", "dampening", "nesterov"),
    [(0.0, 0.0, False), (0.9, 0.0, False), (0.9, 0.5, False), (0.8, 0.0, True)],
    ids=["plain", "heavy-ball", "dampening", "nesterov"],
)
def test_follows_the_equations(momentum, dampening, nesterov, foreach):
    """g ← g + λθ; b_1 = g_1, b_t = μb + (1 − τ)g; d = g + μb (Nesterov) or b; θ ← θ − γd,
    checked in float64 against the equations written out."""
    lr, wd = 0.05, 0.1
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(4, 3, dtype=torch.float64, generator=g)
    p = theta.clone().requires_grad_()
    opt = SGD([p], lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
              weight_decay=wd, foreach=foreach)
    buf = None
    for _ in range(6):
        grad = torch.randn(4, 3, dtype=torch.float64, generator=g)
        p.grad = grad.clone()
        opt.step()
        d = grad + wd * theta
        if momentum:
            buf = d if buf is None else momentum * buf + (1 - dampening) * d
            d = d + momentum * buf if nesterov else buf
        theta = theta - lr * d
        torch.testing.assert_close(p.detach(), theta, rtol=1e-13, atol=1e-15)


def test_heavy_ball_is_polyaks_form_with_a_constant_lr():
    """θ_t = θ_{t-1} − γ·g_t + μ·(θ_{t-1} − θ_{t-2}) for τ = 0 and a constant γ."""
    lr, mu = 0.1, 0.9
    g = torch.Generator().manual_seed(4)
    p = torch.randn(5, dtype=torch.float64, generator=g).requires_grad_()
    opt = SGD([p], lr=lr, momentum=mu)
    previous = current = p.detach().clone()
    for _ in range(8):
        p.grad = torch.randn(5, dtype=torch.float64, generator=g)
        expected = current - lr * p.grad + mu * (current - previous)
        opt.step()
        torch.testing.assert_close(p.detach(), expected, rtol=1e-13, atol=1e-15)
        previous, current = current, p.detach().clone()


def test_momentum_with_dampening_mu_is_adams_first_moment_plus_mu_t_g1():
    """With τ = μ = β: b_t = m_t + βᵗ·g_1 (m Adam's first moment); b_1 = m̂_1 = g_1."""
    beta = 0.9
    g = torch.Generator().manual_seed(5)
    p, q = (torch.zeros(6, dtype=torch.float64, requires_grad=True) for _ in range(2))
    sgd, adam = SGD([p], momentum=beta, dampening=beta), Adam([q], betas=(beta, 0.999))
    first = None
    for t in range(1, 30):
        grad = torch.randn(6, dtype=torch.float64, generator=g)
        first = grad if first is None else first
        p.grad, q.grad = grad.clone(), grad.clone()
        sgd.step()
        adam.step()
        buf, m = sgd.state[p]["momentum_buffer"], adam.state[q]["exp_avg"]
        torch.testing.assert_close(buf, m + beta**t * first, rtol=1e-12, atol=1e-14)
        if t == 1:
            torch.testing.assert_close(buf, m / (1 - beta), rtol=1e-14, atol=0.0)


def test_decay_weights_skips_biases_and_all_decays_them():
    """θ ← θ·(1 − γλ) on the decayed tensors only."""
    assert_decay_halves_only_the_selected_tensors(partial(SGD, lr=0.5, weight_decay=1.0))


# ----------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("foreach", [False, True])
def test_onecycle_cycles_momentum_same_as_torch(foreach):
    """OneCycleLR writes group["momentum"] every step; the optimizer must read it every step."""
    ours, theirs = twins("mlp", torch.float32)
    seen = set()
    for model, cls in ((ours, SGD), (theirs, torch.optim.SGD)):
        opt = cls(model.parameters(), momentum=0.9, foreach=foreach)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=30,
                                                    base_momentum=0.8, max_momentum=0.95)
        for k in range(30):
            seen.add(opt.param_groups[0]["momentum"])
            train(model, opt, 1, start=k, scheduler=sched)
    assert min(seen) <= 0.81 and max(seen) >= 0.94
    assert_equal_params(ours, theirs)


# ----------------------------------------------------------------------------- sparse gradients


def embedding_run(cls: type, foreach: bool | None, **options: Any) -> torch.Tensor:
    torch.manual_seed(0)
    emb = nn.Embedding(10, 3, sparse=True)
    opt = cls(emb.parameters(), lr=0.1, foreach=foreach, **options)
    for k in range(5):
        opt.zero_grad()
        emb(torch.tensor([1, 2, k])).pow(2).sum().backward()
        opt.step()
    return emb.weight.detach()


@pytest.mark.parametrize("foreach", [None, False, True])
@pytest.mark.parametrize(
    "options", [{}, {"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "maximize": True}],
    ids=["plain", "momentum", "nesterov-maximize"],
)
def test_sparse_gradients_match_torch(options, foreach):
    """As torch.optim.SGD, sparse gradients work (through the single-tensor kernel)."""
    assert torch.equal(embedding_run(SGD, foreach, **options),
                       embedding_run(torch.optim.SGD, foreach, **options))


def test_a_sparse_gradient_takes_the_single_tensor_kernel(monkeypatch):
    """Whatever ``foreach`` says: foreach ops are not meant for sparse tensors (torch loops too)."""
    called = spy_on_kernels(monkeypatch, sgd_module, ("_single_tensor_sgd", "_multi_tensor_sgd"))
    embedding_run(SGD, True, momentum=0.9)
    assert set(called) == {"_single_tensor_sgd"}


def test_sparse_gradient_with_weight_decay_is_a_clear_error():
    with pytest.raises(RuntimeError, match="weight decay needs a dense gradient"):
        embedding_run(SGD, None, weight_decay=0.1)


# ----------------------------------------------------------------------------- torch's signature


def test_positional_arguments_bind_as_in_torch():
    p = torch.zeros(2, requires_grad=True)
    opt = SGD([p], 0.1, 0.9, 0.0, 0.01, True)
    assert {k: opt.defaults[k] for k in ("lr", "momentum", "dampening", "weight_decay",
                                         "nesterov")} == {
        "lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.01, "nesterov": True
    }
