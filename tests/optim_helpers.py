"""What the optimizer tests share: small models, training runs, twins, the checks that compare
an optreg optimizer with its torch.optim counterpart, and :class:`OptimizerContract`, the tests
that every optimizer passes (trajectories, state dicts, the optimizer API, argument checks), each
test module running them with its optimizer's cases.

Every run is deterministic: model weights come from ``torch.manual_seed(0)``, batch ``k`` of a run
only from (seed, k), so two optimizers fed the same run see the same data.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import re
from collections.abc import Callable
from types import ModuleType
from typing import Any, ClassVar, TypeVar

import pytest
import torch
import torch.nn.functional as F
from hypothesis import settings
from hypothesis import strategies as st
from torch import nn

from optreg.optim import _common as common
from optreg.regularization import param_groups

MakeOptimizer = Callable[..., torch.optim.Optimizer]  # make(params, **options) -> optimizer
Pair = tuple[MakeOptimizer, MakeOptimizer]  # (optreg's, torch's), configured alike

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


def optimizer_pair(ours: type, theirs: type, options: dict[str, Any], decay: str = "all") -> Pair:
    """``ours(params, **options, decay=decay)`` and ``theirs(params, **options)``, with the same
    weight decay: torch gets it through param groups (``weight_decay`` only on the tensors that
    ``decay`` selects) when ``options`` has one. Each factory takes further keywords
    (``foreach=...``)."""
    rest = {key: value for key, value in options.items() if key != "weight_decay"}

    def make_ours(params, **kw: Any) -> torch.optim.Optimizer:
        return ours(params, **options, decay=decay, **kw)

    def make_theirs(params, **kw: Any) -> torch.optim.Optimizer:
        if "weight_decay" in options:
            params = param_groups(params, options["weight_decay"], decay)
        return theirs(params, **rest, **kw)

    return make_ours, make_theirs


def assert_bitwise(a: torch.Tensor, b: torch.Tensor, *, equal_nan: bool = False) -> None:
    """Bit for bit; with ``equal_nan`` also nan where the other has nan (RMSprop's ε = 0 with
    α = 0 divides 0 by 0)."""
    if equal_nan:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    else:
        assert torch.equal(a, b)


def assert_same_bits(
    ours: list[torch.Tensor],
    theirs: list[torch.Tensor],
    opt_ours: torch.optim.Optimizer,
    opt_theirs: torch.optim.Optimizer,
    *,
    equal_nan: bool = False,
) -> None:
    """Parameters, and each tensor's state (the same keys, every value), equal bit for bit."""
    for a, b in zip(ours, theirs, strict=True):
        assert_bitwise(a, b, equal_nan=equal_nan)
        mine, others = opt_ours.state[a], opt_theirs.state[b]
        assert set(mine) == set(others)
        for key, value in others.items():
            assert_bitwise(mine[key], value, equal_nan=equal_nan)


def clones(params: list[torch.Tensor]) -> list[torch.Tensor]:
    return [p.detach().clone().requires_grad_() for p in params]


# hypothesis: 40 examples per property, no deadline (the first example pays for torch's warm-up)
property_settings = settings(max_examples=40, deadline=None)
DECAYS = st.sampled_from(["weights", "all"])
DTYPES = st.sampled_from([torch.float32, torch.float64])


def assert_bitwise_equal_to_torch(
    pair: Pair, shapes, dtype: torch.dtype, foreach: bool, *, equal_nan: bool = False
) -> None:
    """Six steps of random gradients on random tensors of ``shapes`` (incl. 0-D; some tensors
    skip steps, so state starts late): optreg == torch on the path ``foreach`` picks, parameters
    and every state tensor, bit for bit."""
    make_ours, make_theirs = pair
    ours = random_params(shapes, dtype, seed=1)
    theirs = clones(ours)
    opt_ours, opt_theirs = make_ours(ours, foreach=foreach), make_theirs(theirs, foreach=foreach)
    run_random_grads(ours, opt_ours, 6, seed=2)
    run_random_grads(theirs, opt_theirs, 6, seed=2)
    assert_same_bits(ours, theirs, opt_ours, opt_theirs, equal_nan=equal_nan)


