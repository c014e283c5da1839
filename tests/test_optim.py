"""optreg.optim against torch.optim: same trajectories, same state dicts, same optimizer API.

Sections: parity with torch on real training runs; property tests (hypothesis) of bitwise equality
with torch and between optreg's two kernels; the paper's schedule-scaled decay; schedulers; state
dicts; the rest of the ``torch.optim.Optimizer`` API; argument validation.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

import optreg.optim.adam as adam_module
from optim_helpers import (
    BUCKET_SHAPES,
    MODELS,
    SHAPES,
    assert_equal_params,
    assert_same_params,
    random_params,
    run_random_grads,
    train,
    twins,
)
from optim_helpers import torch_signature_matches as _torch_signature_matches
from optreg.optim import Adam, AdamW
from optreg.optim import _common as common
from optreg.optim._common import default_foreach
from optreg.regularization import param_groups


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tensors are tiny, and threads only add contention on a shared
    machine. Restored after the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- models and runs


WD = 0.05
# variant -> (optreg optimizer, torch optimizer, sign of the loss). "weights" variants give torch
# the same decay as optreg's default decay="weights" through param groups (only ndim > 1 decays).
VARIANTS: dict[str, tuple[Callable, Callable, float]] = {
    "adam": (
        lambda ps, **kw: Adam(ps, lr=1e-2, **kw),
        lambda ps, **kw: torch.optim.Adam(ps, lr=1e-2, **kw),
        1.0,
    ),
    "l2_weights": (
        lambda ps, **kw: Adam(ps, lr=1e-2, betas=(0.8, 0.99), weight_decay=WD, **kw),
        lambda ps, **kw: torch.optim.Adam(param_groups(ps, WD), lr=1e-2, betas=(0.8, 0.99), **kw),
        1.0,
    ),
    "l2_all": (
        lambda ps, **kw: Adam(ps, lr=1e-2, eps=1e-6, weight_decay=WD, decay="all", **kw),
        lambda ps, **kw: torch.optim.Adam(ps, lr=1e-2, eps=1e-6, weight_decay=WD, **kw),
        1.0,
    ),
    "adamw_weights": (
        lambda ps, **kw: AdamW(ps, lr=1e-2, weight_decay=WD, **kw),
        lambda ps, **kw: torch.optim.AdamW(param_groups(ps, WD), lr=1e-2, **kw),
        1.0,
    ),
    "adamw_all": (
        lambda ps, **kw: AdamW(ps, lr=1e-2, weight_decay=WD, decay="all", **kw),
        lambda ps, **kw: torch.optim.AdamW(ps, lr=1e-2, weight_decay=WD, **kw),
        1.0,
    ),
    "amsgrad_l2": (
        lambda ps, **kw: Adam(ps, lr=1e-2, weight_decay=WD, amsgrad=True, **kw),
        lambda ps, **kw: torch.optim.Adam(param_groups(ps, WD), lr=1e-2, amsgrad=True, **kw),
        1.0,
    ),
    "amsgrad_adamw": (
        lambda ps, **kw: AdamW(ps, lr=1e-2, weight_decay=WD, amsgrad=True, **kw),
        lambda ps, **kw: torch.optim.AdamW(param_groups(ps, WD), lr=1e-2, amsgrad=True, **kw),
        1.0,
    ),
    "maximize_l2": (
        lambda ps, **kw: Adam(ps, lr=1e-2, weight_decay=WD, maximize=True, **kw),
        lambda ps, **kw: torch.optim.Adam(param_groups(ps, WD), lr=1e-2, maximize=True, **kw),
        -1.0,
    ),
    "maximize_adamw": (
        lambda ps, **kw: AdamW(ps, lr=1e-2, weight_decay=WD, maximize=True, **kw),
        lambda ps, **kw: torch.optim.AdamW(param_groups(ps, WD), lr=1e-2, maximize=True, **kw),
        -1.0,
    ),
}

# ----------------------------------------------------------------------------- parity with torch


PARITY_VARIANTS = ["adam", "l2_weights", "l2_all", "adamw_weights", "adamw_all", "amsgrad_l2",
                   "maximize_l2"]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("variant", PARITY_VARIANTS)
def test_matches_torch_over_300_training_steps(variant, model_name, dtype):
    """300 training steps: optreg's single-tensor and foreach kernels against torch's matching
    paths (foreach=False / True), on four copies of the model.

    The gradients are real (``loss.backward`` on random batches, at the parameters of the first
    copy) and each step all four optimizers get the same gradient, so the test compares update
    rules on a realistic gradient sequence. Tolerances are the issue's (float32: atol 1e-6, rtol
    1e-5; float64: 1e-12); in fact the runs agree bitwise (see ``test_bitwise_equal_to_torch``).
    On CPU optreg's two kernels agree bitwise, checked too.
    """
    make_optreg, make_torch, sign = VARIANTS[variant]
    models = [m for pair in (twins(model_name, dtype), twins(model_name, dtype)) for m in pair]
    start = [p.detach().clone() for p in models[0].parameters()]
    params = [list(m.parameters()) for m in models]
    opts = [
        make_optreg(params[0], foreach=False),
        make_torch(params[1], foreach=False),
        make_optreg(params[2], foreach=True),
        make_torch(params[3], foreach=True),
    ]
    for k in range(300):
        g = torch.Generator().manual_seed(k)
        x = torch.randn(8, 25, generator=g, dtype=dtype)
        y = torch.randint(0, 3, (8,), generator=g)
        opts[0].zero_grad()
        (sign * F.cross_entropy(models[0](x), y)).backward()
        for ps in params[1:]:
            for p, source in zip(ps, params[0], strict=True):
                p.grad = source.grad.clone()
        for opt in opts:
            opt.step()
    assert_same_params(models[0], models[1], dtype)  # single-tensor path vs torch's
    assert_same_params(models[2], models[3], dtype)  # foreach path vs torch's
    assert_equal_params(models[0], models[2])  # optreg single vs foreach: bitwise on CPU
    assert not any(torch.equal(a, b) for a, b in zip(start, params[0], strict=True)), "must move"


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


@settings(max_examples=40, deadline=None)
@given(
    shapes=SHAPES,
    hyper=HYPER,
    decoupled=st.booleans(),
    decay=st.sampled_from(["weights", "all"]),
    foreach=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_bitwise_equal_to_torch(shapes, hyper, decoupled, decay, foreach, dtype):
    """Any hyperparameters, shapes (incl. 0-D), skipped gradients: optreg == torch, bit for bit,
    on each path against torch's matching path (foreach=False / True)."""
    ours = random_params(shapes, dtype, seed=1)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    wd = hyper.pop("weight_decay")
    opt_ours = Adam(
        ours, weight_decay=wd, decoupled_weight_decay=decoupled, decay=decay, foreach=foreach,
        **hyper
    )
    groups = param_groups(theirs, wd, decay)
    opt_theirs = torch.optim.Adam(
        groups, decoupled_weight_decay=decoupled, foreach=foreach, **hyper
    )
    run_random_grads(ours, opt_ours, 6, seed=2)
    run_random_grads(theirs, opt_theirs, 6, seed=2)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(opt_ours.state[a]["exp_avg_sq"], opt_theirs.state[b]["exp_avg_sq"])


