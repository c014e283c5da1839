"""Lockstep recording of a student's optimizer (and loss), and replays of references on it.

:func:`record` trains the problem's net with the student's optimizer and keeps, per step, the
gradients it was given, the parameters after its step and its state (``exp_avg``,
``exp_avg_sq``, ``step`` under the skeleton's keys), all flattened to one vector per step.

A reference is then *replayed* on the recorded gradients from the same starting point
(:func:`replay_torch` for torch's own optimizers, :func:`first_departure` for the catalogue's
variants). As long as a replay stays on the student's parameters, the gradients it is fed are
exactly the ones it would have computed itself; the first step where it leaves them is where
the two algorithms first differ, free of the chaos that two separate trainings add.
:func:`independent_run` is that separate training, for the "how far apart do they end up" figure.

The loss is recorded the same way (:func:`record_loss_calls`: inputs, value and gradients of
each call) and any :class:`~optreg.check.catalogue.LossVariant` is evaluated on the same inputs
(:func:`loss_departure`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from optreg.check.catalogue import AdamVariant, Hyper, LossVariant
from optreg.check.problems import LossTolerance, Problem

OptimizerFactory = Callable[[list[Tensor]], torch.optim.Optimizer]
LossFunction = Callable[[Tensor, Tensor], Tensor]


class StudentCodeError(Exception):
    """The student's code raised; ``where`` says in which call (the cause is the exception)."""

    def __init__(self, where: str) -> None:
        super().__init__(where)
        self.where = where


