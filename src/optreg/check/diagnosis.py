"""Naming a failure: the catalogue mistake (or pair of mistakes) whose replay follows the student.

Every mistake is applied to every base (the correct forms a check accepts, e.g. torch's and the
paper's AdamW); variants equal to a base or to one already tried are dropped. Single mistakes
are tried first; only when none follows the student are pairs of mistakes on different knobs
tried. A replay stops at its first departure, so most candidates cost a step or two.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from optreg.check.catalogue import Mistake, Variant

V = TypeVar("V", bound=Variant)


@dataclass(frozen=True)
class Match:
    """A base form with one or two mistakes that reproduces the student's numbers."""

    base: str
    mistakes: tuple[Mistake, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(m.id for m in self.mistakes)

    @property
    def title(self) -> str:
        return " + ".join(m.title for m in self.mistakes)

    @property
    def fix(self) -> str:
        return "; ".join(m.fix for m in self.mistakes)

    @property
    def explanation(self) -> str:
        return "; and ".join(m.explanation for m in self.mistakes) + "."


def find_matches(bases: Mapping[str, V], mistakes: Sequence[Mistake],
                 follows: Callable[[V], bool]) -> list[Match]:
    """The matches among single mistakes; if there are none, among pairs."""
    seen: set[Variant] = {base.canonical() for base in bases.values()}
    for level in (_singles, _pairs):
        found = [match for match, variant in level(bases, mistakes, seen) if follows(variant)]
        if found:
            return found
    return []


def _singles(bases: Mapping[str, V], mistakes: Sequence[Mistake],
             seen: set[Variant]) -> Iterator[tuple[Match, V]]:
    for name, base in bases.items():
        for mistake in mistakes:
            variant = mistake.apply(base)
            if variant is not None and (variant := variant.canonical()) not in seen:
                seen.add(variant)
                yield Match(name, (mistake,)), variant  # type: ignore[misc]


def _pairs(bases: Mapping[str, V], mistakes: Sequence[Mistake],
           seen: set[Variant]) -> Iterator[tuple[Match, V]]:
    for name, base in bases.items():
        for i, first in enumerate(mistakes):
            with_first = first.apply(base)
            if with_first is None:
                continue
            for second in mistakes[i + 1:]:
                if second.knob == first.knob:
                    continue
                variant = second.apply(with_first)
                if variant is not None and (variant := variant.canonical()) not in seen:
                    seen.add(variant)
                    yield Match(name, (first, second)), variant  # type: ignore[misc]
