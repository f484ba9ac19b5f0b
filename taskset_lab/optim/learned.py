"""Learned optimizers: learned_optimization's MLP LOpt and small_fc_lopt (AdafacMLPLOpt) in
PyTorch, as optimizer families whose hyperparameter is the flat weight vector ``theta``
(docs/design.md §Optimizer families), and :class:`LearnedOptimizer`, the ``torch.optim``
front end that loads a checkpoint (a shipped name or a file).

Both architectures apply one small MLP to every scalar parameter independently. Their
inputs, per parameter tensor (``features``), are normalized by their second moment over the
tensor, ``x / sqrt(1e-5 + mean_tensor(x²))``, then the 11 training-step features
``tanh(t / τ - 1)``, ``τ ∈ {1, 3, 10, …, 1e5}``, ``t`` the 0-based update count, are
appended unnormalized. The MLP's two outputs ``(d, s)`` give the step

    Δθ = d · exp(exp_mult · s) · lr,        p ← p - Δθ

with ``exp_mult = 1e-3`` and ``lr`` (learned_optimization's ``step_mult``, default 1e-3) a
scalar hyperparameter of the family. The MLP is ``Linear → ReLU`` ``hidden_layers`` times,
then ``Linear(·, 2)``; its weights are stored flat in ``theta`` (W₀, b₀, W₁, b₁, …; each W
``[fan_in, fan_out]``, row-major), initialized like Haiku's ``Linear`` (truncated normal,
std ``1/sqrt(fan_in)``, zero biases).

* ``mlp_lopt`` (MLP LOpt, "LOLv2"; hidden 32×2): features ``g``, ``p`` and six momenta
  ``m_i ← β_i m_i + (1-β_i) g``, ``β ∈ {0.1, 0.5, 0.9, 0.99, 0.999, 0.9999}`` (19 inputs).
* ``small_fc_lopt`` (AdafacMLPLOpt; hidden 4×2): features ``g``, ``p``, momenta ``m``
  (β ∈ {0.9, 0.99, 0.999}), a second moment ``v ← β v + (1-β) g²`` (β = 0.999), ``m/sqrt(v+1e-6)``,
  ``1/sqrt(v+1e-6)``, and Adafactor-style factored second moments over three decays
  ``β_f ∈ {0.9, 0.99, 0.999}``: for a tensor with ≥ 2 axes (the last two factored, d₀ the
  second-to-last), row and column accumulators ``r ← β_f r + (1-β_f) mean_{d₁}(g²+1e-30)``,
  ``c ← β_f c + (1-β_f) mean_{d₀}(g²+1e-30)``, with ``f = rsqrt(r / (mean_{d₀} r + 1e-9)) ·
  rsqrt(c)`` the factored gradient ``g · f`` and the features ``r, c, rsqrt(r+1e-8),
  rsqrt(c+1e-8), m · f``; a tensor with < 2 axes uses the unfactored
  ``v_f ← β_f v_f + (1-β_f)(g²+1e-30)`` in their place (``g · rsqrt(v_f)``, ``v_f`` twice,
  ``rsqrt(v_f+1e-8)`` twice, ``m · (v_f+1e-6)^-1/2``; 39 inputs). The decays are fixed here
  (learned_optimization also meta-learns offsets of them).

How it is computed (:meth:`LearnedOptimizerFamily.update_tensors`, the families' multi-tensor
form, docs/design.md §Learned optimizers): every tensor of K configs at once, side by side
and features first, the MLP a batched matrix product over ``[K, features, P]``; per-row and
per-column features stay at their own shapes and enter through their row and column sums.
State per parameter: ``m`` ``[count, *shape]``, small_fc_lopt's ``v`` ``[1, *shape]`` and
``r``, ``c`` ``[3, *lead, d₀]``, ``[3, *lead, d₁]`` (``[3, *shape]`` each for < 2 axes).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import Tensor

from taskset_lab.errors import ConfigError, DataError
from taskset_lab.optim.base import FamilyOptimizer, OptimizerFamily, compute_dtype
from taskset_lab.optim.registry import register_optimizer_family
from taskset_lab.registry import UnknownNameError

#: the training-step embedding's timescales (learned_optimization's ``_tanh_embedding``)
TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
#: where shipped checkpoints live
SHIPPED_DIR = Path(__file__).parent / "data" / "learned"
#: the checkpoint format tag
FORMAT = "taskset_lab.learned_optimizer"


def step_embedding(t: Tensor, dtype: torch.dtype) -> Tensor:
    """``tanh(t/τ - 1)`` for the 11 timescales, ``t`` the 0-based update count: ``[11]``."""
    tau = torch.tensor(TIMESCALES, dtype=dtype, device=t.device)
    return torch.tanh(t.to(dtype).reshape(()) / tau - 1.0)


def truncated_normal(shape: tuple[int, ...], std: float, gen: torch.Generator) -> Tensor:
    """Haiku's ``TruncatedNormal(stddev)``: a normal truncated at ±2, rescaled to ``std``."""
    out = torch.empty(shape, dtype=torch.float64)
    torch.nn.init.trunc_normal_(out, 0.0, 1.0, -2.0, 2.0, generator=gen)
    return out * (std / 0.87962566103423978)


