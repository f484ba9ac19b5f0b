"""Models for TRANSFER: torchvision classifiers by name, and a decoder-only Transformer LM."""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from taskset_lab.errors import ConfigError


def build_classifier(arch: str, num_classes: int, layers: Sequence[int] | None = None,
                     block: str = "basic") -> nn.Module:
    """A torchvision classifier, randomly initialized (``weights=None``).

    ``arch`` is any name of ``torchvision.models.list_models()`` (``resnet50``, ``vit_b_16``,
    …); ``arch=resnet`` with ``layers=[n1, n2, n3, n4]`` and ``block=basic|bottleneck`` builds
    torchvision's ``ResNet`` class with other depths (``[1, 1, 1, 1]``: the smallest ResNet).
    """
    import torchvision.models as tvm

    if arch == "resnet":
        if layers is None or len(layers) != 4 or min(layers) < 1:
            raise ConfigError("model.layers", f"arch=resnet needs four positive block counts, got {layers}")
        blocks = {"basic": tvm.resnet.BasicBlock, "bottleneck": tvm.resnet.Bottleneck}
        if block not in blocks:
            raise ConfigError("model.block", f"must be basic or bottleneck, got {block!r}")
        return tvm.ResNet(blocks[block], list(layers), num_classes=int(num_classes))
    if arch not in tvm.list_models(module=tvm):
        raise ConfigError("model.arch", f"unknown torchvision classifier {arch!r}; e.g. resnet50, resnet18, "
                                        "vit_b_16, or arch=resnet with layers=[...]")
    return tvm.get_model(arch, weights=None, num_classes=int(num_classes))


class CausalSelfAttention(nn.Module):
    def __init__(self, d_model: int, n_heads: int, dropout: float):
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LayerNorm Transformer decoder block (attention + GELU MLP, residuals)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(), nn.Linear(d_ff, d_model))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class TransformerLM(nn.Module):
    """Decoder-only Transformer language model: token + learned position embeddings, ``n_layers``
    causal self-attention blocks, a final LayerNorm and an output layer tied to the embedding.
    ``forward(ids [B, T]) -> logits [B, T, vocab_size]``."""

    def __init__(self, vocab_size: int = 256, d_model: int = 512, n_layers: int = 6, n_heads: int = 8,
                 d_ff: int = 2048, max_len: int = 512, dropout: float = 0.0):
        super().__init__()
        if d_model % n_heads:
            raise ConfigError("model.n_heads", f"d_model={d_model} must be a multiple of n_heads={n_heads}")
        self.max_len = int(max_len)
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.ln = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size, bias=False)
        self.head.weight = self.embed.weight
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of the residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        t = ids.shape[1]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} tokens is longer than max_len={self.max_len}")
        x = self.embed(ids) + self.pos(torch.arange(t, device=ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))
