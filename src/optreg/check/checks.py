r"""The checks: each compares the student's classes with PyTorch's own code on a small problem.

========================  ======  ==========================================================
check                     points  what
========================  ======  ==========================================================
``ce``                    2       cross-entropy value and gradient vs ``nn.CrossEntropyLoss``
``ce_l2``                 1       CE + λ/(2B)·Σ‖W‖² (weights only), 100 calls, params a generator
``ce_large_logits``       info    how the loss behaves at logits of size ~1000 (not counted)
``defaults``              1       default lr, β₁, β₂, ε are the Adam paper's
``adam``                  3       Adam vs ``torch.optim.Adam``
``adam_l2``               1       Adam + L2 vs ``torch.optim.Adam(weight_decay=λ/B)``, weights
``adamw``                 1       AdamW vs ``torch.optim.AdamW(weight_decay=λ/B)`` or the paper's
``l2_equivalence``        1       L2 in the loss and L2 in the optimizer train identically
========================  ======  ==========================================================

The optimizer checks train the problem's net with the student's optimizer (torch's CE as the
loss, so a broken loss does not break them), record every step, and replay torch's optimizer on
the recorded gradients (:mod:`optreg.check.trajectory`): it passes when the replay follows the
student's parameters at every step. A failure names the first step where they part, whether the
student's ``exp_avg`` / ``exp_avg_sq`` already differ there, and the catalogue mistake that
reproduces the student's numbers (:mod:`optreg.check.diagnosis`).

Everything runs in float64 (a real mistake stands ~1000× above rounding, see
:mod:`optreg.check.problems`), with float64 as torch's default dtype, so state made with
``torch.zeros(p.shape)`` is float64 too. State kept in float32 on purpose is noticed, said, and
the check runs in float32 instead.

:func:`run_check` runs one check by name and turns anything the student's code raises into a
failed result with the student's own traceback.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from optreg.check.catalogue import (
    LOSS_MISTAKES,
    OPTIMIZER_MISTAKES,
    AdamVariant,
    Hyper,
    LossVariant,
)
from optreg.check.diagnosis import Match, find_matches
from optreg.check.problems import (
    BATCH_SIZE,
    BETA1,
    BETA2,
    EPS,
    L2,
    LOSS_TOLERANCE,
    LR,
    PARAM_TOLERANCE,
    Problem,
)
from optreg.check.result import CheckResult
from optreg.check.submission import Submission, SubmissionError, student_traceback
from optreg.check.trajectory import (
    Departure,
    LossCall,
    StudentCodeError,
    Trajectory,
    evaluate_loss,
    first_departure,
    flat,
    independent_run,
    loss_departure,
    max_abs_diff,
    mismatch,
    record,
    record_loss_calls,
    replay_torch,
    state_comparison,
    student_call,
    torch_cross_entropy,
)
from optreg.optim import AdamW as OptregAdamW
from optreg.regularization import param_groups

ADAMW_FORMS = ("torch", "paper", "either")
WEIGHT_DECAY = L2 / BATCH_SIZE  # λ/B, torch's coefficient for the exercise's λ
HYPER = Hyper(lr=LR, beta1=BETA1, beta2=BETA2, eps=EPS, l2=L2, batch_size=BATCH_SIZE)
CE_CALLS, CE_L2_CALLS, LARGE_LOGITS = 20, 100, 1000.0


@dataclass(frozen=True)
class CheckOptions:
    """How the checks run: the problem's seed and length, and the AdamW form required."""

    seed: int = 0
    steps: int = 300
    adamw_form: str = "either"

    def __post_init__(self) -> None:
        if self.adamw_form not in ADAMW_FORMS:
            raise ValueError(f"adamw_form must be one of {ADAMW_FORMS}, got {self.adamw_form!r}")
        if self.steps < 2:
            raise ValueError(f"steps must be >= 2, got {self.steps}")

    def problem(self, dtype: torch.dtype = torch.float64) -> Problem:
        return Problem(seed=self.seed, steps=self.steps, dtype=dtype)


