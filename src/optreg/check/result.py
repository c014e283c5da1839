"""What a check says, and what a submission's checks say together: plain data, JSON-ready.

A :class:`CheckResult` crosses the pipe from the child process as a dict (:meth:`to_dict` /
:meth:`from_dict`); :class:`SubmissionResult` is what :func:`optreg.check.check` returns and what
the reports (:mod:`optreg.check.report`) render: a table (``str``), HTML in Jupyter, Gradescope's
JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from optreg.check import report

Status = Literal["passed", "failed", "info"]


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check.

    ``status`` is "passed", "failed" or "info" (shown, never counted). ``max_diff`` is the largest
    |Δ| against torch (for the optimizer checks: between two separate trainings at the end);
    ``first_bad_step`` the first step (or loss call) where the student leaves torch, from the
    replays. ``diagnosis`` is one short line (the table's), ``fix`` one line, ``details`` the
    longer story (where it differs, the state there, the student's traceback). ``mistakes`` are
    the catalogue ids that match (:mod:`optreg.check.catalogue`), ``output`` the tail of what the
    student's code printed during the check.
    """

    name: str
    status: Status
    diagnosis: str = ""
    fix: str = ""
    details: str = ""
    max_diff: float | None = None
    first_bad_step: int | None = None
    mistakes: tuple[str, ...] = ()
    output: str = ""
    timed_out: bool = False
    score: float = 0.0
    max_score: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status != "failed"

    def scored(self, points: float) -> CheckResult:
        """This result worth ``points`` (info checks are worth nothing)."""
        worth = 0.0 if self.status == "info" else float(points)
        return replace(self, max_score=worth, score=worth if self.status == "passed" else 0.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mistakes"] = list(self.mistakes)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        return cls(**{**d, "mistakes": tuple(d.get("mistakes", ()))})


@dataclass
class SubmissionResult:
    """All checks of one submission, in order, with the notes from reading it.

    ``error`` is set when the submission could not be read at all (then every check failed with
    it). Prints as the table; shows as HTML in Jupyter; :attr:`json` is Gradescope's results.json.
    """

    name: str
    results: list[CheckResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    style: str | None = None
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(r.passed for r in self.results)

    @property
    def score(self) -> float:
        return sum(r.score for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_score for r in self.results)

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def json(self) -> dict[str, Any]:
        """Gradescope's autograder results.json for this submission."""
        return report.gradescope_json(self)

    def __str__(self) -> str:
        return report.text_report(self)

    def _repr_html_(self) -> str:
        return report.html_report(self)