def assert_kernels_agree_bitwise_on_cpu(
    make: MakeOptimizer, shapes, *, equal_nan: bool = False
) -> None:
    """The two kernels run the same operations in the same order: on CPU, under a StepLR
    schedule, parameters and state bitwise equal (``make(params, foreach=...)``)."""
    a = random_params(shapes, torch.float32, seed=3)
    b = clones(a)
    opt_a, opt_b = make(a, foreach=False), make(b, foreach=True)
    sched_a = torch.optim.lr_scheduler.StepLR(opt_a, step_size=2, gamma=0.5)
    sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=2, gamma=0.5)
    for k in range(3):
        run_random_grads(a, opt_a, 2, seed=4 + k)
        run_random_grads(b, opt_b, 2, seed=4 + k)
        sched_a.step()
        sched_b.step()
    assert_same_bits(a, b, opt_a, opt_b, equal_nan=equal_nan)


def assert_decay_halves_only_the_selected_tensors(make: MakeOptimizer) -> None:
    """With a zero gradient only the decay moves θ: one step of ``make([w, b], decay=...)``
    (configured to halve what decays, e.g. γ = 0.5, λ = 1) halves the 2-D ``w`` in both scopes
    and the 1-D ``b`` only with ``decay="all"``."""
    w = torch.ones(2, 2, requires_grad=True)
    b = torch.ones(2, requires_grad=True)
    for decay, b_expected in (("weights", 1.0), ("all", 0.5)):
        with torch.no_grad():
            w.fill_(1.0)
            b.fill_(1.0)
        w.grad, b.grad = torch.zeros(2, 2), torch.zeros(2)
        make([w, b], decay=decay).step()
        assert torch.equal(w, torch.full((2, 2), 0.5))
        assert torch.equal(b, torch.full((2,), b_expected))


def assert_sparse_gradient_is_refused(cls: type) -> None:
    """A sparse gradient (``nn.Embedding(sparse=True)``): a RuntimeError naming the optimizer."""
    emb = nn.Embedding(10, 3, sparse=True)
    emb(torch.tensor([1, 2])).sum().backward()
    with pytest.raises(RuntimeError, match=f"{cls.__name__} does not support sparse gradients"):
        cls(emb.parameters()).step()


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


def torch_signature_matches(ours: type, theirs: type) -> None:
    """Every parameter of torch's class exists in ours with the same kind, position and default;
    ours may only add keyword-only parameters after torch's."""
    mine = list(inspect.signature(ours).parameters.values())
    torch_params = list(inspect.signature(theirs).parameters.values())
    assert [(p.name, p.kind, p.default) for p in mine[: len(torch_params)]] == [
        (p.name, p.kind, p.default) for p in torch_params
    ]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in mine[len(torch_params):])


# ---------------------------------------------------------------- the contract of every optimizer

TestFunction = TypeVar("TestFunction", bound=Callable[..., None])


def from_table(table: str, argnames: str) -> Callable[[TestFunction], TestFunction]:
    """Run a contract test once per case of the subclass's attribute ``table`` (a sequence of
    cases, see :func:`named`), each case giving the arguments ``argnames``."""

    def mark(test: TestFunction) -> TestFunction:
        test.table = (table, argnames)  # type: ignore[attr-defined]
        return test

    return mark


def named(**cases: Any) -> tuple[Any, ...]:
    """A contract table: one case per keyword, its name the test id and its value the test's
    arguments (a tuple of them, or the single one)."""
    return tuple(pytest.param(*(case if isinstance(case, tuple) else (case,)), id=name)
                 for name, case in cases.items())