@dataclass(frozen=True)
class CheckSpec:
    name: str
    title: str
    points: float
    roles: tuple[str, ...]  # the classes it needs: "loss", "optimizer", "adamw"
    run: Callable[[Submission, CheckOptions], CheckResult] = field(repr=False)
    info: bool = False  # shown, never counted: not even when it cannot run


def run_check(name: str, sub: Submission, options: CheckOptions) -> CheckResult:
    """Run check ``name``; the student's exceptions become a failed result, never propagate."""
    spec = CHECKS[name]
    failed = "info" if spec.info else "failed"
    for role in spec.roles:
        if role in sub.problems:
            return CheckResult(name, failed, diagnosis=f"not run: no usable {role} class",
                               details=sub.problems[role])
    try:
        return spec.run(sub, options)
    except StudentCodeError as e:
        cause = e.__cause__ or e
        return CheckResult(
            name, failed,
            diagnosis=f"your code raised {type(cause).__name__} in {e.where}",
            details=student_traceback(cause, sub.filenames or None),
        )
    except SubmissionError as e:
        return CheckResult(name, failed, diagnosis="could not build your classes",
                           details=str(e))
    except Exception as e:  # what the student's code left behind broke the check itself
        return CheckResult(
            name, failed, diagnosis=f"the check could not use what your code returned "
                                    f"({type(e).__name__})",
            details=f"{type(e).__name__}: {e} (e.g. a parameter that changed its shape, or "
                    "state that is not made of tensors)")


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Make ``dtype`` torch's default while student code runs (torch.zeros(shape) follows)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


# --- the loss -----------------------------------------------------------------------------------
def _loss_check(name: str, sub: Submission, options: CheckOptions, *, l2: float, calls: int,
                reference: str) -> CheckResult:
    problem = options.problem()
    base = LossVariant(penalty="present" if l2 else "none")
    with _default_dtype(problem.dtype):
        recorded = record_loss_calls(problem, lambda ps: sub.make_loss(ps, l2),
                                     problem.logits(calls), move=bool(l2))
    max_diff = _loss_max_diff(recorded, base, l2)
    departure = loss_departure(recorded, base, l2, LOSS_TOLERANCE)
    if departure is None:
        return CheckResult(name, "passed", diagnosis=f"matches {reference}", max_diff=max_diff,
                           details=f"value and gradients agree on all {calls} calls")
    call, what = departure
    where = (f"Your loss leaves {reference} at call {call} of {calls}: its {what} differs "
             f"(max |Δ| {max_diff:.3g} over the calls).")
    matches = find_matches({"": base}, LOSS_MISTAKES,
                           lambda v: loss_departure(recorded, v, l2, LOSS_TOLERANCE) is None)
    return _failure(name, where, matches, max_diff=max_diff, first_bad=call)


def _loss_max_diff(recorded: list[LossCall], base: LossVariant, l2: float) -> float:
    worst = 0.0
    for k, call in enumerate(recorded):
        value, logits_grad, param_grads = evaluate_loss(base, call, l2, k)
        worst = max(worst, max_abs_diff(call.value, value),
                    max_abs_diff(call.logits_grad, logits_grad),
                    max_abs_diff(call.param_grads, param_grads))
    return worst


def check_ce(sub: Submission, options: CheckOptions) -> CheckResult:
    return _loss_check("ce", sub, options, l2=0.0, calls=CE_CALLS,
                       reference="nn.CrossEntropyLoss")


def check_ce_l2(sub: Submission, options: CheckOptions) -> CheckResult:
    return _loss_check("ce_l2", sub, options, l2=L2, calls=CE_L2_CALLS,
                       reference="CE + λ/(2B)·Σ‖W‖² over the weights")


