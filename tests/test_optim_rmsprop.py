"""optreg.RMSprop against torch.optim.RMSprop: same trajectories, state dicts and optimizer API.

Sections: parity with torch on real training runs; property tests (hypothesis) of bitwise equality
with torch and between optreg's two kernels; the equations (plain, centered, momentum, the
first step) and RMSprop as Adam's second moment; schedulers; state dicts; the optimizer API;
argument validation.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import optreg.optim.rmsprop as rmsprop_module
from optim_helpers import (
    BUCKET_SHAPES,
    MODELS,
    SHAPES,
    assert_equal_params,
    assert_groups_must_be_homogeneous,
    assert_matches_torch_on_both_kernels,
    assert_optreg_state_dict_continues_in_torch,
    assert_resume_is_bit_identical,
    assert_step_runs_closure_and_returns_its_loss,
    assert_torch_state_dict_continues_like_torch,
    random_params,
    run_random_grads,
    spy_on_kernels,
    torch_signature_matches,
    train,
    twins,
)
from optreg.optim import Adam, RMSprop
from optreg.optim import _common as common
from optreg.regularization import param_groups

WD = 0.05
STATE_KEYS = ("step", "square_avg", "momentum_buffer", "grad_avg")
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


def optreg_rmsprop(params, options: dict[str, Any], decay: str, **kw) -> RMSprop:
    return RMSprop(params, **options, decay=decay, **kw)


def torch_rmsprop(params, options: dict[str, Any], decay: str, **kw) -> torch.optim.RMSprop:
    """torch.optim.RMSprop with optreg's decay scope, given through param groups."""
    options = dict(options)
    groups = param_groups(params, options.pop("weight_decay", 0.0), decay)
    return torch.optim.RMSprop(groups, **options, **kw)


def assert_bitwise(a: torch.Tensor, b: torch.Tensor) -> None:
    """Bit for bit, nan where the other has nan (ε = 0 with α = 0 divides 0 by 0)."""
    torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


# ----------------------------------------------------------------------------- parity with torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_torch_bitwise_over_300_training_steps(variant, model_name, dtype):
    """Both kernels against torch's matching paths, 300 real training steps: bit for bit."""
    options, decay, sign = VARIANTS[variant]
    assert_matches_torch_on_both_kernels(
        lambda ps, **kw: optreg_rmsprop(ps, options, decay, **kw),
        lambda ps, **kw: torch_rmsprop(ps, options, decay, **kw),
        model_name, dtype, steps=300, sign=sign,
    )  # fmt: skip


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


@settings(max_examples=40, deadline=None)
@given(
    shapes=SHAPES,
    hyper=HYPER,
    decay=st.sampled_from(["weights", "all"]),
    foreach=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_bitwise_equal_to_torch(shapes, hyper, decay, foreach, dtype):
    """Any hyperparameters, shapes (incl. 0-D), skipped gradients: optreg == torch, bit for bit,
    on each path against torch's matching path, parameters and every state tensor."""
    ours = random_params(shapes, dtype, seed=1)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt_ours = optreg_rmsprop(ours, hyper, decay, foreach=foreach)
    opt_theirs = torch_rmsprop(theirs, hyper, decay, foreach=foreach)
    run_random_grads(ours, opt_ours, 6, seed=2)
    run_random_grads(theirs, opt_theirs, 6, seed=2)
    for a, b in zip(ours, theirs, strict=True):
        assert_bitwise(a, b)
        assert set(opt_ours.state[a]) == set(opt_theirs.state[b])
        for key, value in opt_theirs.state[b].items():
            assert_bitwise(opt_ours.state[a][key], value)


@settings(max_examples=40, deadline=None)
@given(shapes=SHAPES, hyper=HYPER, decay=st.sampled_from(["weights", "all"]))
def test_single_and_foreach_kernels_agree_bitwise_on_cpu(shapes, hyper, decay):
    """The two kernels run the same operations in the same order: on CPU, bitwise equal."""
    a = random_params(shapes, torch.float32, seed=3)
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_a = optreg_rmsprop(a, hyper, decay, foreach=False)
    opt_b = optreg_rmsprop(b, hyper, decay, foreach=True)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=2, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=2, gamma=0.5)
    for k in range(3):
        run_random_grads(a, opt_a, 2, seed=4 + k)
        run_random_grads(b, opt_b, 2, seed=4 + k)
        sched_a.step()
        sched_b.step()
    for pa, pb in zip(a, b, strict=True):
        assert_bitwise(pa, pb)
        for key, value in opt_a.state[pa].items():
            assert_bitwise(value, opt_b.state[pb][key])


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