@settings(max_examples=40, deadline=None)
@given(
    shapes=SHAPES,
    hyper=HYPER,
    decoupled=st.booleans(),
    decay=st.sampled_from(["weights", "all"]),
    decay_scale=st.sampled_from(["lr", "schedule"]),
)
def test_single_and_foreach_kernels_agree_bitwise_on_cpu(
    shapes, hyper, decoupled, decay, decay_scale
):
    """The two kernels run the same operations in the same order: on CPU, bitwise equal."""
    if decay_scale == "schedule":
        decoupled = True
    a = random_params(shapes, torch.float32, seed=3)
    b = [p.detach().clone().requires_grad_() for p in a]
    kw = {"decoupled_weight_decay": decoupled, "decay": decay, "decay_scale": decay_scale, **hyper}
    opt_a, opt_b = Adam(a, foreach=False, **kw), Adam(b, foreach=True, **kw)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=2, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=2, gamma=0.5)
    for k in range(3):
        run_random_grads(a, opt_a, 2, seed=4 + k)
        run_random_grads(b, opt_b, 2, seed=4 + k)
        sched_a.step()
        sched_b.step()
    for pa, pb in zip(a, b, strict=True):
        assert torch.equal(pa, pb)
        for key, value in opt_a.state[pa].items():
            assert torch.equal(value, opt_b.state[pb][key]), key


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
def test_steplr_same_as_torch(foreach):
    ours, theirs = twins("mlp", torch.float32)
    runs = [
        (ours, AdamW(ours.parameters(), lr=0.02, decay="all", foreach=foreach)),
        (theirs, torch.optim.AdamW(theirs.parameters(), lr=0.02, foreach=foreach)),
    ]
    for model, opt in runs:
        train(model, opt, 40, scheduler=torch.optim.lr_scheduler.StepLR(opt, 7, gamma=0.3))
    assert runs[0][1].param_groups[0]["lr"] == pytest.approx(0.02 * 0.3**5)
    assert_equal_params(ours, theirs)


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