class OptimizerContract:
    """The tests that every optreg optimizer passes against its torch.optim counterpart.

    A test module subclasses this once per optimizer (``class TestSGD(OptimizerContract)``) and
    sets the attributes below; pytest then runs every test here for that optimizer, a test marked
    :func:`from_table` once per case of the table it names. The tests of an optimizer's own
    algorithm (its equations, its options) stay in its module, and so do its two property tests:
    Hypothesis refuses a ``@given`` test that several classes inherit (the health check
    ``differing_executors``), so each module declares them, with its own strategies, on top of
    :func:`assert_bitwise_equal_to_torch` and :func:`assert_kernels_agree_bitwise_on_cpu`.
    """

    ours: ClassVar[type[torch.optim.Optimizer]]  # the optreg class
    theirs: ClassVar[type[torch.optim.Optimizer]]  # its torch.optim counterpart
    # Both, configured to keep every kind of state (closure, groups, kernel choice, deepcopy, repr)
    configured: ClassVar[Pair]
    repr_fragments: ClassVar[tuple[str, ...]]  # what the repr of optreg's configured one shows
    scheduled: ClassVar[Pair]  # runs under StepLR and LambdaLR ...
    scheduled_model: ClassVar[str] = "convnet"  # ... on this model
    own_group_keys: ClassVar[frozenset[str]]  # the group keys that optreg adds to torch's
    # constructor options (both; optreg's with decay="all"), a later group's own options
    added_group: ClassVar[tuple[dict[str, Any], dict[str, Any]]]
    bad_group: ClassVar[tuple[dict[str, Any], str]]  # a group's bad options, the name in the error

    # Tables (see from_table and named), each case giving the arguments of its tests:
    variants: ClassVar[tuple[Any, ...]]  # optreg's, torch's, sign of the loss: 300 steps, bitwise
    bucket_cases: ClassVar[tuple[Any, ...]]  # optreg's, torch's: the foreach kernel over buckets
    state_cases: ClassVar[tuple[Any, ...]]  # optreg's: resumed from a state dict
    from_torch: ClassVar[tuple[Any, ...]]  # optreg's (other values), torch's: optreg loads torch's
    into_torch: ClassVar[tuple[Any, ...]]  # optreg's, torch's: torch loads optreg's state dict
    state_keys: ClassVar[tuple[Any, ...]]  # options of both, each tensor's state keys after 2 steps
    left_alone: ClassVar[tuple[Any, ...]]  # optreg's, the state keys of a tensor with a gradient
    never_modified: ClassVar[tuple[Any, ...]]  # optreg's configurations: none writes p.grad
    bad_arguments: ClassVar[tuple[Any, ...]]  # keywords, the name the ValueError gives
    torch_errors: ClassVar[tuple[Any, ...]]  # keywords, torch's own text in the error
    non_numbers: ClassVar[tuple[Any, ...]]  # name, value: a TypeError naming it
    torch_only_flags: ClassVar[tuple[str, ...]]  # they bind, but True is refused

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """Parametrise each test marked :func:`from_table` by this class's table."""
        table, argnames = getattr(metafunc.function, "table", (None, None))
        if table is not None:
            metafunc.parametrize(argnames, getattr(self, table))

    # ------------------------------------------------------------------------- parity with torch

    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
    @pytest.mark.parametrize("model_name", list(MODELS))
    @from_table("variants", "make_ours, make_theirs, sign")
    def test_matches_torch_bitwise_over_300_training_steps(
        self, make_ours, make_theirs, sign, model_name, dtype
    ):
        """300 training steps on four copies of the model: optreg's single-tensor and foreach
        kernels, and torch's matching paths (``foreach=False`` / ``True``); all bitwise equal.

        The gradients are real (``loss.backward`` on random batches, at the parameters of the
        first copy) and each step every optimizer gets the same gradient, so the comparison
        isolates the update rules on a realistic gradient sequence. On CPU optreg's two kernels
        agree bitwise too. The states must be equal as well, key by key, and the parameters must
        have moved.
        """
        models = [m for pair in (twins(model_name, dtype), twins(model_name, dtype)) for m in pair]
        start = [p.detach().clone() for p in models[0].parameters()]
        params = [list(m.parameters()) for m in models]
        opts = [
            make_ours(params[0], foreach=False),
            make_theirs(params[1], foreach=False),
            make_ours(params[2], foreach=True),
            make_theirs(params[3], foreach=True),
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
        # optreg single vs torch single, optreg foreach vs torch foreach, optreg single vs foreach
        for i, j in ((0, 1), (2, 3), (0, 2)):
            assert_same_bits(params[i], params[j], opts[i], opts[j])
        assert not any(torch.equal(a, b) for a, b in zip(start, params[0], strict=True)), "moved"

    @pytest.mark.parametrize("bucket", [1, 50, 1 << 16])
    @from_table("bucket_cases", "make_ours, make_theirs")
    def test_bucketed_foreach_kernel_is_bitwise_torch_foreach(
        self, monkeypatch, make_ours, make_theirs, bucket
    ):
        """The foreach kernel runs over cache-sized buckets of tensors on the CPU (state created
        in several buckets, some late): the same bits as torch's foreach path, and every state
        tensor lands in the optimizer's state."""
        monkeypatch.setattr(common, "FOREACH_BUCKET_NUMEL_CPU", bucket)
        ours = random_params(BUCKET_SHAPES, torch.float32, seed=5)
        theirs = clones(ours)
        opt_ours, opt_theirs = make_ours(ours, foreach=True), make_theirs(theirs, foreach=True)
        run_random_grads(ours, opt_ours, 5, seed=6)
        run_random_grads(theirs, opt_theirs, 5, seed=6)
        assert_same_bits(ours, theirs, opt_ours, opt_theirs)

    @pytest.mark.parametrize("foreach", [False, True])
    @pytest.mark.parametrize("schedule", ["step", "lambda"])
    def test_lr_schedulers_same_as_torch(self, schedule, foreach):
        """40 steps under StepLR (γ × 0.3 every 7 steps) or LambdaLR (γ_0/(1 + k/10)): the
        learning rate ends where the schedule says, and the run equals torch's."""
        ours, theirs = twins(self.scheduled_model, torch.float32)
        opts = []
        for model, make in zip((ours, theirs), self.scheduled, strict=True):
            opt = make(model.parameters(), foreach=foreach)
            if schedule == "step":
                sched = torch.optim.lr_scheduler.StepLR(opt, 7, gamma=0.3)
            else:
                sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1 / (1 + k / 10))
            train(model, opt, 40, scheduler=sched)
            opts.append(opt)
        group = opts[0].param_groups[0]
        lr0 = group["initial_lr"]
        assert group["lr"] == pytest.approx(lr0 * 0.3**5 if schedule == "step" else lr0 / 5)
        assert_equal_params(ours, theirs)

    # ------------------------------------------------------------------------------- state dicts

    @pytest.mark.parametrize("foreach", [False, True])
    @from_table("state_cases", "make")
    def test_resume_from_state_dict_is_bit_identical(self, make, foreach, tmp_path):
        """Train 15 steps, save (``torch.save``), load (``weights_only=True``) into a fresh
        optimizer, train 15 more == 30 steps uninterrupted; the same through
        ``load_state_dict`` of the in-memory dict."""
        straight, resumed = twins("varied", torch.float32)
        opt = make(straight.parameters(), foreach=foreach)
        train(straight, opt, 30)

        opt_a = make(resumed.parameters(), foreach=foreach)
        train(resumed, opt_a, 15)
        torch.save(opt_a.state_dict(), tmp_path / "opt.pt")
        in_memory = copy.deepcopy(opt_a.state_dict())
        from_disk = copy.deepcopy(resumed)
        opt_b = make(from_disk.parameters(), foreach=foreach)
        opt_b.load_state_dict(torch.load(tmp_path / "opt.pt", weights_only=True))
        opt_c = make(resumed.parameters(), foreach=foreach)
        opt_c.load_state_dict(in_memory)
        train(from_disk, opt_b, 15, start=15)
        train(resumed, opt_c, 15, start=15)
        assert_equal_params(straight, from_disk)
        assert_equal_params(straight, resumed)

    @pytest.mark.parametrize("foreach", [False, True])
    @from_table("from_torch", "make_ours, make_theirs")
    def test_torch_state_dict_loads_into_optreg_and_continues_like_torch(
        self, make_ours, make_theirs, foreach, tmp_path
    ):
        """torch trains 10 steps and saves its state dict; an optreg optimizer built with other
        hyperparameters loads it: each group has torch's values, and the constructor's for
        optreg's own keys (torch's dict has none); its next 10 steps equal torch's own."""
        source, _ = twins("convnet", torch.float32)
        opt_source = make_theirs(source.parameters(), foreach=foreach)
        train(source, opt_source, 10)
        torch.save(opt_source.state_dict(), tmp_path / "torch.pt")

        ours = copy.deepcopy(source)
        opt_ours = make_ours(ours.parameters(), foreach=foreach)
        opt_ours.load_state_dict(torch.load(tmp_path / "torch.pt", weights_only=True))
        group, torch_group = opt_ours.param_groups[0], opt_source.param_groups[0]
        for key, value in torch_group.items():
            if key != "params":
                assert group[key] == value, key
        for key in opt_ours.defaults.keys() - torch_group.keys():
            assert group[key] == opt_ours.defaults[key], key
        train(ours, opt_ours, 10, start=10)
        train(source, opt_source, 10, start=10)
        assert_equal_params(ours, source)

    @from_table("into_torch", "make_ours, make_theirs")
    def test_optreg_state_dict_loads_into_torch_and_continues_like_optreg(
        self, make_ours, make_theirs
    ):
        """optreg trains 10 steps; a torch optimizer loads its state dict, with optreg's group
        values, and its next 10 steps equal optreg's own."""
        source, _ = twins("mlp", torch.float32)
        opt_source = make_ours(source.parameters())
        train(source, opt_source, 10)
        theirs = copy.deepcopy(source)
        opt_theirs = make_theirs(theirs.parameters())
        opt_theirs.load_state_dict(copy.deepcopy(opt_source.state_dict()))
        for key, value in opt_theirs.param_groups[0].items():
            if key != "params":
                assert value == opt_source.param_groups[0][key], key
        train(theirs, opt_theirs, 10, start=10)
        train(source, opt_source, 10, start=10)
        assert_equal_params(source, theirs)

    @from_table("state_keys", "options, keys")
    def test_state_keys_match_torch(self, options, keys):
        """After two steps every tensor holds the state keys ``keys``, as in torch (an empty set:
        no state at all); a step counter is a scalar float32 tensor on the CPU, as torch's; a
        group holds torch's keys and optreg's own."""
        ours, theirs = twins("mlp", torch.float32)
        opt_ours = self.ours(ours.parameters(), **options)
        opt_theirs = self.theirs(theirs.parameters(), **options)
        train(ours, opt_ours, 2)
        train(theirs, opt_theirs, 2)
        n = len(list(ours.parameters()))
        assert len(opt_ours.state) == len(opt_theirs.state) == (n if keys else 0)
        for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
            s, t = opt_ours.state.get(p, {}), opt_theirs.state.get(q, {})
            assert set(s) == set(t) == keys
            if "step" in keys:
                assert s["step"].dtype == t["step"].dtype == torch.float32
                assert s["step"].shape == () and s["step"].device.type == "cpu" and s["step"] == 2
        ours_group = opt_ours.state_dict()["param_groups"][0]
        theirs_group = opt_theirs.state_dict()["param_groups"][0]
        assert set(ours_group) == set(theirs_group) | self.own_group_keys

    # ----------------------------------------------------------------------------- optimizer API

    def test_step_runs_the_closure_and_returns_its_loss(self):
        """``step(closure)`` runs the closure once with gradients enabled (even under
        ``no_grad``), returns its loss, then moves the parameters; ``step()`` returns None."""
        model, _ = twins("mlp", torch.float32)
        opt = self.configured[0](model.parameters())
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

    def test_param_groups_must_be_homogeneous(self):
        """Mixed dtypes or devices in one group, or complex tensors: ValueError; separate groups
        with different dtypes work, each dtype stepping as in torch."""
        make_ours, make_theirs = self.configured
        a32 = torch.zeros(2, requires_grad=True)
        a64 = torch.zeros(2, dtype=torch.float64, requires_grad=True)
        meta = torch.zeros(2, device="meta", requires_grad=True)
        for params in ([a32, a64], [a32, meta]):
            with pytest.raises(ValueError, match="device and dtype"):
                make_ours(params)
        with pytest.raises(ValueError, match="complex"):
            make_ours([torch.zeros(2, dtype=torch.complex64, requires_grad=True)])
        b32, b64 = clones([a32, a64])
        opt_ours = make_ours([{"params": [a32]}, {"params": [a64]}], foreach=True)
        opt_theirs = make_theirs([b32, b64], foreach=True)
        for p in (a32, a64, b32, b64):
            p.grad = torch.ones_like(p)
        opt_ours.step()
        opt_theirs.step()
        assert a32.dtype == torch.float32 and a64.dtype == torch.float64
        assert a32[0].item() < 0 and a64[0].item() == pytest.approx(a32[0].item())
        assert torch.equal(a32, b32) and torch.equal(a64, b64)

    @pytest.mark.parametrize("foreach", [False, True])
    @from_table("left_alone", "make, keys")
    def test_parameter_without_gradient_is_left_alone(self, make, keys, foreach):
        with_grad = torch.randn(3, 3, requires_grad=True)
        without = torch.randn(3, 3, requires_grad=True)
        before = without.detach().clone()
        opt = make([with_grad, without], foreach=foreach)
        for _ in range(3):
            with_grad.grad = torch.randn(3, 3)
            opt.step()
        assert torch.equal(without, before)  # not even weight decay touches it
        assert without not in opt.state and set(opt.state[with_grad]) == keys

    @pytest.mark.parametrize("foreach", [False, True])
    @from_table("never_modified", "make")
    def test_gradients_are_never_modified(self, make, foreach):
        params = [torch.randn(3, 2, requires_grad=True), torch.randn(2, requires_grad=True)]
        grads = [torch.randn(3, 2), torch.randn(2)]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        opt = make(params, foreach=foreach)
        opt.step()
        opt.step()
        for p, g in zip(params, grads, strict=True):
            assert torch.equal(p.grad, g)

    def test_foreach_none_picks_foreach_for_small_cpu_sets_and_single_for_large(
        self, monkeypatch
    ):
        """``foreach=None``: the multi-tensor kernel for a small set, the single-tensor one above
        ``FOREACH_MAX_NUMEL_CPU`` elements; an explicit ``foreach`` wins. The kernels have
        torch's names (``_single_tensor_sgd``, ...) in the optimizer's module."""
        name = self.ours.__name__.lower()
        single, multi = f"_single_tensor_{name}", f"_multi_tensor_{name}"
        module = importlib.import_module(self.ours.__module__)
        called = spy_on_kernels(monkeypatch, module, (single, multi))
        small = torch.zeros(3, 3, requires_grad=True)
        large = torch.zeros(common.FOREACH_MAX_NUMEL_CPU + 1, requires_grad=True)
        small.grad, large.grad = torch.ones(3, 3), torch.ones(large.shape)
        for params, foreach in (([small], None), ([large], None), ([small], False),
                                ([large], True)):
            self.configured[0](params, foreach=foreach).step()
        assert called == [multi, single, single, multi]

    def test_add_param_group_fills_defaults_and_group_options_override(self):
        """A later group gets the defaults where it has no value of its own; the two-group run
        equals torch's with the same groups. A group with a bad value, or with a tensor of
        another group, is refused and not added."""
        options, group_options = self.added_group
        ours, theirs = twins("mlp", torch.float32)
        (w0, b0, w1, b1, w2, b2), (v0, c0, v1, c1, v2, c2) = ours.parameters(), theirs.parameters()
        opt_ours = self.ours([w0, b0, w1, b1], **options, decay="all")
        opt_ours.add_param_group({"params": [w2, b2], **group_options})
        opt_theirs = self.theirs([v0, c0, v1, c1], **options)
        opt_theirs.add_param_group({"params": [v2, c2], **group_options})
        group = opt_ours.param_groups[1]
        for key, value in opt_ours.defaults.items():
            if key not in group_options:
                assert group[key] == value, key
        train(ours, opt_ours, 20)
        train(theirs, opt_theirs, 20)
        assert_equal_params(ours, theirs)
        bad_options, name = self.bad_group
        with pytest.raises(ValueError, match=name):  # checked for every group, not only once
            opt_ours.add_param_group({"params": [torch.zeros(2, requires_grad=True)],
                                      **bad_options})
        with pytest.raises(ValueError, match="more than one parameter group"):
            opt_ours.add_param_group({"params": [w0]})
        assert len(opt_ours.param_groups) == 2

    def test_repr_lists_the_group_options(self):
        opt = self.configured[0]([torch.zeros(2, 2, requires_grad=True)])
        text = repr(opt)
        assert text.startswith(f"{type(opt).__name__} (")
        for fragment in self.repr_fragments:
            assert fragment in text

    def test_deepcopy_gives_an_independent_identical_optimizer(self):
        """``copy.deepcopy((model, opt))``: the copy steps the copied parameters with copied
        state (no tensor shared) and continues exactly as the original."""
        model, _ = twins("convnet", torch.float32)
        opt = self.configured[0](model.parameters())
        train(model, opt, 5)
        model2, opt2 = copy.deepcopy((model, opt))
        assert opt2.param_groups[0]["params"][0] is next(model2.parameters())
        for p, q in zip(model.parameters(), model2.parameters(), strict=True):
            for key, value in opt.state[p].items():
                assert value.data_ptr() != opt2.state[q][key].data_ptr(), key
        train(model2, opt2, 5, start=5)
        train(model, opt, 5, start=5)
        assert_same_bits(list(model.parameters()), list(model2.parameters()), opt, opt2)
        for state in opt2.state.values():  # a step counter, where there is one, counted all 10
            if "step" in state:
                assert state["step"] == 10

    # -------------------------------------------------------------------------------- validation

    @from_table("bad_arguments", "kwargs, name")
    def test_invalid_hyperparameter_raises_value_error_naming_it(self, kwargs, name):
        params = [torch.zeros(2, requires_grad=True)]
        with pytest.raises(ValueError, match=name):
            self.ours(params, **kwargs)
        with pytest.raises(ValueError, match=name):  # the same check for a param group's value
            self.ours([{"params": params, **kwargs}])

    @from_table("torch_errors", "kwargs, torch_text")
    def test_errors_contain_torchs_own_text(self, kwargs, torch_text):
        p = [torch.zeros(2, requires_grad=True)]
        with pytest.raises(ValueError, match=re.escape(torch_text)):
            self.theirs(p, **kwargs)
        with pytest.raises(ValueError, match=re.escape(torch_text)):
            self.ours(p, **kwargs)

    @from_table("non_numbers", "name, value")
    def test_non_number_is_a_type_error_naming_it(self, name, value):
        with pytest.raises(TypeError, match=f"{name} must be a number"):
            self.ours([torch.zeros(2, requires_grad=True)], **{name: value})

    @from_table("torch_only_flags", "flag")
    def test_torch_only_flags_bind_but_true_is_refused(self, flag):
        p = [torch.zeros(2, requires_grad=True)]
        self.ours(p, **{flag: False})
        with pytest.raises(ValueError, match=f"{flag}=True"):
            self.ours(p, **{flag: True})

    def test_signature_is_torchs(self):
        torch_signature_matches(self.ours, self.theirs)


