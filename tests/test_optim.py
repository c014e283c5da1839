"""optreg.Adam and AdamW against torch.optim: same trajectories, same state dicts, same API.

:class:`TestAdam` runs every optimizer's contract (``optim_helpers.StepCounterContract``: parity
with torch on real training runs, bucketed foreach, schedulers, state dicts and the step counter,
the optimizer API, argument validation) with Adam's and AdamW's cases. The rest is Adam's own:
property tests (hypothesis) of bitwise equality with torch and between optreg's two kernels; a
tensor lr; the paper's schedule-scaled decay; OneCycleLR's betas; initial_lr and the state dicts
of optreg 0.1; the rest of the ``torch.optim.Optimizer`` API; AdamW's defaults and arguments;
training without bias correction; the kernel choice and cache buckets of ``_common``.
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
from torch.optim.optimizer import register_optimizer_step_post_hook

from optim_helpers import (
    BUCKET_SHAPES,
    DECAYS,
    DTYPES,
    SHAPES,
    StepCounterContract,
    assert_bitwise_equal_to_torch,
    assert_decay_halves_only_the_selected_tensors,
    assert_equal_params,
    assert_kernels_agree_bitwise_on_cpu,
    assert_same_params,
    assert_sparse_gradient_is_refused,
    named,
    optimizer_pair,
    property_settings,
    random_params,
    torch_signature_matches,
    train,
    twins,
)
from optreg.optim import Adam, AdamW
from optreg.optim import _common as common
from optreg.optim._common import default_foreach
from optreg.regularization import param_groups

WD = 0.05
ADAM_STATE = frozenset({"step", "exp_avg", "exp_avg_sq"})
# variant -> (optreg's class, torch's, options for both, which tensors decay, sign of the loss).
# torch gets the decay through param groups (only ndim > 1 decays for "weights"), optreg through
# ``decay``.
VARIANTS: dict[str, tuple[type, type, dict[str, Any], str, float]] = {
    "adam": (Adam, torch.optim.Adam, {"lr": 1e-2}, "all", 1.0),
    "l2_weights": (Adam, torch.optim.Adam, {"lr": 1e-2, "betas": (0.8, 0.99), "weight_decay": WD},
                   "weights", 1.0),
    "l2_all": (Adam, torch.optim.Adam, {"lr": 1e-2, "eps": 1e-6, "weight_decay": WD}, "all", 1.0),
    "adamw_weights": (AdamW, torch.optim.AdamW, {"lr": 1e-2, "weight_decay": WD}, "weights", 1.0),
    "adamw_all": (AdamW, torch.optim.AdamW, {"lr": 1e-2, "weight_decay": WD}, "all", 1.0),
    "amsgrad_l2": (Adam, torch.optim.Adam, {"lr": 1e-2, "weight_decay": WD, "amsgrad": True},
                   "weights", 1.0),
    "maximize_l2": (Adam, torch.optim.Adam, {"lr": 1e-2, "weight_decay": WD, "maximize": True},
                    "weights", -1.0),
}  # fmt: skip


def adam_pair(options: dict[str, Any], decay: str = "all"):
    return optimizer_pair(Adam, torch.optim.Adam, options, decay)


class TestAdam(StepCounterContract):
    ours, theirs = Adam, torch.optim.Adam
    configured = optimizer_pair(AdamW, torch.optim.AdamW, {"lr": 1e-2, "amsgrad": True})
    repr_fragments = ("lr: 0.01", "weight_decay: 0.01", "decoupled_weight_decay: True",
                      "decay: all", "decay_scale: lr", "initial_lr: 0.01",
                      "betas: (0.9, 0.999)")  # fmt: skip
    scheduled = optimizer_pair(AdamW, torch.optim.AdamW, {"lr": 0.02})
    scheduled_model = "mlp"
    own_group_keys = frozenset({"decay", "decay_scale", "bias_correction", "initial_lr"})
    added_group = ({"lr": 1e-2, "weight_decay": WD}, {"weight_decay": 0.0, "lr": 3e-2})
    bad_group = ({"weight_decay": -1}, "weight_decay")

    variants = named(**{name: (*optimizer_pair(ours, theirs, options, decay), sign)
                        for name, (ours, theirs, options, decay, sign) in VARIANTS.items()})
    bucket_cases = named(
        adam=adam_pair({}),
        l2=adam_pair({"weight_decay": 0.1}),
        adamw=optimizer_pair(AdamW, torch.optim.AdamW, {"weight_decay": 0.1}),
        amsgrad_maximize_l2=adam_pair({"amsgrad": True, "maximize": True, "weight_decay": 0.05}),
    )
    state_cases = named(
        adam=partial(Adam, lr=1e-2),
        amsgrad_l2=partial(Adam, lr=1e-2, weight_decay=WD, amsgrad=True),
        adamw_paper=partial(AdamW, lr=1e-2, weight_decay=WD, decay_scale="schedule"),
    )
    # torch.optim.Adam(W)'s group keys (no decay / decay_scale / bias_correction) and state load
    from_torch = named(
        adam=(partial(Adam, lr=0.5, weight_decay=0.0, decay="all"),
              partial(torch.optim.Adam, lr=1e-2, weight_decay=WD)),
        adamw=(partial(AdamW, lr=0.5, weight_decay=0.0, decay="all"),
               partial(torch.optim.AdamW, lr=1e-2, weight_decay=WD)),
    )  # fmt: skip
    into_torch = named(**{
        name: (partial(Adam, lr=1e-2, weight_decay=WD, decay="all",
                       decoupled_weight_decay=decoupled), theirs)
        for name, decoupled, theirs in (("adam", False, torch.optim.Adam),
                                        ("adamw", True, torch.optim.AdamW))
    })  # fmt: skip
    state_keys = named(amsgrad=({"amsgrad": True}, ADAM_STATE | {"max_exp_avg_sq"}))
    # not even decoupled decay touches the tensor without a gradient
    left_alone = named(adam=(partial(Adam, lr=0.1, weight_decay=0.5), ADAM_STATE),
                       adamw=(partial(AdamW, lr=0.1, weight_decay=0.5), ADAM_STATE))
    never_modified = named(**{
        f"decoupled={decoupled}-maximize={maximize}": partial(
            Adam, weight_decay=0.3, decay="all", decoupled_weight_decay=decoupled,
            maximize=maximize,
        )
        for decoupled, maximize in itertools.product([False, True], [False, True])
    })  # fmt: skip
    bad_arguments = (
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"lr": torch.tensor([1e-3, 1e-3])}, "lr"),
        ({"betas": (1.0, 0.999)}, r"betas\[0\]"),
        ({"betas": (-0.1, 0.999)}, r"betas\[0\]"),
        ({"betas": (0.9, 1.0)}, r"betas\[1\]"),
        ({"betas": (0.9,)}, "betas"),
        ({"eps": -1e-8}, "eps"),
        ({"weight_decay": -0.1}, "weight_decay"),
        ({"decay": "biases"}, "decay"),
        ({"decay_scale": "epoch"}, "decay_scale"),
        ({"decay_scale": "schedule"}, "decay_scale"),  # needs decoupled_weight_decay=True
        ({"decay_scale": "schedule", "decoupled_weight_decay": True, "lr": 0.0}, "lr"),
    )
    torch_errors = (
        ({"lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"eps": -1.0}, "Invalid epsilon value: -1.0"),
        ({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
        ({"betas": (0.9, -0.5)}, "Invalid beta parameter at index 1: -0.5"),
        ({"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
        ({"lr": torch.tensor([1e-3, 1e-3])}, "Tensor lr must be 1-element"),
    )
    non_numbers = (("lr", "0.1"), ("lr", None), ("lr", [1e-3]))
    torch_only_flags = ("capturable", "differentiable", "fused")


# ----------------------------------------------------------------------------- properties


HYPER = st.fixed_dictionaries(
    {
        "lr": st.sampled_from([1e-3, 3e-2, 0.5]),
        "betas": st.tuples(st.sampled_from([0.0, 0.5, 0.9]), st.sampled_from([0.0, 0.9, 0.999])),
        "eps": st.sampled_from([0.0, 1e-8, 1e-3]),
        "weight_decay": st.sampled_from([0.0, 1e-2, 0.3]),
        "amsgrad": st.booleans(),
        "maximize": st.booleans(),
    }
)


@property_settings
@given(shapes=SHAPES, hyper=HYPER, decoupled=st.booleans(), decay=DECAYS, foreach=st.booleans(),
       dtype=DTYPES)
def test_bitwise_equal_to_torch(shapes, hyper, decoupled, decay, foreach, dtype):
    """Any hyperparameters, shapes (incl. 0-D), skipped gradients: optreg == torch, bit for bit,
    on each path against torch's matching path (foreach=False / True), parameters and state."""
    pair = adam_pair({**hyper, "decoupled_weight_decay": decoupled}, decay)
    assert_bitwise_equal_to_torch(pair, shapes, dtype, foreach)


