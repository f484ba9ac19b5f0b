"""Drawing and checking hyperparameters of a search space."""

from __future__ import annotations

import math

import numpy as np


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """A draw whose logarithm is uniform on ``[log low, log high]``."""
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def check_range(family: str, name: str, value: float, low: float | None = None,
                high: float | None = None, low_open: bool = False, high_open: bool = False) -> None:
    """Raise ``ValueError`` naming the hparam and its allowed range when ``value`` is outside."""
    bad = not math.isfinite(value)
    if low is not None:
        bad |= value <= low if low_open else value < low
    if high is not None:
        bad |= value >= high if high_open else value > high
    if bad:
        lo = "(" if low_open or low is None else "["
        hi = ")" if high_open or high is None else "]"
        rng = f"{lo}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{hi}"
        raise ValueError(f"{family}: hparam '{name}' = {value!r} is outside {rng}")
