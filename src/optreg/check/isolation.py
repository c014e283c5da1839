"""Running the checks on untrusted, buggy code: a child process per submission, time limits.

:func:`run_isolated` starts one child process per submission (forked from a fork server that has
imported torch, see :func:`_context`; spawned where there is none). The child
reads the submission, runs the checks one after the other and reports each result over a pipe;
its stdout and stderr (file descriptors 1 and 2, so C-level output too) go to another pipe that
the parent drains continuously, keeping only a short tail per check: prints in a student's
``forward`` cannot flood anything. The parent enforces each check's time limit: when a check
does not report in time (an endless loop in ``step()``), or the child dies (a crash), it kills
the child, records the failure and starts a fresh child for the remaining checks.

:func:`run_in_process` runs the checks in this process, for classes defined in a notebook's
kernel (which a child process cannot see), with a ``SIGALRM`` time limit where one works (the
main thread on Unix; otherwise it says there is none) and prints captured.

**This isolates crashes and hangs; it is not a sandbox.** The submission's code runs with the
grader's rights: it can read and write files, use the network and start processes. Grade
untrusted code inside a container or VM of its own.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from typing import Any

import torch

from optreg.check.checks import CHECKS, CheckOptions, run_check
from optreg.check.result import CheckResult, SubmissionResult
from optreg.check.submission import Submission, SubmissionError, load_submission

DEFAULT_TIMEOUT = 30.0  # seconds per check; a check takes ~1-3 s on a 2-core laptop
STARTUP_ALLOWANCE = 60.0  # extra seconds for a child to start (import torch) and read the file
OUTPUT_TAIL = 2000  # characters of printed output kept per check


@dataclass(frozen=True)
class ClassNames:
    """The names given with --loss, --optimizer, --adamw (None: the defaults)."""

    loss: str | None = None
    optimizer: str | None = None
    adamw: str | None = None


NO_NAMES = ClassNames()
DEFAULT_OPTIONS = CheckOptions()


def _score(results: Sequence[CheckResult], points: Mapping[str, float]) -> list[CheckResult]:
    return [r.scored(points.get(r.name, CHECKS[r.name].points)) for r in results]


# --- in a child process ---------------------------------------------------------------------------
def run_isolated(text: str, filename: str, checks: Sequence[str], *,
                 names: ClassNames = NO_NAMES, options: CheckOptions = DEFAULT_OPTIONS,
                 points: Mapping[str, float] | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> SubmissionResult:
    """Check a submission (its text and file name) in child processes; never raises for it."""
    result = SubmissionResult(filename)
    done: dict[str, CheckResult] = {}
    todo = list(checks)
    loaded = False
    while todo:
        with _Child(text, filename, names, todo, options) as child:
            message = child.receive(timeout + STARTUP_ALLOWANCE)
            if message is None or message[0] != "loaded":
                reason = _load_failure(message, child, timeout)
                result.error = reason
                done.update({n: CheckResult(n, "info" if CHECKS[n].info else "failed",
                                            diagnosis="not run: the submission could not be "
                                            "read", details=reason) for n in todo})
                break
            if not loaded:
                result.notes, result.style = message[1]["notes"], message[1]["style"]
                loaded = True
            for name in list(todo):
                outcome = child.run_one(name, timeout)
                done[name] = outcome
                todo.remove(name)
                if outcome.timed_out or child.dead:
                    break  # this child is gone: a fresh one runs the rest
    result.results = _score([done[n] for n in checks], points or {})
    return result


def _load_failure(message: tuple | None, child: _Child, timeout: float) -> str:
    if message is None:
        if child.dead:
            return (f"the checker's child process died while reading the submission "
                    f"({child.exit_description()})")
        return (f"reading the submission (imports and definitions) did not finish within "
                f"{timeout + STARTUP_ALLOWANCE:g} s")
    return str(message[1])


def _context() -> multiprocessing.context.BaseContext:
    """A fork server that has imported torch and the checks (no torch op has run in it, so no
    thread pool can be copied mid-work), else spawn. Forking from it starts a child in ~0.03 s
    instead of the 2-6 s of a spawned interpreter importing torch; the server itself starts
    once per grading run."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload([__name__, "torch._dynamo"])
    return ctx


