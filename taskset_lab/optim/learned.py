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
  ``c ← β_f c + (1-β_f) mean_{d₀}(g²+1e-30)``, the factored gradient
  ``g · rsqrt(r / mean(r)) · rsqrt(c)`` and the features ``r, c, rsqrt(r+1e-8), rsqrt(c+1e-8),
  m · rsqrt(r/mean(r)+1e-9) · rsqrt(c)``; a tensor with < 2 axes uses the unfactored
  ``v_f ← β_f v_f + (1-β_f)(g²+1e-30)`` in their place (39 inputs). The decays are fixed here
  (learned_optimization also meta-learns offsets of them).

Where this differs from learned_optimization: the row/column accumulators are stored
broadcast to the tensor's shape (the family's state has the parameter's shape plus a decay
axis, which is what the population engine stacks), same values; each accumulator is its own state tensor shaped
like the parameter.
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


def second_moment_normalize(x: Tensor, eps: float = 1e-5) -> Tensor:
    """``x / sqrt(eps + mean(x²))`` with the mean over every axis but the last (the features)."""
    axes = tuple(range(x.dim() - 1))
    return x * torch.rsqrt(eps + (x * x).mean(dim=axes, keepdim=True))


def truncated_normal(shape: tuple[int, ...], std: float, gen: torch.Generator) -> Tensor:
    """Haiku's ``TruncatedNormal(stddev)``: a normal truncated at ±2, rescaled to ``std``."""
    out = torch.empty(shape, dtype=torch.float64)
    torch.nn.init.trunc_normal_(out, 0.0, 1.0, -2.0, 2.0, generator=gen)
    return out * (std / 0.87962566103423978)