@dataclass(frozen=True)
class Segment:
    """One parameter tensor in the flat ``[K, ·, P]`` layout the update works in: its columns
    ``start:stop`` and one config's shape. A tensor with ≥ 2 axes is *factored* (rows ``d0``,
    the second-to-last axis; columns ``d1``, the last; ``lead`` the product of the others)."""

    start: int
    stop: int
    shape: tuple[int, ...]

    @property
    def factored(self) -> bool:
        return len(self.shape) >= 2

    @property
    def lead(self) -> int:
        return math.prod(self.shape[:-2])


#: what a tensor adds to the first layer besides the per-element features: ``None``; a dense
#: ``[K, n_extra, n]`` block with its feature ids; or row and column blocks of a factored
#: tensor (``[K, n_r, lead, d0]``, ``[K, n_c, lead, d1]``), each with its feature ids, which
#: broadcast over the columns / rows (per-row and per-column features are never expanded to
#: the tensor's shape).
Extra = Any


class LearnedOptimizerFamily(OptimizerFamily):
    """A per-parameter MLP learned optimizer (see the module docstring for the math).
    Hyperparameters: ``lr`` (the step multiplier) and ``theta`` (the MLP's flat weights).

    The update is written once, for all tensors of K configs at a time
    (:meth:`update_tensors`): the per-element work runs over the tensors laid side by side
    (``[K, ·, P]``), features first, so the MLP is a batched matrix product over
    ``[K, features, P]``; the population engine calls it with K members, the ``torch.optim``
    front end with K = 1 per param group, and the one-tensor :meth:`update` through it too."""

    hparam_names = ("lr", "theta")
    num_features: int = 0
    hidden_size: int = 32
    hidden_layers: int = 2
    exp_mult: float = 1e-3
    default_lr: float = 1e-3
    #: per-element accumulators: name -> how many (stored ``[count, *p.shape]``)
    elementwise_state: Mapping[str, int] = {}

    # -- the weights ---------------------------------------------------------------------------
    @property
    def layer_sizes(self) -> list[tuple[int, int]]:
        sizes = [self.num_features + len(TIMESCALES)] + [self.hidden_size] * self.hidden_layers + [2]
        return list(zip(sizes[:-1], sizes[1:]))

    @property
    def num_weights(self) -> int:
        return sum(i * o + o for i, o in self.layer_sizes)

    def init_theta(self, seed: int) -> Tensor:
        """Fresh weights (float64 ``[num_weights]``), Haiku's initialization, from ``seed``."""
        gen = torch.Generator().manual_seed(int(seed))
        parts = []
        for fan_in, fan_out in self.layer_sizes:
            parts += [truncated_normal((fan_in, fan_out), 1.0 / math.sqrt(fan_in), gen).reshape(-1),
                      torch.zeros(fan_out, dtype=torch.float64)]
        return torch.cat(parts)

    #: the feature a hand-designed start follows (:meth:`designed_theta`)
    designed_feature: int = 0

    def designed_theta(self) -> Tensor:
        """Weights whose MLP outputs ``d = x_f`` (the normalized feature
        :attr:`designed_feature`) and ``s = 0``: a hand-designed optimizer to start meta-training
        from (``small_fc_lopt``: Adam's direction m/sqrt(v), normalized per tensor;
        ``mlp_lopt``: momentum β = 0.9, normalized per tensor). Through the ReLUs:
        ``d = relu(x_f) - relu(-x_f)``."""
        parts = []
        for i, (fan_in, fan_out) in enumerate(self.layer_sizes):
            w = torch.zeros(fan_in, fan_out, dtype=torch.float64)
            if i == 0:
                w[self.designed_feature, 0], w[self.designed_feature, 1] = 1.0, -1.0
            elif i < len(self.layer_sizes) - 1:
                w[0, 0], w[1, 1] = 1.0, 1.0
            else:
                w[0, 0], w[1, 0] = 1.0, -1.0
            parts += [w.reshape(-1), torch.zeros(fan_out, dtype=torch.float64)]
        return torch.cat(parts)

    def sample(self, seed: int) -> dict[str, Any]:
        """A freshly initialized optimizer (``seed`` draws the weights) at the default ``lr``."""
        return {"lr": self.default_lr, "theta": self.init_theta(seed).tolist()}

    def defaults(self) -> dict[str, Any]:
        return self.sample(0)

    def validate(self, hparams: Mapping[str, Any]) -> dict[str, Any]:
        missing = [k for k in self.hparam_names if k not in hparams]
        unknown = [k for k in hparams if k not in self.hparam_names]
        if missing or unknown:
            raise ValueError(f"{self.name}: missing hparams {missing}, unknown hparams {unknown}")
        theta = hparams["theta"]
        theta = theta.detach().reshape(-1).tolist() if isinstance(theta, Tensor) else [float(x) for x in theta]
        if len(theta) != self.num_weights:
            raise ValueError(f"{self.name}: theta has {len(theta)} weights, the architecture has {self.num_weights}")
        return {"lr": float(hparams["lr"]), "theta": theta}

    def init_state(self, p: Tensor) -> dict[str, Tensor]:
        dtype = compute_dtype(p.dtype)
        return {name: p.new_zeros((n,) + tuple(p.shape), dtype=dtype) for name, n in self.elementwise_state.items()}

    @property
    def state_elements(self) -> int:
        # accumulators, the features and the hidden activations the update holds per element
        return sum(self.elementwise_state.values()) + (self.num_features + 2 * self.hidden_size) // 2

    # -- the update ----------------------------------------------------------------------------
    def features(self, p: Tensor, g: Tensor, flat: Mapping[str, Tensor], segments: list[Segment],
                 states: list[Mapping[str, Tensor]]
                 ) -> tuple[Tensor, list[int], list[Extra], dict[str, Tensor], list[dict[str, Tensor]]]:
        """From ``p``, ``g`` ``[K, P]`` and the flat per-element accumulators ``[K, count, P]``:
        the per-element features ``[K, F, P]`` with their feature ids (rows of the first layer),
        each tensor's extra features, the new flat accumulators and each tensor's other state."""
        raise NotImplementedError

    def update_tensors(self, ps: list[Tensor], gs: list[Tensor], states: list[Mapping[str, Tensor]],
                       steps: list[Tensor], hp: Mapping[str, Tensor], alive: Tensor | None = None
                       ) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
        """K configs' update of every tensor at once: ``ps``, ``gs`` ``[K, *shape]``, each
        tensor's state (leading ``K``) and 1-based update number (0-dim), ``hp["lr"]`` ``[K]``,
        ``hp["theta"]`` ``[K, num_weights]``; configs where ``alive`` (``[K]`` bool) is False
        keep their parameters and state. Returns the new tensors and states."""
        k = ps[0].shape[0]
        segments, start = [], 0
        for p in ps:
            n = math.prod(p.shape[1:])
            segments.append(Segment(start, start + n, tuple(p.shape[1:])))
            start += n
        g = _join([x.reshape(k, -1) for x in gs])
        p = _join([x.reshape(k, -1) for x in ps])
        flat = {name: _join([st[name].reshape(k, count, -1) for st in states])
                for name, count in self.elementwise_state.items()}
        full, ids, extras, new_flat, own = self.features(p, g, flat, segments, states)
        out = self._mlp(full, ids, extras, segments, steps, hp["theta"].reshape(k, -1))
        delta = out[:, 0] * torch.exp(self.exp_mult * out[:, 1]) * hp["lr"].reshape(k, 1)
        if alive is not None:
            delta = torch.where(alive.reshape(k, 1), delta, 0.0)
            new_flat = {name: torch.where(alive.reshape(k, 1, 1), v, flat[name]) for name, v in new_flat.items()}
            own = [{key: torch.where(alive.reshape((k,) + (1,) * (v.dim() - 1)), v, st[key]) for key, v in mine.items()}
                   for mine, st in zip(own, states)]
        new_p = p - delta
        new_ps = [new_p[:, s.start:s.stop].reshape((k,) + s.shape) for s in segments]
        new_states = [{**{name: v[:, :, s.start:s.stop].reshape((k, v.shape[1]) + s.shape)
                          for name, v in new_flat.items()}, **own[i]} for i, s in enumerate(segments)]
        return new_ps, new_states

    def _mlp(self, full: Tensor, ids: list[int], extras: list[Extra], segments: list[Segment],
             steps: list[Tensor], theta: Tensor) -> Tensor:
        """The MLP's two outputs ``[K, 2, P]``. Per tensor, each feature's normalization
        ``rsqrt(1e-5 + mean x²)`` is folded into the first layer's weights, and the step
        embedding (the same for every element) into its bias."""
        k = full.shape[0]
        fan_in, hidden = self.layer_sizes[0]
        w0 = theta[:, :fan_in * hidden].reshape(k, fan_in, hidden)
        b0 = theta[:, fan_in * hidden:fan_in * hidden + hidden]
        w_emb = w0[:, self.num_features:]
        biases: list[tuple[Tensor, Tensor]] = []  # (step, its bias): tensors that share a step share it
        hs = []
        for s, extra, step in zip(segments, extras, steps):
            bias = next((b for t, b in biases if t is step), None)
            if bias is None:
                bias = (step_embedding(step - 1, full.dtype) @ w_emb + b0).unsqueeze(-1)  # [K, H, 1]
                biases.append((step, bias))
            x, rows = full[:, :, s.start:s.stop], ids
            if extra is not None and extra[0] == "dense":
                x, rows = torch.cat([x, extra[1]], 1), ids + extra[2]
            h = torch.baddbmm(bias, _scaled(w0[:, rows], x, (-1,)), x)
            if extra is not None and extra[0] == "factored":
                _, r, r_ids, c, c_ids = extra
                lead, (d0, d1) = s.lead, s.shape[-2:]
                hr = torch.bmm(_scaled(w0[:, r_ids], r, (-2, -1)), r.reshape(k, len(r_ids), -1))
                hc = torch.bmm(_scaled(w0[:, c_ids], c, (-2, -1)), c.reshape(k, len(c_ids), -1))
                h = (h.reshape(k, hidden, lead, d0, d1) + hr.reshape(k, hidden, lead, d0, 1)
                     + hc.reshape(k, hidden, lead, 1, d1)).reshape(k, hidden, -1)
            hs.append(h)
        h = _join(hs)
        offset = fan_in * hidden + hidden
        for fan_in, fan_out in self.layer_sizes[1:]:
            w = theta[:, offset:offset + fan_in * fan_out].reshape(k, fan_in, fan_out)
            b = theta[:, offset + fan_in * fan_out:offset + fan_in * fan_out + fan_out]
            offset += fan_in * fan_out + fan_out
            h = torch.baddbmm(b.unsqueeze(-1), w.transpose(1, 2), torch.relu(h))
        return h

    def update(self, p: Tensor, g: Tensor, state: dict[str, Tensor], step: Tensor,
               hp: Mapping[str, Tensor], total_steps: int) -> tuple[Tensor, dict[str, Tensor]]:
        """One config's update of one tensor: :meth:`update_tensors` with K = 1; ``step`` is
        the 1-based update number (its embedding uses ``step - 1``)."""
        one = lambda x: x.unsqueeze(0)  # noqa: E731
        new_ps, new_states = self.update_tensors([one(p)], [one(g)], [{k: one(v) for k, v in state.items()}],
                                                 [step], {k: one(v) for k, v in hp.items()})
        return new_ps[0][0], {k: v[0] for k, v in new_states[0].items()}


