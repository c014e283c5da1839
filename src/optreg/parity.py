"""``optreg parity``: each from-scratch component against its PyTorch counterpart.

Every check builds the same random problem twice — once for optreg's code, once for torch's —
and compares the results:

* cross-entropy: loss values and gradients w.r.t. the logits, for index and probability targets,
  label smoothing, ignore_index, class weights (``weight``), each reduction and extreme logits
  (±1e4);
* optimizers (Adam, AdamW, SGD, RMSprop, each option that changes the update, both kernels): a
  small conv net trained for ``steps`` steps on random batches from the same initial weights,
  optreg's optimizer on one copy and torch's on the other; compared are the final parameters and
  the last gradients (any difference in the update shows in both). optreg's default
  ``decay="weights"`` is matched on torch's side by param groups (weight decay on ndim > 1);
* the two L2 routes: optreg's CE with ``l2=λ`` + Adam against CE + Adam(``weight_decay=λ/B``).

Float32 and float64 each. A check passes when ``|a − b| ≤ atol + rtol·|b|`` everywhere
(``torch.testing.assert_close``'s rule) with the tolerances the table prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from optreg.losses import CrossEntropyLoss
from optreg.optim import SGD, Adam, AdamW, RMSprop
from optreg.regularization import is_decayed, l2_to_weight_decay, param_groups
from optreg.report.tables import Table, to_text
from optreg.runtime import execution

TOLERANCES = {torch.float32: (1e-6, 1e-5), torch.float64: (1e-12, 1e-10)}  # (atol, rtol)
BATCH, CLASSES = 16, 10


@dataclass(frozen=True)
class ParityRow:
    """One comparison: what against what, in which setting, and how far apart."""

    component: str
    counterpart: str
    setting: str
    max_diff: float  # parameters (optimizers) or loss values (CE)
    max_grad_diff: float
    atol: float
    rtol: float
    passed: bool


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> bool:
    return bool(((a - b).abs() <= atol + rtol * b.abs()).all())


def _max_diff(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    return max(float((a - b).abs().max()) if a.numel() else 0.0 for a, b in pairs)


def _row(component: str, counterpart: str, setting: str, dtype: torch.dtype,
         values: list[tuple[torch.Tensor, torch.Tensor]],
         grads: list[tuple[torch.Tensor, torch.Tensor]], scale: float = 1.0) -> ParityRow:
    atol, rtol = (t * scale for t in TOLERANCES[dtype])
    passed = all(_close(a, b, atol, rtol) for a, b in values + grads)
    name = str(dtype).removeprefix("torch.")
    return ParityRow(component, counterpart, f"{setting}, {name}", _max_diff(values),
                     _max_diff(grads), atol, rtol, passed)


# --- cross-entropy -----------------------------------------------------------------------------
def _ce_cases(g: torch.Generator, dtype: torch.dtype):
    """(setting, logits, target, options) for each cross-entropy check."""
    logits = torch.randn(BATCH, CLASSES, generator=g, dtype=dtype) * 3
    index = torch.randint(CLASSES, (BATCH,), generator=g)
    probs = torch.rand(BATCH, CLASSES, generator=g, dtype=dtype).softmax(dim=1)
    with_zeros = probs * (torch.rand(BATCH, CLASSES, generator=g, dtype=dtype) > 0.5)
    with_zeros = with_zeros / with_zeros.sum(1, keepdim=True).clamp_min(1e-12)
    one_hot = nn.functional.one_hot(index, CLASSES).to(dtype)
    ignored = index.clone()
    ignored[::3] = -100
    extreme = torch.randn(BATCH, CLASSES, generator=g, dtype=dtype).sign() * 1e4
    # Drawn last, so that the rows above keep the data they had before class weights came.
    weight = 0.5 + 2 * torch.rand(CLASSES, generator=g, dtype=dtype)
    weight[1] = 0.0  # a class that counts for nothing
    for reduction in ("mean", "sum", "none"):
        yield f"index targets, {reduction}", logits, index, {"reduction": reduction}
    yield "probability targets", logits, probs, {}
    yield "probability targets with zeros", logits, with_zeros, {}
    yield "one-hot targets", logits, one_hot, {}
    yield "label smoothing 0.1", logits, index, {"label_smoothing": 0.1}
    yield "label smoothing 0.1, probabilities", logits, probs, {"label_smoothing": 0.1}
    yield "ignore_index", logits, ignored, {"ignore_index": -100}
    yield "ignore_index + smoothing, sum", logits, ignored, {"label_smoothing": 0.2,
                                                             "reduction": "sum"}
    yield "extreme logits ±1e4", extreme, index, {}
    yield "extreme logits ±1e4, probabilities", extreme, with_zeros, {}
    weighted, smoothed = {"weight": weight}, {"weight": weight, "label_smoothing": 0.1}
    for reduction in ("mean", "sum", "none"):
        yield f"class weights, {reduction}", logits, index, {**weighted, "reduction": reduction}
    yield "class weights + ignore_index + smoothing 0.1", logits, ignored, smoothed
    yield "class weights, probabilities", logits, probs, weighted
    yield "class weights + smoothing 0.1, probabilities", logits, with_zeros, smoothed


def cross_entropy_rows(seed: int = 0) -> list[ParityRow]:
    rows = []
    for dtype in (torch.float32, torch.float64):
        g = torch.Generator().manual_seed(seed)
        for setting, logits, target, options in _ce_cases(g, dtype):
            results = []
            for loss_fn in (CrossEntropyLoss(**options), nn.CrossEntropyLoss(**options)):
                z = logits.clone().requires_grad_(True)
                loss = loss_fn(z, target)
                loss.sum().backward()
                results.append((loss.detach(), z.grad))
            (ours, our_grad), (theirs, their_grad) = results
            # Extreme logits make losses ~1e4: compare relative to that scale.
            rows.append(_row("CrossEntropyLoss", "nn.CrossEntropyLoss", setting, dtype,
                             [(ours, theirs)], [(our_grad, their_grad)]))
    return rows


# --- optimizers --------------------------------------------------------------------------------
def _net(seed: int, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 8, 3), nn.Tanh(),
        nn.Flatten(), nn.Linear(8 * 2 * 2, 16), nn.Tanh(), nn.Linear(16, CLASSES),
    ).to(dtype)


MakeOptimizer = Callable[[list[nn.Parameter]], torch.optim.Optimizer]


def _train(make_optimizer: MakeOptimizer, loss_fn: Callable[[nn.Module], nn.Module],
           dtype: torch.dtype, steps: int, seed: int, *, grad_wd: float = 0.0
           ) -> tuple[list, list]:
    """Train the small net; return its final parameters and last gradients.

    ``grad_wd`` adds wd·θ to the returned gradients of decayed tensors: the effective gradient
    of coupled L2, comparable with the gradient of a loss that holds the penalty.
    """
    model = _net(seed, dtype)
    criterion = loss_fn(model)
    optimizer = make_optimizer(list(model.parameters()))
    g = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        x = torch.randn(BATCH, 3, 10, 10, generator=g, dtype=dtype)
        y = torch.randint(CLASSES, (BATCH,), generator=g)
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        grads = [p.grad + grad_wd * p.detach() if is_decayed(p) else p.grad.clone()
                 for p in model.parameters()]  # θ before the step, as the gradient saw it
        optimizer.step()
    params = [p.detach().clone() for p in model.parameters()]
    return params, grads


def _weights_only(torch_optimizer: type, wd: float, **options: Any) -> MakeOptimizer:
    """torch's optimizer with weight decay on the tensors optreg's ``decay="weights"`` picks."""
    return lambda params: torch_optimizer(param_groups(params, wd), **options)


# (component, counterpart, setting, optreg's optimizer, torch's optimizer)
OptimizerCase = tuple[str, str, str, MakeOptimizer, MakeOptimizer]
WEIGHT_DECAY = 0.05


def _adam_cases(wd: float) -> list[OptimizerCase]:
    return [
        ("Adam", "torch.optim.Adam", "lr 1e-3",
         lambda p: Adam(p), lambda p: torch.optim.Adam(p)),
        ("Adam + L2 (weights)", "torch Adam, wd on ndim>1 groups", f"wd {wd}",
         lambda p: Adam(p, weight_decay=wd), _weights_only(torch.optim.Adam, wd)),
        ("Adam + L2 (all)", "torch.optim.Adam(weight_decay)", f"wd {wd}",
         lambda p: Adam(p, weight_decay=wd, decay="all"),
         lambda p: torch.optim.Adam(p, weight_decay=wd)),
        ("AdamW (weights)", "torch AdamW, wd on ndim>1 groups", f"wd {wd * 10}",
         lambda p: AdamW(p, weight_decay=wd * 10), _weights_only(torch.optim.AdamW, wd * 10)),
        ("AdamW (all)", "torch.optim.AdamW", "wd 1e-2",
         lambda p: AdamW(p, decay="all"), lambda p: torch.optim.AdamW(p)),
        ("Adam amsgrad", "torch Adam(amsgrad=True)", "lr 1e-3",
         lambda p: Adam(p, amsgrad=True), lambda p: torch.optim.Adam(p, amsgrad=True)),
        ("Adam maximize", "torch Adam(maximize=True)", "lr 1e-4",
         lambda p: Adam(p, lr=1e-4, maximize=True),
         lambda p: torch.optim.Adam(p, lr=1e-4, maximize=True)),
    ]  # fmt: skip


def _sgd_cases(wd: float) -> list[OptimizerCase]:
    heavy = {"lr": 1e-2, "momentum": 0.9}
    nesterov = {**heavy, "nesterov": True}
    return [
        ("SGD", "torch.optim.SGD", "lr 1e-2",
         lambda p: SGD(p, lr=1e-2), lambda p: torch.optim.SGD(p, lr=1e-2)),
        ("SGD momentum", "torch SGD(momentum=0.9)", "lr 1e-2, μ 0.9",
         lambda p: SGD(p, **heavy), lambda p: torch.optim.SGD(p, **heavy)),
        ("SGD momentum, dampening", "torch SGD(momentum=dampening=0.9)", "lr 1e-1, μ = τ = 0.9",
         lambda p: SGD(p, lr=0.1, momentum=0.9, dampening=0.9),
         lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.9)),
        ("SGD Nesterov", "torch SGD(nesterov=True)", "lr 1e-2, μ 0.9",
         lambda p: SGD(p, **nesterov), lambda p: torch.optim.SGD(p, **nesterov)),
        ("SGD + L2 (weights)", "torch SGD, wd on ndim>1 groups", f"μ 0.9, wd {wd}",
         lambda p: SGD(p, weight_decay=wd, **heavy), _weights_only(torch.optim.SGD, wd, **heavy)),
        ("SGD + L2 (all)", "torch.optim.SGD(weight_decay)", f"Nesterov μ 0.9, wd {wd}",
         lambda p: SGD(p, weight_decay=wd, decay="all", **nesterov),
         lambda p: torch.optim.SGD(p, weight_decay=wd, **nesterov)),
        ("SGD maximize", "torch SGD(maximize=True)", "lr 1e-3, μ 0.9",
         lambda p: SGD(p, lr=1e-3, momentum=0.9, maximize=True),
         lambda p: torch.optim.SGD(p, lr=1e-3, momentum=0.9, maximize=True)),
    ]  # fmt: skip


def _rmsprop_cases(wd: float) -> list[OptimizerCase]:
    both = {"lr": 1e-4, "momentum": 0.9, "centered": True}
    return [
        ("RMSprop", "torch.optim.RMSprop", "lr 1e-3",
         lambda p: RMSprop(p, lr=1e-3), lambda p: torch.optim.RMSprop(p, lr=1e-3)),
        ("RMSprop centered", "torch RMSprop(centered=True)", "lr 1e-3",
         lambda p: RMSprop(p, lr=1e-3, centered=True),
         lambda p: torch.optim.RMSprop(p, lr=1e-3, centered=True)),
        ("RMSprop momentum", "torch RMSprop(momentum=0.9)", "lr 1e-4, μ 0.9",
         lambda p: RMSprop(p, lr=1e-4, momentum=0.9),
         lambda p: torch.optim.RMSprop(p, lr=1e-4, momentum=0.9)),
        ("RMSprop centered, momentum", "torch RMSprop(centered, momentum)", "lr 1e-4, μ 0.9",
         lambda p: RMSprop(p, **both), lambda p: torch.optim.RMSprop(p, **both)),
        ("RMSprop + L2 (weights)", "torch RMSprop, wd on ndim>1 groups", f"lr 1e-3, wd {wd}",
         lambda p: RMSprop(p, lr=1e-3, weight_decay=wd),
         _weights_only(torch.optim.RMSprop, wd, lr=1e-3)),
        ("RMSprop + L2 (all)", "torch.optim.RMSprop(weight_decay)", f"lr 1e-3, wd {wd}",
         lambda p: RMSprop(p, lr=1e-3, weight_decay=wd, decay="all"),
         lambda p: torch.optim.RMSprop(p, lr=1e-3, weight_decay=wd)),
        ("RMSprop maximize", "torch RMSprop(maximize=True)", "lr 1e-4",
         lambda p: RMSprop(p, lr=1e-4, maximize=True),
         lambda p: torch.optim.RMSprop(p, lr=1e-4, maximize=True)),
    ]  # fmt: skip


def optimizer_rows(steps: int = 300, seed: int = 0) -> list[ParityRow]:
    cases = [*_adam_cases(WEIGHT_DECAY), *_sgd_cases(WEIGHT_DECAY),
             *_rmsprop_cases(WEIGHT_DECAY)]
    torch_ce = lambda _model: nn.CrossEntropyLoss()  # noqa: E731 - one loss for both sides
    rows = []
    for dtype in (torch.float32, torch.float64):
        for component, counterpart, setting, ours, theirs in cases:
            for foreach in (False, True):
                a = _train(_with_foreach(ours, foreach), torch_ce, dtype, steps, seed)
                b = _train(_with_foreach(theirs, foreach), torch_ce, dtype, steps, seed)
                rows.append(_row(component, counterpart,
                                 f"{setting}, {'foreach' if foreach else 'single-tensor'}, "
                                 f"{steps} steps", dtype,
                                 list(zip(a[0], b[0], strict=True)),
                                 list(zip(a[1], b[1], strict=True))))
    return rows


def _with_foreach(make: MakeOptimizer, foreach: bool) -> MakeOptimizer:
    def build(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        optimizer = make(params)
        for group in optimizer.param_groups:
            group["foreach"] = foreach
        return optimizer

    return build


def l2_route_rows(steps: int = 300, seed: int = 0) -> list[ParityRow]:
    """L2 = λ in the loss vs coupled L2 wd = λ/B in the optimizer: one regulariser, two ways."""
    l2 = 0.5
    wd = l2_to_weight_decay(l2, BATCH)
    rows = []
    for dtype in (torch.float32, torch.float64):
        a = _train(lambda p: Adam(p), lambda m: CrossEntropyLoss(params=m.parameters(), l2=l2),
                   dtype, steps, seed)
        b = _train(lambda p: Adam(p, weight_decay=wd), lambda _m: CrossEntropyLoss(),
                   dtype, steps, seed, grad_wd=wd)
        # Different arithmetic (autograd of λ/(2B)·Σw² vs wd·w) may round differently, and Adam
        # amplifies tiny differences in small gradients: allow 10× the tolerances.
        rows.append(_row("CE(l2=λ) + Adam", "CE + Adam(weight_decay=λ/B)",
                         f"λ {l2}, B {BATCH}, {steps} steps", dtype,
                         list(zip(a[0], b[0], strict=True)), list(zip(a[1], b[1], strict=True)),
                         scale=10.0))
    return rows


def run_parity(steps: int = 300, seed: int = 0) -> list[ParityRow]:
    """Every parity check; see the module docstring.

    Runs on one CPU thread: these problems are too small to gain from more, and several
    threads contending for two cores made the checks several times slower.
    """
    with torch.random.fork_rng(), execution(threads=1, flush_denormal=False):
        return cross_entropy_rows(seed) + optimizer_rows(steps, seed) + l2_route_rows(steps, seed)


PARITY_HEADERS = ("component", "counterpart", "setting", "max |Δ| value", "max |Δ| grad",
                  "tolerance", "result")


def parity_table(rows: list[ParityRow]) -> Table:
    """The rows as a :class:`~optreg.report.tables.Table`, differences right-aligned."""
    body = tuple((r.component, r.counterpart, r.setting, f"{r.max_diff:.2e}",
                  f"{r.max_grad_diff:.2e}", f"{r.atol:.0e} + {r.rtol:.0e}·|x|",
                  "pass" if r.passed else "FAIL") for r in rows)
    return Table(PARITY_HEADERS, body, ("l", "l", "l", "r", "r", "l", "l"))


def format_parity_table(rows: list[ParityRow]) -> str:
    """The rows as an aligned text table (no trailing newline)."""
    return to_text(parity_table(rows)).removesuffix("\n")
