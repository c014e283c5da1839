"""optreg.SGD against torch.optim.SGD: same trajectories, same state dicts, same optimizer API.

Sections: parity with torch on real training runs; property tests (hypothesis) of bitwise equality
with torch and between optreg's two kernels; the equations (heavy ball, Nesterov, the first
buffer, momentum as Adam's first moment); schedulers; state dicts; the optimizer API; sparse
gradients; argument validation.
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

import optreg.optim.sgd as sgd_module
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
from optreg.optim import SGD, Adam
from optreg.optim import _common as common
from optreg.regularization import param_groups

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


def optreg_sgd(params, options: dict[str, Any], decay: str, **kw) -> SGD:
    return SGD(params, **options, decay=decay, **kw)


def torch_sgd(params, options: dict[str, Any], decay: str, **kw) -> torch.optim.SGD:
    """torch.optim.SGD with optreg's decay scope, given through param groups."""
    options = dict(options)
    groups = param_groups(params, options.pop("weight_decay", 0.0), decay)
    return torch.optim.SGD(groups, **options, **kw)


# ----------------------------------------------------------------------------- parity with torch


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_matches_torch_bitwise_over_300_training_steps(variant, model_name, dtype):
    """Both kernels against torch's matching paths, 300 real training steps: bit for bit."""
    options, decay, sign = VARIANTS[variant]
    assert_matches_torch_on_both_kernels(
        lambda ps, **kw: optreg_sgd(ps, options, decay, **kw),
        lambda ps, **kw: torch_sgd(ps, options, decay, **kw),
        model_name, dtype, steps=300, sign=sign,
    )  # fmt: skip


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


@settings(max_examples=40, deadline=None)
@given(
    shapes=SHAPES,
    hyper=HYPER,
    decay=st.sampled_from(["weights", "all"]),
    foreach=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_bitwise_equal_to_torch(shapes, hyper, decay, foreach, dtype):
    """Any hyperparameters, shapes (incl. 0-D), skipped gradients (buffers created late): optreg
    == torch, bit for bit, on each path against torch's matching path, parameters and buffers."""
    ours = random_params(shapes, dtype, seed=1)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt_ours = optreg_sgd(ours, hyper, decay, foreach=foreach)
    opt_theirs = torch_sgd(theirs, hyper, decay, foreach=foreach)
    run_random_grads(ours, opt_ours, 6, seed=2)
    run_random_grads(theirs, opt_theirs, 6, seed=2)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        assert set(opt_ours.state[a]) == set(opt_theirs.state[b])
        if hyper["momentum"]:
            assert torch.equal(opt_ours.state[a]["momentum_buffer"],
                               opt_theirs.state[b]["momentum_buffer"])


@settings(max_examples=40, deadline=None)
@given(shapes=SHAPES, hyper=HYPER, decay=st.sampled_from(["weights", "all"]))
def test_single_and_foreach_kernels_agree_bitwise_on_cpu(shapes, hyper, decay):
    """The two kernels run the same operations in the same order: on CPU, bitwise equal."""
    a = random_params(shapes, torch.float32, seed=3)
    b = [p.detach().clone().requires_grad_() for p in a]
    opt_a = optreg_sgd(a, hyper, decay, foreach=False)
    opt_b = optreg_sgd(b, hyper, decay, foreach=True)
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


@pytest.mark.parametrize("bucket", [1, 50, 1 << 16])
@pytest.mark.parametrize(
    "options",
    [{"momentum": 0.9}, {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
     {"momentum": 0.5, "dampening": 0.5, "maximize": True, "weight_decay": 0.05}],
    ids=["momentum", "nesterov-l2", "dampening-maximize-l2"],
)
def test_bucketed_foreach_kernel_is_bitwise_torch_foreach(monkeypatch, bucket, options):
    """Over cache-sized buckets (buffers created in several buckets, some late): same bits, and
    every new buffer lands in the optimizer's state."""
    monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", bucket)
    ours = random_params(BUCKET_SHAPES, torch.float32, seed=5)
    theirs = [p.detach().clone().requires_grad_() for p in ours]
    opt_ours = SGD(ours, lr=0.1, decay="all", foreach=True, **options)
    opt_theirs = torch.optim.SGD(theirs, lr=0.1, foreach=True, **options)
    run_random_grads(ours, opt_ours, 5, seed=6)
    run_random_grads(theirs, opt_theirs, 5, seed=6)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
        assert torch.equal(opt_ours.state[a]["momentum_buffer"],
                           opt_theirs.state[b]["momentum_buffer"])


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


# ----------------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("schedule", ["step", "lambda"])
def test_lr_schedulers_same_as_torch(schedule, foreach):
    ours, theirs = twins("convnet", torch.float32)
    runs = []
    for model, cls in ((ours, SGD), (theirs, torch.optim.SGD)):
        opt = cls(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=WD,
                  foreach=foreach, **({"decay": "all"} if cls is SGD else {}))
        if schedule == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, 7, gamma=0.3)
        else:
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 / (1 + k / 10))
        train(model, opt, 40, scheduler=sched)
        runs.append(opt)
    expected = 0.05 * 0.3**5 if schedule == "step" else 0.05 / 5
    assert runs[0].param_groups[0]["lr"] == pytest.approx(expected)
    assert_equal_params(ours, theirs)


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


