"""optreg.RMSprop against torch.optim.RMSprop: same trajectories, state dicts and optimizer API.

:class:`TestRMSprop` runs every optimizer's contract (``optim_helpers.StepCounterContract``:
parity with torch on real training runs, bucketed foreach, schedulers, state dicts and the step
counter, the optimizer API, argument validation) with RMSprop's cases. The rest is RMSprop's
own: property tests (hypothesis) of bitwise equality with torch and between optreg's two kernels;
the equations (plain, centered, momentum, the first step) and RMSprop as Adam's second moment;
buffers switched on later; sparse gradients; the positional arguments.
"""

from __future__ import annotations

import copy
import itertools
from functools import partial
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from optim_helpers import (
    DECAYS,
    DTYPES,
    SHAPES,
    StepCounterContract,
    assert_bitwise_equal_to_torch,
    assert_equal_params,
    assert_kernels_agree_bitwise_on_cpu,
    assert_sparse_gradient_is_refused,
    named,
    optimizer_pair,
    property_settings,
    random_params,
    run_random_grads,
    train,
    twins,
)
from optreg.optim import Adam, RMSprop

WD = 0.05
STATE_KEYS = frozenset({"step", "square_avg", "momentum_buffer", "grad_avg"})
# variant -> (options for both optimizers, which tensors decay, sign of the loss). torch gets the
# decay through param groups (only ndim > 1 decays for "weights"), optreg through ``decay``.
VARIANTS: dict[str, tuple[dict[str, Any], str, float]] = {
    "plain": ({"lr": 1e-3}, "all", 1.0),
    "centered": ({"lr": 1e-3, "centered": True}, "all", 1.0),
    "momentum": ({"lr": 1e-3, "momentum": 0.9}, "all", 1.0),
    "centered_momentum_l2": ({"lr": 1e-3, "alpha": 0.9, "eps": 1e-6, "momentum": 0.5,
                              "centered": True, "weight_decay": WD}, "weights", 1.0),
    "l2_weights": ({"lr": 1e-3, "weight_decay": WD}, "weights", 1.0),
    "l2_all": ({"lr": 1e-3, "eps": 1e-4, "weight_decay": WD}, "all", 1.0),
    "maximize_l2": ({"lr": 1e-4, "weight_decay": WD, "maximize": True}, "weights", -1.0),
}  # fmt: skip


def rmsprop_pair(options: dict[str, Any], decay: str = "all"):
    return optimizer_pair(RMSprop, torch.optim.RMSprop, options, decay)


