"""TaskSet's RNN building blocks (Sonnet 1 semantics) for the sequence families.

TaskSet builds its language models and text classifiers from Sonnet 1 modules
(``snt.Embed``, ``snt.VanillaRNN``, ``snt.GRU``, ``snt.LSTM``, ``snt.Linear``) with TF1
initializers. :class:`taskset_lab.tasks.nn.RecurrentCore` differs from them (PyTorch gate
layout, one initializer for every matrix, zero biases, a stored forget bias, no trainable
initial state), so these cores are separate classes:

* weights keep TF's ``x @ W`` layout (``[in, out]``), so fans are ``fan_in = in``,
  ``fan_out = out`` as in TF;
* ``vrnn``: ``h' = act(x W_ih + b_ih + h W_hh + b_hh)``, both biases zeros;
* ``gru``: Sonnet's GRU, six sampled initializers, biases ``bz, br, bh`` from TF1's default
  (glorot_uniform on a 1-D shape: U(±sqrt(3/H)));
* ``lstm``: one ``[E+H, 4H]`` matrix (gates i, j, f, o), bias truncated normal with
  stddev ``1/sqrt(E+H)`` (Sonnet's default), forget bias 1.0 added in the forward pass;
* initial state: zeros, or (``trainable_init``) one trainable zero-initialised ``[1, H]``
  vector per state tensor, tiled over the batch;
* ``Embed``: N(0, 1) table; ``Linear``: sampled ``w`` initializer, zero bias.

TF's random streams cannot be reproduced; the distributions can, and are.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: TF's truncated-normal correction: stddev of a unit normal truncated at ±2.
TRUNC_STD = 0.87962566103423978

INITIALIZERS = ("he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "orthogonal",
                "random_uniform", "random_normal", "truncated_normal", "variance_scaling")
SCALED = frozenset({"orthogonal", "random_uniform", "random_normal", "truncated_normal", "variance_scaling"})

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "cos": torch.cos,
    "elu": F.elu,
    "sigmoid": torch.sigmoid,
    "swish": lambda x: x * torch.sigmoid(x),
    "leaky_relu4": lambda x: F.leaky_relu(x, 0.4),
    "leaky_relu2": lambda x: F.leaky_relu(x, 0.2),
    "leaky_relu1": lambda x: F.leaky_relu(x, 0.1),
}

CORE_KINDS = ("vrnn", "gru", "lstm")
GRU_KEYS = ("wh", "wz", "wr", "uh", "uz", "ur")


def is_initializer(spec: Any) -> bool:
    """``[name, scale]`` as TaskSet samples it (scale null for he_*/glorot_*)."""
    if not isinstance(spec, (list, tuple)) or len(spec) != 2 or spec[0] not in INITIALIZERS:
        return False
    scale = spec[1]
    if spec[0] in SCALED:
        return isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale > 0
    return scale is None


def is_core(spec: Any) -> bool:
    """``[kind, args]`` as TaskSet's ``sample_rnn_core`` gives it."""
    if not isinstance(spec, (list, tuple)) or len(spec) != 2 or spec[0] not in CORE_KINDS:
        return False
    kind, args = spec
    if not isinstance(args, Mapping) or not isinstance(args.get("core_dim"), int) or args["core_dim"] < 1:
        return False
    if kind == "vrnn":
        return (args.get("act_fn") in ACTIVATIONS and is_initializer(args.get("in_to_hidden"))
                and is_initializer(args.get("hidden_to_hidden")))
    if kind == "gru":
        return all(is_initializer(args.get(k)) for k in GRU_KEYS)
    return is_initializer(args.get("w_gates"))


def _trunc_normal(shape: Sequence[int], std: float) -> Tensor:
    t = torch.empty(tuple(shape))
    return nn.init.trunc_normal_(t, 0.0, std, -2.0 * std, 2.0 * std)


def _orthogonal(shape: Sequence[int], gain: float) -> Tensor:
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
    """TF's ``_compute_fans``: 1-D -> (n, n); 2-D -> (in, out)."""
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
        return _trunc_normal(shape, math.sqrt(2.0 / fan_in) / TRUNC_STD)
    if name == "he_uniform":
        lim = math.sqrt(6.0 / fan_in)
        return torch.empty(shape).uniform_(-lim, lim)
    if name == "glorot_normal":
        return _trunc_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)) / TRUNC_STD)
    if name == "glorot_uniform":
        lim = math.sqrt(6.0 / (fan_in + fan_out))
        return torch.empty(shape).uniform_(-lim, lim)
    if name == "orthogonal":
        return _orthogonal(shape, float(scale))
    if name == "random_uniform":
        return torch.empty(shape).uniform_(-float(scale), float(scale))
    if name in ("random_normal", "truncated_normal"):
        return torch.randn(shape) * float(scale)
    if name == "variance_scaling":  # scale s, mode fan_in, truncated normal (TF1 defaults)
        return _trunc_normal(shape, math.sqrt(float(scale) / fan_in) / TRUNC_STD)
    raise ValueError(f"unknown initializer {name!r}")


