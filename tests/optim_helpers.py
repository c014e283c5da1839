"""What the optimizer tests share: small models, training runs, twins, and the checks that
compare an optreg optimizer with its torch.optim counterpart (trajectories, state dicts,
signatures).

Every run is deterministic: model weights come from ``torch.manual_seed(0)``, batch ``k`` of a run
only from (seed, k), so two optimizers fed the same run see the same data.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

MakeOptimizer = Callable[..., torch.optim.Optimizer]

# --------------------------------------------------------------------------------- models and runs


class Varied(nn.Module):
    """Parameters of every rank 0-3, so decay="weights" and "all" differ in several ways."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.0))  # 0-D
        self.weight = nn.Parameter(torch.randn(4, 25) / 5)  # 2-D
        self.bias = nn.Parameter(torch.zeros(4))  # 1-D
        self.tensor = nn.Parameter(torch.randn(3, 4, 5) / 3)  # 3-D
        self.readout = nn.Parameter(torch.randn(5) / 3)  # 1-D

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.scale * x @ self.weight.T + self.bias)
        mixed = h @ self.tensor.transpose(0, 1).reshape(4, 15)  # Σ_j h_bj T_kjl, as (B, k·l)
        return mixed.view(-1, 3, 5) @ self.readout


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(25, 16), nn.Tanh(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3)
    )


def convnet() -> nn.Module:
    return nn.Sequential(
        nn.Unflatten(1, (1, 5, 5)),
        nn.Conv2d(1, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 6, 3),
        nn.Flatten(),
        nn.Linear(6 * 3 * 3, 3),
    )


MODELS: dict[str, Callable[[], nn.Module]] = {"mlp": mlp, "convnet": convnet, "varied": Varied}


