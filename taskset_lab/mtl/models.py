"""Backbones shared by all tasks and one head per task (hard parameter sharing).

A backbone maps the input to features: a vector (``MLPBackbone``, ``CNNBackbone``;
``out_features``) or, for dense tasks, a feature map at the input resolution
(``SegNetBackbone``; ``out_channels``). Heads are built from each task's kind.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

from taskset_lab.mtl.kinds import MTLTaskSpec


class MLPBackbone(nn.Module):
    dense = False

    def __init__(self, in_shape: Sequence[int], hidden: Sequence[int] = (128, 64), activation: str = "relu"):
        super().__init__()
        if not hidden or min(hidden) < 1:
            raise ValueError(f"hidden must list positive layer widths, got {list(hidden)}")
        act = {"relu": nn.ReLU, "tanh": nn.Tanh}.get(activation)
        if act is None:
            raise ValueError(f"activation must be relu or tanh, got {activation!r}")
        sizes = [math.prod(in_shape), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), act()]
        self.layers = nn.Sequential(*layers)
        self.out_features = sizes[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.flatten(1))


class CNNBackbone(nn.Module):
    """3x3 conv + ReLU + 2x2 max-pool per entry of ``channels``, then one linear layer."""

    dense = False

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int] = (16, 32), hidden: int = 64):
        super().__init__()
        c, h, w = in_shape
        layers: list[nn.Module] = []
        for out in channels:
            layers += [nn.Conv2d(c, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True)]
            c, h, w = out, math.ceil(h / 2), math.ceil(w / 2)
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Linear(c * h * w, hidden), nn.ReLU())
        self.out_features = hidden

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.conv(x).flatten(1))


def _conv_block(a: int, b: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU())


class SegNetBackbone(nn.Module):
    """A small SegNet-style encoder-decoder (Badrinarayanan et al. 2017) as in the MTAN
    baselines: conv blocks with max-pooling whose indices drive max-unpooling in the decoder.
    Output: ``channels[0]`` feature maps at the input resolution (H, W divisible by 2**depth)."""

    dense = True

    def __init__(self, in_shape: Sequence[int], channels: Sequence[int] = (32, 64, 128)):
        super().__init__()
        c, h, w = in_shape
        if h % 2 ** len(channels) or w % 2 ** len(channels):
            raise ValueError(f"input {h}x{w} must be divisible by {2 ** len(channels)} for {len(channels)} poolings")
        widths = [c, *channels]
        self.encoder = nn.ModuleList(nn.Sequential(_conv_block(a, b), _conv_block(b, b))
                                     for a, b in zip(widths[:-1], widths[1:]))
        rev = list(reversed(channels))
        self.decoder = nn.ModuleList(nn.Sequential(_conv_block(a, a), _conv_block(a, b))
                                     for a, b in zip(rev, [*rev[1:], channels[0]]))
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.out_channels = channels[0]

    def forward(self, x: Tensor) -> Tensor:
        indices = []
        for block in self.encoder:
            x, idx = self.pool(block(x))
            indices.append(idx)
        for block, idx in zip(self.decoder, reversed(indices)):
            x = block(self.unpool(x, idx))
        return x


def make_head(spec: MTLTaskSpec, backbone: nn.Module) -> nn.Module:
    """A linear head on vector features; a conv head (3x3 conv + ReLU + 1x1 conv) on maps."""
    if spec.dense != bool(getattr(backbone, "dense", False)):
        need = "a dense backbone (segnet)" if spec.dense else "a vector backbone (mlp, cnn)"
        raise ValueError(f"task '{spec.name}' ({spec.kind}) needs {need}, got {type(backbone).__name__}")
    if spec.dense:
        c = backbone.out_channels
        return nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, spec.out_dim, 1))
    return nn.Linear(backbone.out_features, spec.out_dim)


class MTLModel(nn.Module):
    """Backbone + ``heads[str(task_id)]``; ``forward`` returns ``{task_id: prediction}``."""

    def __init__(self, backbone: nn.Module, tasks: dict[int, MTLTaskSpec]):
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict({str(t): make_head(spec, backbone) for t, spec in tasks.items()})

    @property
    def task_ids(self) -> list[int]:
        return [int(t) for t in self.heads]

    def shared_named_parameters(self) -> list[tuple[str, nn.Parameter]]:
        return [(f"backbone.{n}", p) for n, p in self.backbone.named_parameters() if p.requires_grad]

    def forward(self, x: Tensor) -> dict[int, Tensor]:
        z = self.backbone(x)
        return {int(t): head(z) for t, head in self.heads.items()}

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)