def _scaled(w: Tensor, x: Tensor, axes: tuple[int, ...]) -> Tensor:
    """First-layer weights ``w [K, F, H]`` times each feature's normalization
    ``rsqrt(1e-5 + mean x²)`` (``x [K, F, ...]``, the mean over ``axes``), transposed to
    ``[K, H, F]`` for ``bmm`` against ``x``."""
    count = math.prod([x.shape[a] for a in axes])
    mean_square = torch.linalg.vector_norm(x, dim=axes).square() / count  # no x² temporary
    return (w * torch.rsqrt(1e-5 + mean_square).unsqueeze(-1)).transpose(1, 2)


def _join(xs: list[Tensor]) -> Tensor:
    """``xs`` side by side along the last axis (one tensor as it is)."""
    return xs[0] if len(xs) == 1 else torch.cat(xs, -1)


def _decays(values: tuple[float, ...], like: Tensor) -> Tensor:
    """``values`` as ``[1, n, 1]`` in ``like``'s dtype and device."""
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(1, -1, 1)


class MLPLOptFamily(LearnedOptimizerFamily):
    """learned_optimization's ``MLPLOpt`` (hidden 32×2): features ``g``, ``p``, six momenta
    (state ``m``: ``[6, *p.shape]``, one per decay)."""

    name = "mlp_lopt"
    decays = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
    state_names = ("m",)
    elementwise_state = {"m": 6}
    num_features = 2 + 6
    hidden_size, hidden_layers = 32, 2
    designed_feature = 4  # the β = 0.9 momentum

    def features(self, p, g, flat, segments, states):
        beta = _decays(self.decays, g)
        m = beta * flat["m"] + (1 - beta) * g.unsqueeze(1)
        full = torch.cat([g.unsqueeze(1), p.unsqueeze(1), m], 1)
        return full, list(range(self.num_features)), [None] * len(segments), {"m": m}, [{} for _ in segments]


