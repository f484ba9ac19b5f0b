"""Shared pieces of the task families: sampling helpers, activations, initializers,
image inputs and recurrent cores.

Every module built from these must run under ``torch.func.functional_call`` + ``vmap``
over parameters stacked on a leading ``[K]`` axis with the batch shared, in float32 and
float64: plain tensor ops only, nothing in-place on activations, no BatchNorm or dropout,
and no ``nn.LSTM``/``nn.GRU`` (no vmap support), hence the hand-written cores below.
"""

from __future__ import annotations

import functools
import math
import zlib
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.errors import ConfigError

# ---------------------------------------------------------------- sampling helpers


def family_rng(family: str, seed: int) -> np.random.Generator:
    """The sampler's generator: a stream per (family, seed), so families sharing a seed differ."""
    return np.random.default_rng([zlib.crc32(family.encode()), int(seed) % (1 << 64)])


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    return int(round(log_uniform(rng, low, high)))


def weighted_choice(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return str(names[rng.choice(len(names), p=p / p.sum())])


def derived_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def check_choice(config: Mapping[str, Any], key: str, options: Any, field: str | None = None) -> Any:
    """``config[key]`` if it is one of ``options``; otherwise a ConfigError naming ``field``
    (default: the key)."""
    field = field or key
    if not isinstance(config, Mapping) or key not in config:
        raise ConfigError(field, "missing from the task config")
    value = config[key]
    if value not in options:
        raise ConfigError(field, f"{value!r} is not one of {', '.join(map(str, options))}")
    return value


# ---------------------------------------------------------------- activations

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "cos": torch.cos,
    "elu": F.elu,
    "sigmoid": torch.sigmoid,
    "swish": F.silu,
    "leaky_relu": functools.partial(F.leaky_relu, negative_slope=0.2),
}
ACTIVATION_WEIGHTS = {"relu": 6, "tanh": 3, "cos": 1, "elu": 1, "sigmoid": 1, "swish": 1, "leaky_relu": 1}


def sample_activation(rng: np.random.Generator) -> str:
    return weighted_choice(rng, ACTIVATION_WEIGHTS)


# ---------------------------------------------------------------- initializers

INITIALIZER_WEIGHTS = {"he_normal": 2, "he_uniform": 2, "glorot_normal": 2, "glorot_uniform": 2,
                       "orthogonal": 1, "random_normal": 1, "random_uniform": 1}
# Initializers with a scale (orthogonal: gain; random_normal: std; random_uniform: bound)
# and the log-uniform range it is drawn from.
INITIALIZER_SCALES = {"orthogonal": (0.1, 10.0), "random_normal": (0.01, 1.0), "random_uniform": (0.01, 1.0)}


def sample_initializer(rng: np.random.Generator) -> dict[str, Any]:
    """``{"name": ..., "scale": float or None}``."""
    name = weighted_choice(rng, INITIALIZER_WEIGHTS)
    scale = log_uniform(rng, *INITIALIZER_SCALES[name]) if name in INITIALIZER_SCALES else None
    return {"name": name, "scale": scale}


def check_initializer(spec: Any, key: str = "init") -> dict[str, Any]:
    if not isinstance(spec, Mapping) or spec.get("name") not in INITIALIZER_WEIGHTS:
        raise ConfigError(key, f"must be {{name, scale}} with name one of {', '.join(INITIALIZER_WEIGHTS)}; "
                               f"got {spec!r}")
    if spec["name"] in INITIALIZER_SCALES and not (isinstance(spec.get("scale"), (int, float))
                                                   and spec["scale"] > 0):
        raise ConfigError(key, f"initializer {spec['name']!r} needs a positive 'scale'")
    return dict(spec)


@torch.no_grad()
def init_weight_(weight: Tensor, spec: Mapping[str, Any]) -> Tensor:
    """Initialise a weight (``[out, in, ...]`` layout) in place from the global RNG."""
    name, scale = spec["name"], spec.get("scale")
    if name == "he_normal":
        return nn.init.kaiming_normal_(weight, nonlinearity="relu")
    if name == "he_uniform":
        return nn.init.kaiming_uniform_(weight, nonlinearity="relu")
    if name == "glorot_normal":
        return nn.init.xavier_normal_(weight)
    if name == "glorot_uniform":
        return nn.init.xavier_uniform_(weight)
    if name == "orthogonal":
        return nn.init.orthogonal_(weight, gain=scale)
    if name == "random_normal":
        return nn.init.normal_(weight, 0.0, scale)
    if name == "random_uniform":
        return nn.init.uniform_(weight, -scale, scale)
    raise ValueError(f"unknown initializer {name!r}")


# ---------------------------------------------------------------- inputs


def image_input(x: Tensor, like: Tensor, center: bool = False) -> Tensor:
    """Images as floats of ``like``'s dtype in [0, 1] (uint8 sources are divided by 255),
    or in [-1, 1] when ``center``."""
    x = x.to(like.dtype) / 255.0 if x.dtype == torch.uint8 else x.to(like.dtype)
    return x * 2.0 - 1.0 if center else x


# ---------------------------------------------------------------- recurrent cores

CORE_GATES = {"rnn": 1, "gru": 3, "lstm": 4}


class RecurrentCore(nn.Module):
    """Elman (tanh) / GRU / LSTM over a whole sequence, in plain tensor ops.

    Weights keep PyTorch's gate layout in one matrix each (``w_in [G*H, E]``,
    ``w_h [G*H, H]``); every gate block is initialised separately with ``init``.
    The input projection of all steps is one matmul; the recurrence is a Python loop.
    """

    def __init__(self, kind: str, input_size: int, hidden_size: int, init: Mapping[str, Any]):
        super().__init__()
        if kind not in CORE_GATES:
            raise ValueError(f"unknown recurrent core {kind!r}")
        self.kind, self.hidden_size = kind, hidden_size
        gates = CORE_GATES[kind]
        self.w_in = nn.Parameter(torch.empty(gates * hidden_size, input_size))
        self.w_h = nn.Parameter(torch.empty(gates * hidden_size, hidden_size))
        self.bias = nn.Parameter(torch.zeros(gates * hidden_size))
        for g in range(gates):
            block = slice(g * hidden_size, (g + 1) * hidden_size)
            init_weight_(self.w_in[block], init)
            init_weight_(self.w_h[block], init)
        if kind == "lstm":  # forget-gate bias 1: remember by default
            with torch.no_grad():
                self.bias[hidden_size:2 * hidden_size] = 1.0

    def forward(self, xs: Tensor) -> Tensor:
        """``xs [B, T, E] -> hidden states [B, T, H]`` (zero initial state)."""
        proj = F.linear(xs, self.w_in, self.bias)
        h = torch.zeros_like(proj[:, 0, : self.hidden_size])
        c = h
        outs = []
        # unbind, not proj[:, t]: the backward of each index would write a full-size zero tensor
        for x_t in proj.unbind(1):
            h_proj = F.linear(h, self.w_h)
            if self.kind == "rnn":
                h = torch.tanh(x_t + h_proj)
            elif self.kind == "gru":
                xr, xz, xn = x_t.chunk(3, dim=-1)
                hr, hz, hn = h_proj.chunk(3, dim=-1)
                r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
                n = torch.tanh(xn + r * hn)
                h = (1.0 - z) * n + z * h
            else:
                i, f, g, o = (x_t + h_proj).chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            outs.append(h)
        return torch.stack(outs, dim=1)