class TestRMSprop(StepCounterContract):
    ours, theirs = RMSprop, torch.optim.RMSprop
    configured = rmsprop_pair({"lr": 1e-3, "momentum": 0.9, "centered": True}, "weights")
    repr_fragments = ("lr: 0.001", "alpha: 0.99", "centered: True", "decay: weights")
    scheduled = rmsprop_pair({"lr": 1e-2, "momentum": 0.5, "centered": True, "weight_decay": WD})
    own_group_keys = frozenset({"decay"})
    added_group = ({"lr": 1e-3, "weight_decay": WD}, {"centered": True, "momentum": 0.5})
    bad_group = ({"alpha": -1}, "alpha")

    variants = named(**{name: (*rmsprop_pair(options, decay), sign)
                        for name, (options, decay, sign) in VARIANTS.items()})  # fmt: skip
    bucket_cases = named(
        plain=rmsprop_pair({}),
        centered_momentum_l2=rmsprop_pair({"centered": True, "momentum": 0.9,
                                           "weight_decay": 0.1}),
        momentum_maximize_l2=rmsprop_pair({"momentum": 0.5, "maximize": True,
                                           "weight_decay": 0.05}),
    )  # fmt: skip
    state_cases = named(
        plain=partial(RMSprop, lr=1e-3),
        centered_momentum_l2=partial(RMSprop, lr=1e-3, momentum=0.9, centered=True,
                                     weight_decay=WD),
    )  # fmt: skip
    # torch's group keys (no ``decay``: the constructor's applies) and state load
    from_torch = named(centered_momentum_l2=(
        partial(RMSprop, lr=0.5, decay="all"),
        partial(torch.optim.RMSprop, lr=1e-3, alpha=0.9, momentum=0.9, centered=True,
                weight_decay=WD),
    ))  # fmt: skip
    into_torch = named(centered_momentum_l2=(
        partial(RMSprop, lr=1e-3, momentum=0.5, centered=True, weight_decay=WD, decay="all"),
        torch.optim.RMSprop,
    ))  # fmt: skip
    state_keys = named(
        plain=({"momentum": 0.0, "centered": False}, frozenset({"step", "square_avg"})),
        centered_momentum=({"momentum": 0.9, "centered": True}, STATE_KEYS),
    )
    left_alone = named(momentum_l2=(partial(RMSprop, momentum=0.9, weight_decay=0.5),
                                    STATE_KEYS - {"grad_avg"}))  # fmt: skip
    never_modified = named(**{
        f"maximize={maximize}-wd={wd}": partial(RMSprop, momentum=0.9, centered=True,
                                                weight_decay=wd, maximize=maximize)
        for maximize, wd in itertools.product([False, True], [0.0, 0.3])
    })  # fmt: skip
    bad_arguments = (
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": torch.tensor([1e-3, 1e-3])}, "lr"),
        ({"alpha": -0.1}, "alpha"),
        ({"alpha": float("nan")}, "alpha"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"momentum": -0.1}, "momentum"),
        ({"decay": "biases"}, "decay"),
    )
    torch_errors = (
        ({"lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"lr": torch.tensor([1e-3, 1e-3])}, "Tensor lr must be 1-element"),
        ({"alpha": -0.5}, "Invalid alpha value: -0.5"),
        ({"eps": -1.0}, "Invalid epsilon value: -1.0"),
        ({"momentum": -0.5}, "Invalid momentum value: -0.5"),
        ({"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
    )
    non_numbers = (("lr", "0.1"), ("alpha", None), ("eps", "0"), ("momentum", [0.9]),
                   ("weight_decay", "0.1"))  # fmt: skip
    torch_only_flags = ("capturable", "differentiable")


# ----------------------------------------------------------------------------- properties


HYPER = st.fixed_dictionaries(
    {
        "lr": st.sampled_from([1e-3, 3e-2, 0.5]),
        "alpha": st.sampled_from([0.0, 0.5, 0.99]),
        "eps": st.sampled_from([0.0, 1e-8, 1e-3]),
        "weight_decay": st.sampled_from([0.0, 1e-2, 0.3]),
        "momentum": st.sampled_from([0.0, 0.5, 0.9]),
        "centered": st.booleans(),
        "maximize": st.booleans(),
    }
)


@property_settings
@given(shapes=SHAPES, hyper=HYPER, decay=DECAYS, foreach=st.booleans(), dtype=DTYPES)
def test_bitwise_equal_to_torch(shapes, hyper, decay, foreach, dtype):
    """Any hyperparameters, shapes (incl. 0-D), skipped gradients: optreg == torch, bit for bit
    (nan where torch has nan: ε = 0 with α = 0 divides 0 by 0), on each path against torch's
    matching path, parameters and every state tensor."""
    assert_bitwise_equal_to_torch(rmsprop_pair(hyper, decay), shapes, dtype, foreach,
                                  equal_nan=True)


@property_settings
@given(shapes=SHAPES, hyper=HYPER, decay=DECAYS)
def test_single_and_foreach_kernels_agree_bitwise_on_cpu(shapes, hyper, decay):
    assert_kernels_agree_bitwise_on_cpu(partial(RMSprop, **hyper, decay=decay), shapes,
                                        equal_nan=True)


@pytest.mark.parametrize("foreach", [False, True])
def test_tensor_lr_is_bitwise_torchs(foreach):
    """A one-element tensor lr: both kernels read it as PyTorch's ops do."""
    ours, theirs = twins("mlp", torch.float32)
    options = {"lr": torch.tensor([0.01]), "momentum": 0.9, "centered": True, "foreach": foreach}
    opt_ours = RMSprop(ours.parameters(), **options)
    opt_theirs = torch.optim.RMSprop(theirs.parameters(), **options)
    train(ours, opt_ours, 50)
    train(theirs, opt_theirs, 50)
    assert_equal_params(ours, theirs)


# ----------------------------------------------------------------------------- the equations


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("centered", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.8])
def test_follows_the_equations(momentum, centered, foreach):
    """g ← g + λθ; v = αv + (1 − α)g²; ḡ = αḡ + (1 − α)g; s = √(v − ḡ²) + ε or √v + ε;
    b = μb + g/s, θ ← θ − γb (or θ ← θ − γg/s), checked in float64 against the equations."""
    lr, alpha, eps, wd = 0.01, 0.9, 1e-3, 0.1
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(4, 3, dtype=torch.float64, generator=g)
    p = theta.clone().requires_grad_()
    opt = RMSprop([p], lr=lr, alpha=alpha, eps=eps, weight_decay=wd, momentum=momentum,
                  centered=centered, foreach=foreach)
    v, mean, buf = (torch.zeros_like(theta) for _ in range(3))
    for _ in range(6):
        grad = torch.randn(4, 3, dtype=torch.float64, generator=g)
        p.grad = grad.clone()
        opt.step()
        d = grad + wd * theta
        v = alpha * v + (1 - alpha) * d * d
        mean = alpha * mean + (1 - alpha) * d
        s = ((v - mean * mean) if centered else v).sqrt() + eps
        buf = momentum * buf + d / s
        theta = theta - lr * (buf if momentum else d / s)
        torch.testing.assert_close(p.detach(), theta, rtol=1e-12, atol=1e-14)
    assert opt.state[p]["step"] == 6


def test_first_step_is_lr_over_sqrt_one_minus_alpha():
    """No bias correction: v_1 = (1 − α)g², so the first step is γ/√(1 − α) = 10γ per coordinate
    (α = 0.99, ε = 0), whatever the gradient's scale."""
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    p.grad = torch.tensor([1e-4, -2.0, 300.0], dtype=torch.float64)
    RMSprop([p], lr=0.01, eps=0.0).step()
    torch.testing.assert_close(p.detach(), torch.tensor([-0.1, 0.1, -0.1], dtype=torch.float64),
                               rtol=1e-12, atol=0.0)


@pytest.mark.parametrize("foreach", [False, True])
def test_rmsprop_is_adam_without_first_moment_and_bias_correction_bitwise(foreach):
    """RMSprop(α, ε, λ) == Adam(betas=(0, α), ε, λ, bias_correction=False), bit for bit, and its
    square_avg is Adam's exp_avg_sq: Adam = momentum term + RMSprop term + bias correction."""
    ours, adams = twins("convnet", torch.float32)
    opt = RMSprop(ours.parameters(), lr=1e-3, alpha=0.95, eps=1e-6, weight_decay=WD,
                  foreach=foreach)
    adam = Adam(adams.parameters(), lr=1e-3, betas=(0.0, 0.95), eps=1e-6, weight_decay=WD,
                bias_correction=False, foreach=foreach)
    train(ours, opt, 100)
    train(adams, adam, 100)
    assert_equal_params(ours, adams)
    for p, q in zip(ours.parameters(), adams.parameters(), strict=True):
        assert torch.equal(opt.state[p]["square_avg"], adam.state[q]["exp_avg_sq"])


# ----------------------------------------------------------------------------- buffers


@pytest.mark.parametrize("foreach", [False, True])
def test_momentum_and_centered_switched_on_later_start_from_zero_buffers(foreach):
    """torch raises KeyError there; optreg creates b = ḡ = 0 and so continues exactly as torch
    does from the same state with zero buffers added."""
    ours, theirs = twins("mlp", torch.float32)
    opt_ours = RMSprop(ours.parameters(), lr=1e-3, decay="all", foreach=foreach)
    train(ours, opt_ours, 5)
    state = copy.deepcopy(opt_ours.state_dict())
    for p_state in state["state"].values():
        p_state["momentum_buffer"] = torch.zeros_like(p_state["square_avg"])
        p_state["grad_avg"] = torch.zeros_like(p_state["square_avg"])
    theirs.load_state_dict(ours.state_dict())
    opt_theirs = torch.optim.RMSprop(theirs.parameters(), momentum=0.9, centered=True,
                                     foreach=foreach)
    opt_theirs.load_state_dict(state)
    opt_ours.param_groups[0].update(momentum=0.9, centered=True)
    opt_theirs.param_groups[0].update(momentum=0.9, centered=True)
    train(ours, opt_ours, 5, start=5)
    train(theirs, opt_theirs, 5, start=5)
    assert_equal_params(ours, theirs)
    assert set(opt_ours.state[next(ours.parameters())]) == STATE_KEYS


# ----------------------------------------------------------------------------- decay, sparse


@pytest.mark.parametrize("foreach", [False, True])
def test_decay_weights_skips_biases_and_all_decays_them(foreach):
    """On gradients that do not depend on θ, each tensor follows its own rule: with
    decay="weights" a 1-D or 0-D tensor moves as without decay and a 2-D one as with decay="all";
    with decay="all" every tensor differs from the undecayed run."""
    runs = {}
    for decay, wd in (("weights", 0.5), ("all", 0.5), ("all", 0.0)):
        params = random_params([(4, 3), (3,), ()], torch.float32, seed=7)
        opt = RMSprop(params, weight_decay=wd, decay=decay, foreach=foreach)
        run_random_grads(params, opt, 10, seed=8)
        runs[decay if wd else "none"] = params
    for weights, every, none in zip(runs["weights"], runs["all"], runs["none"], strict=True):
        assert not torch.equal(every, none)
        assert torch.equal(weights, every if weights.ndim > 1 else none)


def test_sparse_gradient_raises_clear_error():
    assert_sparse_gradient_is_refused(RMSprop)


# ----------------------------------------------------------------------------- torch's signature


def test_positional_arguments_bind_as_in_torch():
    """All of torch's arguments are positional, flags included: the 7th is centered, the 9th
    foreach, the 10th maximize."""
    p = torch.zeros(2, requires_grad=True)
    opt = RMSprop([p], 0.1, 0.9, 1e-6, 0.01, 0.5, True, False, True, True)
    assert {k: opt.defaults[k] for k in ("lr", "alpha", "eps", "weight_decay", "momentum",
                                         "centered", "foreach", "maximize")} == {
        "lr": 0.1, "alpha": 0.9, "eps": 1e-6, "weight_decay": 0.01, "momentum": 0.5,
        "centered": True, "foreach": True, "maximize": True,
    }