@property_settings
@given(shapes=SHAPES, hyper=HYPER, decoupled=st.booleans(), decay=DECAYS,
       decay_scale=st.sampled_from(["lr", "schedule"]))
def test_single_and_foreach_kernels_agree_bitwise_on_cpu(
    shapes, hyper, decoupled, decay, decay_scale
):
    decoupled |= decay_scale == "schedule"  # the paper's decay is decoupled
    assert_kernels_agree_bitwise_on_cpu(
        partial(Adam, decoupled_weight_decay=decoupled, decay=decay, decay_scale=decay_scale,
                **hyper),
        shapes,
    )


def test_tensor_lr_matches_torch_and_foreach_matches_to_rounding():
    """A one-element tensor lr: bitwise equal to torch's single-tensor path (which also computes
    with the tensor); the foreach kernel reads it as a Python float, equal to rounding."""
    ours, theirs = twins("mlp", torch.float32)
    third = copy.deepcopy(ours)
    lr = torch.tensor([0.01])
    opt_ours = AdamW(ours.parameters(), lr=lr, weight_decay=WD, decay="all", foreach=False)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=lr, weight_decay=WD, foreach=False)
    opt_third = AdamW(third.parameters(), lr=lr, weight_decay=WD, decay="all", foreach=True)
    for model, opt in ((ours, opt_ours), (theirs, opt_theirs), (third, opt_third)):
        train(model, opt, 50)
    assert_equal_params(ours, theirs)
    assert_same_params(ours, third, torch.float32)