def student_call(where: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call student code; an ``Exception`` (or ``SystemExit``) becomes a
    :class:`StudentCodeError` naming ``where``, with the original as its cause."""
    try:
        return fn(*args, **kwargs)
    except (Exception, SystemExit) as e:
        raise StudentCodeError(where) from e


@dataclass
class Trajectory:
    """A recorded run, one flat vector per step (parameters in ``named_parameters`` order).

    ``params[t]`` holds the parameters after t steps (row 0: the start), ``grads[t]`` the
    gradient given to step t + 1. ``exp_avg[t]`` / ``exp_avg_sq[t]`` / ``step_counts[t]`` are
    the student's state after step t + 1 (None when the state lacks the key: ``state_keys`` says
    what it has). ``low_precision`` names state or parameters the student keeps in a lower
    precision than the problem's dtype.
    """

    names: list[str]
    shapes: list[torch.Size]
    weights: Tensor
    params: Tensor
    grads: Tensor
    exp_avg: Tensor | None
    exp_avg_sq: Tensor | None
    step_counts: list[float | None]
    state_keys: tuple[str, ...]
    low_precision: str | None

    @property
    def steps(self) -> int:
        return self.grads.shape[0]

    def locate(self, index: int) -> str:
        """The parameter tensor and element of flat position ``index``, e.g. fc1.weight[3, 7]."""
        start = 0
        for name, shape in zip(self.names, self.shapes, strict=True):
            n = shape.numel()
            if index < start + n:
                coords = torch.unravel_index(torch.tensor(index - start), shape)
                return f"{name}[{', '.join(str(int(c)) for c in coords)}]"
            start += n
        raise IndexError(index)

    def unflatten(self, flat: Tensor) -> list[Tensor]:
        return [t.view(s) for t, s in zip(flat.split([s.numel() for s in self.shapes]),
                                           self.shapes, strict=True)]


def flat(tensors: Iterable[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def torch_cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    return F.cross_entropy(logits, target)


def record(problem: Problem, make_optimizer: OptimizerFactory,
           loss_fn: LossFunction = torch_cross_entropy,
           *, make_loss: Callable[[Iterable[Tensor]], LossFunction] | None = None) -> Trajectory:
    """Train ``problem``'s net with the student's optimizer for ``problem.steps`` steps.

    ``make_loss`` (given the net's parameters as a generator) replaces ``loss_fn`` when the
    loss is the student's own.
    """
    net = problem.net()
    named = list(net.named_parameters())
    params = [p for _, p in named]
    if make_loss is not None:
        loss_fn = student_call("the loss's __init__", make_loss, net.parameters())
    optimizer = student_call("the optimizer's __init__", make_optimizer, params)
    n, steps = sum(p.numel() for p in params), problem.steps
    rows = torch.empty(steps + 1, n, dtype=problem.dtype)
    grads = torch.empty(steps, n, dtype=problem.dtype)
    exp_avg = torch.empty(steps, n, dtype=problem.dtype)
    exp_avg_sq = torch.empty(steps, n, dtype=problem.dtype)
    have_m = have_v = True
    step_counts: list[float | None] = []
    state_keys: tuple[str, ...] = ()
    low_precision = None
    rows[0] = flat(params)
    for t, (x, y) in enumerate(problem.batches()):
        for p in params:
            p.grad = None
        where = f"step {t + 1}"
        loss = student_call(f"the loss, {where}", loss_fn, net(x), y)
        student_call(f"backward through the loss, {where}", _backward, loss)
        grads[t] = flat(_grad(p) for p in params)
        student_call(f"step() at step {t + 1}", optimizer.step)
        rows[t + 1] = flat(params)
        state = [_state_of(optimizer, p) for p in params]
        state_keys = tuple(sorted(map(str, state[0])))
        have_m = have_m and all(_is_tensor_like(s.get("exp_avg"), p)
                                for s, p in zip(state, params, strict=True))
        have_v = have_v and all(_is_tensor_like(s.get("exp_avg_sq"), p)
                                for s, p in zip(state, params, strict=True))
        if have_m:
            exp_avg[t] = flat(s["exp_avg"] for s in state)
        if have_v:
            exp_avg_sq[t] = flat(s["exp_avg_sq"] for s in state)
        step_counts.append(_number(state[0].get("step")))
        if low_precision is None:
            low_precision = _low_precision(state, params, problem.dtype)
    return Trajectory(
        names=[name for name, _ in named],
        shapes=[p.shape for p in params],
        weights=flat((torch.ones_like(p) if p.ndim > 1 else torch.zeros_like(p)) for p in params),
        params=rows,
        grads=grads,
        exp_avg=exp_avg if have_m else None,
        exp_avg_sq=exp_avg_sq if have_v else None,
        step_counts=step_counts,
        state_keys=state_keys,
        low_precision=low_precision,
    )


def _backward(loss: object) -> None:
    if not isinstance(loss, Tensor):
        raise TypeError(f"the loss returned {type(loss).__name__}, not a tensor")
    if loss.numel() != 1:
        raise ValueError(f"the loss returned a tensor of shape {tuple(loss.shape)}, not a scalar")
    if not loss.requires_grad:
        raise TypeError("the loss has no gradient (requires_grad=False): was it made from "
                        ".item(), numpy or p.data alone?")
    loss.sum().backward()


def _grad(p: Tensor) -> Tensor:
    return torch.zeros_like(p) if p.grad is None else p.grad


def _state_of(optimizer: object, p: Tensor) -> dict:
    state = getattr(optimizer, "state", None)
    try:
        found = state.get(p) if state is not None else None  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        found = None
    return found if isinstance(found, dict) else {}


def _is_tensor_like(value: object, p: Tensor) -> bool:
    return isinstance(value, Tensor) and value.shape == p.shape


def _number(value: object) -> float | None:
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _low_precision(state: list[dict], params: list[Tensor], dtype: torch.dtype) -> str | None:
    for p in params:
        if p.dtype != dtype:
            return f"your parameters became {p.dtype} (they were {dtype})"
    for key in ("exp_avg", "exp_avg_sq"):
        for s in state:
            value = s.get(key)
            if isinstance(value, Tensor) and value.is_floating_point() and value.dtype != dtype:
                return (f"your state['{key}'] is {value.dtype} while the parameters are "
                        f"{dtype} (torch.zeros_like(p) follows the parameter's dtype)")
    return None


# --- comparisons ---------------------------------------------------------------------------------
def mismatch(a: Tensor, b: Tensor, tolerance: tuple[float, float]) -> Tensor:
    """Elements where ``|a − b| > atol + rtol·|b|`` (equal infinities and nan = nan agree)."""
    atol, rtol = tolerance
    ok = (a - b).abs() <= atol + rtol * b.abs()
    ok |= a == b
    ok |= a.isnan() & b.isnan()
    return ~ok


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """max |a − b|, with nan where only one side is nan and inf where they differ infinitely."""
    both_nan = a.isnan() & b.isnan()
    same = a == b
    diff = torch.where(both_nan | same, torch.zeros_like(a), (a - b).abs())
    return float(diff.max()) if diff.numel() else 0.0


@dataclass(frozen=True)
class Departure:
    """Where a replay first leaves the student's parameters.

    ``step`` is 1-based; ``max_diff`` and ``where`` (the worst element) are at that step;
    ``exp_avg`` / ``exp_avg_sq`` are the reference's state there (None if not known).
    ``update_ratio`` is the student's step divided by the reference's when that ratio is one
    number on every element that moves (a factor on the learning rate, say), else None.
    """

    step: int
    max_diff: float
    where: str
    exp_avg: Tensor | None
    exp_avg_sq: Tensor | None
    update_ratio: float | None = None


def replay_torch(traj: Trajectory, build: OptimizerFactory,
                 tolerance: tuple[float, float]) -> Departure | None:
    """Replay a torch optimizer on the recorded gradients; None if it follows every step."""
    params = [t.clone() for t in traj.unflatten(traj.params[0])]
    optimizer = build(params)
    for t in range(traj.steps):
        for p, g in zip(params, traj.unflatten(traj.grads[t]), strict=True):
            p.grad = g.clone()
        optimizer.step()
        now = flat(params)
        bad = mismatch(traj.params[t + 1], now, tolerance)
        if bool(bad.any()):
            state = [optimizer.state[p] for p in params]
            return _departure(traj, t, now, bad, flat(s["exp_avg"] for s in state),
                              flat(s["exp_avg_sq"] for s in state))
    return None


def first_departure(traj: Trajectory, variant: AdamVariant, hyper: Hyper,
                    tolerance: tuple[float, float]) -> Departure | None:
    """Replay a catalogue variant on the recorded gradients; None if it follows every step."""
    theta = traj.params[0].clone()
    m, v = variant.init_state(theta)
    for t in range(traj.steps):
        theta, m, v = variant.step(theta, traj.grads[t], m, v, t + 1, hyper, traj.weights)
        bad = mismatch(traj.params[t + 1], theta, tolerance)
        if bool(bad.any()):
            return _departure(traj, t, theta, bad, m, v)
    return None


def _departure(traj: Trajectory, t: int, reference: Tensor, bad: Tensor, m: Tensor | None,
               v: Tensor | None) -> Departure:
    student = traj.params[t + 1]
    diff = torch.where(bad, (student - reference).abs().nan_to_num(nan=float("inf")),
                       torch.zeros_like(student))
    index = int(diff.argmax())
    return Departure(step=t + 1, max_diff=max_abs_diff(student, reference),
                     where=traj.locate(index), exp_avg=m, exp_avg_sq=v,
                     update_ratio=_uniform_ratio(student - traj.params[t],
                                                 reference - traj.params[t]))


def _uniform_ratio(mine: Tensor, ref: Tensor) -> float | None:
    """mine / ref if it is the same number (to 1e-6) wherever ref moves noticeably."""
    moving = ref.abs() > 1e-3 * float(ref.abs().max())
    if not bool(moving.any()) or not bool(mine.isfinite().all()):
        return None
    ratios = mine[moving] / ref[moving]
    middle = float(ratios.median())
    spread = float(ratios.max() - ratios.min())
    return middle if spread <= 1e-6 * abs(middle) else None


def independent_run(problem: Problem, build: OptimizerFactory,
                    make_loss: Callable[[list[Tensor]], LossFunction] | None = None) -> Tensor:
    """Train the problem's net with a reference optimizer (and loss, default torch's CE);
    return the flat parameters after each step, row 0 the start (like ``Trajectory.params``)."""
    net = problem.net()
    params = list(net.parameters())
    optimizer = build(params)
    loss_fn = torch_cross_entropy if make_loss is None else make_loss(params)
    rows = torch.empty(problem.steps + 1, sum(p.numel() for p in params), dtype=problem.dtype)
    rows[0] = flat(params)
    for t, (x, y) in enumerate(problem.batches()):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), y).backward()
        optimizer.step()
        rows[t + 1] = flat(params)
    return rows


def state_comparison(traj: Trajectory, departure: Departure,
                     tolerance: tuple[float, float]) -> str:
    """One sentence on the student's state at the departure step: m and v, and the counter."""
    t = departure.step
    parts = []
    differs = []
    for key, mine, ref in (("exp_avg", traj.exp_avg, departure.exp_avg),
                           ("exp_avg_sq", traj.exp_avg_sq, departure.exp_avg_sq)):
        if mine is None or ref is None:
            continue
        if bool(mismatch(mine[t - 1], ref, tolerance).any()):
            differs.append(f"{key} (max |Δ| {max_abs_diff(mine[t - 1], ref):.2g})")
    known = [k for k, s in (("exp_avg", traj.exp_avg), ("exp_avg_sq", traj.exp_avg_sq))
             if s is not None]
    if len(known) < 2:
        missing = [k for k in ("exp_avg", "exp_avg_sq") if k not in known]
        keys = ", ".join(traj.state_keys) or "none"
        parts.append(f"your state has no {' or '.join(missing)} tensor (its keys: {keys}), so "
                     "the moments cannot be compared")
    if differs:
        parts.append(f"at step {t} your {' and '.join(differs)} already differ from torch's")
    elif known:
        parts.append(f"at step {t} your {' and '.join(known)} still equal torch's: only the "
                     "update differs")
    if departure.update_ratio is not None:
        parts.append(f"your update there is {departure.update_ratio:.4g} × torch's on every "
                     "parameter that moves (a factor on the learning rate?)")
    count = traj.step_counts[t - 1]
    if count is not None and count != t:
        parts.append(f"state['step'] is {count:g} after step {t} (torch: {t})")
    return "; ".join(parts) + "."