# ----------------------------------------------------------------------------- state dicts

STATE_CASES = {
    "plain": lambda ps, fe: SGD(ps, lr=0.05, foreach=fe),
    "momentum_l2": lambda ps, fe: SGD(ps, lr=0.05, momentum=0.9, weight_decay=WD, foreach=fe),
    "nesterov": lambda ps, fe: SGD(ps, lr=0.05, momentum=0.9, nesterov=True, foreach=fe),
}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("case", list(STATE_CASES))
def test_resume_from_state_dict_is_bit_identical(case, foreach, tmp_path):
    make = STATE_CASES[case]
    assert_resume_is_bit_identical(lambda ps: make(ps, foreach), tmp_path)


@pytest.mark.parametrize("foreach", [False, True])
def test_torch_state_dict_loads_into_optreg_and_continues_like_torch(foreach, tmp_path):
    """torch's group keys (no ``decay``: the constructor's applies) and momentum buffers load;
    the run continues exactly as torch's own continuation."""
    opt = assert_torch_state_dict_continues_like_torch(
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=WD,
                                   foreach=foreach),
        lambda ps: SGD(ps, lr=0.5, momentum=0.1, decay="all", foreach=foreach),
        tmp_path,
    )
    assert opt.param_groups[0]["decay"] == "all"


def test_optreg_state_dict_loads_into_torch_and_continues_like_optreg():
    assert_optreg_state_dict_continues_in_torch(
        lambda ps: SGD(ps, lr=0.05, momentum=0.9, dampening=0.2, weight_decay=WD, decay="all"),
        lambda ps: torch.optim.SGD(ps),
    )


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_state_keys_match_torch(momentum):
    """``momentum_buffer`` per tensor with momentum; no state at all without, as torch."""
    ours, theirs = twins("mlp", torch.float32)
    opt_ours = SGD(ours.parameters(), momentum=momentum)
    opt_theirs = torch.optim.SGD(theirs.parameters(), momentum=momentum)
    train(ours, opt_ours, 2)
    train(theirs, opt_theirs, 2)
    assert len(opt_ours.state) == len(opt_theirs.state) == (6 if momentum else 0)
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert set(opt_ours.state.get(p, {})) == set(opt_theirs.state.get(q, {}))
    ours_groups = opt_ours.state_dict()["param_groups"][0]
    assert set(ours_groups) == set(opt_theirs.state_dict()["param_groups"][0]) | {"decay"}


# ----------------------------------------------------------------------------- optimizer API


def test_step_runs_the_closure_and_returns_its_loss():
    assert_step_runs_closure_and_returns_its_loss(lambda ps: SGD(ps, lr=0.1, momentum=0.9))