# ----------------------------------------------------------------------------- decay_scale


def decay_only_param(value: float = 1.0) -> torch.Tensor:
    """A 2-D parameter whose gradient is zero: m = v = 0, so only the decay moves it."""
    p = torch.full((2, 2), value, dtype=torch.float64, requires_grad=True)
    p.grad = torch.zeros_like(p)
    return p


@pytest.mark.parametrize("foreach", [False, True])
def test_paper_decay_is_scaled_by_schedule_multiplier_not_lr(foreach):
    """θ_t = θ_{t-1}·(1 − η_t·λ) with η_t = γ_t/γ_0 (paper) vs θ_{t-1}·(1 − γ_t·λ) (torch)."""
    lr0, wd, gamma = 0.1, 0.2, 0.5
    p_paper, p_torch = decay_only_param(), decay_only_param()
    paper = AdamW([p_paper], lr=lr0, weight_decay=wd, decay_scale="schedule", foreach=foreach)
    form_torch = AdamW([p_torch], lr=lr0, weight_decay=wd, foreach=foreach)
    scheds = [torch.optim.lr_scheduler.StepLR(o, 1, gamma=gamma) for o in (paper, form_torch)]
    expect_paper, expect_torch = 1.0, 1.0
    for t in range(4):
        lr_t = lr0 * gamma**t
        expect_paper *= 1 - (lr_t / lr0) * wd  # η_t = γ_t/γ_0
        expect_torch *= 1 - lr_t * wd
        for opt, sched in zip((paper, form_torch), scheds, strict=True):
            opt.step()
            sched.step()
        torch.testing.assert_close(p_paper, torch.full((2, 2), expect_paper, dtype=torch.float64))
        torch.testing.assert_close(p_torch, torch.full((2, 2), expect_torch, dtype=torch.float64))
    assert not torch.allclose(p_paper, p_torch)


