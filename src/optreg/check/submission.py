"""Reading a student's submission: only what defines the classes, found, and adapted to one API.

A submission is a ``.py`` file or a Jupyter notebook (``.ipynb``). Nothing in it runs except what
defines the classes: at the top level of each cell (a ``.py`` file is one cell, or several when
it has ``# %%`` / ``# In[ ]:`` markers and does not parse as a whole), only

* imports (one that fails is skipped with a note, unless a class needs a name it binds);
* function and class definitions;
* assignments of plain constants to names (``batch_size = 32``, ``eps = 1e-8``, ``B = 2 * 16``).

Training loops, downloads, ``!pip`` and ``%magic`` lines never run. A cell that does not parse is
skipped with a note, unless it defines one of the classes looked for (then that class is reported
with the syntax error and its line).

The classes are found by name (the exercise's ``MyCrossEntropyLoss`` and ``MyAdamOptimizer``,
or the names given). Two signature styles are told apart by the optimizer's ``__init__``:

* ``"exercise"``: ``(params, lr, beta1, beta2, eps, l2, adamw)``; ``l2`` is the exercise's λ and
  the class divides it by the batch size itself;
* ``"torch"``: ``(params, lr, betas, eps, weight_decay)``; ``weight_decay`` is torch's raw
  coefficient λ/B, and AdamW is a class of its own (or a ``decoupled_weight_decay`` flag).

:func:`make_loss` and :func:`make_optimizer` build either style from the same arguments (the
exercise's λ), so the study (``optreg study seed --custom``) and the checker see a submission
alike. This module only reads and defines; it does not isolate anything (see
:mod:`optreg.check.isolation`).
"""

from __future__ import annotations

import ast
import builtins
import inspect
import itertools
import json
import linecache
import re
import symtable
import traceback
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from optreg.regularization import param_groups

DEFAULT_LOSS = "MyCrossEntropyLoss"
DEFAULT_OPTIMIZER = "MyAdamOptimizer"
ROLES = ("loss", "optimizer", "adamw")
SUFFIXES = (".py", ".ipynb")

EXERCISE_NAMES = frozenset({"beta1", "beta2", "l2", "adamw"})
TORCH_NAMES = frozenset({"betas", "weight_decay"})

_CELL_MARKER = re.compile(r"^# ?(%%|In\[[ \d]*\]:)")
_MAGIC_LINE = re.compile(r"^(\s*)[!%]")
_MODULE_NAME = "optreg_submission"


class SubmissionError(ValueError):
    """A submission that cannot be used: not readable, a syntax error, a class missing, ...

    The message names the file, the line (for a notebook: the code cell and the line in it) and,
    for a missing class, the names looked for.
    """


@dataclass(frozen=True)
class Cell:
    """A unit of source: a notebook's code cell, a ``.py`` file or a marked part of one.

    ``filename`` is what tracebacks show (``alice.ipynb, code cell 7``); ``source`` keeps the
    file's line numbers (a part of a ``.py`` file is padded with blank lines).
    """

    filename: str
    source: str
    label: str = ""  # how notes name it, if not by ``filename`` (a part of a .py file)

    def where(self, line: int | None) -> str:
        return self.filename if line is None else f"{self.filename}, line {line}"


@dataclass(frozen=True)
class FailedImport:
    names: tuple[str, ...]
    statement: str
    where: str
    reason: str

    def describe(self) -> str:
        return f"`{self.statement}` ({self.where}) failed: {self.reason}"


