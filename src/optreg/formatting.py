"""One way to write a hyperparameter as text: in run names, tables, figures and messages."""

from __future__ import annotations

import math
from decimal import Decimal

__all__ = ["format_number"]


def format_number(value: float) -> str:
    """The shortest text that reads back as ``value``: plain between 0.1 and 10⁴, else
    scientific with the shortest mantissa.

    >>> [format_number(v) for v in (1.0, 0.5, 100.0, 1e-3, 3.162e-4, 12345.0, 0.0)]
    ['1', '0.5', '100', '1e-3', '3.162e-4', '1.2345e4', '0']

    Distinct floats give distinct text (the digits are those of ``repr``), so run names built
    from it are unique whenever the values are.
    """
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    digits = Decimal(repr(value)).normalize()
    if 0.1 <= abs(value) < 1e4:
        return format(digits, "f")
    return format(digits, "e").replace("e+", "e")