def check_ce_large_logits(sub: Submission, options: CheckOptions) -> CheckResult:
    """Information only: the loss at logits of size ~1000, where exp underflows."""
    problem = options.problem()
    with _default_dtype(problem.dtype):
        [call] = record_loss_calls(problem, lambda ps: sub.make_loss(ps, 0.0),
                                   problem.logits(1, scale=LARGE_LOGITS), move=False)
    z = call.logits.clone().requires_grad_(True)
    torch_value = torch_cross_entropy(z, call.target)
    torch_value.backward()
    mine, ref = float(call.value), float(torch_value.detach())
    grad_diff = max_abs_diff(call.logits_grad, z.grad)  # type: ignore[arg-type]
    finite_grad = bool(call.logits_grad.isfinite().all())
    lines = [f"At logits of size ~{LARGE_LOGITS:g} your loss is {mine:.4g}; torch's is {ref:.4g}."]
    if not math.isfinite(mine) or not finite_grad:
        lines.append("It is not finite there (log of a probability that underflowed to 0): "
                     "an ε inside the log, log(p + ε), keeps it finite; torch's log-softmax "
                     "z − logsumexp(z) is exact at any size.")
        short = "not finite at extreme logits"
    elif abs(mine - ref) > 1e-6 * abs(ref):
        lines.append(
            "log(p + ε) cannot go below log ε, so a sample whose probability underflows adds "
            "at most −log ε (16.1 for ε = 1e-7) and its gradient vanishes (max |Δ| of the "
            f"gradient from torch's: {grad_diff:.3g}). That is harmless at the logits of real "
            "training; torch's log-softmax z − logsumexp(z) has no such cap."
        )
        short = "capped at extreme logits, as log(p + ε) is"
    else:
        short = "exact at extreme logits"
    return CheckResult("ce_large_logits", "info", diagnosis=short, details=" ".join(lines),
                       max_diff=abs(mine - ref) if math.isfinite(mine) else float("inf"))


# --- defaults -----------------------------------------------------------------------------------
def check_defaults(sub: Submission, options: CheckOptions) -> CheckResult:
    cls = sub.require("optimizer")
    if sub.style == "exercise":
        expected = {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS}
        signature = "lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8"
    else:
        expected = {"lr": LR, "betas": (BETA1, BETA2), "eps": EPS}
        signature = "lr=1e-3, betas=(0.9, 0.999), eps=1e-8"
    params = inspect.signature(cls.__init__).parameters
    wrong = []
    for key, value in expected.items():
        if key not in params:
            wrong.append(f"{key} is not a parameter")
        elif params[key].default is inspect.Parameter.empty:
            wrong.append(f"{key} has no default")
        elif not _same_number(params[key].default, value):
            wrong.append(f"{key} defaults to {params[key].default!r} (the Adam paper: {value!r})")
    if not wrong:
        return CheckResult("defaults", "passed", diagnosis="the Adam paper's",
                           details=f"{cls.__name__}({signature})")
    return CheckResult("defaults", "failed", diagnosis="; ".join(wrong),
                       fix=f"def __init__(self, params, {signature}, ...)",
                       details="The defaults of Adam (Kingma & Ba, Algorithm 1): lr (α) = 0.001, "
                               "β₁ = 0.9, β₂ = 0.999, ε = 1e-8.")


def _same_number(a: object, b: object) -> bool:
    if isinstance(b, tuple):
        return isinstance(a, tuple | list) and len(a) == len(b) and all(
            _same_number(x, y) for x, y in zip(a, b, strict=True))
    return isinstance(a, int | float) and not isinstance(a, bool) and math.isclose(
        a, b, rel_tol=1e-12)  # type: ignore[arg-type]


# --- the optimizer ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Reference:
    """A correct form: torch's code to replay, its label, and its catalogue variant."""

    name: str
    label: str
    build: Callable[[list[Tensor]], torch.optim.Optimizer]
    variant: AdamVariant


def _torch_adam(weight_decay: float) -> Callable[[list[Tensor]], torch.optim.Optimizer]:
    def build(params: list[Tensor]) -> torch.optim.Optimizer:
        groups = param_groups(params, weight_decay) if weight_decay else params
        return torch.optim.Adam(groups, lr=LR, betas=(BETA1, BETA2), eps=EPS, foreach=True)

    return build


def _torch_adamw(params: list[Tensor]) -> torch.optim.Optimizer:
    return torch.optim.AdamW(param_groups(params, WEIGHT_DECAY), lr=LR, betas=(BETA1, BETA2),
                             eps=EPS, foreach=True)


def _paper_adamw(params: list[Tensor]) -> torch.optim.Optimizer:
    return OptregAdamW(param_groups(params, WEIGHT_DECAY), lr=LR, betas=(BETA1, BETA2), eps=EPS,
                       decay_scale="schedule", foreach=True)