STATE_CASES = {
    "adam": lambda ps, fe: Adam(ps, lr=1e-2, foreach=fe),
    "amsgrad_l2": lambda ps, fe: Adam(ps, lr=1e-2, weight_decay=WD, amsgrad=True, foreach=fe),
    "adamw_paper": lambda ps, fe: AdamW(ps, lr=1e-2, weight_decay=WD, decay_scale="schedule",
                                        foreach=fe),
}  # fmt: skip


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("case", list(STATE_CASES))
def test_resume_from_state_dict_is_bit_identical(case, foreach, tmp_path):
    """Train N, save (torch.save), load (weights_only=True) into a fresh optimizer, train M ==
    train N + M uninterrupted; also load_state_dict of the in-memory dict."""
    make = STATE_CASES[case]
    straight, resumed = twins("varied", torch.float32)
    opt = make(straight.parameters(), foreach)
    train(straight, opt, 15)
    train(straight, opt, 15, start=15)

    opt_a = make(resumed.parameters(), foreach)
    train(resumed, opt_a, 15)
    torch.save(opt_a.state_dict(), tmp_path / "opt.pt")
    in_memory = copy.deepcopy(opt_a.state_dict())
    from_disk = copy.deepcopy(resumed)
    opt_b = make(from_disk.parameters(), foreach)
    opt_b.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    opt_c = make(resumed.parameters(), foreach)
    opt_c.load_state_dict(in_memory)
    train(from_disk, opt_b, 15, start=15)
    train(resumed, opt_c, 15, start=15)
    assert_equal_params(straight, from_disk)
    assert_equal_params(straight, resumed)


def test_state_keys_and_step_dtype_match_torch():
    ours, theirs = twins("mlp", torch.float32)
    opt_ours = Adam(ours.parameters(), amsgrad=True)
    opt_theirs = torch.optim.Adam(theirs.parameters(), amsgrad=True)
    train(ours, opt_ours, 2)
    train(theirs, opt_theirs, 2)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        s, t = opt_ours.state[p], opt_theirs.state[q]
        assert set(s) == set(t) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
        assert s["step"].dtype == t["step"].dtype == torch.float32
        assert s["step"].shape == () and s["step"].device.type == "cpu" and s["step"] == 2


def test_step_dtype_follows_default_dtype_like_torch():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
        p.grad, q.grad = torch.ones(2), torch.ones(2)
        opt_ours, opt_theirs = Adam([p]), torch.optim.Adam([q])
        opt_ours.step()
        opt_theirs.step()
        assert opt_ours.state[p]["step"].dtype == opt_theirs.state[q]["step"].dtype
    finally:
        torch.set_default_dtype(previous)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
