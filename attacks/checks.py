"""Argument checks shared by the attacks and the transformations: one clear ValueError naming the argument."""
from __future__ import annotations

import math


def positive_number(value, name: str) -> float:
    """``value`` as a float; a ValueError naming ``name`` unless it is a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def positive_int(value, name: str) -> int:
    """``value``; a ValueError naming ``name`` unless it is an integer >= 1."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def probability(value, name: str) -> float:
    """``value`` as a float; a ValueError naming ``name`` unless it lies in [0, 1]."""
    value = positive_number(value, name)
    if value > 1:
        raise ValueError(f"{name} is a probability and must lie in [0, 1], got {value!r}")
    return value