@dataclass
class Submission:
    """What :func:`load_submission` found: the classes (or why one is unusable) and notes.

    ``problems[role]`` says why the class of a role ("loss", "optimizer", "adamw") cannot be used;
    a role has either a class or a problem. ``filenames`` are the names the submission's code was
    compiled under (for telling its frames from optreg's in a traceback).
    """

    name: str
    loss_class: type | None = None
    optimizer_class: type | None = None
    adamw_class: type | None = None
    style: str | None = None
    problems: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    filenames: frozenset[str] = frozenset()

    def require(self, role: str) -> type:
        """The class of ``role``; SubmissionError with the reason when there is none."""
        if role in self.problems:
            raise SubmissionError(self.problems[role])
        cls = {"loss": self.loss_class, "optimizer": self.optimizer_class}.get(role)
        if role == "adamw":
            cls = self.adamw_class or self.optimizer_class
        if cls is None:
            raise SubmissionError(f"{self.name}: no {role} class")
        return cls

    def make_loss(self, params: Iterable[Tensor], l2: float = 0.0) -> nn.Module:
        return make_loss(self.require("loss"), params, l2)

    def make_optimizer(self, params: Iterable[Tensor], *, lr: float, l2: float = 0.0,
                       adamw: bool = False, batch_size: int = 32,
                       betas: tuple[float, float] | None = None,
                       eps: float | None = None) -> torch.optim.Optimizer:
        cls = self.require("adamw" if adamw else "optimizer")
        return make_optimizer(cls, params, lr=lr, l2=l2, adamw=adamw, batch_size=batch_size,
                              betas=betas, eps=eps)

    @classmethod
    def from_classes(cls, name: str, loss: type | None, optimizer: type | None,
                     adamw: type | None = None) -> Submission:
        """A submission of classes defined in this process (a notebook's kernel)."""
        sub = cls(name=name)
        for role, found in (("loss", loss), ("optimizer", optimizer), ("adamw", adamw)):
            if found is not None and not isinstance(found, type):
                raise TypeError(f"{role} must be a class, got {type(found).__name__}")
        if loss is None:
            sub.problems["loss"] = "no loss class was given (loss=MyCrossEntropyLoss)"
        if optimizer is None:
            sub.problems["optimizer"] = "no optimizer class was given (optimizer=MyAdamOptimizer)"
        sub.loss_class, sub.optimizer_class, sub.adamw_class = loss, optimizer, adamw
        _resolve_styles(sub)
        return sub


@dataclass(frozen=True)
class StudentClasses:
    """A submission's loss and optimizer classes, built alike whatever their signature style.

    ``style`` is ``"exercise"`` or ``"torch"`` (see the module docstring); ``adamw_class`` is the
    separate AdamW class, or None when the optimizer class switches with a flag (``adamw``,
    ``decoupled_weight_decay``).
    """

    loss_class: type
    optimizer_class: type
    adamw_class: type | None
    style: str
    notes: tuple[str, ...]

    def make_loss(self, params: Iterable[Tensor], l2: float = 0.0) -> nn.Module:
        """The student's loss with the exercise's λ (penalty λ/(2B)·Σ‖W‖²)."""
        return make_loss(self.loss_class, params, l2)

    def make_optimizer(self, params: Iterable[Tensor], *, lr: float, l2: float = 0.0,
                       adamw: bool = False, batch_size: int = 32,
                       betas: tuple[float, float] | None = None,
                       eps: float | None = None) -> torch.optim.Optimizer:
        """The student's optimizer for the exercise's λ: L2 (or AdamW's decay) of λ/B on weights.

        Exercise style: ``optimizer_class(params, lr=lr, l2=l2, adamw=adamw)`` (the class divides
        by the batch size itself). Torch style: ``weight_decay = l2 / batch_size`` on the weights
        only (param groups: biases get 0), the AdamW class when ``adamw``. ``betas`` and ``eps``
        are passed only when given (None keeps the class's own defaults).
        """
        cls = self.adamw_class if adamw and self.adamw_class is not None else self.optimizer_class
        if adamw and cls is self.optimizer_class and adamw_flag(cls) is None:
            raise SubmissionError(_no_adamw_message(cls))
        return make_optimizer(cls, params, lr=lr, l2=l2, adamw=adamw, batch_size=batch_size,
                              betas=betas, eps=eps)