@pytest.mark.parametrize("bucket", [1, 50, 1 << 16])
@pytest.mark.parametrize(
    "options",
    [{}, {"centered": True, "momentum": 0.9, "weight_decay": 0.1},
     {"momentum": 0.5, "maximize": True, "weight_decay": 0.05}],
    ids=["plain", "centered-momentum-l2", "momentum-maximize-l2"],
)
def test_bucketed_foreach_kernel_is_bitwise_torch_foreach(monkeypatch, bucket, options):
    """The foreach kernel runs over cache-sized buckets of tensors on the CPU: same bits."""
    monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", bucket)
    ours = random_params(BUCKET_SHAPES, torch.float32, seed=5)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt_ours = RMSprop(ours, decay="all", foreach=True, **options)
    opt_theirs = torch.optim.RMSprop(theirs, foreach=True, **options)
    run_random_grads(ours, opt_ours, 5, seed=6)
    run_random_grads(theirs, opt_theirs, 5, seed=6)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        for key, value in opt_theirs.state[b].items():
            assert torch.equal(opt_ours.state[a][key], value), key


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


# ----------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("schedule", ["step", "lambda"])
def test_lr_schedulers_same_as_torch(schedule, foreach):
    ours, theirs = twins("convnet", torch.float32)
    runs = []
    for model, cls in ((ours, RMSprop), (theirs, torch.optim.RMSprop)):
        opt = cls(model.parameters(), lr=1e-2, momentum=0.5, centered=True, weight_decay=WD,
                  foreach=foreach, **({"decay": "all"} if cls is RMSprop else {}))
        if schedule == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, 7, gamma=0.3)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 / (1 + k / 10))
        train(model, opt, 40, scheduler=sched)
        runs.append(opt)
    expected = 1e-2 * 0.3**5 if schedule == "step" else 1e-2 / 5
    assert runs[0].param_groups[0]["lr"] == pytest.approx(expected)
    assert_equal_params(ours, theirs)


# ----------------------------------------------------------------------------- state dicts

STATE_CASES = {
    "plain": lambda ps, fe: RMSprop(ps, lr=1e-3, foreach=fe),
    "centered_momentum_l2": lambda ps, fe: RMSprop(ps, lr=1e-3, momentum=0.9, centered=True,
                                                   weight_decay=WD, foreach=fe),
}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("case", list(STATE_CASES))
def test_resume_from_state_dict_is_bit_identical(case, foreach, tmp_path):
    make = STATE_CASES[case]
    assert_resume_is_bit_identical(lambda ps: make(ps, foreach), tmp_path)


@pytest.mark.parametrize("foreach", [False, True])
def test_torch_state_dict_loads_into_optreg_and_continues_like_torch(foreach, tmp_path):
    """torch's group keys (no ``decay``: the constructor's applies) and state load; the run
    continues exactly as torch's own continuation."""
    opt = assert_torch_state_dict_continues_like_torch(
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3, alpha=0.9, momentum=0.9, centered=True,
                                       weight_decay=WD, foreach=foreach),
        lambda ps: RMSprop(ps, lr=0.5, decay="all", foreach=foreach),
        tmp_path,
    )
    assert opt.param_groups[0]["decay"] == "all"


def test_optreg_state_dict_loads_into_torch_and_continues_like_optreg():
    assert_optreg_state_dict_continues_in_torch(
        lambda ps: RMSprop(ps, lr=1e-3, momentum=0.5, centered=True, weight_decay=WD,
                           decay="all"),
        lambda ps: torch.optim.RMSprop(ps),
    )


@pytest.mark.parametrize(("momentum", "centered"), [(0.0, False), (0.9, True)])
def test_state_keys_and_step_match_torch(momentum, centered):
    ours, theirs = twins("mlp", torch.float32)
    opt_ours = RMSprop(ours.parameters(), momentum=momentum, centered=centered)
    opt_theirs = torch.optim.RMSprop(theirs.parameters(), momentum=momentum, centered=centered)
    train(ours, opt_ours, 2)
    train(theirs, opt_theirs, 2)
    expected = set(STATE_KEYS if momentum else STATE_KEYS[:2])
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        s, t = opt_ours.state[p], opt_theirs.state[q]
        assert set(s) == set(t) == expected
        assert s["step"].dtype == t["step"].dtype == torch.float32
        assert s["step"].shape == () and s["step"].device.type == "cpu" and s["step"] == 2
    ours_groups = opt_ours.state_dict()["param_groups"][0]
    assert set(ours_groups) == set(opt_theirs.state_dict()["param_groups"][0]) | {"decay"}