@pytest.mark.parametrize("foreach", [False, True])
def test_paper_decay_equals_torch_adamw_with_rescaled_weight_decay(foreach):
    """Under a scheduler, lr_t·λ' = η_t·λ needs λ' = λ/γ_0: with powers of two both are exact, so
    the paper form equals torch.optim.AdamW(weight_decay=λ/γ_0) bit for bit, on a real run."""
    lr0, wd = 2.0**-4, 2.0**-3
    ours, theirs = twins("convnet", torch.float32)
    opt_ours = AdamW(
        ours.parameters(), lr=lr0, weight_decay=wd, decay="all", decay_scale="schedule",
        foreach=foreach,
    )  # fmt: skip
    opt_theirs = torch.optim.AdamW(
        theirs.parameters(), lr=lr0, weight_decay=wd / lr0, foreach=foreach
    )
    for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
        lam = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 ** (k // 5))
        train(model, opt, 30, scheduler=lam)
    assert opt_ours.param_groups[0]["lr"] == lr0 / 2**6
    assert_equal_params(ours, theirs)


def test_paper_decay_is_relative_to_the_initial_lr_that_onecycle_sets():
    """OneCycleLR overwrites initial_lr (max_lr/div_factor); η_t is relative to that value."""
    p = decay_only_param()
    opt = AdamW([p], lr=1.0, weight_decay=0.1, decay_scale="schedule")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.4, total_steps=10, div_factor=4.0)
    group = opt.param_groups[0]
    assert group["initial_lr"] == 0.1
    expected, etas = 1.0, []
    for _ in range(4):
        etas.append(group["lr"] / group["initial_lr"])
        expected *= 1 - etas[-1] * 0.1
        opt.step()
        sched.step()
    assert etas[0] == pytest.approx(1.0) and etas[-1] > 2.0
    torch.testing.assert_close(p, torch.full((2, 2), expected, dtype=torch.float64))


def test_schedule_scale_requires_decoupled():
    with pytest.raises(ValueError, match="decay_scale"):
        Adam([torch.zeros(2, requires_grad=True)], weight_decay=0.1, decay_scale="schedule")


# ----------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("foreach", [False, True])
def test_onecycle_cycles_betas_same_as_torch(foreach):
    """OneCycleLR writes group["betas"] every step; the optimizer must read them every step."""
    ours, theirs = twins("convnet", torch.float32)
    runs = [
        (ours, Adam(ours.parameters(), weight_decay=WD, decay="all", foreach=foreach)),
        (theirs, torch.optim.Adam(theirs.parameters(), weight_decay=WD, foreach=foreach)),
    ]
    seen_beta1 = set()
    for model, opt in runs:
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.05, total_steps=40, cycle_momentum=True, base_momentum=0.8
        )
        for k in range(40):
            seen_beta1.add(opt.param_groups[0]["betas"][0])
            train(model, opt, 1, start=k, scheduler=sched)
    assert min(seen_beta1) <= 0.81 and max(seen_beta1) >= 0.94
    assert_equal_params(ours, theirs)


# ----------------------------------------------------------------------------- state dicts


def test_initial_lr_is_each_groups_own_lr():
    """γ_0 of ``decay_scale="schedule"``: a group added later gets its own lr as ``initial_lr``,
    and so does each group of a torch state dict (which has none)."""
    w, b = torch.zeros(2, 2, requires_grad=True), torch.zeros(2, requires_grad=True)
    opt = Adam([w], lr=1e-2)
    opt.add_param_group({"params": [b], "lr": 3e-2})
    assert [group["initial_lr"] for group in opt.param_groups] == [1e-2, 3e-2]
    loaded = AdamW([w], lr=0.5)
    loaded.load_state_dict(torch.optim.AdamW([w], lr=1e-2).state_dict())
    assert loaded.param_groups[0]["initial_lr"] == 1e-2