# --- the adapter ----------------------------------------------------------------------------------
def signature_style(cls: type) -> str:
    """``"exercise"`` or ``"torch"`` from the names of ``cls.__init__``'s parameters."""
    names = set(_init_parameters(cls))
    if names & EXERCISE_NAMES:
        return "exercise"
    if names & TORCH_NAMES:
        return "torch"
    shown = ", ".join(["self", *_init_parameters(cls)])
    raise SubmissionError(
        f"cannot tell the signature style of {cls.__name__}.__init__({shown}): expected the "
        "exercise's (params, lr, beta1, beta2, eps, l2, adamw) or torch's (params, lr, betas, "
        "eps, weight_decay)"
    )


def make_loss(loss_class: type, params: Iterable[Tensor], l2: float = 0.0) -> nn.Module:
    """``loss_class(params, l2=l2)``, or whatever subset of that its ``__init__`` takes.

    ``params`` is passed on as given (a generator stays a generator, as in the exercise).
    """
    names = _init_parameters(loss_class)
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    if "params" in names:
        kwargs["params"] = params
    elif names and names[0] not in ("l2",) and _positional(loss_class, names[0]):
        args.append(params)
    if "l2" in names:
        kwargs["l2"] = l2
    elif l2 != 0:
        raise SubmissionError(
            f"{loss_class.__name__}.__init__ takes no l2, so L2 in the loss cannot be checked "
            f"(expected {loss_class.__name__}(params, l2=0))"
        )
    return loss_class(*args, **kwargs)


def make_optimizer(
    optimizer_class: type,
    params: Iterable[Tensor],
    *,
    lr: float,
    l2: float = 0.0,
    adamw: bool = False,
    batch_size: int = 32,
    betas: tuple[float, float] | None = None,
    eps: float | None = None,
) -> torch.optim.Optimizer:
    """Build ``optimizer_class`` for the exercise's λ in its own signature style.

    See :meth:`StudentClasses.make_optimizer`. ``adamw`` is passed to the class's AdamW flag
    when it has one (:func:`adamw_flag`); a separate AdamW class needs none.
    """
    names = set(_init_parameters(optimizer_class))
    style = signature_style(optimizer_class)
    kwargs: dict[str, Any] = {"lr": lr}
    if eps is not None and "eps" in names:
        kwargs["eps"] = eps
    flag = adamw_flag(optimizer_class)
    if flag is not None:
        kwargs[flag] = adamw
    if style == "exercise":
        kwargs["l2"] = l2
        if betas is not None and {"beta1", "beta2"} <= names:
            kwargs["beta1"], kwargs["beta2"] = betas
        return optimizer_class(list(params), **kwargs)
    if betas is not None and "betas" in names:
        kwargs["betas"] = betas
    weight_decay = l2 / batch_size  # torch's raw coefficient: λ/B
    if "weight_decay" in names:
        kwargs["weight_decay"] = weight_decay
    groups: Any = param_groups(params, weight_decay) if weight_decay > 0 else list(params)
    return optimizer_class(groups, **kwargs)


def adamw_flag(cls: type) -> str | None:
    """The keyword of ``cls.__init__`` that turns on decoupled decay, if any."""
    names = _init_parameters(cls)
    return next((f for f in ("adamw", "decoupled_weight_decay", "decoupled") if f in names), None)


def _no_adamw_message(cls: type) -> str:
    return (f"no AdamW: {cls.__name__}.__init__ has no adamw (or decoupled_weight_decay) flag "
            "and no AdamW class was found (name one with --adamw NAME)")


def _init_parameters(cls: type) -> list[str]:
    """The names of ``cls.__init__``'s parameters after ``self`` (no ``*args``/``**kwargs``)."""
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    return [n for n, p in list(sig.parameters.items())[1:] if p.kind not in kinds]


def _positional(cls: type, name: str) -> bool:
    p = inspect.signature(cls.__init__).parameters[name]
    return p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