class SmallFcLOptFamily(LearnedOptimizerFamily):
    """learned_optimization's ``AdafacMLPLOpt`` at hidden 4×2 (``small_fc_lopt``), decays
    fixed. State: momenta ``m`` ``[3, *shape]``, second moment ``v`` ``[1, *shape]``, row and
    column accumulators ``r`` ``[3, *lead, d0]`` and ``c`` ``[3, *lead, d1]`` (a tensor with
    < 2 axes: ``r`` ``[3, *shape]`` the unfactored accumulator, ``c`` the same tensor)."""

    name = "small_fc_lopt"
    mom_decays = (0.9, 0.99, 0.999)
    rms_decays = (0.999,)
    fac_decays = (0.9, 0.99, 0.999)
    state_names = ("m", "v", "r", "c")
    elementwise_state = {"m": 3, "v": 1}
    num_features = 2 + 3 + 1 + 3 + 1 + 3 + 5 * 3
    hidden_size, hidden_layers = 4, 2
    designed_feature = 6  # m/sqrt(v + 1e-6) with the β = 0.9 momentum: Adam's direction
    # feature ids (rows of the first layer): g 0, p 1, m 2-4, v 5, m·rsqrt(v) 6-8, rsqrt(v) 9,
    # factored g 10-12, r 13-15, c 16-18, rsqrt(r) 19-21, rsqrt(c) 22-24, factored m 25-27
    per_element_ids = list(range(13)) + [25, 26, 27]
    row_ids = [13, 14, 15, 19, 20, 21]
    col_ids = [16, 17, 18, 22, 23, 24]
    unfactored_ids = list(range(13, 25))

    def init_state(self, p):
        state = super().init_state(p)
        shape, dtype = tuple(p.shape), compute_dtype(p.dtype)
        if len(shape) >= 2:
            state["r"] = p.new_zeros((3,) + shape[:-1], dtype=dtype)
            state["c"] = p.new_zeros((3,) + shape[:-2] + shape[-1:], dtype=dtype)
        else:
            state["r"] = state["c"] = p.new_zeros((3,) + shape, dtype=dtype)
        return state

    def features(self, p, g, flat, segments, states):
        k = p.shape[0]
        mom, rms, beta = (_decays(d, g) for d in (self.mom_decays, self.rms_decays, self.fac_decays))
        m = mom * flat["m"] + (1 - mom) * g.unsqueeze(1)
        g2 = g * g
        v = rms * flat["v"] + (1 - rms) * g2.unsqueeze(1)
        rsqrt_v = torch.rsqrt(v + 1e-6)
        g2 = (g2 + 1e-30).unsqueeze(1)
        # what g and m are multiplied by: rsqrt(r / mean r)·rsqrt(c) (factored), rsqrt(r) and
        # (r + 1e-6)^-1/2 (unfactored)
        g_factor, m_factor, extras, own = [], [], [], []
        for s, st in zip(segments, states):
            g2s = g2[:, :, s.start:s.stop]
            if s.factored:
                lead, (d0, d1) = s.lead, s.shape[-2:]
                g2s = g2s.reshape(k, 1, lead, d0, d1)
                b = beta.unsqueeze(-1)
                row = b * st["r"].reshape(k, 3, lead, d0) + (1 - b) * g2s.mean(-1)
                col = b * st["c"].reshape(k, 3, lead, d1) + (1 - b) * g2s.mean(-2)
                rf = torch.rsqrt(row / (row.mean(-1, keepdim=True) + 1e-9))
                factor = (rf.unsqueeze(-1) * torch.rsqrt(col).unsqueeze(-2)).reshape(k, 3, -1)
                g_factor.append(factor)
                m_factor.append(factor)
                extras.append(("factored", torch.cat([row, torch.rsqrt(row + 1e-8)], 1), self.row_ids,
                               torch.cat([col, torch.rsqrt(col + 1e-8)], 1), self.col_ids))
                own.append({"r": row.reshape((k, 3) + s.shape[:-1]), "c": col.reshape((k, 3) + s.shape[:-2] + (d1,))})
            else:  # unfactored, as RMSProp
                row = beta * st["r"].reshape(k, 3, -1) + (1 - beta) * g2s
                g_factor.append(torch.rsqrt(row))
                m_factor.append((row + 1e-6) ** -0.5)
                rq = torch.rsqrt(row + 1e-8)
                extras.append(("dense", torch.cat([row, row, rq, rq], 1), self.unfactored_ids))
                r = row.reshape((k, 3) + s.shape)
                own.append({"r": r, "c": r})
        full = torch.cat([g.unsqueeze(1), p.unsqueeze(1), m, v, m * rsqrt_v, rsqrt_v,
                          g.unsqueeze(1) * _join(g_factor), m * _join(m_factor)], 1)
        return full, self.per_element_ids, extras, {"m": m, "v": v}, own


