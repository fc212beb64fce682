"""Argument checks shared by the phy modules (each raises ValueError naming the argument)."""

from __future__ import annotations

import math


def finite_scalar(name: str, value: float) -> float:
    """``value`` as a float; raises unless it is finite."""
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def positive_scalar(name: str, value: float) -> float:
    """``value`` as a float; raises unless it is finite and > 0."""
    value = finite_scalar(name, value)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


def count(name: str, value: int, minimum: int) -> int:
    """``value`` as an int; raises unless it is a whole number >= ``minimum``."""
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