def test_step_dtype_follows_default_dtype_like_torch():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
        p.grad, q.grad = torch.ones(2), torch.ones(2)
        opt_ours, opt_theirs = RMSprop([p]), torch.optim.RMSprop([q])
        opt_ours.step()
        opt_theirs.step()
        assert opt_ours.state[p]["step"].dtype == opt_theirs.state[q]["step"].dtype
        assert opt_ours.state[p]["step"].dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)


def test_old_state_dict_with_python_number_step_loads():
    """Old PyTorch saved ``step`` as a Python number; it becomes the usual float32 tensor."""
    reference, old = twins("mlp", torch.float32)
    opt_ref = torch.optim.RMSprop(reference.parameters(), lr=1e-3)
    train(reference, opt_ref, 5)
    saved = copy.deepcopy(opt_ref.state_dict())
    for s in saved["state"].values():
        s["step"] = int(s["step"].item())
    old.load_state_dict(reference.state_dict())
    opt_old = RMSprop(old.parameters(), lr=1e-3)
    opt_old.load_state_dict(saved)
    for s in opt_old.state.values():
        assert torch.is_tensor(s["step"]) and s["step"].dtype == torch.float32 and s["step"] == 5
    train(old, opt_old, 5, start=5)
    train(reference, opt_ref, 5, start=5)
    assert_equal_params(old, reference)


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
    assert set(opt_ours.state[next(ours.parameters())]) == set(STATE_KEYS)


# ----------------------------------------------------------------------------- optimizer API


def test_step_runs_the_closure_and_returns_its_loss():
    assert_step_runs_closure_and_returns_its_loss(lambda ps: RMSprop(ps, centered=True))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_left_alone(foreach):
    with_grad = torch.randn(3, 3, requires_grad=True)
    without = torch.randn(3, 3, requires_grad=True)
    before = without.detach().clone()
    opt = RMSprop([with_grad, without], momentum=0.9, weight_decay=0.5, foreach=foreach)
    for _ in range(3):
        with_grad.grad = torch.randn(3, 3)
        opt.step()
    assert torch.equal(without, before)
    assert without not in opt.state and set(opt.state[with_grad]) == set(STATE_KEYS[:3])


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
@pytest.mark.parametrize("maximize", [False, True])
def test_gradients_are_never_modified(maximize, weight_decay, foreach):
    params = [torch.randn(3, 2, requires_grad=True), torch.randn(2, requires_grad=True)]
    grads = [torch.randn(3, 2), torch.randn(2)]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt = RMSprop(params, momentum=0.9, centered=True, weight_decay=weight_decay,
                  maximize=maximize, foreach=foreach)
    opt.step()
    opt.step()
    for p, g in zip(params, grads, strict=True):
        assert torch.equal(p.grad, g)


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


def test_foreach_none_picks_foreach_for_small_cpu_sets_and_single_for_large(monkeypatch):
    called = spy_on_kernels(monkeypatch, rmsprop_module,
                            ("_single_tensor_rmsprop", "_multi_tensor_rmsprop"))
    small = torch.zeros(3, 3, requires_grad=True)
    large = torch.zeros(common.FOREACH_MAX_NUMEL_CPU + 1, requires_grad=True)
    small.grad, large.grad = torch.ones(3, 3), torch.ones(large.shape)
    for params, foreach in (([small], None), ([large], None), ([small], False), ([large], True)):
        RMSprop(params, foreach=foreach).step()
    assert called == ["_multi_tensor_rmsprop", "_single_tensor_rmsprop", "_single_tensor_rmsprop",
                      "_multi_tensor_rmsprop"]


def test_sparse_gradient_raises_clear_error():
    emb = nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match="RMSprop does not support sparse gradients"):
        RMSprop(emb.parameters()).step()


