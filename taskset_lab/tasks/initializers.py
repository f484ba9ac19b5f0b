"""TaskSet's weight initializers (TF1 semantics, TF's ``[in, out]`` layout), drawn from the
global torch RNG.

A TaskSet initializer config is ``[name, scale]`` (``utils.sample_initializer``; scale null
for ``he_*``/``glorot_*``). TF's random streams cannot be reproduced; the distributions can:

* fans as TF's ``_compute_fans`` (1-D ``(n, n)``; 2-D ``(in, out)``; conv kernels multiply
  by the receptive field);
* ``he_normal``/``glorot_normal``/``variance_scaling``: a normal truncated at two stddevs,
  stddev divided by :data:`TRUNC_STD` (TF's correction);
* ``truncated_normal`` is a plain normal: TaskSet maps it to ``random_normal`` (kept);
* ``orthogonal``: QR of a Gaussian matrix, sign-corrected (TF1's ``orthogonal_initializer``);
* Sonnet 1's default ``w`` (:func:`sonnet_default_weight`): ``truncated_normal(stddev =
  1/sqrt(fan_in))``, TF1's truncated normal, not rescaled.

Two samplers of a normal truncated at ±2σ: :func:`trunc_normal` (``nn.init.trunc_normal_``,
inverse CDF) and :func:`truncated_normal` (redraw the outliers; ~10x faster on 10^7-entry
kernels). Both have the same distribution; each task keeps the one it has always drawn with,
so its initial weights stay what they were.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import Tensor, nn

#: TF's truncated-normal correction: stddev of a unit normal truncated at ±2.
TRUNC_STD = 0.87962566103423978

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "orthogonal",
                "random_uniform", "random_normal", "truncated_normal", "variance_scaling")
SCALED = frozenset({"orthogonal", "random_uniform", "random_normal", "truncated_normal", "variance_scaling"})


def is_initializer(spec: Any) -> bool:
    """``[name, scale]`` as TaskSet samples it (scale null for he_*/glorot_*)."""
    if not isinstance(spec, (list, tuple)) or len(spec) != 2 or spec[0] not in INITIALIZERS:
        return False
    scale = spec[1]
    if spec[0] in SCALED:
        return isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0
    return scale is None


def trunc_normal(shape: Sequence[int], std: float) -> Tensor:
    """N(0, std²) truncated at ±2 std (``nn.init.trunc_normal_``): float32 ``shape``."""
    t = torch.empty(tuple(int(s) for s in shape))
    return nn.init.trunc_normal_(t, 0.0, std, -2.0 * std, 2.0 * std)


def truncated_normal(shape: Sequence[int], std: float) -> Tensor:
    """N(0, std²) cut at two stddevs by redrawing the outliers (TF1's ``truncated_normal``);
    the same distribution as :func:`trunc_normal`, ~10x faster on 10^7-entry kernels."""
    t = torch.randn(tuple(int(v) for v in shape))
    flat = t.view(-1)
    bad = (flat.abs() > 2.0).nonzero().squeeze(1)
    while bad.numel():
        flat[bad] = torch.randn(bad.numel())
        bad = bad[flat[bad].abs() > 2.0]
    return t * float(std)


def sonnet_default_weight(n_in: int, n_out: int) -> Tensor:
    """``snt.Linear``'s default ``w [n_in, n_out]``: ``truncated_normal(stddev=1/sqrt(n_in))``,
    a normal of that stddev cut at two stddevs (TF1's truncated normal is not rescaled)."""
    return truncated_normal((int(n_in), int(n_out)), 1.0 / math.sqrt(n_in))


def orthogonal(shape: Sequence[int], gain: float) -> Tensor:
    """TF1 ``orthogonal_initializer``: rows = prod(shape[:-1]), cols = shape[-1]; QR of a
    Gaussian ``[max, min]`` matrix, sign-corrected by diag(R), transposed when rows < cols."""
    rows = int(math.prod(shape[:-1])) if len(shape) > 1 else 1
    cols = int(shape[-1])
    a = torch.randn(max(rows, cols), min(rows, cols), dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    if rows < cols:
        q = q.T
    return (gain * q).reshape(tuple(shape)).to(torch.float32)


def fans(shape: Sequence[int]) -> tuple[int, int]:
    """TF's ``_compute_fans``: 1-D -> (n, n); 2-D -> (in, out); conv -> times the receptive field."""
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return int(shape[0]), int(shape[0])
    receptive = int(math.prod(shape[:-2])) if len(shape) > 2 else 1
    return int(shape[-2]) * receptive, int(shape[-1]) * receptive


def tf_init(spec: Sequence[Any], shape: Sequence[int]) -> Tensor:
    """A float32 tensor drawn (global torch RNG) as TaskSet's ``get_initializer(spec)``
    initialises a variable of ``shape`` (TF layout). ``truncated_normal`` is N(0, s²):
    TaskSet maps it to ``random_normal`` (kept)."""
    name, scale = spec[0], spec[1]
    fan_in, fan_out = fans(shape)
    shape = tuple(int(s) for s in shape)
    if name == "he_normal":
        return trunc_normal(shape, math.sqrt(2.0 / fan_in) / TRUNC_STD)
    if name == "he_uniform":
        lim = math.sqrt(6.0 / fan_in)
        return torch.empty(shape).uniform_(-lim, lim)
    if name == "glorot_normal":
        return trunc_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)) / TRUNC_STD)
    if name == "glorot_uniform":
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        return torch.empty(shape).uniform_(-lim, lim)
    if name == "orthogonal":
        return orthogonal(shape, float(scale))
    if name == "random_uniform":
        return torch.empty(shape).uniform_(-float(scale), float(scale))
    if name in ("random_normal", "truncated_normal"):
        return torch.randn(shape) * float(scale)
    if name == "variance_scaling":  # scale s, mode fan_in, truncated normal (TF1 defaults)
        return trunc_normal(shape, math.sqrt(float(scale) / fan_in) / TRUNC_STD)
    raise ValueError(f"unknown initializer {name!r}")
