"""TaskSet's ``nvp_family`` and ``maf_family``: normalizing flows fitted to images by likelihood.

What TaskSet's built tasks compute (``task_set/tasks/nvp.py`` and ``maf.py``, on TF
Probability's ``RealNVP``, ``MaskedAutoregressiveFlow``, ``Permute``, ``Chain`` and
``TransformedDistribution``), and what this does:

* input: the image pipeline of :mod:`taskset_lab.tasks.images` (uint8 -> [0, 1], the config's
  augmentation; **not** centred), flattened in NHWC order (``tf.reshape(image, [B, -1])``)
  to ``x [B, D]``, ``D = H*W*C``; then ``y = x + 0.01 * n`` with ``n ~ N(0, I)`` drawn at
  every loss evaluation, training and evaluation alike (TaskSet adds it "to prevent unbounded
  log prob density");
* the flow, from the base ``z ~ N(0, I_D)`` to the data ``y``:
  ``z -> B_0 -> P_0 -> B_1 -> P_1 -> ... -> B_{n-1} -> y`` (``tfb.Chain(reversed(bijectors
  [:-1]))``: the last permutation is dropped), ``n = num_bijectors``;
* ``nvp``: ``B_i = RealNVP(num_masked = D // 2)`` with ``real_nvp_default_template``: the first
  ``m = D // 2`` coordinates pass unchanged; an MLP on them (``tf.layers.dense`` per hidden
  width with the activation, then a linear layer of ``2 (D - m)`` units, ``kernel_initializer
  = w_init`` on every layer, biases zero) gives ``[shift | log_scale]`` (first half, second
  half) and the rest becomes ``x1 * exp(log_scale) + shift`` (log_scale unclipped);
  ``P_i = Permute(np.random.RandomState(i).permutation(D))`` -- reproduced exactly (numpy);
* ``maf``: ``B_i = MaskedAutoregressiveFlow(masked_autoregressive_default_template(hidden,
  activation, kernel_initializer=w_init))``: a MADE (``masked_dense`` layers with TFP's block
  masks ``_gen_mask(num_blocks=D, ...)``: exclusive on the first layer, inclusive after) whose
  ``2 D`` outputs are read as ``[D, 2]`` pairs ``(shift_d, log_scale_d)`` (interleaved), the
  log-scale clipped to [-5, 3] with the gradient passed straight through; ``x = (y - shift(y))
  exp(-log_scale(y))`` is the inverse pass. TFP's masks are built with integer block sizes
  ``units // D``; **a hidden layer narrower than D** (every released ``maf_family`` config and
  ``FixedMAF_cifar10_3layer_bs64``: widths <= 128 or 1024 against D >= 768) gets block size
  0, so its first layer is fully connected and every later mask is all zero: shift and
  log-scale are then the output layer's biases alone (an elementwise affine flow). That is
  what TaskSet's tasks compute, and it is kept. ``P_i`` are ``np.random.permutation(D)``
  from the **unseeded** global numpy stream in TaskSet (not reproducible there); here they
  are drawn with the parameters from the task's init seed (``torch.randperm``);
* masked weights: TFP keeps the full kernel as a variable (initialised ``mask * init``, a
  ``kernel_constraint`` re-masks it after each update); here the kernel is stored whole
  (TaskSet's parameter count), masked-out entries start at 0 and the forward pass uses
  ``kernel * mask`` -- the same function, the same trained values;
* initializers: the config's ``w_init`` (TaskSet's ``get_initializer``) on every layer; the
  fixed tasks pass ``None``: ``tf.layers.dense``'s glorot_uniform for NVP, ``masked_dense``'s
  glorot_normal (TF1: truncated) for MAF.

**Likelihood convention** (TaskSet's ``neg_log_p``): ``log p(y) = sum_d log N(z_d; 0, 1) +
log|det dz/dy|`` summed over all ``D`` dimensions (``MultivariateNormalDiag`` base), and the
loss is ``-mean_batch(log p(y))``: **nats per image** (despite the original docstring's "mean
over pixel"), for pixel values in [0, 1] with N(0, 0.01^2) jitter (a continuous density, so it
can be negative). Divide by ``D`` for nats per dimension.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from taskset_lab.tasks.context import draw
from taskset_lab.tasks.images import (
    ACTIVATION_FIELD,
    DATASET_FIELD,
    INIT_FIELD,
    ImageInput,
    augmented_shape,
    build_image_task,
    nhwc_flatten,
)
from taskset_lab.tasks.activations import Activation
from taskset_lab.tasks.activations import activation as as_activation
from taskset_lab.tasks.initializers import TRUNC_STD, fans, tf_init, truncated_normal
from taskset_lab.tasks.losses import NegativeLogLikelihoodTask
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.maf import sample_maf_family
from taskset_lab.tasks.released.nvp import sample_nvp_family

JITTER_STD = 0.01  # neg_log_p's noise on the input
LOG_SCALE_CLIP = (-5.0, 3.0)  # masked_autoregressive_default_template's defaults
HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
NVP_DEFAULT_INIT = ("glorot_uniform", None)  # tf.layers.dense with kernel_initializer=None
MAF_DEFAULT_INIT = ("glorot_normal", None)  # masked_dense with kernel_initializer=None

def init_kernel(spec: Sequence[Any], shape: Sequence[int]) -> Tensor:
    """A kernel ``[in, out]`` drawn as TaskSet's ``get_initializer(spec)`` draws it (see
    :func:`taskset_lab.tasks.initializers.tf_init`); the truncated-normal kinds
    use :func:`truncated_normal`."""
    name, scale = spec[0], spec[1]
    fan_in, fan_out = fans(shape)
    if name == "glorot_normal":
        return truncated_normal(shape, math.sqrt(2.0 / (fan_in + fan_out)) / TRUNC_STD)
    if name == "he_normal":
        return truncated_normal(shape, math.sqrt(2.0 / fan_in) / TRUNC_STD)
    if name == "variance_scaling":
        return truncated_normal(shape, math.sqrt(float(scale) / fan_in) / TRUNC_STD)
    return tf_init(spec, shape)


# ------------------------------------------------------------------ RealNVP


class DenseStack(nn.Module):
    """``tf.layers.dense`` per hidden width (activation), then a linear output layer; ``w [in,
    out]`` from ``w_init`` (a TaskSet ``[name, scale]`` spec), biases zero."""

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int, activation: str | Activation,
                 w_init: Sequence[Any]):
        super().__init__()
        dims = [int(n_in), *(int(h) for h in hidden), int(n_out)]
        self.weights = nn.ParameterList(nn.Parameter(init_kernel(w_init, (a, b))) for a, b in zip(dims[:-1], dims[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.zeros(b)) for b in dims[1:])
        self.activation = as_activation(activation)

    def forward(self, h: Tensor) -> Tensor:
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ w + b
            if i < last:
                h = self.activation(h)
        return h


class RealNVPCoupling(nn.Module):
    """``tfb.RealNVP(num_masked=D // 2, real_nvp_default_template(hidden))`` on ``[..., D]``."""

    def __init__(self, dim: int, hidden: Sequence[int], activation: str | Activation, w_init: Sequence[Any]):
        super().__init__()
        self.dim, self.num_masked = int(dim), int(dim) // 2
        self.net = DenseStack(self.num_masked, hidden, 2 * (self.dim - self.num_masked), activation, w_init)

    def _shift_log_scale(self, h0: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(h0)
        half = self.dim - self.num_masked
        return out[..., :half], out[..., half:]

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, log|det dx/dy|)`` per example."""
        y0, y1 = y[..., :self.num_masked], y[..., self.num_masked:]
        shift, log_scale = self._shift_log_scale(y0)
        return torch.cat([y0, (y1 - shift) * torch.exp(-log_scale)], dim=-1), -log_scale.sum(-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, log|det dy/dx|)`` per example (sampling direction; used by tests)."""
        x0, x1 = x[..., :self.num_masked], x[..., self.num_masked:]
        shift, log_scale = self._shift_log_scale(x0)
        return torch.cat([x0, x1 * torch.exp(log_scale) + shift], dim=-1), log_scale.sum(-1)


# ------------------------------------------------------------------ MAF / MADE


def made_mask(num_blocks: int, n_in: int, n_out: int, exclusive: bool) -> np.ndarray:
    """TFP's ``_gen_mask(...).T``: ``[n_in, n_out]`` with block sizes ``n_in // num_blocks``
    (inputs) and ``n_out // num_blocks`` (outputs); output rows from ``(b + exclusive) * d_out``
    on see input block ``b``. Integer division: widths below ``num_blocks`` give 0-sized blocks."""
    d_in, d_out = n_in // num_blocks, n_out // num_blocks
    if d_in == 0:  # no input column belongs to a block
        return np.zeros((n_in, n_out), dtype=np.float32)
    block = np.arange(n_in) // d_in  # input column -> its block (>= num_blocks: none)
    first_row = (block + int(exclusive)) * d_out  # the first output row that sees the block
    mask = (block[:, None] < num_blocks) & (np.arange(n_out)[None, :] >= first_row[:, None])
    return mask.astype(np.float32)


def clip_preserve_gradient(t: Tensor, low: float, high: float) -> Tensor:
    """``clip_by_value_preserve_gradient``: clipped values, identity gradient."""
    return t + (torch.clamp(t, low, high) - t).detach()


class MaskedAutoregressiveCoupling(nn.Module):
    """``tfb.MaskedAutoregressiveFlow(masked_autoregressive_default_template(hidden))`` on
    ``[..., D]``; kernels are stored whole and masked in the forward pass (see module doc)."""

    def __init__(self, dim: int, hidden: Sequence[int], activation: str | Activation, w_init: Sequence[Any]):
        super().__init__()
        self.dim = int(dim)
        dims = [self.dim, *(int(h) for h in hidden), 2 * self.dim]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            mask = torch.from_numpy(made_mask(self.dim, a, b, exclusive=(i == 0 and len(dims) > 2)))
            self.register_buffer(f"mask_{i}", mask)
            self.weights.append(nn.Parameter(init_kernel(w_init, (a, b)) * mask))
            self.biases.append(nn.Parameter(torch.zeros(b)))
        self.activation = as_activation(activation)

    def shift_log_scale(self, y: Tensor) -> tuple[Tensor, Tensor]:
        h = y
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = h @ (w * getattr(self, f"mask_{i}")) + b
            if i < last:
                h = self.activation(h)
        pairs = h.reshape(h.shape[:-1] + (self.dim, 2))
        return pairs[..., 0], clip_preserve_gradient(pairs[..., 1], *LOG_SCALE_CLIP)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, log|det dx/dy|)``: one pass (the density direction)."""
        shift, log_scale = self.shift_log_scale(y)
        return (y - shift) * torch.exp(-log_scale), -log_scale.sum(-1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(y, log|det dy/dx|)`` by TFP's ``D`` sequential passes (sampling direction; tests)."""
        y = torch.zeros_like(x)
        for _ in range(self.dim):
            shift, log_scale = self.shift_log_scale(y)
            y = x * torch.exp(log_scale) + shift
        return y, self.shift_log_scale(y)[1].sum(-1)