def test_add_param_group_fills_defaults_and_group_options_override():
    ours, theirs = twins("mlp", torch.float32)
    (w0, b0, w1, b1, w2, b2), (v0, c0, v1, c1, v2, c2) = ours.parameters(), theirs.parameters()
    opt_ours = RMSprop([w0, b0, w1, b1], lr=1e-3, weight_decay=WD, decay="all")
    opt_ours.add_param_group({"params": [w2, b2], "centered": True, "momentum": 0.5})
    opt_theirs = torch.optim.RMSprop([v0, c0, v1, c1], lr=1e-3, weight_decay=WD)
    opt_theirs.add_param_group({"params": [v2, c2], "centered": True, "momentum": 0.5})
    assert opt_ours.param_groups[1]["decay"] == "all" and opt_ours.param_groups[1]["lr"] == 1e-3
    train(ours, opt_ours, 20)
    train(theirs, opt_theirs, 20)
    assert_equal_params(ours, theirs)
    with pytest.raises(ValueError, match="alpha"):
        opt_ours.add_param_group({"params": [torch.zeros(2, requires_grad=True)], "alpha": -1})
    assert len(opt_ours.param_groups) == 2


def test_param_groups_must_be_homogeneous():
    assert_groups_must_be_homogeneous(lambda ps, **kw: RMSprop(ps, momentum=0.9, **kw))


def test_repr_and_deepcopy():
    model, _ = twins("convnet", torch.float32)
    opt = RMSprop(model.parameters(), lr=1e-3, momentum=0.9, centered=True)
    text = repr(opt)
    for fragment in ("RMSprop (", "lr: 0.001", "alpha: 0.99", "centered: True", "decay: weights"):
        assert fragment in text
    train(model, opt, 5)
    model2, opt2 = copy.deepcopy((model, opt))
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        buffers = opt.state[p]["square_avg"], opt2.state[q]["square_avg"]
        assert buffers[0].data_ptr() != buffers[1].data_ptr()
    train(model2, opt2, 5, start=5)
    train(model, opt, 5, start=5)
    assert_equal_params(model, model2)
    assert opt2.state[next(model2.parameters())]["step"] == 10


# ----------------------------------------------------------------------------- validation

BAD_ARGUMENTS = [
    ({"lr": -1e-3}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": torch.tensor([1e-3, 1e-3])}, "lr"),
    ({"alpha": -0.1}, "alpha"),
    ({"alpha": float("nan")}, "alpha"),
    ({"eps": -1e-8}, "eps"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"momentum": -0.1}, "momentum"),
    ({"decay": "biases"}, "decay"),
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_ARGUMENTS)
def test_invalid_hyperparameter_raises_value_error_naming_it(kwargs, name):
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=name):
        RMSprop(params, **kwargs)
    with pytest.raises(ValueError, match=name):  # the same check for a param group's own value
        RMSprop([{"params": params, **kwargs}])


@pytest.mark.parametrize(("kwargs", "torch_text"), [
    ({"lr": -1.0}, "Invalid learning rate: -1.0"),
    ({"lr": torch.tensor([1e-3, 1e-3])}, "Tensor lr must be 1-element"),
    ({"alpha": -0.5}, "Invalid alpha value: -0.5"),
    ({"eps": -1.0}, "Invalid epsilon value: -1.0"),
    ({"momentum": -0.5}, "Invalid momentum value: -0.5"),
    ({"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
])  # fmt: skip
def test_errors_contain_torchs_own_text(kwargs, torch_text):
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=re.escape(torch_text)):
        torch.optim.RMSprop(p, **kwargs)
    with pytest.raises(ValueError, match=re.escape(torch_text)):
        RMSprop(p, **kwargs)


@pytest.mark.parametrize(("name", "value"), [("lr", "0.1"), ("alpha", None), ("eps", "0"),
                                             ("momentum", [0.9]), ("weight_decay", "0.1")])
def test_non_number_is_a_type_error_naming_it(name, value):
    with pytest.raises(TypeError, match=f"{name} must be a number"):
        RMSprop([torch.zeros(2, requires_grad=True)], **{name: value})


@pytest.mark.parametrize("flag", ["capturable", "differentiable"])
def test_torch_only_flags_bind_but_true_is_refused(flag):
    p = [torch.zeros(2, requires_grad=True)]
    RMSprop(p, **{flag: False})
    with pytest.raises(ValueError, match=f"{flag}=True"):
        RMSprop(p, **{flag: True})


def test_signature_is_torchs():
    torch_signature_matches(RMSprop, torch.optim.RMSprop)


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
