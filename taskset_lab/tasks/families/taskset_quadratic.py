"""TaskSet's ``quadratic_family``: noisy quadratics ``output_fn(‖(A + A_noise) x‖²)``.

What ``task_set/tasks/quadratic.py`` + ``quadratic_helper.QuadraticBasedTask`` compute for a
config (B = 0, C = 0, no gradient noise, weight_rescale 1):

* ``A`` (``dims x dims``, fixed, not trained) from ``A_dist``: ``normal`` (entries
  N(mean, std²)), ``uniform`` (entries U(min, max)), ``linspace_eigen`` / ``logspace_eigen``
  (``Q diag(spectrum) Qᵀ`` with spectrum ``linspace(min, max, dims)`` or
  ``logspace(log10 min, log10 max, dims)`` in float32, ``Q`` from the QR of a U(-1, 1) matrix
  with columns sign-corrected by ``diag(R)``);
* the trained vector ``x`` starts at a draw of ``initial_dist`` (``normal`` / ``uniform``);
* both are drawn once from the config's ``seed`` (``seed + 2`` for A, ``seed + 1`` for x;
  seed 0 means unseeded, as in TaskSet's ``seed + k if seed else None``), so every replica
  starts at the same point, as in TaskSet;
* every loss evaluation (training steps and evaluations) adds a fresh ``A_noise`` drawn from
  ``noise["A_noise"]`` (the same four kinds; for the eigen kinds a fresh random ``Q`` each
  time) when ``noise`` is not null; the noise comes from the step context, so it is fixed
  per (config, step);
* loss ``‖(A + A_noise) x‖²`` then ``output_fn``: ``identity`` -> ``loss_scale · l``, ``log`` ->
  ``loss_scale · log(max(l, 0) + 1e-8)``.

TF's random streams are not reproducible here; the distributions are.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor, nn

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.base import Batch, NoiseData, Task
from taskset_lab.tasks.context import draw
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.released.quadratic import sample_quadratic_family

MATRIX_KINDS = ("normal", "uniform", "linspace_eigen", "logspace_eigen")
VECTOR_KINDS = ("normal", "uniform")
NOISE_KEY = "quadratic/A_noise"


def spectrum(kind: str, params: Mapping[str, float], dims: int) -> np.ndarray:
    """TaskSet's eigenvalue spectrum (float32, as TaskSet casts it)."""
    if kind == "linspace_eigen":
        values = np.linspace(params["min"], params["max"], dims)
    else:
        values = np.logspace(np.log10(params["min"]), np.log10(params["max"]), dims)
    return values.astype(np.float32)


def random_rotation(uniform: Tensor) -> Tensor:
    """``Q`` of the QR of ``2u - 1`` with each column multiplied by ``sign(diag(R))`` (TaskSet's
    ``FixedEigenSpectrumMatrixDistribution``)."""
    q, r = torch.linalg.qr(uniform * 2.0 - 1.0)
    return q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)


def matrix_from(kind: str, params: Mapping[str, float], dims: int, uniform: Tensor, normal: Tensor) -> Tensor:
    """A matrix of distribution ``[kind, params]`` from standard draws ``uniform``/``normal``
    ``[dims, dims]`` (only the one the kind needs is used)."""
    if kind == "normal":
        return params["mean"] + params["std"] * normal
    if kind == "uniform":
        return params["min"] + (params["max"] - params["min"]) * uniform
    if kind in ("linspace_eigen", "logspace_eigen"):
        q = random_rotation(uniform)
        spec = torch.as_tensor(spectrum(kind, params, dims), dtype=uniform.dtype, device=uniform.device)
        return (q * spec) @ q.transpose(-1, -2)
    raise ConfigError("task.A_dist", f"matrix distribution {kind!r} is not one of {MATRIX_KINDS}")


def vector_from(kind: str, params: Mapping[str, float], uniform: Tensor, normal: Tensor) -> Tensor:
    if kind == "normal":
        return params["mean"] + params["std"] * normal
    return params["min"] + (params["max"] - params["min"]) * uniform


def _generator(seed: int, offset: int) -> torch.Generator | None:
    """TaskSet's ``seed + offset if seed else None``: None (the global RNG) for seed 0."""
    if not seed:
        return None
    gen = torch.Generator()
    gen.manual_seed(int(seed) + offset)
    return gen


def fixed_matrix(config: Mapping[str, Any]) -> Tensor:
    """The task's ``A`` (float32), drawn from ``seed + 2``."""
    dims = int(config["dims"])
    gen = _generator(int(config["seed"]), 2)
    kind, params = config["A_dist"]
    u = torch.rand((dims, dims), generator=gen, dtype=torch.float64)
    n = torch.randn((dims, dims), generator=gen, dtype=torch.float64)
    return matrix_from(kind, params, dims, u, n).to(torch.float32)


