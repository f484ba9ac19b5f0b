"""TaskSet's eight ``TwoD_*`` fixed tasks: toy 2-D problems, no data.

TaskSet (``task_set/tasks/fixed/fixed_2d.py``) builds them from the "Learned Optimizers that
Scale and Generalize" problem generator with no gradient noise:

* ``TwoD_Bowl{1,10,100,1000}``: ``0.5 * ||M x||^2`` with ``M = diag(sqrt(c), 1)`` (the bowl's
  rotation angle is 0, so its ``random_seed`` changes nothing); ``x`` starts at a standard
  normal draw.
* ``TwoD_Rosenbrock``, ``TwoD_Ackley``, ``TwoD_Beale``, ``TwoD_StyblinskiTang``: the classic
  functions (Styblinski-Tang halved and shifted by +80); ``x`` starts at a uniform draw in
  the problem's box.

The initial point is **not random across runs** in TaskSet: it is drawn by a TF1 op with op
seed 123 and no graph seed, i.e. TF's default graph seed 87654321, so every replica starts at
the same point. We reproduce that point bit for bit (TF's Philox-4x32-10 stream and its
float conversions, below); ``init_module(seed)`` therefore ignores ``seed`` for these tasks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn

from taskset_lab.tasks.base import Batch, NoiseData, Task
from taskset_lab.tasks.registry import register_fixed_tasks

# ------------------------------------------------------------------ TF1's seeded random ops

TF_DEFAULT_GRAPH_SEED = 87654321  # used by TF1 when an op has a seed but the graph has none
TASKSET_OP_SEED = 123  # LOSGProblemTask(seed=123) in fixed_2d.py

_M32 = 0xFFFFFFFF
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)


def philox4x32_10(counter: tuple[int, int, int, int], key: tuple[int, int]) -> tuple[int, int, int, int]:
    """One Philox-4x32-10 block (Salmon et al. 2011), the generator behind TF's random ops."""
    c0, c1, c2, c3 = (int(c) & _M32 for c in counter)
    k0, k1 = (int(k) & _M32 for k in key)
    for r in range(10):
        if r:
            k0, k1 = (k0 + _PHILOX_W[0]) & _M32, (k1 + _PHILOX_W[1]) & _M32
        p0, p1 = _PHILOX_M[0] * c0, _PHILOX_M[1] * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & _M32, p1 & _M32, ((p0 >> 32) ^ c3 ^ k1) & _M32, p0 & _M32
    return c0, c1, c2, c3


def _tf_stream(seed: int, seed2: int, n: int) -> list[int]:
    """The first ``n`` uint32 of a freshly built TF random op with seeds ``(seed, seed2)``:
    key = ``seed``, counter = ``(0, 0, seed2)`` and counting up one block per 4 numbers."""
    key = (seed & _M32, (seed >> 32) & _M32)
    out: list[int] = []
    block = 0
    while len(out) < n:
        out.extend(philox4x32_10((block & _M32, block >> 32, seed2 & _M32, (seed2 >> 32) & _M32), key))
        block += 1
    return out[:n]


def _uint32_to_float(x: int) -> np.float32:
    """TF's ``Uint32ToFloat``: 23 random mantissa bits as a float32 in [0, 1)."""
    bits = np.array([(127 << 23) | (x & 0x7FFFFF)], dtype=np.uint32)
    return bits.view(np.float32)[0] - np.float32(1.0)


def tf_random_uniform(n: int, minval: float, maxval: float, seed: int = TF_DEFAULT_GRAPH_SEED,
                      seed2: int = TASKSET_OP_SEED) -> np.ndarray:
    """``tf.random_uniform([n], minval, maxval)`` in float32 (``u * (max - min) + min``)."""
    lo, hi = np.float32(minval), np.float32(maxval)
    u = np.array([_uint32_to_float(x) for x in _tf_stream(seed, seed2, n)], dtype=np.float32)
    return (u * (hi - lo) + lo).astype(np.float32)