class LearnedOptimizerFamily(OptimizerFamily):
    """A per-parameter MLP learned optimizer (see the module docstring for the math).
    Hyperparameters: ``lr`` (the step multiplier) and ``theta`` (the MLP's flat weights)."""

    hparam_names = ("lr", "theta")
    num_features: int = 0
    hidden_size: int = 32
    hidden_layers: int = 2
    exp_mult: float = 1e-3
    default_lr: float = 1e-3

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

    def mlp(self, x: Tensor, theta: Tensor) -> Tensor:
        """The MLP on ``x [..., F]`` with the flat weights ``theta``: ``[..., 2]``."""
        offset, n = 0, len(self.layer_sizes)
        for i, (fan_in, fan_out) in enumerate(self.layer_sizes):
            w = theta[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
            offset += fan_in * fan_out
            b = theta[offset:offset + fan_out]
            offset += fan_out
            x = x @ w + b
            if i < n - 1:
                x = torch.relu(x)
        return x

    def normalized_mlp(self, feats: Tensor, emb: Tensor, theta: Tensor) -> Tensor:
        """``mlp([normalize(feats), emb])`` (``feats [..., F]``, ``emb [11]``, the same for every
        element) computed without building the normalized input: the normalization's per-feature
        scale is folded into the first layer's weights and the embedding's contribution, constant
        over the tensor, is added to its bias (the same sums, one pass less over the features)."""
        nf = feats.shape[-1]
        fan_in, fan_out = self.layer_sizes[0]
        w0 = theta[:fan_in * fan_out].reshape(fan_in, fan_out)
        b0 = theta[fan_in * fan_out:fan_in * fan_out + fan_out]
        axes = tuple(range(feats.dim() - 1))
        scale = torch.rsqrt(1e-5 + (feats * feats).mean(dim=axes))  # [F]
        x = feats @ (w0[:nf] * scale.unsqueeze(-1)) + (emb @ w0[nf:] + b0)
        offset = fan_in * fan_out + fan_out
        for fan_in, fan_out in self.layer_sizes[1:]:
            x = torch.relu(x)
            w = theta[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
            offset += fan_in * fan_out
            x = x @ w + theta[offset:offset + fan_out]
            offset += fan_out
        return x

    # -- the update ----------------------------------------------------------------------------
    def features(self, p: Tensor, g: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """The normalizable inputs ``[*p.shape, num_features]`` and the new state."""
        raise NotImplementedError

    def update(self, p: Tensor, g: Tensor, state: dict[str, Tensor], step: Tensor,
               hp: Mapping[str, Tensor], total_steps: int) -> tuple[Tensor, dict[str, Tensor]]:
        """``p - d·exp(exp_mult·s)·lr`` with ``(d, s)`` the MLP's outputs (module docstring);
        ``step`` is the 1-based update number (its embedding uses ``step - 1``)."""
        scalar = p.dim() == 0
        if scalar:
            p, g = p.reshape(1), g.reshape(1)
            state = {k: v.reshape(1) for k, v in state.items()}
        feats, new_state = self.features(p, g, state)
        out = self.normalized_mlp(feats, step_embedding(step - 1, feats.dtype), hp["theta"].to(feats.dtype))
        delta = out[..., 0] * torch.exp(self.exp_mult * out[..., 1]) * hp["lr"]
        new_p = p - delta
        if scalar:
            new_p = new_p.reshape(())
            new_state = {k: v.reshape(()) for k, v in new_state.items()}
        return new_p, new_state


def _stacked(state: Mapping[str, Tensor], prefix: str, n: int) -> Tensor:
    """The accumulators ``prefix0 … prefix{n-1}`` (each shaped like the parameter) as ``[..., n]``."""
    return torch.stack([state[f"{prefix}{i}"] for i in range(n)], dim=-1)


def _unstacked(x: Tensor, prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}{i}": x[..., i] for i in range(x.shape[-1])}


def _rolling(m: Tensor, x: Tensor, decays: Tensor) -> Tensor:
    """``β·m + (1-β)·x`` for each decay (``m [..., D]``, ``x [...]``)."""
    return decays * m + (1.0 - decays) * x.unsqueeze(-1)


class MLPLOptFamily(LearnedOptimizerFamily):
    """learned_optimization's ``MLPLOpt`` (hidden 32×2): features ``g``, ``p``, six momenta
    (state ``m0 … m5``, one per decay, each shaped like the parameter)."""

    name = "mlp_lopt"
    decays = (0.1, 0.5, 0.9, 0.99, 0.999, 0.9999)
    state_names = tuple(f"m{i}" for i in range(6))
    num_features = 2 + 6
    hidden_size, hidden_layers = 32, 2
    designed_feature = 4  # the β = 0.9 momentum

    def features(self, p, g, state):
        m = _rolling(_stacked(state, "m", 6), g, torch.tensor(self.decays, dtype=g.dtype, device=g.device))
        return torch.cat([g.unsqueeze(-1), p.unsqueeze(-1), m], dim=-1), _unstacked(m, "m")


class SmallFcLOptFamily(LearnedOptimizerFamily):
    """learned_optimization's ``AdafacMLPLOpt`` at hidden 4×2 (``small_fc_lopt``), decays
    fixed. State (each shaped like the parameter): momenta ``m0 … m2``, second moment ``v0``,
    row and column accumulators ``r0 … r2``, ``c0 … c2`` (stored broadcast to the parameter's
    shape; for tensors with < 2 axes ``r`` holds the unfactored accumulator and ``c`` = ``r``)."""

    name = "small_fc_lopt"
    mom_decays = (0.9, 0.99, 0.999)
    rms_decays = (0.999,)
    fac_decays = (0.9, 0.99, 0.999)
    state_names = ("m0", "m1", "m2", "v0", "r0", "r1", "r2", "c0", "c1", "c2")
    num_features = 2 + 3 + 1 + 3 + 1 + 3 + 5 * 3
    hidden_size, hidden_layers = 4, 2
    designed_feature = 6  # m/sqrt(v + 1e-6) with the β = 0.9 momentum: Adam's direction

    def features(self, p, g, state):
        t = lambda xs: torch.tensor(xs, dtype=g.dtype, device=g.device)  # noqa: E731
        m = _rolling(_stacked(state, "m", 3), g, t(self.mom_decays))
        v = _rolling(_stacked(state, "v", 1), g * g, t(self.rms_decays))
        rsqrt = torch.rsqrt(v + 1e-6)
        g2 = (g * g + 1e-30).unsqueeze(-1)
        beta = t(self.fac_decays)
        row0, col0 = _stacked(state, "r", 3), _stacked(state, "c", 3)
        if p.dim() >= 2:  # factored over the last two axes: d0 rows, d1 columns
            row = beta * row0 + (1 - beta) * g2.mean(dim=-2, keepdim=True)
            col = beta * col0 + (1 - beta) * g2.mean(dim=-3, keepdim=True)
            row_factor = torch.rsqrt(row / (row.mean(dim=-3, keepdim=True) + 1e-9))
            col_factor = torch.rsqrt(col)
            fac_g = g.unsqueeze(-1) * row_factor * col_factor
            extra = [row, col, torch.rsqrt(row + 1e-8), torch.rsqrt(col + 1e-8), m * row_factor * col_factor]
        else:  # unfactored, as RMSProp
            row = col = beta * row0 + (1 - beta) * g2
            fac_g = g.unsqueeze(-1) * torch.rsqrt(row)
            extra = [row, row, torch.rsqrt(row + 1e-8), torch.rsqrt(row + 1e-8), m * (row + 1e-6) ** -0.5]
        feats = torch.cat([g.unsqueeze(-1), p.unsqueeze(-1), m, v, m * rsqrt, rsqrt, fac_g] + extra, dim=-1)
        return feats, {**_unstacked(m, "m"), **_unstacked(v, "v"), **_unstacked(row, "r"), **_unstacked(col, "c")}


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