# ------------------------------------------------------------------ the flow and the task


class AffineFlow(nn.Module):
    """``TransformedDistribution(N(0, I_D), Chain(reversed([B_0, P_0, ..., B_{n-1}])))``:
    :meth:`log_prob` of ``[..., D]`` points, :meth:`sample_transform` for tests."""

    def __init__(self, bijectors: Sequence[nn.Module], permutations: Sequence[np.ndarray]):
        super().__init__()
        if len(permutations) < len(bijectors) - 1:
            raise ValueError("a flow of n bijectors needs n - 1 permutations")
        self.bijectors = nn.ModuleList(bijectors)
        for i in range(len(bijectors) - 1):
            perm = torch.as_tensor(np.asarray(permutations[i]), dtype=torch.long)
            self.register_buffer(f"perm_{i}", perm)
            self.register_buffer(f"inv_perm_{i}", torch.argsort(perm))

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(z, log|det dz/dy|)``: ``B_{n-1}^-1``, ``P_{n-2}^-1``, ..., ``B_0^-1``."""
        h, ildj = y, y.new_zeros(y.shape[:-1])
        for i in reversed(range(len(self.bijectors))):
            h, part = self.bijectors[i].inverse(h)
            ildj = ildj + part
            if i > 0:  # Permute's inverse: gather by argsort(permutation)
                h = h.index_select(-1, getattr(self, f"inv_perm_{i - 1}"))
        return h, ildj

    def log_prob(self, y: Tensor) -> Tensor:
        z, ildj = self.inverse(y)
        return (-0.5 * z * z - HALF_LOG_2PI).sum(-1) + ildj

    def sample_transform(self, z: Tensor) -> Tensor:
        """The forward map ``z -> y`` (``B_0``, ``P_0``, ..., ``B_{n-1}``)."""
        h = z
        for i, bij in enumerate(self.bijectors):
            h, _ = bij(h)
            if i < len(self.bijectors) - 1:  # Permute: y[..., k] = x[..., perm[k]]
                h = h.index_select(-1, getattr(self, f"perm_{i}"))
        return h


def nvp_flow(dim: int, num_bijectors: int, hidden: Sequence[int], activation: str | Activation,
             w_init: Sequence[Any]) -> AffineFlow:
    """TaskSet's ``distribution_with_nvp_bijectors`` (permutation ``i``: ``RandomState(i)``)."""
    bijectors = [RealNVPCoupling(dim, hidden, activation, w_init) for _ in range(int(num_bijectors))]
    perms = [np.random.RandomState(i).permutation(int(dim)) for i in range(int(num_bijectors))]
    return AffineFlow(bijectors, perms)