# --- loading ------------------------------------------------------------------------------------
def read_submission(path: str | Path) -> str:
    """The text of a submission file (OSError if unreadable; ValueError for a wrong suffix)."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise ValueError(f"{path}: not a .py file or a Jupyter notebook (.ipynb)")
    return path.read_text(encoding="utf-8", errors="replace")


def load_student_classes(text: str, filename: str, *, loss: str | None = None,
                         optimizer: str | None = None,
                         adamw: str | None = None) -> StudentClasses:
    """Parse, filter and define a submission in this process; return its classes.

    ``text`` is the file's content (a notebook's JSON when ``filename`` ends in ``.ipynb``);
    ``loss``/``optimizer``/``adamw`` name the classes (default: the exercise's names, and for
    torch style an optimizer class with "AdamW" in its name). Raises :class:`SubmissionError`
    naming the file, the line and the names looked for when a class cannot be used.
    """
    sub = load_submission(text, filename, loss=loss, optimizer=optimizer, adamw=adamw)
    required = [r for r in ("loss", "optimizer") if r in sub.problems]
    if required:
        raise SubmissionError("; ".join(sub.problems[r] for r in required))
    assert sub.loss_class is not None and sub.optimizer_class is not None and sub.style
    return StudentClasses(loss_class=sub.loss_class, optimizer_class=sub.optimizer_class,
                          adamw_class=sub.adamw_class, style=sub.style, notes=tuple(sub.notes))


def load_submission(text: str, filename: str, *, loss: str | None = None,
                    optimizer: str | None = None, adamw: str | None = None) -> Submission:
    """Like :func:`load_student_classes`, but a class that cannot be used is a ``problem`` of
    its role instead of an error, so the checks of the other classes still run.

    Raises :class:`SubmissionError` only when nothing of the file can be used (an invalid
    notebook, a ``.py`` file that does not parse).
    """
    given = {"loss": loss, "optimizer": optimizer, "adamw": adamw}
    names = {"loss": loss or DEFAULT_LOSS, "optimizer": optimizer or DEFAULT_OPTIMIZER}
    if adamw:
        names["adamw"] = adamw
    cells = _cells(text, filename)
    sub = Submission(name=filename, filenames=frozenset(c.filename for c in cells))
    if filename.endswith(".ipynb"):
        for cell in cells:
            _remember_source(cell.filename, cell.source)
    else:
        _remember_source(filename, text)
    loader = _Loader(sub, set(names.values()))
    for cell in cells:
        loader.run_cell(cell)
    for role, name in names.items():
        _find_class(sub, loader, role, name, explicit=given[role] is not None)
    if "adamw" not in names and sub.optimizer_class is not None:
        _find_adamw_by_name(sub, loader)
    _resolve_styles(sub)
    return sub


def _remember_source(filename: str, source: str) -> None:
    """Let tracebacks show the submission's lines (also when the file is not on this disk)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)


def _cells(text: str, filename: str) -> list[Cell]:
    if filename.endswith(".ipynb"):
        try:
            notebook = json.loads(text)
            raw = [c for c in notebook["cells"] if c.get("cell_type") == "code"]
            sources = [c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                       for c in raw]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SubmissionError(f"{filename}: not a valid Jupyter notebook ({e})") from None
        return [Cell(f"{filename}, code cell {i}", s) for i, s in enumerate(sources, 1)]
    try:
        ast.parse(text, filename)
    except SyntaxError as e:
        lines = text.splitlines(keepends=True)
        starts = [i for i, line in enumerate(lines) if _CELL_MARKER.match(line)]
        if not starts:
            raise SubmissionError(_syntax_message(e, filename)) from None
        bounds = [0, *starts, len(lines)] if starts[0] else [*starts, len(lines)]
        return [Cell(filename, "\n" * a + "".join(lines[a:b]), f"{filename}, lines {a + 1}-{b}")
                for a, b in itertools.pairwise(bounds) if a < b]
    return [Cell(filename, text)]