def test_torch_state_dict_loads_into_optreg_and_continues_like_torch(decoupled, foreach, tmp_path):
    """A torch.optim.Adam(W) state dict (torch's group keys, no decay/decay_scale) loads into
    optreg and the run continues exactly as torch's own continuation."""
    torch_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ours_cls = AdamW if decoupled else Adam
    source, _ = twins("convnet", torch.float32)
    opt_src = torch_cls(source.parameters(), lr=1e-2, weight_decay=WD, foreach=foreach)
    train(source, opt_src, 10)
    torch.save(opt_src.state_dict(), tmp_path / "torch.pt")

    ours = copy.deepcopy(source)
    opt_ours = ours_cls(ours.parameters(), lr=0.5, weight_decay=0.0, decay="all", foreach=foreach)
    opt_ours.load_state_dict(torch.load(tmp_path / "torch.pt", weights_only=True))
    group = opt_ours.param_groups[0]
    assert group["lr"] == 1e-2 and group["weight_decay"] == WD
    assert group["decoupled_weight_decay"] is decoupled and group["decay_scale"] == "lr"
    assert group["initial_lr"] == 1e-2
    train(ours, opt_ours, 10, start=10)
    train(source, opt_src, 10, start=10)
    assert_equal_params(ours, source)


@pytest.mark.parametrize("decoupled", [False, True])
def test_optreg_state_dict_loads_into_torch_and_continues_like_optreg(decoupled):
    torch_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    source, _ = twins("mlp", torch.float32)
    opt_src = Adam(source.parameters(), lr=1e-2, weight_decay=WD, decay="all",
                   decoupled_weight_decay=decoupled)
    train(source, opt_src, 10)
    theirs = copy.deepcopy(source)
    opt_theirs = torch_cls(theirs.parameters())
    opt_theirs.load_state_dict(copy.deepcopy(opt_src.state_dict()))
    assert opt_theirs.param_groups[0]["decoupled_weight_decay"] is decoupled
    train(theirs, opt_theirs, 10, start=10)
    train(source, opt_src, 10, start=10)
    assert_equal_params(source, theirs)


def test_old_state_dict_with_python_number_step_loads():
    """Old PyTorch saved ``step`` as a Python int; it becomes the usual float32 tensor."""
    reference, old = twins("mlp", torch.float32)
    opt_ref = torch.optim.Adam(reference.parameters(), lr=1e-2)
    train(reference, opt_ref, 5)
    saved = copy.deepcopy(opt_ref.state_dict())
    for s in saved["state"].values():
        s["step"] = int(s["step"].item())
    old.load_state_dict(reference.state_dict())
    opt_old = Adam(old.parameters(), lr=1e-2)
    opt_old.load_state_dict(saved)
    for s in opt_old.state.values():
        assert torch.is_tensor(s["step"]) and s["step"].dtype == torch.float32 and s["step"] == 5
    train(old, opt_old, 5, start=5)
    train(reference, opt_ref, 5, start=5)
    assert_equal_params(old, reference)


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


# ----------------------------------------------------------------------------- optimizer API