def maf_flow(dim: int, num_bijectors: int, hidden: Sequence[int], activation: str | Activation,
             w_init: Sequence[Any]) -> AffineFlow:
    """TaskSet's ``dist_with_maf_bijectors`` (permutations from the init RNG, see module doc)."""
    bijectors, perms = [], []
    for _ in range(int(num_bijectors)):
        bijectors.append(MaskedAutoregressiveCoupling(dim, hidden, activation, w_init))
        perms.append(torch.randperm(int(dim)).numpy())
    return AffineFlow(bijectors, perms)


FLOW_BUILDERS = {"nvp": nvp_flow, "maf": maf_flow}


class ImageFlow(nn.Module):
    """Images -> ``log p(x + 0.01 n)`` per image ``[B]`` under a flow (see module doc)."""

    def __init__(self, kind: str, seen_shape: Sequence[int], num_bijectors: int, hidden: Sequence[int],
                 activation: str | Activation, w_init: Sequence[Any], augmentation: Any = None):
        super().__init__()
        self.input = ImageInput(augmentation, False)
        self.flow = FLOW_BUILDERS[kind](int(math.prod(seen_shape)), num_bijectors, hidden, activation, w_init)

    def forward(self, x: Tensor) -> Tensor:
        like = self.flow.bijectors[0].biases[0] if hasattr(self.flow.bijectors[0], "biases") \
            else self.flow.bijectors[0].net.biases[0]
        flat = nhwc_flatten(self.input(x, like))
        jitter = draw("flow/jitter", tuple(flat.shape), "normal", flat)
        return self.flow.log_prob(flat + JITTER_STD * jitter)