class _Child:
    """One child process running checks, with its control pipe and its output drain."""

    def __init__(self, text: str, filename: str, names: ClassNames, checks: list[str],
                 options: CheckOptions) -> None:
        ctx = _context()
        self.control, child_control = ctx.Pipe(duplex=False)
        output_reader, output_writer = ctx.Pipe(duplex=False)
        token = secrets.token_hex(8)
        self.process = ctx.Process(
            target=_child_main, daemon=True,
            args=(child_control, output_writer, token, text, filename, names, checks, options))
        self.process.start()
        child_control.close()
        output_writer.close()
        self.output = _OutputDrain(output_reader, token)
        self.dead = False

    def __enter__(self) -> _Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(10)
        self.control.close()
        self.output.close()

    def receive(self, timeout: float) -> tuple | None:
        """The child's next message, or None on time-out or when it died (then ``dead``)."""
        try:
            if self.control.poll(timeout):
                return self.control.recv()
        except (EOFError, OSError):
            pass
        else:
            return None
        self.dead = True
        self.process.join(5)
        return None

    def run_one(self, name: str, timeout: float) -> CheckResult:
        start = self.receive(timeout)
        message = self.receive(timeout) if start is not None else None
        if message is not None:
            self.output.wait_for_end(name)
            return replace(CheckResult.from_dict(message[1]), output=self.output.tail(name))
        if self.dead:
            return CheckResult(name, "failed", diagnosis="the checker's process died",
                               details=f"The process running this check died "
                                       f"({self.exit_description()}): a crash in native code "
                                       "(or os._exit) in the submission. The remaining checks "
                                       "ran in a fresh process.",
                               output=self.output.tail(name))
        self.process.kill()
        self.process.join(10)
        return CheckResult(name, "failed", diagnosis=f"timed out after {timeout:g} s",
                           details=f"The check did not finish within {timeout:g} s (an endless "
                                   "loop?), so the checker stopped it; the remaining checks "
                                   "ran in a fresh process. The last lines your code printed, "
                                   "if any, are below.",
                           timed_out=True, output=self.output.tail(name))

    def exit_description(self) -> str:
        code = self.process.exitcode
        if code is None:
            return "no exit code"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def _child_main(control: Connection, output: Connection, token: str, text: str, filename: str,
                names: ClassNames, checks: list[str], options: CheckOptions) -> None:
    """The child: route fds 1 and 2 to the output pipe, read the submission, run the checks."""
    os.dup2(output.fileno(), 1)
    os.dup2(output.fileno(), 2)
    output.close()
    torch.set_num_threads(1)  # results do not depend on it; a shared machine does
    try:
        sub = load_submission(text, filename, loss=names.loss, optimizer=names.optimizer,
                              adamw=names.adamw)
    except SubmissionError as e:
        control.send(("load_error", str(e)))
        return
    _warm_up()
    control.send(("loaded", {"notes": sub.notes, "style": sub.style}))
    for name in checks:
        _marker(token, "begin", name)
        control.send(("start", name))
        result = run_check(name, sub, options)
        _marker(token, "end", name)
        control.send(("result", result.to_dict()))


def _warm_up() -> None:
    """Build a torch optimizer and take a step: the first time imports torch._dynamo (1-3 s), a
    cost that belongs to starting, not to the first check's time limit."""
    p = torch.zeros(1, requires_grad=True)
    p.grad = torch.zeros(1)
    torch.optim.Adam([p]).step()