def initial_point(config: Mapping[str, Any]) -> Tensor:
    """The starting ``x`` (float32), drawn from ``seed + 1``."""
    dims = int(config["dims"])
    gen = _generator(int(config["seed"]), 1)
    kind, params = config["initial_dist"]
    u = torch.rand((dims,), generator=gen, dtype=torch.float64)
    n = torch.randn((dims,), generator=gen, dtype=torch.float64)
    return vector_from(kind, params, u, n).to(torch.float32)


def quadratic_value(a: Tensor, x: Tensor) -> Tensor:
    """``‖a x‖²`` (TaskSet: ``reduce_sum(square(squeeze(matmul(A, x[:, None]))))``)."""
    return ((a @ x) ** 2).sum()


def apply_output_fn(value: Tensor, name: str, loss_scale: float) -> Tensor:
    if name == "identity":
        return value * loss_scale
    if name == "log":
        return torch.log(torch.clamp(value, min=0.0) + 1e-8) * loss_scale
    raise ConfigError("task.output_fn", f"{name!r} is not one of identity, log")


class QuadraticModule(nn.Module):
    """The trained vector ``weight`` and the fixed ``A`` (a constant buffer); called with the
    step's ``A`` noise, returns ``‖(A + noise) weight‖²``."""

    def __init__(self, a: Tensor, x0: Tensor):
        super().__init__()
        self.register_buffer("A", a)
        self.weight = nn.Parameter(x0)

    def forward(self, a_noise: Tensor) -> Tensor:
        return quadratic_value(self.A + a_noise, self.weight)


class TasksetQuadraticTask(Task):
    def make_module(self) -> nn.Module:
        return QuadraticModule(fixed_matrix(self.config), initial_point(self.config))

    def a_noise(self, like: Tensor) -> Tensor:
        """This evaluation's ``A`` noise (zero without a noise config)."""
        noise = self.config.get("noise")
        if not noise:
            return torch.zeros((), dtype=like.dtype, device=like.device)
        dims = int(self.config["dims"])
        kind, params = noise["A_noise"]
        u = draw(f"{NOISE_KEY}/uniform", (dims, dims), "uniform", like) if kind != "normal" else None
        n = draw(f"{NOISE_KEY}/normal", (dims, dims), "normal", like) if kind == "normal" else None
        return matrix_from(kind, params, dims, u, n)  # type: ignore[arg-type]

    def forward_loss(self, model: Any, batch: Batch) -> Tensor:
        value = model(self.a_noise(batch[0]))
        return apply_output_fn(value, self.config["output_fn"], float(self.config["loss_scale"]))

    def loss(self, output: Tensor, batch: Batch) -> Tensor:  # pragma: no cover - forward_loss is used
        return apply_output_fn(output, self.config["output_fn"], float(self.config["loss_scale"]))


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> TasksetQuadraticTask:
    """Generated data: ``data_dir``, ``download``, ``offline_data`` are not used."""
    return TasksetQuadraticTask(config, NoiseData((1,), 0.0, seed=int(config["seed"])))


def is_matrix_dist(v: Any) -> bool:
    if not isinstance(v, list) or len(v) != 2 or v[0] not in MATRIX_KINDS or not isinstance(v[1], dict):
        return False
    keys = {"mean", "std"} if v[0] == "normal" else {"min", "max"}
    if set(v[1]) != keys or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v[1].values()):
        return False
    if v[0] == "normal":
        return v[1]["std"] >= 0
    if v[0] == "logspace_eigen":
        return 0 < v[1]["min"] and 0 < v[1]["max"]
    return v[1]["min"] <= v[1]["max"]


def is_vector_dist(v: Any) -> bool:
    return is_matrix_dist(v) and v[0] in VECTOR_KINDS


FIELDS = {
    "A_dist": Field("list", check=is_matrix_dist,
                    allowed="[kind, params]: normal {mean, std>=0}, uniform/linspace_eigen {min<=max}, "
                            "logspace_eigen {min>0, max>0}"),
    "initial_dist": Field("list", check=is_vector_dist, allowed="[normal, {mean, std>=0}] or [uniform, {min<=max}]"),
    "output_fn": Field("str", choices=("identity", "log")),
    "dims": Field("int", low=1, high=20000),
    "seed": Field("int", low=0),
    "loss_scale": Field("float", low=0.0, check=lambda v: v > 0, allowed="a float > 0"),
    "noise": Field("dict", optional=True, check=lambda v: set(v) == {"A_noise"} and is_matrix_dist(v["A_noise"]),
                   allowed="null or {A_noise: [kind, params]} (kinds as A_dist)"),
}

register_task_family("quadratic_family", sample_quadratic_family, build, fields=FIELDS,
                     released=sample_quadratic_family)