def train(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    steps: int,
    *,
    seed: int = 0,
    start: int = 0,
    sign: float = 1.0,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> None:
    """``steps`` real training steps on random data; batch ``k`` depends only on (seed, k)."""
    dtype = next(model.parameters()).dtype
    for k in range(start, start + steps):
        g = torch.Generator().manual_seed(seed * 100_003 + k)
        x = torch.randn(8, 25, generator=g, dtype=dtype)
        y = torch.randint(0, 3, (8,), generator=g)
        opt.zero_grad()
        (sign * F.cross_entropy(model(x), y)).backward()
        opt.step()
        if scheduler is not None:
            scheduler.step()


def twins(name: str, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    model = MODELS[name]().to(dtype)
    return model, copy.deepcopy(model)


def assert_same_params(a: nn.Module, b: nn.Module, dtype: torch.dtype) -> None:
    tol = {"atol": 1e-6, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-12, "rtol": 1e-12}
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, **tol)


def assert_equal_params(a: nn.Module, b: nn.Module) -> None:
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


SHAPES = st.lists(
    st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=5
)


# shapes whose sizes (35, 40, 60, 1, 144, 270, 11) split into several cache buckets when the
# bucket size is patched small
BUCKET_SHAPES = [(7, 5), (40,), (3, 4, 5), (), (6, 6, 2, 2), (90, 3), (11,)]


def random_params(shapes, dtype, seed) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


def run_random_grads(params, opt, steps, seed) -> None:
    """``steps`` steps with random gradients (some tensors skip some steps: grad None)."""
    g = torch.Generator().manual_seed(seed + 1)
    for k in range(steps):
        for i, p in enumerate(params):
            grad = torch.randn(p.shape, generator=g, dtype=p.dtype)
            p.grad = None if (i + k) % 4 == 3 else grad
        opt.step()


# ------------------------------------------------------------------------- comparisons with torch


def assert_matches_torch_on_both_kernels(
    make_optreg: MakeOptimizer,
    make_torch: MakeOptimizer,
    model_name: str,
    dtype: torch.dtype,
    *,
    steps: int = 300,
    sign: float = 1.0,
) -> None:
    """``steps`` training steps on four copies of the model: optreg's single-tensor and foreach
    kernels, and torch's matching paths (``foreach=False`` / ``True``); all bitwise equal.

    The gradients are real (``loss.backward`` on random batches, at the parameters of the first
    copy) and each step every optimizer gets the same gradient, so the comparison isolates the
    update rules on a realistic gradient sequence. On CPU optreg's two kernels agree bitwise too.
    The optimizer states must be equal as well, key by key, and the parameters must have moved.
    """
    models = [m for pair in (twins(model_name, dtype), twins(model_name, dtype)) for m in pair]
    start = [p.detach().clone() for p in models[0].parameters()]
    params = [list(m.parameters()) for m in models]
    opts = [
        make_optreg(params[0], foreach=False),
        make_torch(params[1], foreach=False),
        make_optreg(params[2], foreach=True),
        make_torch(params[3], foreach=True),
    ]
    for k in range(steps):
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
    # optreg single vs torch single, optreg foreach vs torch foreach, optreg single vs foreach
    for i, j in ((0, 1), (2, 3), (0, 2)):
        assert_equal_params(models[i], models[j])
        for p, q in zip(params[i], params[j], strict=True):
            mine, theirs = opts[i].state[p], opts[j].state[q]
            assert set(mine) == set(theirs)
            for key, value in theirs.items():
                assert torch.equal(mine[key], value), key
    assert not any(torch.equal(a, b) for a, b in zip(start, params[0], strict=True)), "must move"


def assert_resume_is_bit_identical(make: MakeOptimizer, tmp_path: Path) -> None:
    """Train 15 steps, save (``torch.save``), load (``weights_only=True``) into a fresh optimizer,
    train 15 more == 30 steps uninterrupted; the same through ``load_state_dict`` of the
    in-memory dict."""
    straight, resumed = twins("varied", torch.float32)
    opt = make(straight.parameters())
    train(straight, opt, 30)

    opt_a = make(resumed.parameters())
    train(resumed, opt_a, 15)
    torch.save(opt_a.state_dict(), tmp_path / "opt.pt")
    in_memory = copy.deepcopy(opt_a.state_dict())
    from_disk = copy.deepcopy(resumed)
    opt_b = make(from_disk.parameters())
    opt_b.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
    opt_c = make(resumed.parameters())
    opt_c.load_state_dict(in_memory)
    train(from_disk, opt_b, 15, start=15)
    train(resumed, opt_c, 15, start=15)
    assert_equal_params(straight, from_disk)
    assert_equal_params(straight, resumed)


def assert_torch_state_dict_continues_like_torch(
    make_torch: MakeOptimizer, make_optreg: MakeOptimizer, tmp_path: Path
) -> torch.optim.Optimizer:
    """torch trains 10 steps and saves its state dict; an optreg optimizer (built with other
    hyperparameters) loads it and its next 10 steps equal torch's own. Returns the optreg one."""
    source, _ = twins("convnet", torch.float32)
    opt_source = make_torch(source.parameters())
    train(source, opt_source, 10)
    torch.save(opt_source.state_dict(), tmp_path / "torch.pt")

    ours = copy.deepcopy(source)
    opt_ours = make_optreg(ours.parameters())
    opt_ours.load_state_dict(torch.load(tmp_path / "torch.pt", weights_only=True))
    for key, value in opt_source.param_groups[0].items():
        if key != "params":
            assert opt_ours.param_groups[0][key] == value, key
    train(ours, opt_ours, 10, start=10)
    train(source, opt_source, 10, start=10)
    assert_equal_params(ours, source)
    return opt_ours


def assert_optreg_state_dict_continues_in_torch(
    make_optreg: MakeOptimizer, make_torch: MakeOptimizer
) -> None:
    """optreg trains 10 steps; a torch optimizer loads its state dict and its next 10 steps equal
    optreg's own."""
    source, _ = twins("mlp", torch.float32)
    opt_source = make_optreg(source.parameters())
    train(source, opt_source, 10)
    theirs = copy.deepcopy(source)
    opt_theirs = make_torch(theirs.parameters())
    opt_theirs.load_state_dict(copy.deepcopy(opt_source.state_dict()))
    train(theirs, opt_theirs, 10, start=10)
    train(source, opt_source, 10, start=10)
    assert_equal_params(source, theirs)


# ---------------------------------------------------------------------------- the optimizer API


def assert_step_runs_closure_and_returns_its_loss(make: MakeOptimizer) -> None:
    """``step(closure)`` runs the closure once with gradients enabled (even under ``no_grad``),
    returns its loss, then moves the parameters; ``step()`` returns None."""
    model, _ = twins("mlp", torch.float32)
    opt = make(model.parameters())
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


def assert_groups_must_be_homogeneous(make: MakeOptimizer) -> None:
    """Mixed dtypes or devices in one group, or complex tensors: ValueError; separate groups
    with different dtypes work."""
    a32 = torch.zeros(2, requires_grad=True)
    a64 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    meta = torch.zeros(2, device="meta", requires_grad=True)
    for params in ([a32, a64], [a32, meta]):
        with pytest.raises(ValueError, match="device and dtype"):
            make(params)
    with pytest.raises(ValueError, match="complex"):
        make([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])
    opt = make([{"params": [a32]}, {"params": [a64]}], foreach=True)
    a32.grad, a64.grad = torch.ones(2), torch.ones(2, dtype=torch.float64)
    opt.step()
    assert a32.dtype == torch.float32 and a64.dtype == torch.float64
    assert a32[0].item() < 0 and a64[0].item() == pytest.approx(a32[0].item())


def spy_on_kernels(monkeypatch: pytest.MonkeyPatch, module: ModuleType,
                   names: tuple[str, ...]) -> list[str]:
    """Wrap the kernels ``names`` of ``module``; the returned list records each call's name."""
    called: list[str] = []
    for name in names:
        real = getattr(module, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            called.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    return called


# ----------------------------------------------------------------------------- torch's signature


def torch_signature_matches(ours: type, theirs: type) -> None:
    """Every parameter of torch's class exists in ours with the same kind, position and default;
    ours may only add keyword-only parameters after torch's."""
    mine = list(inspect.signature(ours).parameters.values())
    torch_params = list(inspect.signature(theirs).parameters.values())
    assert [(p.name, p.kind, p.default) for p in mine[: len(torch_params)]] == [
        (p.name, p.kind, p.default) for p in torch_params
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in mine[len(torch_params):])
