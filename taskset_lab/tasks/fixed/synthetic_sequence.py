"""TaskSet's 18 synthetic sequence tasks, ``Associative_*`` and ``Copy_*`` (no download).

As in TaskSet (``task_set/tasks/synthetic_sequence.py``, data from ``task_set/datasets.py``):
a one-hot token sequence (vocabulary ``tokens + 2``) runs through a Sonnet-1 recurrent core
(``LSTM``, ``GRU`` or ``VRNN`` = ``snt.VanillaRNN``) from a zero state, a linear readout maps
every hidden state to ``tokens + 2`` logits, and the loss is the softmax cross entropy
averaged over the positions where ``loss_mask`` is 1 (sum of masked losses / sum of mask).
No embedding: the input is the one-hot vector itself (here: the matching rows of the input
weight matrix are gathered, which is the same product).

* **Associative** (``Pairs P``, ``Tokens N``), length ``2P + 2``: ``k1 v1 … kP vP ? kq`` with
  distinct keys, values drawn with replacement, ``?`` = token ``N + 1``; the target is the
  empty token ``N`` everywhere except the last position, which holds ``vq``; only the last
  position is in the loss.
* **Copy** (``Length L``, ``Tokens N``), length ``2L + 1``: ``L`` uniform tokens, one separator
  (token ``N``), then ``L`` emit tokens (``N + 1``); the target is token 0 for the first
  ``L + 1`` positions (TaskSet's code uses ``zeros_like``, not an empty token) followed by
  the ``L`` input tokens; only those last ``L`` positions are in the loss.

Cores and initialisers follow Sonnet 1 with default arguments:

* LSTM: one ``[V + H, 4H]`` gate matrix and a ``[4H]`` bias, both truncated normal with
  std ``1/sqrt(V + H)``; gates ``i, j, f, o``; ``forget_bias = 1`` added in the forward pass.
* GRU: ``wz, wr, wh [V, H]``, ``uz, ur, uh [H, H]``, ``bz, br, bh [H]``, all Glorot uniform (TF1's
  ``get_variable`` default, which also covers the biases, with fan_in = fan_out = H);
  ``h' = (1 - z) h + z tanh(x wh + (r h) uh + bh)``.
* VRNN: ``tanh(x W_ih + b_ih + h W_hh + b_hh)``; weights truncated normal with std
  ``1/sqrt(fan_in)``, biases zero (``snt.Linear``'s defaults).
* Readout ``snt.Linear(V)``: ``[H, V]`` truncated normal std ``1/sqrt(H)``, zero bias.

TaskSet draws its data from unseeded numpy/TF streams; here every batch is a pure function of
``(task data seed, split, step)`` and the four splits are four streams of the same process.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from taskset_lab.tasks.base import SPLITS, Batch, Task, TaskData, _mix
from taskset_lab.tasks.registry import register_fixed_tasks

CORES = ("LSTM", "GRU", "VRNN")


@dataclass(frozen=True)
class SequenceSpec:
    """One TaskSet sequence task; ``length`` is the number of pairs (Associative) or the
    sequence length to copy (Copy)."""

    kind: str  # "Associative" or "Copy"
    core: str
    hidden: int
    batch_size: int
    length: int
    tokens: int

    @property
    def name(self) -> str:
        what = "Pairs" if self.kind == "Associative" else "Length"
        return f"{self.kind}_{self.core}{self.hidden}_BS{self.batch_size}_{what}{self.length}_Tokens{self.tokens}"

    @property
    def vocab(self) -> int:
        return self.tokens + 2

    @property
    def seq_len(self) -> int:
        return 2 * self.length + 2 if self.kind == "Associative" else 2 * self.length + 1


# TaskSet's two config lists, in its order: (core, hidden, batch size, pairs/length, tokens).
_ASSOCIATIVE = [
    ("LSTM", 128, 128, 5, 20), ("LSTM", 128, 128, 20, 50), ("LSTM", 256, 128, 40, 100),
    ("LSTM", 128, 128, 10, 50), ("GRU", 128, 128, 10, 50), ("VRNN", 128, 128, 10, 50),
    ("LSTM", 256, 128, 20, 50), ("GRU", 256, 128, 20, 50), ("VRNN", 256, 128, 20, 50),
]
_COPY = [
    ("LSTM", 128, 128, 5, 10), ("LSTM", 128, 128, 20, 20), ("LSTM", 128, 128, 50, 5),
    ("LSTM", 128, 128, 20, 10), ("GRU", 128, 128, 20, 10), ("VRNN", 128, 128, 20, 10),
    ("LSTM", 256, 128, 40, 50), ("GRU", 256, 128, 40, 50), ("VRNN", 256, 128, 40, 50),
]
SPECS: dict[str, SequenceSpec] = {
    s.name: s
    for s in [SequenceSpec("Associative", *c) for c in _ASSOCIATIVE] + [SequenceSpec("Copy", *c) for c in _COPY]
}


# ------------------------------------------------------------------ data


def associative_batch(batch_size: int, pairs: int, tokens: int, gen: torch.Generator,
                      device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs, targets, loss_mask)`` of TaskSet's associative-retrieval problem."""
    keys = torch.rand(batch_size, tokens, generator=gen, device=device).argsort(dim=1)[:, :pairs]
    values = torch.randint(0, tokens, (batch_size, pairs), generator=gen, device=device)
    query = torch.randint(0, pairs, (batch_size, 1), generator=gen, device=device)
    pairs_seq = torch.stack([keys, values], dim=2).reshape(batch_size, 2 * pairs)
    marker = torch.full((batch_size, 1), tokens + 1, dtype=torch.long, device=device)
    inputs = torch.cat([pairs_seq, marker, keys.gather(1, query)], dim=1)
    empty = torch.full((batch_size, 2 * pairs + 1), tokens, dtype=torch.long, device=device)
    targets = torch.cat([empty, values.gather(1, query)], dim=1)
    mask = torch.zeros(batch_size, 2 * pairs + 2, device=device)
    mask[:, -1] = 1.0
    return inputs, targets, mask