class _Loader:
    """Runs the kept statements of each cell, in order, in one fresh module namespace."""

    def __init__(self, sub: Submission, wanted: set[str]) -> None:
        self.sub = sub
        self.wanted = wanted
        self.module = types.ModuleType(_MODULE_NAME)
        self.namespace = self.module.__dict__
        self.constants: set[str] = set()
        self.skipped_assignments: dict[str, str] = {}  # name → where (not run: not a constant)
        self.failed_imports: dict[str, FailedImport] = {}  # bound name → the failed import
        self.definitions: dict[str, ast.AST] = {}  # top-level def/class name → its last node
        self.defined_where: dict[str, list[str]] = {}
        self.errors: dict[str, str] = {}  # wanted class → why its cell/definition failed
        self.future_flags = 0

    def run_cell(self, cell: Cell) -> None:
        tree = self._parse(cell)
        if tree is None:
            return
        for stmt in tree.body:
            self._run_statement(cell, stmt)

    def _parse(self, cell: Cell) -> ast.Module | None:
        try:
            return ast.parse(cell.source, cell.filename)
        except SyntaxError:
            pass
        # IPython's !shell and %magic lines are not Python: blank them (keeping the line
        # numbers and any indented block valid) and try again.
        source = "\n".join(_MAGIC_LINE.sub(r"\1pass  #", line) if _MAGIC_LINE.match(line)
                           else line for line in cell.source.split("\n"))
        try:
            return ast.parse(source, cell.filename)
        except SyntaxError as e:
            defined = [n for n in self.wanted
                       if re.search(rf"^\s*class\s+{re.escape(n)}\b", source, re.MULTILINE)]
            message = _syntax_message(e, cell.filename)
            for name in defined:
                self.errors[name] = message
            if not defined:
                self.sub.notes.append(f"skipped {cell.label or cell.filename} (it does not "
                                      f"parse and defines none of the classes: "
                                      f"{_short_syntax(e)})")
            return None

    def _run_statement(self, cell: Cell, stmt: ast.stmt) -> None:
        where = cell.where(stmt.lineno)
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            self._run_import(cell, stmt, where)
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            self.definitions[stmt.name] = stmt
            self.defined_where.setdefault(stmt.name, []).append(where)
            try:
                self._exec(cell, stmt)
            except Exception as e:
                text = student_traceback(e, self.sub.filenames)
                if stmt.name in self.wanted:
                    self.errors[stmt.name] = f"defining {stmt.name} ({where}) raised:\n{text}"
                else:
                    self.sub.notes.append(f"defining {stmt.name} ({where}) raised "
                                          f"{type(e).__name__}: {e}; skipped")
        elif (targets := _constant_targets(stmt, self.constants)) is not None:
            self._exec(cell, stmt)
            self.constants.update(targets)
        else:
            for name in _assigned_names(stmt):
                self.skipped_assignments.setdefault(name, where)

    def _run_import(self, cell: Cell, stmt: ast.Import | ast.ImportFrom, where: str) -> None:
        if isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__":
            for alias in stmt.names:
                feature = getattr(__import__("__future__"), alias.name, None)
                self.future_flags |= getattr(feature, "compiler_flag", 0)
        try:
            self._exec(cell, stmt)
        except Exception as e:
            names = tuple(_imported_names(stmt))
            failed = FailedImport(names, ast.unparse(stmt), where, f"{type(e).__name__}: {e}")
            for name in names:
                self.failed_imports[name] = failed
            self.sub.notes.append(f"skipped an import that failed: {failed.describe()}")

    def _exec(self, cell: Cell, stmt: ast.stmt) -> None:
        code = compile(ast.Module(body=[stmt], type_ignores=[]), cell.filename, "exec",
                       flags=self.future_flags, dont_inherit=True)
        exec(code, self.namespace)


def _find_class(sub: Submission, loader: _Loader, role: str, name: str, *,
                explicit: bool) -> None:
    if name in loader.errors:
        sub.problems[role] = loader.errors[name]
        return
    found = loader.namespace.get(name)
    if found is None:
        sub.problems[role] = _missing_message(sub.name, role, name, explicit, loader)
        return
    if not isinstance(found, type):
        sub.problems[role] = f"{sub.name}: {name} is a {type(found).__name__}, not a class"
        return
    places = loader.defined_where.get(name, [])
    if len(places) > 1:
        sub.notes.append(f"{name} is defined {len(places)} times ({'; '.join(places)}): the last "
                         "one is used, as in a notebook run top to bottom")
    needed = _needed_globals(name, loader.definitions)
    failed = [loader.failed_imports[n] for n in sorted(needed) if n in loader.failed_imports]
    if failed:
        sub.problems[role] = "; ".join(
            f"{name} uses `{n}`, but {f.describe()}" for f in failed
            for n in sorted(set(f.names) & needed))
        return
    undefined = sorted(n for n in needed if n not in loader.namespace
                       and not hasattr(builtins, n))
    for n in undefined:
        origin = loader.skipped_assignments.get(n)
        how = (f"it is assigned at {origin} from an expression the checker does not run (only "
               "imports, definitions and constant assignments run)") if origin else (
               "it is not defined anywhere in the file")
        sub.notes.append(f"{name} uses `{n}`, but {how}: a NameError if that line runs")
    setattr(sub, f"{role}_class", found)