@pytest.mark.parametrize("foreach", [False, True])
def test_parameter_without_gradient_is_left_alone(foreach):
    with_grad = torch.randn(3, 3, requires_grad=True)
    without = torch.randn(3, 3, requires_grad=True)
    before = without.detach().clone()
    opt = SGD([with_grad, without], lr=0.1, momentum=0.9, weight_decay=0.5, foreach=foreach)
    for _ in range(3):
        with_grad.grad = torch.randn(3, 3)
        opt.step()
    assert torch.equal(without, before)  # not even weight decay touches it
    assert without not in opt.state and set(opt.state[with_grad]) == {"momentum_buffer"}


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.3])
@pytest.mark.parametrize("maximize", [False, True])
@pytest.mark.parametrize("nesterov", [False, True])
def test_gradients_are_never_modified(nesterov, maximize, weight_decay, foreach):
    """Not even by foreach Nesterov, where torch adds μ·b into p.grad when no copy was made."""
    params = [torch.randn(3, 2, requires_grad=True), torch.randn(2, requires_grad=True)]
    grads = [torch.randn(3, 2), torch.randn(2)]
    for p, g in zip(params, grads, strict=True):
        p.grad = g.clone()
    opt = SGD(params, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay,
              maximize=maximize, foreach=foreach)
    opt.step()
    opt.step()
    for p, g in zip(params, grads, strict=True):
        assert torch.equal(p.grad, g)


def test_decay_weights_skips_biases_and_all_decays_them():
    """With a zero gradient only the decay moves θ: θ ← θ·(1 − γλ) on the decayed tensors."""
    w = torch.ones(2, 2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    for decay, b_expected in (("weights", 1.0), ("all", 0.5)):
        with torch.no_grad():
            w.fill_(1.0)
            b.fill_(1.0)
        w.grad, b.grad = torch.zeros(2, 2), torch.zeros(2)
        SGD([w, b], lr=0.5, weight_decay=1.0, decay=decay).step()
        assert torch.equal(w, torch.full((2, 2), 0.5))
        assert torch.equal(b, torch.full((2,), b_expected))


@pytest.fixture
def kernel_calls(monkeypatch) -> list[str]:
    """The names of the SGD kernels called, in order."""
    return spy_on_kernels(monkeypatch, sgd_module, ("_single_tensor_sgd", "_multi_tensor_sgd"))


def test_foreach_none_picks_foreach_for_small_cpu_sets_and_single_for_large(kernel_calls):
    small = torch.zeros(3, 3, requires_grad=True)
    large = torch.zeros(common.FOREACH_MAX_NUMEL_CPU + 1, requires_grad=True)
    small.grad, large.grad = torch.ones(3, 3), torch.ones(large.shape)
    for params, foreach in (([small], None), ([large], None), ([small], False), ([large], True)):
        SGD(params, momentum=0.9, foreach=foreach).step()
    assert kernel_calls == ["_multi_tensor_sgd", "_single_tensor_sgd", "_single_tensor_sgd",
                            "_multi_tensor_sgd"]


def test_add_param_group_fills_defaults_and_group_options_override():
    ours, theirs = twins("mlp", torch.float32)
    (w0, b0, w1, b1, w2, b2), (v0, c0, v1, c1, v2, c2) = ours.parameters(), theirs.parameters()
    opt_ours = SGD([w0, b0, w1, b1], lr=0.05, momentum=0.9, weight_decay=WD, decay="all")
    opt_ours.add_param_group({"params": [w2, b2], "momentum": 0.5, "nesterov": True})
    opt_theirs = torch.optim.SGD([v0, c0, v1, c1], lr=0.05, momentum=0.9, weight_decay=WD)
    opt_theirs.add_param_group({"params": [v2, c2], "momentum": 0.5, "nesterov": True})
    assert opt_ours.param_groups[1]["decay"] == "all" and opt_ours.param_groups[1]["lr"] == 0.05
    train(ours, opt_ours, 20)
    train(theirs, opt_theirs, 20)
    assert_equal_params(ours, theirs)
    extra = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="nesterov"):  # checked for every group, not only once
        opt_ours.add_param_group({"params": [extra], "nesterov": True, "dampening": 0.1})
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt_ours.add_param_group({"params": [w0]})
    assert len(opt_ours.param_groups) == 2


