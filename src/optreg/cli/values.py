"""Command-line text → values: grid options, seeds, modes, pairs. Bad text names its option.

* floats (:func:`parse_floats`): a comma list ``1e-4,1e-3,0.01``, a log range ``start:stop:n``
  (n log-spaced values from start to stop, both included: ``1e-4:1e-2:5`` is 1e-4, 3.162e-4,
  1e-3, 3.162e-3, 1e-2; see :func:`optreg.studies.sweep.log_range`), or a comma list mixing both;
* integers (:func:`parse_ints`, seeds): a comma list ``0,1,2``, an inclusive range ``0-4``, or
  both;
* decay modes (:func:`parse_modes`): a comma list of ``loss``, ``coupled``, ``decoupled``,
  ``paper``.

Every parser raises :class:`~optreg.config.ConfigError` naming the option and the text.
Repeats are refused by :func:`optreg.config.check_unique`, the one duplicate check.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from optreg.config import MAX_SEED, ConfigError, check_unique
from optreg.formatting import format_number
from optreg.studies.sweep import MAX_GRID_VALUES, SWEEP_MODES, log_range

__all__ = ["parse_floats", "parse_ints", "parse_modes", "parse_names", "parse_pair"]


def _bad(option: str, text: str, why: str) -> ConfigError:
    return ConfigError(f"{option} {text!r}: {why}")


def _items(text: str, option: str) -> list[str]:
    """Split a comma list, refusing empty text and empty items (``1e-3,,1e-2``, ``1e-3,``)."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip():
        raise _bad(option, text, "give at least one value")
    if any(not item for item in items):
        raise _bad(option, text, "empty item in the comma list")
    return items


def _float(item: str, option: str, text: str, *, positive: bool, what: str = "") -> float:
    try:
        value = float(item)
    except ValueError:
        raise _bad(option, text, f"{item!r} is not a number") from None
    if not math.isfinite(value):
        raise _bad(option, text, f"{item!r} is not a finite number")
    if positive and value <= 0:
        raise _bad(option, text, f"{what}{item!r} must be > 0")
    return value


def _finish(values: list, option: str, text: str, name: Callable[[Any], str] = str) -> list:
    check_unique(values, f"{option} {text!r}", name=name)
    if len(values) > MAX_GRID_VALUES:
        raise _bad(option, text, f"{len(values)} values; at most {MAX_GRID_VALUES}")
    return values


def parse_floats(text: str, option: str, *, positive: bool = True) -> list[float]:
    """Parse a grid option's floats: a comma list whose items are numbers or log ranges.

    Args:
        text: e.g. ``"1e-4,1e-3,0.01"``, ``"1e-4:1e-2:5"``, or a mix ``"1e-4:1e-2:3,0.1"``.
        option: the option's name as the user wrote it (``"--lr"``), used in error messages.
        positive: every value must be > 0 (learning rates, weight decays). Log ranges always
            need start and stop > 0.

    Returns:
        The values in the order given (comma-list numbers exactly as typed, as floats).
    """
    values: list[float] = []
    for item in _items(text, option):
        if ":" not in item:
            values.append(_float(item, option, text, positive=positive))
            continue
        parts = [p.strip() for p in item.split(":")]
        if len(parts) != 3:
            raise _bad(option, text, f"{item!r}: a log range is start:stop:n")
        start, stop = (_float(p, option, text, positive=True, what="log range: ")
                       for p in parts[:2])
        if not re.fullmatch(r"\+?\d+", parts[2]) or int(parts[2]) < 1:
            raise _bad(option, text, f"{item!r}: n must be an integer >= 1, got {parts[2]!r}")
        n = int(parts[2])
        if n > MAX_GRID_VALUES:
            raise _bad(option, text, f"{item!r}: n={n}; at most {MAX_GRID_VALUES}")
        if n == 1 and start != stop:
            raise _bad(option, text, f"{item!r}: a range of 1 value needs start == stop")
        if n > 1 and start == stop:
            raise _bad(option, text, f"{item!r}: start == stop gives {n} equal values")
        values.extend(log_range(start, stop, n))
    return _finish(values, option, text, name=format_number)


def parse_ints(text: str, option: str, *, minimum: int = 0, maximum: int = MAX_SEED) -> list[int]:
    """Parse a comma list of integers and inclusive ranges ``a-b``, e.g. ``"0-2,7"``.

    Every value must lie in [``minimum``, ``maximum``] (seeds: [0, 2⁶⁴ − 1], torch's range).
    """
    values: list[int] = []
    for item in _items(text, option):
        if m := re.fullmatch(r"(\d+)\s*-\s*(\d+)", item):
            a, b = int(m[1]), int(m[2])
            if b < a:
                raise _bad(option, text, f"{item!r}: a range a-b needs a <= b")
            if b - a + 1 > MAX_GRID_VALUES:
                raise _bad(option, text, f"{item!r}: {b - a + 1} values; at most "
                                         f"{MAX_GRID_VALUES}")
            values.extend(range(a, b + 1))
        elif re.fullmatch(r"[+-]?\d+", item):
            values.append(int(item))
        else:
            raise _bad(option, text, f"{item!r} is not an integer (or a range a-b)")
    outside = [v for v in values if not minimum <= v <= maximum]
    if outside:
        raise _bad(option, text, f"{outside[0]} is outside [{minimum}, {maximum}]")
    return _finish(values, option, text)


def parse_modes(text: str, option: str = "--mode") -> list[str]:
    """Parse a comma list of decay modes (:data:`~optreg.studies.sweep.SWEEP_MODES`).

    ``none`` is refused too: a sweep over weight decay needs decay somewhere.
    """
    modes = [item.lower() for item in _items(text, option)]
    unknown = [m for m in modes if m not in SWEEP_MODES]
    if unknown:
        raise _bad(option, text, f"unknown mode {unknown[0]!r}; choose from "
                                 f"{', '.join(SWEEP_MODES)}")
    return _finish(modes, option, text)


def parse_names(text: str, option: str) -> list[str]:
    """A comma list of names (e.g. scenarios for ``--only``), without repeats."""
    return _finish(_items(text, option), option, text)


def parse_pair(text: str, option: str) -> tuple[float, float]:
    """Two numbers ``a,b`` (e.g. ``--betas 0.9,0.999``); range checks are the config's."""
    items = _items(text, option)
    if len(items) != 2:
        raise _bad(option, text, "expected two numbers like 0.9,0.999")
    first, second = (_float(item, option, text, positive=False) for item in items)
    return first, second