def _missing_message(filename: str, role: str, name: str, explicit: bool,
                     loader: _Loader) -> str:
    base = nn.Module if role == "loss" else torch.optim.Optimizer
    defined = sorted(n for n, v in loader.namespace.items()
                     if isinstance(v, type) and issubclass(v, base)
                     and v.__module__ == _MODULE_NAME)
    option = {"loss": "--loss", "optimizer": "--optimizer", "adamw": "--adamw"}[role]
    how = "given" if explicit else "the exercise's name"
    message = f"{filename}: no class {name} ({how}) for the {role}"
    if defined:
        kind = "nn.Module" if role == "loss" else "Optimizer"
        message += f"; {kind} classes found: {', '.join(defined)} (choose one with {option} NAME)"
    else:
        message += f" (name another class with {option} NAME)"
    return message


def _find_adamw_by_name(sub: Submission, loader: _Loader) -> None:
    """A torch-style submission's AdamW class: the one Optimizer class with "adamw" in its name."""
    candidates = sorted(
        n for n, v in loader.namespace.items()
        if isinstance(v, type) and issubclass(v, torch.optim.Optimizer)
        and v.__module__ == _MODULE_NAME and "adamw" in n.lower()
        and v is not sub.optimizer_class
    )
    if len(candidates) == 1:
        sub.adamw_class = loader.namespace[candidates[0]]
        sub.notes.append(f"AdamW class: {candidates[0]} (found by its name; --adamw NAME "
                         "chooses another)")
    elif len(candidates) > 1:
        sub.notes.append(f"several AdamW classes ({', '.join(candidates)}): none chosen "
                         "(--adamw NAME)")


def _resolve_styles(sub: Submission) -> None:
    """Set ``style`` from the optimizer class and decide how AdamW is made."""
    if sub.optimizer_class is not None:
        try:
            sub.style = signature_style(sub.optimizer_class)
        except SubmissionError as e:
            sub.problems["optimizer"] = str(e)
    if sub.adamw_class is not None:
        try:
            signature_style(sub.adamw_class)
        except SubmissionError as e:
            sub.problems["adamw"] = str(e)
        return
    if "adamw" in sub.problems:
        return
    if "optimizer" in sub.problems:
        sub.problems["adamw"] = sub.problems["optimizer"]
        return
    if sub.optimizer_class is not None and adamw_flag(sub.optimizer_class) is None:
        sub.problems["adamw"] = f"{sub.name}: {_no_adamw_message(sub.optimizer_class)}"


# --- static analysis ----------------------------------------------------------------------------
def _needed_globals(name: str, definitions: dict[str, ast.AST]) -> set[str]:
    """Module-level names a definition reads, and transitively those of the definitions it uses.

    From Python's own symbol tables, so a parameter or local variable that shadows a module name
    is not counted.
    """
    needed: set[str] = set()
    todo, seen = [name], set()
    while todo:
        current = todo.pop()
        if current in seen or current not in definitions:
            continue
        seen.add(current)
        names = _global_names(ast.unparse(definitions[current]))
        needed |= names
        todo.extend(n for n in names if n in definitions)
    return needed - {name}


def _global_names(source: str) -> set[str]:
    top = symtable.symtable(source, "<definition>", "exec")
    names = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    stack = list(top.get_children())
    while stack:
        table = stack.pop()
        stack.extend(table.get_children())
        for s in table.get_symbols():
            if s.is_referenced() and (s.is_global() or (table.get_type() == "class"
                                                         and not s.is_assigned()
                                                         and not s.is_parameter())):
                names.add(s.get_name())
    return names