def test_state_dict_of_tensor_lr_survives_weights_only_load(tmp_path):
    p = torch.ones(3, requires_grad=True)
    p.grad = torch.ones(3)
    opt = AdamW([p], lr=torch.tensor(0.01), decay_scale="schedule")
    opt.step()
    torch.save(opt.state_dict(), tmp_path / "o.pt")
    loaded = torch.load(tmp_path / "o.pt", weights_only=True)
    assert set(loaded["param_groups"][0]) >= {"lr", "initial_lr", "decay", "decay_scale"}
    q = p.detach().clone().requires_grad_()
    q.grad = torch.ones(3)
    opt2 = AdamW([q], lr=0.5)
    opt2.load_state_dict(loaded)
    assert torch.equal(opt2.param_groups[0]["lr"], torch.tensor(0.01))
    opt.step()
    opt2.step()
    assert torch.equal(p, q)


def test_adamw_keeps_decoupled_when_loading_a_coupled_state_dict():
    p = torch.zeros(2, requires_grad=True)
    coupled = Adam([p], weight_decay=0.1).state_dict()
    opt = AdamW([p])
    opt.load_state_dict(coupled)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


def test_optreg_0_1_state_dict_with_decoupled_key_loads():
    p = torch.zeros(2, requires_grad=True)
    state = AdamW([p], weight_decay=0.1).state_dict()
    group = state["param_groups"][0]
    group["decoupled"] = group.pop("decoupled_weight_decay")  # as optreg 0.1 saved it
    opt = Adam([p])
    opt.load_state_dict(state)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    assert "decoupled" not in opt.param_groups[0]


# ----------------------------------------------------------------------------- optimizer API


def test_step_and_state_dict_hooks_fire():
    p = torch.ones(2, requires_grad=True)
    p.grad = torch.ones(2)
    opt = Adam([p])
    fired = []
    opt.register_step_pre_hook(lambda o, args, kwargs: fired.append("pre"))
    opt.register_step_post_hook(lambda o, args, kwargs: fired.append("post"))
    opt.register_state_dict_pre_hook(lambda o: fired.append("sd_pre"))
    opt.register_state_dict_post_hook(lambda o, sd: fired.append("sd_post"))
    opt.register_load_state_dict_pre_hook(lambda o, sd: fired.append("load_pre"))
    opt.register_load_state_dict_post_hook(lambda o: fired.append("load_post"))
    handle = register_optimizer_step_post_hook(lambda o, args, kwargs: fired.append("global_post"))
    try:
        opt.step()
        opt.load_state_dict(opt.state_dict())
    finally:
        handle.remove()
    assert fired == ["pre", "post", "global_post", "sd_pre", "sd_post", "load_pre", "load_post"]