def test_step_returns_closure_loss_and_runs_closure_with_grad_enabled():
    model, _ = twins("mlp", torch.float32)
    opt = Adam(model.parameters())
    x, y = torch.randn(4, 25), torch.tensor([0, 1, 2, 0])
    calls = []

    def closure():
        calls.append(torch.is_grad_enabled())
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    with torch.no_grad():
        expected = F.cross_entropy(model(x), y)  # the loss at the parameters before the step
        loss = opt.step(closure)
    assert calls == [True]
    assert loss.requires_grad and torch.equal(loss.detach(), expected)
    assert not torch.equal(F.cross_entropy(model(x), y).detach(), expected)  # params moved
    assert opt.step() is None


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("opt_cls", [Adam, AdamW])
def test_parameter_without_gradient_is_left_alone(opt_cls, foreach):
    with_grad = torch.randn(3, 3, requires_grad=True)
    without = torch.randn(3, 3, requires_grad=True)
    before = without.detach().clone()
    opt = opt_cls([with_grad, without], lr=0.1, weight_decay=0.5, foreach=foreach)
    for _ in range(3):
        with_grad.grad = torch.randn(3, 3)
        opt.step()
    assert torch.equal(without, before)  # not even decoupled decay touches it
    assert without not in opt.state and len(opt.state[with_grad]) == 3


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_gradients_are_never_modified(maximize, decoupled, foreach):
    params = [torch.randn(3, 2, requires_grad=True), torch.randn(2, requires_grad=True)]
    grads = [torch.randn(3, 2), torch.randn(2)]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt = Adam(params, weight_decay=0.3, decay="all", decoupled_weight_decay=decoupled,
               maximize=maximize,
               foreach=foreach)  # fmt: skip
    opt.step()
    opt.step()
    for p, g in zip(params, grads, strict=True):
        assert torch.equal(p.grad, g)


def test_sparse_gradient_raises_clear_error():
    emb = nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse gradients"):
        Adam(emb.parameters()).step()


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


def test_repr_lists_every_group_option():
    text = repr(AdamW([torch.zeros(2, 2, requires_grad=True)], lr=0.01))
    assert text.startswith("AdamW (")
    for fragment in ("lr: 0.01", "weight_decay: 0.01", "decoupled_weight_decay: True",
                     "decay: weights", "decay_scale: lr", "initial_lr: 0.01",
                     "betas: (0.9, 0.999)"):
        assert fragment in text


def test_deepcopy_gives_an_independent_identical_optimizer():
    model, _ = twins("convnet", torch.float32)
    opt = AdamW(model.parameters(), lr=1e-2, amsgrad=True)
    train(model, opt, 5)
    model2, opt2 = copy.deepcopy((model, opt))
    assert opt2.param_groups[0]["params"][0] is next(model2.parameters())
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        assert opt.state[p]["exp_avg"].data_ptr() != opt2.state[q]["exp_avg"].data_ptr()
    train(model2, opt2, 5, start=5)
    train(model, opt, 5, start=5)
    assert_equal_params(model, model2)
    assert opt2.state[next(model2.parameters())]["step"] == 10


def test_add_param_group_fills_defaults_and_group_options_override():
    """A later group gets the defaults plus initial_lr; its own weight_decay/decay override;
    the two-group run equals torch with the same groups."""
    ours, theirs = twins("mlp", torch.float32)
    (w0, b0, w1, b1, w2, b2), (v0, c0, v1, c1, v2, c2) = ours.parameters(), theirs.parameters()
    opt_ours = Adam([w0, b0, w1, b1], lr=1e-2, weight_decay=WD, decay="all")
    opt_ours.add_param_group({"params": [w2, b2], "weight_decay": 0.0, "lr": 3e-2})
    opt_theirs = torch.optim.Adam([v0, c0, v1, c1], lr=1e-2, weight_decay=WD)
    opt_theirs.add_param_group({"params": [v2, c2], "weight_decay": 0.0, "lr": 3e-2})
    group = opt_ours.param_groups[1]
    assert (
        group["initial_lr"] == 3e-2 and group["decay"] == "all" and group["betas"] == (0.9, 0.999)
    )
    train(ours, opt_ours, 20)
    train(theirs, opt_theirs, 20)
    assert_equal_params(ours, theirs)
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt_ours.add_param_group({"params": [w0]})
    with pytest.raises(ValueError, match="weight_decay"):
        opt_ours.add_param_group(
            {"params": [torch.zeros(2, requires_grad=True)], "weight_decay": -1}
        )
    assert len(opt_ours.param_groups) == 2


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