def tf_random_normal(n: int, seed: int = TF_DEFAULT_GRAPH_SEED, seed2: int = TASKSET_OP_SEED) -> np.ndarray:
    """``tf.random_normal([n])`` in float32: TF's Box-Muller on pairs of uint32."""
    bits = _tf_stream(seed, seed2, 4 * math.ceil(n / 4))
    out = []
    for x0, x1 in zip(bits[0::2], bits[1::2]):
        u1 = max(_uint32_to_float(x0), np.float32(1e-7))
        v1 = np.float32(2.0 * math.pi * float(_uint32_to_float(x1)))
        u2 = np.sqrt(np.float32(-2.0) * np.log(u1, dtype=np.float32), dtype=np.float32)
        out += [np.sin(v1, dtype=np.float32) * u2, np.cos(v1, dtype=np.float32) * u2]
    return np.array(out[:n], dtype=np.float32)


# ------------------------------------------------------------------ the functions


def _bowl(condition: float) -> Callable[[Tensor], Tensor]:
    scale = math.sqrt(condition)

    def fn(x: Tensor) -> Tensor:
        return 0.5 * ((scale * x[..., 0]) ** 2 + x[..., 1] ** 2)

    return fn


def rosenbrock(x: Tensor) -> Tensor:
    a, b = x[..., 0], x[..., 1]
    return (1 - a) ** 2 + 100 * (b - a**2) ** 2


def ackley(x: Tensor) -> Tensor:
    a, b = x[..., 0], x[..., 1]
    # TF's sqrt has a NaN gradient at exactly 0; 1e-30 keeps ours finite and moves no value
    # representable near the optimum.
    r = torch.sqrt(0.5 * (a**2 + b**2) + 1e-30)
    c = 0.5 * (torch.cos(2 * math.pi * a) + torch.cos(2 * math.pi * b))
    return -20 * torch.exp(-0.2 * r) - torch.exp(c) + math.e + 20.0


def beale(x: Tensor) -> Tensor:
    a, b = x[..., 0], x[..., 1]
    return (1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2 + (2.625 - a + a * b**3) ** 2


def styblinski_tang(x: Tensor) -> Tensor:
    return 0.5 * (x**4 - 16 * x**2 + 5 * x).sum(-1) + 80.0


@dataclass(frozen=True)
class TwoDSpec:
    """One TaskSet 2-D problem: its function and how TaskSet draws the initial point."""

    name: str
    fn: Callable[[Tensor], Tensor]
    init: str  # "normal" or "uniform"
    box: tuple[float, float] = (0.0, 0.0)  # uniform init range (same for both coordinates)

    def initial_point(self) -> np.ndarray:
        if self.init == "normal":
            return tf_random_normal(2)
        return tf_random_uniform(2, *self.box)


SPECS: dict[str, TwoDSpec] = {s.name: s for s in [
    TwoDSpec("TwoD_Bowl1", _bowl(1.0), "normal"),
    TwoDSpec("TwoD_Bowl10", _bowl(10.0), "normal"),
    TwoDSpec("TwoD_Bowl100", _bowl(100.0), "normal"),
    TwoDSpec("TwoD_Bowl1000", _bowl(1000.0), "normal"),
    TwoDSpec("TwoD_Rosenbrock", rosenbrock, "uniform", (-5.0, 10.0)),
    TwoDSpec("TwoD_Ackley", ackley, "uniform", (-32.768, 32.768)),
    TwoDSpec("TwoD_Beale", beale, "uniform", (-4.5, 4.5)),
    TwoDSpec("TwoD_StyblinskiTang", styblinski_tang, "uniform", (-5.0, 5.0)),
]}


class FixedPoint2D(nn.Module):
    """The parameter ``x`` (shape [2]) at TaskSet's initial point."""

    def __init__(self, start: np.ndarray):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(np.asarray(start, dtype=np.float32)))

    def forward(self) -> Tensor:
        return self.x


class TaskSetTwoD(Task):
    """A deterministic 2-D loss (no data: batches are empty placeholders)."""

    def __init__(self, name: str, spec: TwoDSpec):
        super().__init__({"family": "TwoD", "problem": name}, NoiseData((2,), 0.0))
        self.spec = spec

    def make_module(self) -> nn.Module:
        return FixedPoint2D(self.spec.initial_point())

    def model_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return ()

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return self.spec.fn(output)


def build_spec(spec: TwoDSpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> TaskSetTwoD:
    """The task of ``spec`` (no data: the data arguments are ignored)."""
    return TaskSetTwoD(spec.name, spec)


register_fixed_tasks(SPECS.values(), build_spec, kind="TwoD")