class StepCounterContract(OptimizerContract):
    """The contract of an optimizer that keeps torch's step counter ``state["step"]``."""

    def test_step_dtype_follows_default_dtype_like_torch(self):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(torch.float64)
        try:
            p, q = torch.ones(2, requires_grad=True), torch.ones(2, requires_grad=True)
            p.grad, q.grad = torch.ones(2), torch.ones(2)
            opt_ours, opt_theirs = self.ours([p]), self.theirs([q])
            opt_ours.step()
            opt_theirs.step()
            assert opt_ours.state[p]["step"].dtype == opt_theirs.state[q]["step"].dtype
            assert opt_ours.state[p]["step"].dtype == torch.float64
        finally:
            torch.set_default_dtype(previous)

    def test_old_state_dict_with_python_number_step_loads(self):
        """Old PyTorch saved ``step`` as a Python number; it becomes the usual float32 tensor,
        and the run continues as torch's."""
        make_ours, make_theirs = self.configured
        reference, old = twins("mlp", torch.float32)
        opt_ref = make_theirs(reference.parameters())
        train(reference, opt_ref, 5)
        saved = copy.deepcopy(opt_ref.state_dict())
        for s in saved["state"].values():
            s["step"] = int(s["step"].item())
        old.load_state_dict(reference.state_dict())
        opt_old = make_ours(old.parameters())
        opt_old.load_state_dict(saved)
        for s in opt_old.state.values():
            assert torch.is_tensor(s["step"]) and s["step"].dtype == torch.float32
            assert s["step"] == 5
        train(old, opt_old, 5, start=5)
        train(reference, opt_ref, 5, start=5)
        assert_equal_params(old, reference)