def _constant_targets(stmt: ast.stmt, constants: set[str]) -> list[str] | None:
    """The names a plain-constant assignment binds (``x = 3``, ``a, b = 1, 2``), else None."""
    if isinstance(stmt, ast.Assign):
        targets, value = stmt.targets, stmt.value
    elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None and stmt.simple:
        targets, value = [stmt.target], stmt.value
    else:
        return None
    names: list[str] = []
    for target in targets:
        elements = target.elts if isinstance(target, ast.Tuple) else [target]
        if not all(isinstance(e, ast.Name) for e in elements):
            return None
        names.extend(e.id for e in elements)  # type: ignore[attr-defined]
    return names if _is_constant(value, constants) else None


_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod)


def _is_constant(node: ast.AST, constants: set[str]) -> bool:
    """Literals, names of earlier constants, and arithmetic on them (no calls, no attributes)."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return node.id in constants
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd | ast.Not):
        return _is_constant(node.operand, constants)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):  # 10 ** -8 yes; a power tower no (it could take ages)
            return _is_number(node.left) and _is_number(node.right, limit=1000)
        return isinstance(node.op, _ARITHMETIC) and _is_constant(node.left, constants) \
            and _is_constant(node.right, constants)
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(_is_constant(e, constants) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_constant(k, constants) for k in node.keys) and all(
            _is_constant(v, constants) for v in node.values)
    return False


def _is_number(node: ast.AST, limit: float | None = None) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        node = node.operand
    return (isinstance(node, ast.Constant) and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
            and (limit is None or abs(node.value) <= limit))


def _assigned_names(stmt: ast.stmt) -> Iterator[str]:
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, ast.AnnAssign | ast.AugAssign):
        targets = [stmt.target]
    for target in targets:
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                yield node.id


def _imported_names(stmt: ast.Import | ast.ImportFrom) -> Iterator[str]:
    for alias in stmt.names:
        if isinstance(stmt, ast.Import):
            yield alias.asname or alias.name.split(".")[0]
        elif alias.name != "*":
            yield alias.asname or alias.name


# --- messages -----------------------------------------------------------------------------------
def _syntax_message(e: SyntaxError, filename: str) -> str:
    where = f"{filename}, line {e.lineno}" if e.lineno else filename
    text = (e.text or "").rstrip("\n")
    message = f"syntax error at {where}: {e.msg}"
    if text.strip():
        caret = " " * max((e.offset or 1) - 1 - (len(text) - len(text.lstrip())), 0) + "^"
        message += f"\n    {text.strip()}\n    {caret}"
    return message


def _short_syntax(e: SyntaxError) -> str:
    return f"{e.msg} at line {e.lineno}"


def student_traceback(e: BaseException, filenames: frozenset[str] | None = None) -> str:
    """``e``'s traceback, keeping only frames of the student's code.

    With ``filenames`` (the names a submission was compiled under) a frame is the student's when
    its file is one of them; without (classes defined in a notebook's kernel), when it is not
    optreg's, torch's or the standard library's.
    """
    frames = traceback.extract_tb(e.__traceback__)
    kept = [f for f in frames if _is_student_frame(f.filename, filenames)]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(kept)] if kept else []
    lines.extend(traceback.format_exception_only(type(e), e))
    return "".join(lines).rstrip("\n")


_LIBRARY_DIRS = tuple(str(Path(m.__file__).resolve().parent) for m in (torch, inspect))
_OPTREG_DIR = str(Path(__file__).resolve().parents[1])


def _is_student_frame(filename: str, filenames: frozenset[str] | None) -> bool:
    if filenames:
        return filename in filenames
    if filename.startswith("<") and not filename.startswith("<ipython"):
        return False
    resolved = str(Path(filename).resolve()) if not filename.startswith("<") else filename
    return not resolved.startswith((_OPTREG_DIR, *_LIBRARY_DIRS))