# --- the loss -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class LossCall:
    """One call of the student's loss: its inputs (the parameters as they were) and outputs.

    ``param_grads`` is flat (zeros where a tensor got no gradient). The logits are leaves, not
    the net's output, so ``param_grads`` is the penalty's gradient alone.
    """

    logits: Tensor
    target: Tensor
    params: list[Tensor]
    value: Tensor
    logits_grad: Tensor
    param_grads: Tensor


def record_loss_calls(problem: Problem, make_loss: Callable[[Iterable[Tensor]], LossFunction],
                      calls: list[tuple[Tensor, Tensor]], *, move: bool) -> list[LossCall]:
    """Call the student's loss (built on the net's parameters as a generator) on ``calls``.

    With ``move``, the parameters change in place before every call after the first, as an
    optimizer would change them: a penalty must follow them, and still be there on the last call.
    """
    net = problem.net()
    params = list(net.parameters())
    loss_fn = student_call("the loss's __init__", make_loss, net.parameters())
    gen = torch.Generator().manual_seed(10_007 * problem.seed + 3)
    recorded = []
    for k, (logits, target) in enumerate(calls):
        if move and k:
            with torch.no_grad():
                for p in params:
                    p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64)
                           .mul_(0.01).to(p.dtype))
        z = logits.clone().requires_grad_(True)
        for p in params:
            p.grad = None
        where = f"call {k + 1} of the loss"
        value = student_call(where, loss_fn, z, target)
        student_call(f"backward through {where}", _backward, value)
        recorded.append(LossCall(
            logits=logits, target=target, params=[p.detach().clone() for p in params],
            value=value.detach().reshape(()).to(problem.dtype),
            logits_grad=torch.zeros_like(z) if z.grad is None else z.grad,
            param_grads=flat(_grad(p) for p in params),
        ))
    return recorded


def evaluate_loss(variant: LossVariant, call: LossCall, l2: float,
                  index: int) -> tuple[Tensor, Tensor, Tensor]:
    """(value, logits gradient, flat parameter gradients) of ``variant`` on a recorded call."""
    z = call.logits.clone().requires_grad_(True)
    params = [p.clone().requires_grad_(True) for p in call.params]
    value = variant(z, call.target, params, l2, index)
    value.backward()
    return value.detach(), z.grad, flat(_grad(p) for p in params)  # type: ignore[return-value]


def loss_departure(calls: list[LossCall], variant: LossVariant, l2: float,
                   tolerance: LossTolerance) -> tuple[int, str] | None:
    """The first call (1-based) where ``variant`` and the student disagree, and in what."""
    for k, call in enumerate(calls):
        value, logits_grad, param_grads = evaluate_loss(variant, call, l2, k)
        for what, mine, ref, tol in (("value", call.value, value, tolerance.value),
                                     ("gradient w.r.t. the logits", call.logits_grad,
                                      logits_grad, tolerance.logits_grad),
                                     ("gradient w.r.t. the weights", call.param_grads,
                                      param_grads, tolerance.param_grads)):
            if bool(mismatch(mine, ref, tol).any()):
                return k + 1, what
    return None
