"""Real data that ships with installed packages, so default runs need no network.

* ``digits``: scikit-learn's 1797 real 8x8 handwritten digits, scaled to [0, 1].
* ``pydoc``: the English help texts of Python's own ``pydoc_data.topics``.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

SPLIT_SEED = 0  # fixed: a dataset's split never depends on a task or a run
DIGITS_FRACTIONS = (0.6, 0.1, 0.1, 0.2)  # train / valid_inner / valid_outer / test

Splits = dict[str, tuple[Tensor, Tensor]]


def split_sizes(n: int, fractions: Sequence[float]) -> list[int]:
    """Sizes of consecutive splits of ``n`` items (the last split takes the remainder)."""
    sizes = [int(n * f) for f in fractions[:-1]]
    sizes.append(n - sum(sizes))
    if min(sizes) < 1:
        raise ValueError(f"{n} items are too few for split fractions {tuple(fractions)}")
    return sizes


def split_indices(n: int, sizes: Sequence[int], seed: int = SPLIT_SEED) -> list[Tensor]:
    """Disjoint index sets of the given sizes from one fixed shuffle of ``range(n)``."""
    if sum(sizes) > n:
        raise ValueError(f"split sizes {list(sizes)} exceed {n} items")
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    bounds = np.cumsum([0, *sizes])
    return [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@functools.cache
def load_digits() -> Splits:
    """Digits as ``{split: (x [N,1,8,8] float32 in [0,1], y [N] int64)}`` (cached in-process)."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    parts = split_indices(len(y), split_sizes(len(y), DIGITS_FRACTIONS))
    names = ("train", "valid_inner", "valid_outer", "test")
    return {name: (x[idx], y[idx]) for name, idx in zip(names, parts)}


@functools.cache
def pydoc_text() -> str:
    """The pydoc topic texts joined in key order (deterministic for a Python version)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key] for key in sorted(topics))