ADAM = Reference("torch", "torch.optim.Adam", _torch_adam(0.0), AdamVariant())
ADAM_L2 = Reference("torch", "torch.optim.Adam(weight_decay=λ/B) on the weights",
                    _torch_adam(WEIGHT_DECAY), AdamVariant(decay="coupled"))
ADAMW_TORCH = Reference("torch", "torch.optim.AdamW(weight_decay=λ/B) on the weights",
                        _torch_adamw, AdamVariant(decay="decoupled"))
ADAMW_PAPER = Reference("paper", "the paper's AdamW (optreg.AdamW(decay_scale='schedule'))",
                        _paper_adamw, AdamVariant(decay="decoupled", decay_lr_power=0))

_FORM_NOTE = (
    "The two forms of decoupled decay: torch.optim.AdamW shrinks θ by lr·λ per step; the paper "
    "(Loshchilov & Hutter, Algorithm 2) by η_t·λ, the schedule multiplier (1 here) times λ, "
    "without lr. The same decay needs λ_torch = λ_paper / lr; with λ/B = {wd:g} and lr = {lr:g} "
    "that is {ratio:g} in torch's form for the paper's {wd:g}."
)


def _optimizer_check(name: str, sub: Submission, options: CheckOptions, *, l2: float,
                     adamw: bool, references: tuple[Reference, ...],
                     accepted: tuple[str, ...]) -> CheckResult:
    notes = []
    for dtype in (torch.float64, torch.float32):
        problem = options.problem(dtype)
        with _default_dtype(dtype):
            traj = record(problem, lambda ps: sub.make_optimizer(
                ps, lr=LR, l2=l2, adamw=adamw, batch_size=BATCH_SIZE, betas=(BETA1, BETA2),
                eps=EPS))
        if traj.low_precision is None or dtype == torch.float32:
            break
        notes.append(f"{traj.low_precision[0].upper()}{traj.low_precision[1:]}, so this check "
                     f"ran in float32 (tolerance {PARAM_TOLERANCE[torch.float32][0]:g} instead "
                     f"of {PARAM_TOLERANCE[torch.float64][0]:g}).")
    tolerance = PARAM_TOLERANCE[problem.dtype]
    departures: dict[str, Departure | None] = {}
    for ref in references:  # in order; once an accepted form is followed, the rest cannot matter
        departures[ref.name] = replay_torch(traj, ref.build, tolerance)
        if departures[ref.name] is None and ref.name in accepted:
            break
    followed = [ref for ref in references if ref.name in departures
                and departures[ref.name] is None]
    good = [ref for ref in followed if ref.name in accepted]
    closest = good[0] if good else followed[0] if followed else max(
        (r for r in references if r.name in accepted),
        key=lambda r: departures[r.name].step)  # type: ignore[union-attr]
    max_diff = max_abs_diff(traj.params[-1], _reference_end(closest, problem))
    form = _form_sentence(closest) if adamw and followed else ""
    precision = " (in float32: your state is float32)" if notes else ""
    if good:
        details = " ".join([*notes, f"Your parameters follow {closest.label} at every one of "
                                    f"the {traj.steps} steps.", form]).strip()
        return CheckResult(name, "passed", diagnosis=f"matches {closest.label}{precision}",
                           max_diff=max_diff, details=details)
    if followed:  # a correct form, but not the one required
        wanted = " or ".join(r.label for r in references if r.name in accepted)
        return CheckResult(
            name, "failed", diagnosis=f"{closest.name}'s form, but {wanted} is required",
            fix=("multiply the decay by lr: θ ← θ − lr·(λ/B)·θ" if closest.name == "paper"
                 else "decay without lr: θ ← θ − (λ/B)·θ"),
            details=" ".join([*notes, form]), max_diff=max_diff, first_bad_step=None)
    departure = departures[closest.name]
    assert departure is not None
    where = (f"Your parameters leave those of {closest.label} at step {departure.step} of "
             f"{traj.steps} (max |Δ| {departure.max_diff:.3g} there, worst at {departure.where}); "
             f"{state_comparison(traj, departure, tolerance)}")
    bases = {ref.name: ref.variant for ref in references}
    matches = find_matches(bases, OPTIMIZER_MISTAKES,
                           lambda v: first_departure(traj, v, HYPER, tolerance) is None)
    return _failure(name, " ".join([*notes, where]), matches, max_diff=max_diff,
                    first_bad=departure.step,
                    base_labels={r.name: r.label for r in references} if adamw else None)


