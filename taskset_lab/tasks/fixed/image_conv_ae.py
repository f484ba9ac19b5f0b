"""TaskSet's 5 ``FixedImageConvAE`` tasks: convolutional autoencoders on images.

TaskSet's definition (``task_set/tasks/fixed/fixed_image_conv_ae.py``, ``conv_ae_loss_fn(enc,
dec, num_latents, relu)``), reproduced here:

* data: ``get_image_datasets(name, batch_size)``, images in [0, 1] (not centred), 3000
  examples per validation split;
* encoder: ``snt.nets.ConvNet2D(enc, 3x3, strides [2, 2], SAME, relu, activate_final=True)``
  (biases, Sonnet's default initialisers), NHWC flatten, ``snt.Linear(num_latents)`` (no
  activation);
* decoder: ``snt.Linear(7*7*32)`` (28x28 images) or ``snt.Linear(8*8*32)`` (32x32), no
  activation, reshaped NHWC to ``[B, 7|8, 7|8, 32]``; ``snt.nets.ConvNet2DTranspose(dec,
  output_shapes [(14,14),(28,28)] or [(16,16),(32,32)], 3x3, strides 2, SAME, relu,
  activate_final=True)`` (biases; ``w`` of TF layout ``[3, 3, out, in]``,
  ``truncated_normal(1/sqrt(9 in))``); ``snt.Conv2D(C, 1x1)`` (with bias);
* loss: ``mean_batch(mean_{H,W,C}((x - sigmoid(out))^2))``.

:class:`SameConvTranspose2d` is TF's ``conv2d_transpose`` with ``SAME`` padding and an explicit
output shape: the adjoint of a SAME conv, i.e. a full transposed convolution cropped by the
SAME padding's leading rows/columns.

Names that disagree with TaskSet's code (the code is followed):

* ``FixedImageConvAE_mnist_32x64x32x64x32_bs512`` has decoder units **[64, 64]**, not
  [64, 32].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.layers import same_padding
from taskset_lab.tasks.images import ImageInput, nhwc_flatten
from taskset_lab.tasks.losses import PerExampleLossTask
from taskset_lab.tasks.fixed.image_conv import (
    ACTS,
    KERNEL,
    ConvNet2D,
    FixedLinear,
    SameConv2d,
    conv_out_hw,
    init_weight,
)
from taskset_lab.tasks.images import build_fixed_image_task
from taskset_lab.tasks.registry import register_fixed_tasks

KIND = "FixedImageConvAE"
SEED_CHANNELS = 32  # the decoder's first feature map has 32 channels in every TaskSet task


class SameConvTranspose2d(nn.Module):
    """``snt.Conv2DTranspose(c_out, output_shape, 3x3, stride, SAME)`` with a bias: TF's
    ``conv2d_transpose`` (the adjoint of a SAME conv from ``output_shape`` to the input)."""

    def __init__(self, c_in: int, c_out: int, output_hw: Sequence[int], stride: int = 2, kernel: int = KERNEL):
        super().__init__()
        self.output_hw = (int(output_hw[0]), int(output_hw[1]))
        self.stride, self.kernel = int(stride), int(kernel)
        # TF layout [kh, kw, out, in]; Sonnet's default fan_in is kh * kw * in
        w = init_weight("sonnet", (kernel, kernel, c_out, c_in), kernel * kernel * c_in)
        self.weight = nn.Parameter(w.permute(3, 2, 0, 1).contiguous())  # torch [in, out, kh, kw]
        self.bias = nn.Parameter(torch.zeros(int(c_out)))

    def forward(self, x: Tensor) -> Tensor:
        h_out, w_out = self.output_hw
        if -(-h_out // self.stride) != x.shape[-2] or -(-w_out // self.stride) != x.shape[-1]:
            raise ConfigError("task", f"a {tuple(x.shape[-2:])} map cannot be transposed to {self.output_hw} "
                                      f"with stride {self.stride} and SAME padding")
        top, _ = same_padding(h_out, self.stride, self.kernel)
        left, _ = same_padding(w_out, self.stride, self.kernel)
        full = F.conv_transpose2d(x, self.weight, None, stride=self.stride)
        y = full[:, :, top:top + h_out, left:left + w_out]
        return y + self.bias.reshape(1, -1, 1, 1)


class ConvNet2DTranspose(nn.Module):
    """``snt.nets.ConvNet2DTranspose(units, shapes, 3x3, strides, SAME, act,
    activate_final=True)``: transposed convs with biases, the activation after each."""

    def __init__(self, c_in: int, units: Sequence[int], shapes: Sequence[Sequence[int]], activation: str,
                 stride: int = 2):
        super().__init__()
        chans = [int(c_in), *(int(u) for u in units)]
        self.layers = nn.ModuleList(SameConvTranspose2d(a, b, hw, stride)
                                    for a, b, hw in zip(chans[:-1], chans[1:], shapes))
        self.activation = ACTS[activation]

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = self.activation(layer(x))
        return x


def decoder_shapes(hw: int, num_layers: int) -> tuple[int, list[tuple[int, int]]]:
    """(seed map size, transposed-conv output sizes) TaskSet uses for ``hw``-sized images:
    28 -> 7, [14, 28]; 32 -> 8, [16, 32] (two layers) or 4, [8, 16, 32] (three layers)."""
    supported = {(28, 2), (32, 2), (32, 3)}
    if (hw, num_layers) not in supported:
        raise ConfigError("task", f"TaskSet's conv autoencoders support 28x28 or 32x32 images (32x32 only with "
                                  f"3 layers), got {hw}x{hw} with {num_layers} layers")
    shapes = [hw // 2 ** (num_layers - 1 - i) for i in range(num_layers)]
    return hw // 2 ** num_layers, [(s, s) for s in shapes]


class ConvDecoder(nn.Module):
    """``Linear(seed*seed*32)`` -> NHWC reshape -> ConvNet2DTranspose -> ``Conv2D(out, 1x1)``."""

    def __init__(self, n_in: int, dec: Sequence[int], hw: int, out_channels: int, activation: str):
        super().__init__()
        self.seed, shapes = decoder_shapes(hw, len(dec))
        self.linear = FixedLinear(n_in, self.seed * self.seed * SEED_CHANNELS)
        self.deconvs = ConvNet2DTranspose(SEED_CHANNELS, dec, shapes, activation)
        self.out = SameConv2d(int(dec[-1]), out_channels, 1, "sonnet", kernel=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.linear(z).reshape(z.shape[0], self.seed, self.seed, SEED_CHANNELS).permute(0, 3, 1, 2)
        return self.out(self.deconvs(h))


class ConvEncoder(nn.Module):
    """ConvNet2D(enc, strides 2) -> NHWC flatten -> ``Linear(n_out)`` (no activation)."""

    def __init__(self, shape: Sequence[int], enc: Sequence[int], n_out: int, activation: str):
        super().__init__()
        c, h, w = (int(v) for v in shape)
        strides = [2] * len(enc)
        self.convs = ConvNet2D(c, enc, strides, activation)
        flat = conv_out_hw(h, strides) * conv_out_hw(w, strides) * int(enc[-1])
        self.linear = FixedLinear(flat, n_out)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(nhwc_flatten(self.convs(x)))


@dataclass(frozen=True)
class FixedConvAESpec:
    name: str
    dataset: str
    enc: tuple[int, ...]
    dec: tuple[int, ...]
    latents: int
    batch_size: int = 128


SPECS: dict[str, FixedConvAESpec] = {s.name: s for s in [
    FixedConvAESpec("FixedImageConvAE_mnist_32x32x32x32x32_bs128", "mnist", (32, 32), (32, 32), 32),
    FixedConvAESpec("FixedImageConvAE_mnist_32x64x8x64x32_bs128", "mnist", (32, 64), (64, 32), 8),
    FixedConvAESpec("FixedImageConvAE_mnist_32x64x32x64x32_bs512", "mnist", (32, 64), (64, 64), 32, 512),
    FixedConvAESpec("FixedImageConvAE_cifar10_32x32x32x32x32_bs128", "cifar10", (32, 32), (32, 32), 32),
    FixedConvAESpec("FixedImageConvAE_cifar10_32x64x8x64x32_bs128", "cifar10", (32, 64), (64, 32), 8),
]}


class ConvAutoencoder(nn.Module):
    """Images -> per-example mean squared error of ``sigmoid(decoder(encoder(x)))`` ``[B]``."""

    def __init__(self, spec: FixedConvAESpec, shape: Sequence[int]):
        super().__init__()
        c, h, _w = (int(v) for v in shape)
        self.input = ImageInput(None, False)
        self.encoder = ConvEncoder(shape, spec.enc, spec.latents, "relu")
        self.decoder = ConvDecoder(spec.latents, spec.dec, h, c, "relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.input(x, self.encoder.linear.w)
        out = self.decoder(self.encoder(x))
        return ((x - torch.sigmoid(out)) ** 2).flatten(1).mean(1)


class FixedImageConvAETask(PerExampleLossTask):
    def __init__(self, spec: FixedConvAESpec, data: Any, shape: tuple[int, int, int]):
        super().__init__({"family": KIND, "name": spec.name}, data)
        self.spec, self.image_shape = spec, shape

    def make_module(self) -> nn.Module:
        return ConvAutoencoder(self.spec, self.image_shape)


def build_spec(spec: FixedConvAESpec, data_dir: str | None = None, download: bool = False,
               offline_data: str = "error") -> FixedImageConvAETask:
    return build_fixed_image_task(lambda data, shape, _classes: FixedImageConvAETask(spec, data, shape), spec, data_dir,
                                  download, offline_data)


register_fixed_tasks(SPECS.values(), build_spec, kind=KIND)

