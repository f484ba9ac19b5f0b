"""Shared pieces of the task families: sampling helpers, activations, initializers,
image inputs and recurrent cores.

Every module built from these must run under ``torch.func.functional_call`` + ``vmap``
over parameters stacked on a leading ``[K]`` axis with the batch shared, in float32 and
float64: plain tensor ops only, nothing in-place on activations, and no
``nn.LSTM``/``nn.GRU`` (no vmap support), hence the hand-written cores below. Dropout and
BatchNorm are :class:`Dropout` and :class:`BatchNorm` here: they take their randomness, mode
and state updates from the step context (:mod:`taskset_lab.tasks.context`), so they work in
the vmapped engine and in a plain PyTorch loop alike.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.activations import ACTIVATIONS as TASKSET_ACTIVATIONS
from taskset_lab.tasks.context import draw, is_training, update_state

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

#: the ``lab_*`` families' activation names, mapped onto TaskSet's one table
#: (:data:`taskset_lab.tasks.activations.ACTIVATIONS`); their quirk, kept so their configs
#: stay valid: ``leaky_relu`` is TaskSet's ``leaky_relu2`` (slope 0.2)
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    **{name: TASKSET_ACTIVATIONS[name] for name in ("relu", "tanh", "cos", "elu", "sigmoid", "swish")},
    "leaky_relu": TASKSET_ACTIVATIONS["leaky_relu2"],
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


INIT_ALLOWED = (f"{{name, scale}} with name one of {', '.join(INITIALIZER_WEIGHTS)} "
                f"(a positive scale for {', '.join(INITIALIZER_SCALES)})")


def valid_init(spec: Any) -> bool:
    """Whether ``spec`` is a valid ``{name, scale}`` initializer config."""
    try:
        check_initializer(spec)
        return True
    except ConfigError:
        return False


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


# ---------------------------------------------------------------- dropout and batch norm


class Dropout(nn.Module):
    """Inverted dropout with drop probability ``rate``; its mask comes from the step context
    (uniform noise under this layer's key), so it is reproducible per config and step."""

    def __init__(self, rate: float):
        super().__init__()
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
        self.rate = float(rate)

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not is_training(self):
            return x
        keep = 1.0 - self.rate
        u = draw(getattr(self, "_noise_key", "dropout"), tuple(x.shape), "uniform", x)
        return x * (u < keep).to(x.dtype) / keep


class BatchNorm(nn.Module):
    """Batch normalisation over every dimension but dim 1 (features / channels).

    Training mode normalises with the batch statistics (biased variance) and moves the
    running statistics by ``momentum`` (torch's convention: ``new = (1 - m) old + m batch``,
    unbiased variance; TF's ``decay`` d is ``m = 1 - d``); eval mode uses the running
    statistics. The running statistics are task state (``task_state = True``)."""

    task_state = True

    def __init__(self, num_features: int, momentum: float = 0.1, eps: float = 1e-5, affine: bool = True,
                 center: bool = True, scale: bool = True):
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.weight = nn.Parameter(torch.ones(num_features)) if affine and scale else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine and center else None

    def forward(self, x: Tensor) -> Tensor:
        dims = [0] + list(range(2, x.dim()))
        view = (1, -1) + (1,) * (x.dim() - 2)
        if is_training(self):
            mean = x.mean(dims)
            var = x.var(dims, unbiased=False)
            n = x.numel() // x.shape[1]
            m = self.momentum
            update_state(self, "running_mean", (1 - m) * self.running_mean + m * mean.detach())
            update_state(self, "running_var",
                         (1 - m) * self.running_var + m * var.detach() * (n / max(n - 1, 1)))
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean.reshape(view)) * torch.rsqrt(var.reshape(view) + self.eps)
        if self.weight is not None:
            y = y * self.weight.reshape(view)
        if self.bias is not None:
            y = y + self.bias.reshape(view)
        return y