@functools.cache
def _reference_end(reference: Reference, problem: Problem) -> Tensor:
    """The parameters at the end of the reference's own training (the same for every student)."""
    with _default_dtype(problem.dtype):
        return independent_run(problem, reference.build)[-1]


def _form_sentence(ref: Reference) -> str:
    found = ("torch's form (decay × lr)" if ref.name == "torch"
             else "the paper's form (decay × η_t, without lr): right, as Algorithm 2 writes it")
    note = _FORM_NOTE.format(wd=WEIGHT_DECAY, lr=LR, ratio=WEIGHT_DECAY / LR)
    return f"Decoupled decay in {found}. {note}"


def check_adam(sub: Submission, options: CheckOptions) -> CheckResult:
    return _optimizer_check("adam", sub, options, l2=0.0, adamw=False, references=(ADAM,),
                            accepted=("torch",))


def check_adam_l2(sub: Submission, options: CheckOptions) -> CheckResult:
    return _optimizer_check("adam_l2", sub, options, l2=L2, adamw=False, references=(ADAM_L2,),
                            accepted=("torch",))


def check_adamw(sub: Submission, options: CheckOptions) -> CheckResult:
    form = options.adamw_form
    accepted = ("torch", "paper") if form == "either" else (form,)
    return _optimizer_check("adamw", sub, options, l2=L2, adamw=True,
                            references=(ADAMW_TORCH, ADAMW_PAPER), accepted=accepted)


# --- L2 in the loss = L2 in the optimizer ---------------------------------------------------------
def check_l2_equivalence(sub: Submission, options: CheckOptions) -> CheckResult:
    """MyAdam + MyCE(l2=λ) and MyAdam(l2=λ) + MyCE must train the same net identically."""
    problem = options.problem()

    def optimizer(l2: float) -> Callable[[list[Tensor]], torch.optim.Optimizer]:
        return lambda ps: sub.make_optimizer(ps, lr=LR, l2=l2, batch_size=BATCH_SIZE,
                                             betas=(BETA1, BETA2), eps=EPS)

    with _default_dtype(problem.dtype):
        in_loss = record(problem, optimizer(0.0), make_loss=lambda ps: sub.make_loss(ps, L2))
        in_optimizer = record(problem, optimizer(L2), make_loss=lambda ps: sub.make_loss(ps, 0.0))
    low = in_loss.low_precision or in_optimizer.low_precision  # float32 state: float32 rounding
    tolerance = PARAM_TOLERANCE[torch.float32 if low else problem.dtype]
    max_diff = max_abs_diff(in_loss.params[-1], in_optimizer.params[-1])
    bad = mismatch(in_loss.params[1:], in_optimizer.params[1:], tolerance).any(dim=1)
    if not bool(bad.any()):
        return CheckResult(
            "l2_equivalence", "passed", max_diff=max_diff,
            diagnosis="L2 in the loss = L2 in the optimizer" + (
                " (float32 tolerance: your state is float32)" if low else ""),
            details=f"MyAdam + MyCE(l2={L2}) and MyAdam(l2={L2}) + MyCE follow the same "
                    f"parameters at all {problem.steps} steps: the penalty λ/(2B)·Σ‖W‖² has "
                    "the gradient (λ/B)·W that coupled L2 adds.")
    step = int(bad.nonzero()[0]) + 1
    with _default_dtype(problem.dtype):
        sides = [_penalty_route(sub, problem, in_loss),
                 _optimizer_route(in_optimizer, tolerance)]
    return CheckResult(
        "l2_equivalence", "failed", diagnosis=f"the two routes part at step {step}",
        fix="fix the route that is wrong (see ce_l2 and adam_l2)", max_diff=max_diff,
        first_bad_step=step,
        details=f"MyAdam + MyCE(l2={L2}) and MyAdam(l2={L2}) + MyCE part at step {step} of "
                f"{problem.steps} (max |Δ| {max_diff:.3g} at the end). " + " ".join(sides))