def _marker(token: str, kind: str, name: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(1, f"\n\x1e{token} {kind} {name}\n".encode())


class _OutputDrain:
    """Reads the child's output as it comes, keeping the last characters of each check's part.

    The child writes a marker line (with a random token) before and after each check; what lies
    between belongs to that check. Memory stays bounded however much the student prints.
    """

    def __init__(self, conn: Connection, token: str) -> None:
        self.conn = conn
        self.prefix = f"\x1e{token} ".encode()
        self.tails: dict[str, bytearray] = {}
        self.dropped: dict[str, int] = {}
        self.ended: dict[str, threading.Event] = {}
        self.section = "load"
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        pending = b""
        fd = self.conn.fileno()
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._keep(pending)
                return
            pending = self._split(pending + chunk)

    def _split(self, data: bytes) -> bytes:
        """Consume ``data`` up to what might be the start of a marker; return the rest."""
        while True:
            at = data.find(self.prefix)
            if at < 0:
                keep = max(len(data) - len(self.prefix), 0)
                self._keep(data[:keep])
                return data[keep:]
            end = data.find(b"\n", at)
            if end < 0:
                self._keep(data[:at])
                return data[at:]
            self._keep(data[:at].removesuffix(b"\n"))
            kind, _, name = data[at + len(self.prefix):end].decode().partition(" ")
            if kind == "end":
                self._event(name).set()
                self.section = "between"
            else:
                self.section = name
            data = data[end + 1:]

    def _keep(self, data: bytes) -> None:
        if not data:
            return
        tail = self.tails.setdefault(self.section, bytearray())
        tail += data
        extra = len(tail) - 4 * OUTPUT_TAIL
        if extra > 0:
            del tail[:extra]
            self.dropped[self.section] = self.dropped.get(self.section, 0) + extra

    def _event(self, name: str) -> threading.Event:
        return self.ended.setdefault(name, threading.Event())

    def wait_for_end(self, name: str) -> None:
        self._event(name).wait(5)

    def tail(self, name: str) -> str:
        text = bytes(self.tails.get(name, b"")).decode("utf-8", errors="replace")
        return _tail_text(text, self.dropped.get(name, 0) > 0)

    def close(self) -> None:
        self.thread.join(5)
        self.conn.close()


def _tail_text(text: str, cut: bool) -> str:
    text = text.strip("\n")
    if len(text) > OUTPUT_TAIL:
        text, cut = text[-OUTPUT_TAIL:], True
    return f"[… earlier output dropped]\n{text}" if cut and text else text


# --- in this process ------------------------------------------------------------------------------
class CheckTimeout(BaseException):
    """Raised by :func:`time_limit` (a BaseException: ``except Exception`` does not stop it)."""


def alarm_available() -> bool:
    """Whether :func:`time_limit` can interrupt code here (Unix, main thread)."""
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`CheckTimeout` in the body after ``seconds`` (SIGALRM; see
    :func:`alarm_available`). It repeats every 0.5 s, so code that swallows one still stops."""

    def expire(signum: int, frame: Any) -> None:
        raise CheckTimeout()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds, 0.5)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class _Tail(io.TextIOBase):
    """A text stream that keeps only the last characters written to it."""

    def __init__(self) -> None:
        self.text = ""
        self.cut = False

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.text += s
        if len(self.text) > 4 * OUTPUT_TAIL:
            self.text, self.cut = self.text[-OUTPUT_TAIL:], True
        return len(s)

    def value(self) -> str:
        return _tail_text(self.text, self.cut)


def run_in_process(sub: Submission, checks: Sequence[str], *,
                   options: CheckOptions = DEFAULT_OPTIONS,
                   points: Mapping[str, float] | None = None,
                   timeout: float | None = DEFAULT_TIMEOUT) -> SubmissionResult:
    """Run the checks here, each under a SIGALRM time limit where available, prints captured."""
    result = SubmissionResult(sub.name, notes=list(sub.notes), style=sub.style)
    limited = timeout is not None and alarm_available()
    if timeout is not None and not limited:
        result.notes.append("no time limit per check: SIGALRM works only in the main thread on "
                            "Unix (an endless loop in your code would hang this call)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the problems are tiny: more threads only add overhead
    _warm_up()
    try:
        done = [_run_one_in_process(name, sub, options, timeout if limited else None)
                for name in checks]
    finally:
        torch.set_num_threads(threads)
    result.results = _score(done, points or {})
    return result


def _run_one_in_process(name: str, sub: Submission, options: CheckOptions,
                        timeout: float | None) -> CheckResult:
    out = _Tail()
    started = time.monotonic()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            with time_limit(timeout) if timeout is not None else contextlib.nullcontext():
                outcome = run_check(name, sub, options)
        except CheckTimeout:
            outcome = CheckResult(
                name, "failed", diagnosis=f"timed out after {timeout:g} s", timed_out=True,
                details=f"The check did not finish within {timeout:g} s (an endless loop?) "
                        f"and was interrupted after {time.monotonic() - started:.1f} s.")
    return replace(outcome, output=out.value())
