"""Argument checks shared by the attacks and the transformations: one clear ValueError naming the argument."""
from __future__ import annotations

import math
import numbers


def positive_number(value, name: str) -> float:
    """``value`` (a Python or NumPy real number) as a float; a ValueError naming ``name`` unless it is a finite
    number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a finite number >= 0 (a Python or NumPy number), got {_typed(value)}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def positive_int(value, name: str) -> int:
    """``value`` (a Python or NumPy integer) as an int; a ValueError naming ``name`` unless it is an integer >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= 1 (a Python or NumPy integer), got {_typed(value)}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def probability(value, name: str) -> float:
    """``value`` as a float; a ValueError naming ``name`` unless it lies in [0, 1]."""
    value = positive_number(value, name)
    if value > 1:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {value!r}")
    return value


def _typed(value) -> str:
    return f"{value!r} of type {type(value).__name__}"