def test_param_groups_must_be_homogeneous():
    assert_groups_must_be_homogeneous(lambda ps, **kw: SGD(ps, lr=0.5, momentum=0.9, **kw))


def test_repr_and_deepcopy():
    model, _ = twins("convnet", torch.float32)
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    text = repr(opt)
    for fragment in ("SGD (", "lr: 0.05", "momentum: 0.9", "nesterov: True", "decay: weights"):
        assert fragment in text
    train(model, opt, 5)
    model2, opt2 = copy.deepcopy((model, opt))
    for p, q in zip(model.parameters(), model2.parameters(), strict=True):
        buffers = opt.state[p]["momentum_buffer"], opt2.state[q]["momentum_buffer"]
        assert buffers[0].data_ptr() != buffers[1].data_ptr()
    train(model2, opt2, 5, start=5)
    train(model, opt, 5, start=5)
    assert_equal_params(model, model2)


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


def test_a_sparse_gradient_takes_the_single_tensor_kernel(kernel_calls):
    """Whatever ``foreach`` says: foreach ops are not meant for sparse tensors (torch loops too)."""
    embedding_run(SGD, True, momentum=0.9)
    assert set(kernel_calls) == {"_single_tensor_sgd"}


def test_sparse_gradient_with_weight_decay_is_a_clear_error():
    with pytest.raises(RuntimeError, match="weight decay needs a dense gradient"):
        embedding_run(SGD, None, weight_decay=0.1)


# ----------------------------------------------------------------------------- validation

BAD_ARGUMENTS = [
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
]


@pytest.mark.parametrize(("kwargs", "name"), BAD_ARGUMENTS)
def test_invalid_hyperparameter_raises_value_error_naming_it(kwargs, name):
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=name):
        SGD(params, **kwargs)
    with pytest.raises(ValueError, match=name):  # the same check for a param group's own value
        SGD([{"params": params, **kwargs}])


@pytest.mark.parametrize(("kwargs", "torch_text"), [
    ({"lr": -1.0}, "Invalid learning rate: -1.0"),
    ({"lr": torch.tensor([1e-3, 1e-3])}, "Tensor lr must be 1-element"),
    ({"momentum": -0.5}, "Invalid momentum value: -0.5"),
    ({"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
    ({"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ({"nesterov": True, "momentum": 0.9, "dampening": 0.5},
     "Nesterov momentum requires a momentum and zero dampening"),
])  # fmt: skip
def test_errors_contain_torchs_own_text(kwargs, torch_text):
    p = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=re.escape(torch_text)):
        torch.optim.SGD(p, **kwargs)
    with pytest.raises(ValueError, match=re.escape(torch_text)):
        SGD(p, **kwargs)


@pytest.mark.parametrize(("name", "value"), [("lr", "0.1"), ("momentum", None),
                                             ("dampening", "0"), ("weight_decay", [0.1])])
def test_non_number_is_a_type_error_naming_it(name, value):
    with pytest.raises(TypeError, match=f"{name} must be a number"):
        SGD([torch.zeros(2, requires_grad=True)], **{name: value})


@pytest.mark.parametrize("flag", ["differentiable", "fused"])
def test_torch_only_flags_bind_but_true_is_refused(flag):
    p = [torch.zeros(2, requires_grad=True)]
    SGD(p, **{flag: False})
    with pytest.raises(ValueError, match=f"{flag}=True"):
        SGD(p, **{flag: True})


def test_signature_is_torchs():
    torch_signature_matches(SGD, torch.optim.SGD)


def test_positional_arguments_bind_as_in_torch():
    p = torch.zeros(2, requires_grad=True)
    opt = SGD([p], 0.1, 0.9, 0.0, 0.01, True)
    assert {k: opt.defaults[k] for k in ("lr", "momentum", "dampening", "weight_decay",
                                         "nesterov")} == {
        "lr": 0.1, "momentum": 0.9, "dampening": 0.0, "weight_decay": 0.01, "nesterov": True
    }