def _penalty_route(sub: Submission, problem: Problem, traj: Trajectory) -> str:
    """Where the loss's penalty gradient (its gradient minus its CE part) leaves (λ/B)·W."""
    net = problem.net()
    params = list(net.parameters())
    plain = student_call("the loss's __init__", sub.make_loss, net.parameters(), 0.0)
    for t, (x, y) in enumerate(problem.batches()):
        with torch.no_grad():
            for p, row in zip(params, traj.unflatten(traj.params[t]), strict=True):
                p.copy_(row)
        for p in params:
            p.grad = None
        student_call(f"the loss, step {t + 1}", plain, net(x), y).backward()
        penalty_grad = traj.grads[t] - flat(p.grad for p in params)  # type: ignore[misc]
        expected = WEIGHT_DECAY * traj.weights * traj.params[t]
        if bool(mismatch(penalty_grad, expected, LOSS_TOLERANCE.param_grads).any()):
            return (f"L2 in the loss: the penalty's gradient leaves (λ/B)·W at step {t + 1} "
                    f"(max |Δ| {max_abs_diff(penalty_grad, expected):.3g}; see ce_l2).")
    return "L2 in the loss: its penalty gradient is (λ/B)·W at every step."


def _optimizer_route(traj: Trajectory, tolerance: tuple[float, float]) -> str:
    departure = replay_torch(traj, ADAM_L2.build, tolerance)
    if departure is None:
        return f"L2 in the optimizer: it follows {ADAM_L2.label} at every step."
    return (f"L2 in the optimizer: it leaves {ADAM_L2.label} at step {departure.step} "
            "(see adam_l2).")


# --- shared -------------------------------------------------------------------------------------
def _failure(name: str, where: str, matches: list[Match], *, max_diff: float, first_bad: int,
             base_labels: dict[str, str] | None = None) -> CheckResult:
    if not matches:
        return CheckResult(name, "failed", diagnosis="no known mistake matches",
                           details=f"{where} None of the catalogued mistakes (or pairs of "
                                   "them) reproduces your numbers.",
                           max_diff=max_diff, first_bad_step=first_bad)
    best = matches[0]
    title = best.title
    if base_labels and best.base == "paper":
        title = f"paper form + {title}"
    others = [m.title for m in matches[1:]]
    also = f" (equally consistent: {'; '.join(others)})" if others else ""
    return CheckResult(name, "failed", diagnosis=title + also, fix=best.fix,
                       details=f"{where} Most likely {best.title}: {best.explanation}",
                       max_diff=max_diff, first_bad_step=first_bad,
                       mistakes=tuple(i for m in matches for i in m.ids))


CHECKS: dict[str, CheckSpec] = {
    spec.name: spec for spec in (
        CheckSpec("ce", "cross-entropy vs nn.CrossEntropyLoss", 2, ("loss",), check_ce),
        CheckSpec("ce_l2", "cross-entropy + L2 penalty, 100 calls", 1, ("loss",), check_ce_l2),
        CheckSpec("ce_large_logits", "cross-entropy at extreme logits (information)", 0,
                  ("loss",), check_ce_large_logits, info=True),
        CheckSpec("defaults", "default hyperparameters", 1, ("optimizer",), check_defaults),
        CheckSpec("adam", "Adam vs torch.optim.Adam", 3, ("optimizer",), check_adam),
        CheckSpec("adam_l2", "Adam + L2 vs torch.optim.Adam(weight_decay=λ/B)", 1,
                  ("optimizer",), check_adam_l2),
        CheckSpec("adamw", "AdamW vs torch.optim.AdamW / the paper", 1, ("adamw",),
                  check_adamw),
        CheckSpec("l2_equivalence", "L2 in the loss = L2 in the optimizer", 1,
                  ("loss", "optimizer"), check_l2_equivalence),
    )
}
CHECK_NAMES: tuple[str, ...] = tuple(CHECKS)
DEFAULT_POINTS: dict[str, float] = {n: s.points for n, s in CHECKS.items()}