def copy_batch(batch_size: int, length: int, tokens: int, gen: torch.Generator,
               device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """``(inputs, targets, loss_mask)`` of TaskSet's copy problem (one separator)."""
    seq = torch.randint(0, tokens, (batch_size, length), generator=gen, device=device)
    sep = torch.full((batch_size, 1), tokens, dtype=torch.long, device=device)
    emit = torch.full((batch_size, length), tokens + 1, dtype=torch.long, device=device)
    inputs = torch.cat([seq, sep, emit], dim=1)
    targets = torch.cat([torch.zeros(batch_size, length + 1, dtype=torch.long, device=device), seq], dim=1)
    mask = torch.cat([torch.zeros(batch_size, length + 1, device=device),
                      torch.ones(batch_size, length, device=device)], dim=1)
    return inputs, targets, mask


class SequenceData(TaskData):
    """Batches generated on the fly on the device from a generator seeded by
    ``(seed, split, step)``: ``(input tokens [B, T], target tokens [B, T], loss mask [B, T])``."""

    def __init__(self, spec: SequenceSpec, seed: int, batch_size: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        self.spec = spec
        self.seed = int(seed)
        self.batch_size = int(batch_size or spec.batch_size)
        self._device = torch.device(device)
        self._dtype = dtype

    def batch(self, split: str, step: int) -> Batch:
        gen = torch.Generator(device=self._device)
        gen.manual_seed(_mix(self.seed, SPLITS.index(split), step))
        make = associative_batch if self.spec.kind == "Associative" else copy_batch
        inputs, targets, mask = make(self.batch_size, self.spec.length, self.spec.tokens, gen, self._device)
        return inputs, targets, mask.to(self._dtype)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "SequenceData":
        return SequenceData(self.spec, self.seed, self.batch_size, device, dtype or self._dtype)


# ------------------------------------------------------------------ model


def _truncated_normal(shape: tuple[int, ...], std: float) -> nn.Parameter:
    """TF's ``truncated_normal_initializer``: normal, redrawn beyond two standard deviations."""
    return nn.Parameter(nn.init.trunc_normal_(torch.empty(shape), 0.0, std, -2 * std, 2 * std))


def _glorot_uniform(shape: tuple[int, ...]) -> nn.Parameter:
    """TF1's default variable initializer; a 1-D shape has fan_in = fan_out = its length."""
    fan_in, fan_out = (shape[0], shape[0]) if len(shape) == 1 else (shape[0], shape[1])
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return nn.Parameter(nn.init.uniform_(torch.empty(shape), -limit, limit))


class SonnetLSTM(nn.Module):
    def __init__(self, vocab: int, hidden: int, forget_bias: float = 1.0):
        super().__init__()
        std = 1.0 / math.sqrt(vocab + hidden)
        self.hidden, self.vocab, self.forget_bias = hidden, vocab, forget_bias
        self.w_gates = _truncated_normal((vocab + hidden, 4 * hidden), std)
        self.b_gates = _truncated_normal((4 * hidden,), std)

    def forward(self, tokens: Tensor) -> Tensor:
        w_x, w_h = self.w_gates[: self.vocab], self.w_gates[self.vocab:]
        proj = w_x[tokens] + self.b_gates  # one-hot inputs @ w_x
        h = proj.new_zeros(proj.shape[0], self.hidden)
        c = h
        outs = []
        for x_t in proj.unbind(1):
            i, j, f, o = (x_t + h @ w_h).chunk(4, dim=-1)
            c = torch.sigmoid(f + self.forget_bias) * c + torch.sigmoid(i) * torch.tanh(j)
            h = torch.tanh(c) * torch.sigmoid(o)
            outs.append(h)
        return torch.stack(outs, dim=1)


class SonnetGRU(nn.Module):
    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        for gate in ("z", "r", "h"):
            self.register_parameter(f"w{gate}", _glorot_uniform((vocab, hidden)))
            self.register_parameter(f"u{gate}", _glorot_uniform((hidden, hidden)))
            self.register_parameter(f"b{gate}", _glorot_uniform((hidden,)))

    def forward(self, tokens: Tensor) -> Tensor:
        # z and r share one matmul per step (same products as Sonnet's separate ones)
        w_x = torch.cat([self.wz, self.wr, self.wh], dim=1)
        proj = w_x[tokens] + torch.cat([self.bz, self.br, self.bh])
        u_zr = torch.cat([self.uz, self.ur], dim=1)
        h = proj.new_zeros(proj.shape[0], self.hidden)
        outs = []
        for x_t in proj.unbind(1):
            x_zr, x_h = x_t.split([2 * self.hidden, self.hidden], dim=-1)
            z, r = torch.sigmoid(x_zr + h @ u_zr).chunk(2, dim=-1)
            candidate = torch.tanh(x_h + (r * h) @ self.uh)
            h = (1 - z) * h + z * candidate
            outs.append(h)
        return torch.stack(outs, dim=1)


class SonnetVanillaRNN(nn.Module):
    def __init__(self, vocab: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.w_ih = _truncated_normal((vocab, hidden), 1.0 / math.sqrt(vocab))
        self.b_ih = nn.Parameter(torch.zeros(hidden))
        self.w_hh = _truncated_normal((hidden, hidden), 1.0 / math.sqrt(hidden))
        self.b_hh = nn.Parameter(torch.zeros(hidden))

    def forward(self, tokens: Tensor) -> Tensor:
        proj = self.w_ih[tokens] + self.b_ih + self.b_hh
        h = proj.new_zeros(proj.shape[0], self.hidden)
        outs = []
        for x_t in proj.unbind(1):
            h = torch.tanh(x_t + h @ self.w_hh)
            outs.append(h)
        return torch.stack(outs, dim=1)


_CORE_CLASSES = {"LSTM": SonnetLSTM, "GRU": SonnetGRU, "VRNN": SonnetVanillaRNN}


class SequenceRNN(nn.Module):
    """One-hot tokens -> recurrent core -> linear readout: ``[B, T] -> logits [B, T, V]``."""

    def __init__(self, core: str, vocab: int, hidden: int):
        super().__init__()
        self.core = _CORE_CLASSES[core](vocab, hidden)
        self.w_out = _truncated_normal((hidden, vocab), 1.0 / math.sqrt(hidden))
        self.b_out = nn.Parameter(torch.zeros(vocab))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.core(tokens) @ self.w_out + self.b_out


def masked_cross_entropy(logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """``sum(mask * CE) / sum(mask)`` over every position of the batch."""
    logp = torch.log_softmax(logits, dim=-1)
    nll = -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    mask = mask.to(nll.dtype)
    return (nll * mask).sum() / mask.sum()


class SequenceTask(Task):
    """A TaskSet sequence task; ``batch_size`` other than TaskSet's is for cheap smoke tests."""

    def __init__(self, spec: SequenceSpec, data_seed: int | None = None, batch_size: int | None = None):
        batch_size = int(batch_size or spec.batch_size)
        config = {"family": spec.kind, "core": spec.core, "hidden": spec.hidden, "batch_size": batch_size,
                  "length": spec.length, "tokens": spec.tokens}
        seed = zlib.crc32(spec.name.encode()) if data_seed is None else int(data_seed)
        super().__init__(config, SequenceData(spec, seed, batch_size))
        self.spec = spec

    def make_module(self) -> nn.Module:
        return SequenceRNN(self.spec.core, self.spec.vocab, self.spec.hidden)

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return masked_cross_entropy(output, batch[1], batch[2])


def build_spec(spec: SequenceSpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> SequenceTask:
    """The task of ``spec`` (it generates its own data: the data arguments are ignored)."""
    return SequenceTask(spec)


register_fixed_tasks(SPECS.values(), build_spec, kind=lambda spec: spec.kind)