MLP_LOPT = register_optimizer_family(MLPLOptFamily())
SMALL_FC_LOPT = register_optimizer_family(SmallFcLOptFamily())
#: the learned-optimizer architectures by name
ARCHITECTURES: dict[str, LearnedOptimizerFamily] = {f.name: f for f in (MLP_LOPT, SMALL_FC_LOPT)}


# -- checkpoints -------------------------------------------------------------------------------
@dataclass
class LearnedCheckpoint:
    """A learned optimizer's weights: ``architecture`` (a key of :data:`ARCHITECTURES`),
    ``theta`` (float32 ``[num_weights]``), ``lr`` and free-form ``meta`` (how it was made)."""

    architecture: str
    theta: Tensor
    lr: float
    meta: dict[str, Any]

    @property
    def family(self) -> LearnedOptimizerFamily:
        return ARCHITECTURES[self.architecture]

    def hparams(self) -> dict[str, Any]:
        return {"lr": self.lr, "theta": self.theta.to(torch.float64).tolist()}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": 1, "architecture": self.architecture,
                "theta": self.theta.detach().to(torch.float32).cpu().clone(), "lr": float(self.lr),
                "meta": dict(self.meta)}


def learned_optimizer_names() -> list[str]:
    """The shipped learned optimizers (``LearnedOptimizer(..., checkpoint=<name>)``)."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.pt"))


def save_checkpoint(ckpt: LearnedCheckpoint, path: str | os.PathLike) -> Path:
    """Write ``ckpt`` atomically to ``path``."""
    from taskset_lab.files import atomic_path

    with atomic_path(path) as tmp:
        torch.save(ckpt.to_dict(), tmp)
    return Path(path)


def resolve_checkpoint_path(checkpoint: str | os.PathLike) -> Path:
    """A shipped name or a path; an unknown name lists the shipped ones."""
    text = str(checkpoint)
    if text in learned_optimizer_names():
        return SHIPPED_DIR / f"{text}.pt"
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if os.sep in text or text.endswith(".pt"):
        raise DataError(f"learned optimizer checkpoint {text}: no such file")
    raise UnknownNameError("learned optimizer", text, learned_optimizer_names())


def load_checkpoint(checkpoint: str | os.PathLike | LearnedCheckpoint | Mapping[str, Any],
                    architecture: str | None = None) -> LearnedCheckpoint:
    """Read a checkpoint (a shipped name, a path, a loaded dict or a :class:`LearnedCheckpoint`).

    Raises :class:`DataError` for a file that is not a learned-optimizer checkpoint (corrupt,
    truncated, another format) and :class:`ConfigError` when ``architecture`` is given and the
    checkpoint holds another one."""
    where = "checkpoint"
    if isinstance(checkpoint, LearnedCheckpoint):
        ckpt = checkpoint
    else:
        if isinstance(checkpoint, Mapping):
            raw: Any = checkpoint
        else:
            path = resolve_checkpoint_path(checkpoint)
            where = f"checkpoint {path}"
            try:
                raw = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
                raise DataError(f"learned optimizer {where}: unreadable ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0] if str(exc) else 'corrupt file'})") from None
        if not isinstance(raw, Mapping) or raw.get("format") != FORMAT:
            raise DataError(f"learned optimizer {where}: not a taskset_lab learned-optimizer checkpoint")
        arch = raw.get("architecture")
        if arch not in ARCHITECTURES:
            raise DataError(f"learned optimizer {where}: unknown architecture {arch!r}; known: "
                            f"{', '.join(ARCHITECTURES)}")
        theta = raw.get("theta")
        if not isinstance(theta, Tensor) or theta.dim() != 1 or theta.numel() != ARCHITECTURES[arch].num_weights:
            raise DataError(f"learned optimizer {where}: weights do not fit architecture {arch} "
                            f"({ARCHITECTURES[arch].num_weights} weights)")
        if not bool(torch.isfinite(theta).all()):
            raise DataError(f"learned optimizer {where}: non-finite weights")
        ckpt = LearnedCheckpoint(arch, theta.detach().to(torch.float32), float(raw.get("lr", 1e-3)),
                                 dict(raw.get("meta") or {}))
    if architecture is not None and ckpt.architecture != architecture:
        raise ConfigError("architecture", f"the {where} holds a {ckpt.architecture} optimizer, not {architecture}")
    return ckpt


class LearnedOptimizer(FamilyOptimizer):
    """A meta-trained per-parameter MLP optimizer as a ``torch.optim.Optimizer``.

    ``LearnedOptimizer(model.parameters(), checkpoint="<name>")`` with a shipped name
    (:func:`learned_optimizer_names`) or a checkpoint file. For every parameter tensor ``p``
    with gradient ``g`` at update ``t`` (1-based):

        state  ← the architecture's accumulators (MLP LOpt: m_i ← β_i m_i + (1-β_i) g,
                 β ∈ {0.1, 0.5, 0.9, 0.99, 0.999, 0.9999})
        x      = normalize_tensor([g, p, m_1..m_6]) ⊕ tanh((t-1)/τ - 1), τ ∈ {1, 3, …, 1e5}
        (d, s) = MLP_θ(x)                      (per scalar; ReLU hidden layers)
        p      ← p - d · exp(1e-3 · s) · lr

    where ``normalize_tensor(x) = x / sqrt(1e-5 + mean over the tensor of x²)`` per feature
    (``small_fc_lopt``'s features: see :mod:`taskset_lab.optim.learned`). ``lr`` (default the
    checkpoint's, learned_optimization's ``step_mult``) is in ``param_groups`` and can be set
    per group; the weights ``theta`` are in ``param_groups`` too (so ``state_dict`` holds
    them). Per-parameter state: ``step`` (float32) and the accumulators. Works on CPU and CUDA
    in any float dtype (bf16/fp16 parameters are updated in float32). The same update runs in
    the population engine as the optimizer family of the same name, weights per member.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], checkpoint: Any,
                 lr: float | None = None, architecture: str | None = None):
        ckpt = load_checkpoint(checkpoint, architecture)
        self.checkpoint = ckpt
        hp = ckpt.hparams()
        if lr is not None:
            hp["lr"] = float(lr)
        self._theta_cache: dict[tuple, tuple[int, Tensor]] = {}
        params = list(params)
        if params and isinstance(params[0], dict):  # a group's own lr is its step multiplier
            params = [dict(g, base_lr=g["lr"]) if "lr" in g else g for g in params]
        super().__init__(params, ckpt.family, hp, total_steps=1)

    def _hparams(self, group: Mapping[str, Any], dtype: torch.dtype, device: torch.device) -> dict[str, Tensor]:
        # the weight list becomes a tensor once per (dtype, device), not once per parameter and step
        key = (id(group["theta"]), dtype, str(device))
        hit = self._theta_cache.get(key)
        if hit is None or hit[0] is not group["theta"]:
            self._theta_cache[key] = hit = (group["theta"],
                                            torch.as_tensor(group["theta"], dtype=dtype, device=device))
        return {"lr": torch.as_tensor(group["base_lr"], dtype=dtype, device=device), "theta": hit[1]}


__all__ = ["ARCHITECTURES", "LearnedCheckpoint", "LearnedOptimizer", "LearnedOptimizerFamily", "MLP_LOPT",
           "SMALL_FC_LOPT", "learned_optimizer_names", "load_checkpoint", "save_checkpoint"]