def test_mixed_dtypes_or_devices_in_one_group_raise_but_separate_groups_work():
    a32 = torch.zeros(2, requires_grad=True)
    a64 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    meta = torch.zeros(2, device="meta", requires_grad=True)
    with pytest.raises(ValueError, match="device and dtype"):
        Adam([a32, a64])
    with pytest.raises(ValueError, match="device and dtype"):
        Adam([a32, meta])
    with pytest.raises(ValueError, match="complex"):
        Adam([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])
    opt = Adam([{"params": [a32]}, {"params": [a64]}], foreach=True)
    a32.grad, a64.grad = torch.ones(2), torch.ones(2, dtype=torch.float64)
    opt.step()
    assert a32.dtype == torch.float32 and a64[0].item() == pytest.approx(-1e-3)


def test_foreach_none_picks_foreach_for_small_cpu_sets_and_single_for_large(monkeypatch):
    small = [torch.zeros(10, 10), torch.zeros(10)]
    assert default_foreach(small) is True
    assert default_foreach([torch.zeros(common.FOREACH_MAX_NUMEL_CPU + 1)]) is False
    assert default_foreach([torch.zeros(2, device="meta")]) is False
    assert default_foreach([]) is False

    called = []
    for name in ("_single_tensor_adam", "_multi_tensor_adam"):
        real = getattr(adam_module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            called.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(adam_module, name, spy)
    p = torch.zeros(3, 3, requires_grad=True)
    p.grad = torch.ones(3, 3)
    Adam([p]).step()
    Adam([p], foreach=False).step()
    Adam([p], foreach=True).step()
    assert called == ["_multi_tensor_adam", "_single_tensor_adam", "_multi_tensor_adam"]


def test_decay_weights_skips_biases_and_all_decays_them():
    w = torch.ones(2, 2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    for decay, b_expected in (("weights", 1.0), ("all", 0.5)):
        with torch.no_grad():
            w.fill_(1.0)
            b.fill_(1.0)
        w.grad, b.grad = torch.zeros(2, 2), torch.zeros(2)
        AdamW([w, b], lr=0.5, weight_decay=1.0, decay=decay).step()
        assert torch.equal(w, torch.full((2, 2), 0.5))
        assert torch.equal(b, torch.full((2,), b_expected))


def test_adamw_defaults_match_torch_adamw():
    p = torch.zeros(2, requires_grad=True)
    ours, theirs = AdamW([p]).defaults, torch.optim.AdamW([p]).defaults
    for key in ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach"):
        assert ours[key] == theirs[key], key
    assert ours["decoupled_weight_decay"] is True
    assert Adam([p]).defaults["decoupled_weight_decay"] is False


def test_adamw_keeps_decoupled_when_loading_a_coupled_state_dict():
    p = torch.zeros(2, requires_grad=True)
    coupled = Adam([p], weight_decay=0.1).state_dict()
    opt = AdamW([p])
    opt.load_state_dict(coupled)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True


# ----------------------------------------------------------------------------- validation

BAD_ARGUMENTS = [
    ({"lr": -1e-3}, "lr"),
    ({"lr": math.nan}, "lr"),
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
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_ARGUMENTS)
def test_invalid_hyperparameter_raises_value_error_naming_it(kwargs, name):
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=name):
        Adam(params, **kwargs)
    group_kwargs = {k: v for k, v in kwargs.items() if k != "decoupled_weight_decay"}
    with pytest.raises(ValueError, match=name):  # the same check for a param group's own value
        Adam([{"params": params, **group_kwargs}],
             decoupled_weight_decay=kwargs.get("decoupled_weight_decay", False))


def test_adamw_rejects_negative_weight_decay():
    with pytest.raises(ValueError, match="weight_decay"):
        AdamW([torch.zeros(2, requires_grad=True)], weight_decay=-1.0)


def test_cache_buckets_partition_the_params_in_order(monkeypatch):
    monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", 100)
    params = random_params(BUCKET_SHAPES, torch.float32, seed=0)  # 35, 40, 60, 1, 144, 270, 11
    # consecutive tensors while the sum stays ≤ 100; a larger tensor is a bucket of its own
    assert common.cache_buckets(params) == [[0, 1], [2, 3], [4], [5], [6]]
    monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", 1 << 16)
    assert common.cache_buckets(params) == [list(range(7))]


@pytest.mark.parametrize("bucket", [1, 50, 1 << 16])
@pytest.mark.parametrize(
    "options",
    [{}, {"weight_decay": 0.1}, {"weight_decay": 0.1, "decoupled_weight_decay": True},
     {"amsgrad": True, "maximize": True, "weight_decay": 0.05}],
    ids=["adam", "l2", "adamw", "amsgrad-maximize-l2"],
)
def test_bucketed_foreach_kernel_is_bitwise_torch_foreach(monkeypatch, bucket, options):
    """The foreach kernel runs over cache-sized buckets of tensors on the CPU: same bits."""
    monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", bucket)
    ours = random_params(BUCKET_SHAPES, torch.float32, seed=5)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    options = dict(options)
    decoupled = options.pop("decoupled_weight_decay", False)
    wd = options.pop("weight_decay", 0.0)
    opt_ours = Adam(ours, weight_decay=wd, decoupled_weight_decay=decoupled, decay="all",
                    foreach=True,
                    **options)
    torch_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt_theirs = torch_cls(theirs, weight_decay=wd, foreach=True, **options)
    run_random_grads(ours, opt_ours, 5, seed=6)
    run_random_grads(theirs, opt_theirs, 5, seed=6)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        for key, value in opt_theirs.state[b].items():
            assert torch.equal(opt_ours.state[a][key], value), key


# ----------------------------------------------------------------------------- torch's signature


@pytest.mark.parametrize(("ours", "theirs"), [(Adam, torch.optim.Adam),
                                              (AdamW, torch.optim.AdamW)])
def test_signature_is_torchs(ours, theirs):
    _torch_signature_matches(ours, theirs)


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


def test_optreg_0_1_state_dict_with_decoupled_key_loads():
    p = torch.zeros(2, requires_grad=True)
    state = AdamW([p], weight_decay=0.1).state_dict()
    group = state["param_groups"][0]
    group["decoupled"] = group.pop("decoupled_weight_decay")  # as optreg 0.1 saved it
    opt = Adam([p])
    opt.load_state_dict(state)
    assert opt.param_groups[0]["decoupled_weight_decay"] is True
    assert "decoupled" not in opt.param_groups[0]


@pytest.mark.parametrize(("kwargs", "torch_text"), [
    ({"lr": -1.0}, "Invalid learning rate: -1.0"),
    ({"eps": -1.0}, "Invalid epsilon value: -1.0"),
    ({"betas": (1.0, 0.999)}, "Invalid beta parameter at index 0: 1.0"),
    ({"betas": (0.9, -0.5)}, "Invalid beta parameter at index 1: -0.5"),
    ({"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
    ({"lr": torch.tensor([1e-3, 1e-3])}, "Tensor lr must be 1-element"),
])
def test_errors_contain_torchs_own_text(kwargs, torch_text):
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=re.escape(torch_text)):
        torch.optim.Adam(p, **kwargs)
    with pytest.raises(ValueError, match=re.escape(torch_text)):
        Adam(p, **kwargs)


@pytest.mark.parametrize("value", ["0.1", None, [1e-3]])
def test_non_number_lr_is_a_type_error_naming_lr(value):
    with pytest.raises(TypeError, match="lr must be a number"):
        Adam([torch.zeros(2, requires_grad=True)], lr=value)


@pytest.mark.parametrize("flag", ["capturable", "differentiable", "fused"])
def test_torch_only_flags_bind_but_true_is_refused(flag):
    p = [torch.zeros(2, requires_grad=True)]
    Adam(p, **{flag: False})
    with pytest.raises(ValueError, match=f"{flag}=True"):
        Adam(p, **{flag: True})


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