def _param(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t)


class Embed(nn.Module):
    """``snt.Embed``: a ``[vocab, dim]`` table, N(0, 1) (Sonnet 1's default)."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.embeddings = _param(torch.randn(vocab, dim))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.embeddings[tokens]


class Linear(nn.Module):
    """``snt.Linear(out, initializers={"w": w_init})``: ``x @ w + b``, bias zeros."""

    def __init__(self, n_in: int, n_out: int, w_init: Sequence[Any]):
        super().__init__()
        self.w = _param(tf_init(w_init, (n_in, n_out)))
        self.b = _param(torch.zeros(n_out))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.w + self.b


class SonnetCore(nn.Module):
    """A TaskSet RNN core (``[kind, args]``) run over a whole sequence from its initial
    state: ``[B, T, E] -> outputs [B, T, H]`` (output = new hidden state)."""

    def __init__(self, spec: Sequence[Any], input_size: int, trainable_init: bool):
        super().__init__()
        kind, args = spec[0], dict(spec[1])
        h, e = int(args["core_dim"]), int(input_size)
        self.kind, self.hidden = kind, h
        if kind == "vrnn":
            self.act_name = str(args["act_fn"])
            self.w_ih = _param(tf_init(args["in_to_hidden"], (e, h)))
            self.b_ih = _param(torch.zeros(h))
            self.w_hh = _param(tf_init(args["hidden_to_hidden"], (h, h)))
            self.b_hh = _param(torch.zeros(h))
        elif kind == "gru":
            for key in ("wz", "wr", "wh"):
                setattr(self, key, _param(tf_init(args[key], (e, h))))
            for key in ("uz", "ur", "uh"):
                setattr(self, key, _param(tf_init(args[key], (h, h))))
            lim = math.sqrt(3.0 / h)  # glorot_uniform on [H]: fan_in = fan_out = H
            for key in ("bz", "br", "bh"):
                setattr(self, key, _param(torch.empty(h).uniform_(-lim, lim)))
        elif kind == "lstm":
            self.w_gates = _param(tf_init(args["w_gates"], (e + h, 4 * h)))
            self.b_gates = _param(_trunc_normal((4 * h,), 1.0 / math.sqrt(e + h)))
        else:
            raise ValueError(f"unknown RNN core {kind!r}")
        n_state = 2 if kind == "lstm" else 1
        self.trainable_init = bool(trainable_init)
        if self.trainable_init:
            self.init_h = _param(torch.zeros(1, h))
            if n_state == 2:
                self.init_c = _param(torch.zeros(1, h))

    def _initial(self, like: Tensor, name: str) -> Tensor:
        batch = like.shape[0]
        if self.trainable_init:
            return getattr(self, name).expand(batch, self.hidden)
        return like.new_zeros(batch, self.hidden)

    def forward(self, xs: Tensor) -> Tensor:
        h = self._initial(xs, "init_h")
        outs = []
        if self.kind == "vrnn":
            act = ACTIVATIONS[self.act_name]
            proj = xs @ self.w_ih + self.b_ih
            for x_t in proj.unbind(1):
                h = act(x_t + h @ self.w_hh + self.b_hh)
                outs.append(h)
        elif self.kind == "gru":
            hsz = self.hidden
            proj = xs @ torch.cat([self.wz, self.wr, self.wh], 1) + torch.cat([self.bz, self.br, self.bh])
            u_zr = torch.cat([self.uz, self.ur], 1)
            for x_t in proj.unbind(1):
                xz, xr, xh = x_t[:, :hsz], x_t[:, hsz:2 * hsz], x_t[:, 2 * hsz:]
                hzr = h @ u_zr
                z = torch.sigmoid(xz + hzr[:, :hsz])
                r = torch.sigmoid(xr + hzr[:, hsz:])
                cand = torch.tanh(xh + (r * h) @ self.uh)
                h = (1.0 - z) * h + z * cand
                outs.append(h)
        else:
            e = xs.shape[-1]
            c = self._initial(xs, "init_c")
            proj = xs @ self.w_gates[:e] + self.b_gates
            w_h = self.w_gates[e:]
            for x_t in proj.unbind(1):
                i, j, f, o = (x_t + h @ w_h).chunk(4, dim=-1)
                c = torch.sigmoid(f + 1.0) * c + torch.sigmoid(i) * torch.tanh(j)
                h = torch.tanh(c) * torch.sigmoid(o)
                outs.append(h)
        return torch.stack(outs, dim=1)