class TasksetFlowTask(NegativeLogLikelihoodTask):
    def __init__(self, kind: str, config: dict[str, Any], data: Any, shape: tuple[int, int, int]):
        super().__init__(config, data)
        self.kind, self.image_shape = kind, shape
        self.seen_shape = augmented_shape(shape, config["dataset"][2])

    def make_module(self) -> nn.Module:
        c = self.config
        return ImageFlow(self.kind, self.seen_shape, c["num_bijectors"], c["hidden_units"], c["activation"],
                         c["w_init"], c["dataset"][2])


def _builder(kind: str) -> Callable[..., TasksetFlowTask]:
    def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
              offline_data: str = "error") -> TasksetFlowTask:
        return build_image_task(lambda data, shape, _classes: TasksetFlowTask(kind, config, data, shape), config,
                                data_dir, download, offline_data)

    build.__doc__ = f"Build a ``{kind}_family`` task from its config (see the module doc)."
    return build


FIELDS = {
    "activation": ACTIVATION_FIELD,
    "w_init": INIT_FIELD,
    "dataset": DATASET_FIELD,
    "hidden_units": Field("list", items="int", check=lambda v: len(v) >= 1 and all(u >= 1 for u in v),
                          allowed="hidden widths of each bijector's network (ints >= 1), at least one"),
    "num_bijectors": Field("int", low=1, high=64),
}

register_task_family("nvp_family", sample_nvp_family, _builder("nvp"), fields=FIELDS, released=sample_nvp_family)
register_task_family("maf_family", sample_maf_family, _builder("maf"), fields=FIELDS, released=sample_maf_family)
