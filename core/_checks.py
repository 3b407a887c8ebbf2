"""Checks every layer shares: whole numbers and ranges of user-given options, and strict-JSON numbers.

Options come from users (CLI flags, JSON settings, widgets), so a bad one is a
:class:`~core.errors.DataError` that names the option, the value and what was expected,
never an ``assert``. ``bool`` is refused wherever a number is expected: ``True`` is an
``int`` to Python, not to the analyst who typed it.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from core.errors import DataError


def is_whole(value: Any) -> bool:
    """An ``int`` or NumPy integer, not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A real, finite number (``int``, ``float`` or NumPy scalar), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _bounds(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low} to {high}"
    if low is not None:
        return f" >= {low}"
    return f" <= {high}" if high is not None else ""


def check_whole(
    label: str, value: Any, low: int | None = None, high: int | None = None, *, unit: str = "", hint: str = ""
) -> int:
    """``value`` as an ``int`` when it is a whole number in [low, high]; else a DataError.

    The message reads ``{label} {value!r}: expected a whole number{ of unit} >= low ( hint)``.
    """
    if not is_whole(value) or (low is not None and value < low) or (high is not None and value > high):
        what = f"a whole number{f' of {unit}' if unit else ''}{_bounds(low, high)}"
        raise DataError(f"{label} {value!r}: expected {what}{f' ({hint})' if hint else ''}")
    return int(value)


def check_number(label: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """``value`` as a ``float`` when it is a finite number in [low, high]; else a DataError."""
    if not is_finite_number(value) or (low is not None and value < low) or (high is not None and value > high):
        raise DataError(f"{label} {value!r}: expected a finite number{_bounds(low, high)}")
    return float(value)


def finite_or_none(obj: Any) -> Any:
    """``obj`` as strict JSON data, recursively: NaN and infinities become None, NumPy and torch
    scalars Python numbers, tuples lists and dict keys strings, so that any JSON parser reads it."""
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes, list, dict)):
        obj = obj.item()  # a NumPy or torch scalar
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def finite_float(value: Any) -> float | None:
    """``value`` as a finite float; None when it is missing, not a number, NaN or infinite."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
