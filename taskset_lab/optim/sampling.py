"""Drawing and checking hyperparameters, in the way TaskSet's samplers draw them.

TaskSet and opt_list draw with ``numpy.random.RandomState(seed + offset)`` (one offset per
family) and take every number from ``rng.uniform``; a log-uniform value is
``exp(uniform(log low, log high))``. Keeping the generator, the offsets and the order of
draws reproduces the released configs exactly (see :mod:`taskset_lab.optim.released`).
"""

from __future__ import annotations

import math

import numpy as np


def family_rng(seed: int, offset: int) -> np.random.RandomState:
    """The generator a family's sampler draws ``seed`` from (TaskSet's convention)."""
    return np.random.RandomState(int(seed) + int(offset))


def log_uniform(rng: np.random.RandomState, low: float, high: float) -> float:
    """A draw whose logarithm is uniform between ``log low`` and ``log high``.

    ``low > high`` is allowed and consumes the draw the same way (adam8p's exponential decay
    is released with its bounds in that order).
    """
    return float(np.exp(rng.uniform(np.log(float(low)), np.log(float(high)))))


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
