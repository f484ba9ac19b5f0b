"""Sonnet-1-style layers for TaskSet's tasks (weights in TF's ``x @ W`` layout, ``[in, out]``).

* :class:`SonnetLinear`: ``snt.Linear``: ``x @ w + b``, ``w`` from a TaskSet ``[name, scale]``
  initializer (or Sonnet's default truncated normal), ``b`` zeros;
* :class:`SonnetMLP`: ``snt.nets.MLP``: the activation after every layer but the last;
* :class:`Embed`: ``snt.Embed``: a ``[vocab, dim]`` table, N(0, 1);
* :class:`SonnetCore`: TaskSet's RNN cores (``[kind, args]`` from ``utils.sample_rnn_core``);
* :class:`GaussianVAE`: TaskSet's MLP VAE (``generative_utils``), returning ``(log p(x|z), KL)``;
* :func:`same_padding`: TF's ``SAME`` padding of a conv layer.

TaskSet builds its language models and text classifiers from Sonnet 1 modules
(``snt.Embed``, ``snt.VanillaRNN``, ``snt.GRU``, ``snt.LSTM``, ``snt.Linear``) with TF1
initializers; the cores here follow them (not ``torch.nn``'s RNN cells: TF's gate order and
layout, per-matrix initializers, Sonnet's biases, an optional trainable initial state):

* ``vrnn``: ``h' = act(x W_ih + b_ih + h W_hh + b_hh)``, both biases zeros;
* ``gru``: Sonnet's GRU, six sampled initializers, biases ``bz, br, bh`` from TF1's default
  (glorot_uniform on a 1-D shape: U(±sqrt(3/H)));
* ``lstm``: one ``[E+H, 4H]`` matrix (gates i, j, f, o), bias truncated normal with
  stddev ``1/sqrt(E+H)`` (Sonnet's default), forget bias 1.0 added in the forward pass;
* initial state: zeros, or (``trainable_init``) one trainable zero-initialised ``[1, H]``
  vector per state tensor, tiled over the batch.

Every layer runs under ``torch.func.functional_call`` + ``vmap`` (plain tensor ops).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from taskset_lab.tasks.activations import ACTIVATIONS
from taskset_lab.tasks.activations import activation as as_activation
from taskset_lab.tasks.context import draw
from taskset_lab.tasks.initializers import is_initializer, sonnet_default_weight, tf_init, trunc_normal
from taskset_lab.tasks.losses import DECODER_CLIP, kl_to_standard_normal, quantized_normal_log_prob, split_mu_log_sigma

CORE_KINDS = ("vrnn", "gru", "lstm")
GRU_KEYS = ("wh", "wz", "wr", "uh", "uz", "ur")


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


def _param(t: Tensor) -> nn.Parameter:
    return nn.Parameter(t)


class SonnetLinear(nn.Module):
    """``snt.Linear``: ``x @ w + b`` with ``w [in, out]`` (TF layout) from ``w_init`` (a TaskSet
    ``[name, scale]`` spec, or None for Sonnet's default) and ``b`` zeros."""

    def __init__(self, n_in: int, n_out: int, w_init: Sequence[Any] | None = None):
        super().__init__()
        w = sonnet_default_weight(n_in, n_out) if w_init is None else tf_init(w_init, (n_in, n_out))
        self.w = nn.Parameter(w)
        self.b = nn.Parameter(torch.zeros(int(n_out)))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.w + self.b


class SonnetMLP(nn.Module):
    """``snt.nets.MLP(sizes, activation, initializers={"w": w_init})`` on ``[B, n_in]``: the
    activation after every layer but the last. ``between`` (optional) builds a module applied
    to each hidden layer's output before its activation (dropout in Sonnet's MLP does that)."""

    def __init__(self, n_in: int, sizes: Sequence[int], activation: str | Callable[[Tensor], Tensor],
                 w_init: Sequence[Any] | None = None, between: Callable[[int], nn.Module] | None = None):
        super().__init__()
        dims = [int(n_in), *(int(s) for s in sizes)]
        self.layers = nn.ModuleList(SonnetLinear(a, b, w_init) for a, b in zip(dims[:-1], dims[1:]))
        self.between = nn.ModuleList(between(d) for d in dims[1:-1]) if between is not None else None
        self.activation = as_activation(activation)

    def forward(self, h: Tensor) -> Tensor:
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < last:
                if self.between is not None:
                    h = self.between[i](h)
                h = self.activation(h)
        return h


class Embed(nn.Module):
    """``snt.Embed``: a ``[vocab, dim]`` table, N(0, 1) (Sonnet 1's default)."""

    def __init__(self, vocab: int, dim: int):
        super().__init__()
        self.embeddings = _param(torch.randn(vocab, dim))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.embeddings[tokens]


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
            self.b_gates = _param(trunc_normal((4 * h,), 1.0 / math.sqrt(e + h)))
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


class GaussianVAE(nn.Module):
    """Flat inputs ``[B, D]`` -> ``[B, 2]`` = (``log p(x|z)``, ``KL``) per example, with an MLP
    encoder (output ``[mu, log_sigma]``, ``2 L`` wide) and an MLP decoder (output ``2 D``,
    clipped to ±10). Draws ``eps`` and the dequantisation noise from the step context."""

    def __init__(self, n_in: int, enc_sizes: Sequence[int], dec_sizes: Sequence[int],
                 activation: str | Callable[[Tensor], Tensor], w_init: Sequence[Any] | None):
        super().__init__()
        if int(enc_sizes[-1]) % 2 or int(dec_sizes[-1]) != 2 * int(n_in):
            raise ValueError("the encoder must output [mu, log_sigma] and the decoder 2 values per input")
        self.latent = int(enc_sizes[-1]) // 2
        self.encoder = SonnetMLP(n_in, enc_sizes, activation, w_init)
        self.decoder = SonnetMLP(self.latent, dec_sizes, activation, w_init)

    def forward(self, x: Tensor) -> Tensor:
        key = getattr(self, "_noise_key", "vae")
        mu, log_sigma = split_mu_log_sigma(self.encoder(x))
        eps = draw(f"{key}/latent", (x.shape[0], self.latent), "normal", x)
        z = mu + torch.exp(log_sigma) * eps
        out = torch.clamp(self.decoder(z), -DECODER_CLIP, DECODER_CLIP)
        mu_x, log_sigma_x = split_mu_log_sigma(out)
        u = draw(f"{key}/dequantize", tuple(x.shape), "uniform", x)
        log_p_x = quantized_normal_log_prob(x, mu_x, log_sigma_x, u)
        return torch.stack([log_p_x, kl_to_standard_normal(mu, log_sigma)], dim=1)


def same_padding(n: int, stride: int, kernel: int = 3) -> tuple[int, int]:
    """TF's ``SAME`` padding ``(before, after)`` of one spatial dimension (extra one after)."""
    out = -(-n // stride)
    total = max((out - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2