def test_bias_group_with_zero_weight_decay_matches_torch_groups():
    ours, theirs = twins("convnet", torch.float32)
    groups_ours = [
        {"params": [p for p in ours.parameters() if p.ndim > 1]},
        {"params": [p for p in ours.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    opt_ours = AdamW(groups_ours, lr=1e-2, weight_decay=WD, decay="all")
    opt_theirs = torch.optim.AdamW(param_groups(theirs.parameters(), WD), lr=1e-2)
    train(ours, opt_ours, 20)
    train(theirs, opt_theirs, 20)
    assert_equal_params(ours, theirs)


def test_named_parameters_are_accepted():
    model, _ = twins("mlp", torch.float32)
    opt = Adam(model.named_parameters(), lr=1e-2)
    train(model, opt, 2)
    assert opt.state_dict()["param_groups"][0]["param_names"][0] == "0.weight"


def test_zero_grad():
    p = torch.ones(2, requires_grad=True)
    opt = Adam([p])
    p.grad = torch.ones(2)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(2))
    opt.zero_grad()
    assert p.grad is None


def test_decay_weights_skips_biases_and_all_decays_them():
    assert_decay_halves_only_the_selected_tensors(partial(AdamW, lr=0.5, weight_decay=1.0))


def test_sparse_gradient_raises_clear_error():
    assert_sparse_gradient_is_refused(Adam)


# ----------------------------------------------------------------------------- AdamW, arguments


def test_adamw_defaults_match_torch_adamw():
    p = torch.zeros(2, requires_grad=True)
    ours, theirs = AdamW([p]).defaults, torch.optim.AdamW([p]).defaults
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach"):
        assert ours[key] == theirs[key], key
    assert ours["decoupled_weight_decay"] is True
    assert Adam([p]).defaults["decoupled_weight_decay"] is False


def test_adamw_rejects_negative_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW([torch.zeros(2, requires_grad=True)], weight_decay=-1.0)


def test_adamw_signature_is_torchs():
    torch_signature_matches(AdamW, torch.optim.AdamW)


def test_sixth_positional_argument_is_amsgrad_as_in_torch():
    p = torch.zeros(2, requires_grad=True)
    opt = Adam([p], 1e-3, (0.9, 0.999), 1e-8, 0, True)
    assert opt.defaults["amsgrad"] is True
    assert opt.defaults["decoupled_weight_decay"] is False


def test_decoupled_is_an_alias_of_decoupled_weight_decay():
    p = torch.zeros(2, requires_grad=True)
    assert Adam([p], decoupled=True).defaults["decoupled_weight_decay"] is True
    with pytest.raises(ValueError, match="alias"):
        Adam([p], decoupled=False, decoupled_weight_decay=True)


# ----------------------------------------------------------------------------- no bias correction


@pytest.mark.parametrize("foreach", [False, True])
def test_without_bias_correction_follows_the_uncorrected_equations(foreach):
    """m̂ = m, v̂ = v: θ ← θ − γ·m/(√v + ε), checked in float64 against the equations."""
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(4, 3, dtype=torch.float64, generator=g)
    p = theta.clone().requires_grad_()
    opt = Adam([p], lr=1e-2, bias_correction=False, foreach=foreach)
    m = torch.zeros_like(theta)
    v = torch.zeros_like(theta)
    for _ in range(5):
        grad = torch.randn(4, 3, dtype=torch.float64, generator=g)
        p.grad = grad.clone()
        opt.step()
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad * grad
        theta = theta - 1e-2 * m / (v.sqrt() + 1e-8)
        torch.testing.assert_close(p.detach(), theta, rtol=1e-13, atol=1e-15)
    first = Adam([q := torch.zeros(1, requires_grad=True)], lr=1.0, bias_correction=False)
    q.grad = torch.ones(1)
    first.step()  # (1 − β₁)/√(1 − β₂) = 0.1/√0.001 ≈ 3.16: the first step is 3.16·γ
    assert q.item() == pytest.approx(-0.1 / 0.001**0.5, rel=1e-6)


# ----------------------------------------------------------------------------- foreach, buckets


def test_default_foreach_is_true_for_small_cpu_sets_only():
    assert default_foreach([torch.zeros(10, 10), torch.zeros(10)]) is True
    assert default_foreach([torch.zeros(common.FOREACH_MAX_NUMEL_CPU + 1)]) is False
    assert default_foreach([torch.zeros(2, device="meta")]) is False
    assert default_foreach([]) is False


def test_cache_buckets_partition_the_params_in_order(monkeypatch):
    monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", 100)
    params = random_params(BUCKET_SHAPES, torch.float32, seed=0)  # 35, 40, 60, 1, 144, 270, 11
    # consecutive tensors while the sum stays ≤ 100; a larger tensor is a bucket of its own
    assert common.cache_buckets(params) == [[0, 1], [2, 3], [4], [5], [6]]
    monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", 1 << 16)
    assert common.cache_buckets(params) == [list(range(7))]
