"""``lab_quadratic`` (this project's family, not TaskSet's ``quadratic_family``): ``f(x) = 0.5 (x - x*)^T A (x - x*)`` with ``x* = 0`` and a sampled spectrum.

``A = Q diag(eig) Q^T`` with a random orthogonal ``Q`` (or ``Q = I`` when not rotated).
The loss is ``loss_scale * (out(f(x)) + noise . x)`` where ``out`` is the identity or
``log(f + 1e-8)`` (finite everywhere since ``f >= 0``) and ``noise`` is a NoiseData batch,
so the gradient gets additive Gaussian noise of std ``loss_scale * noise_scale``.

``A`` is fixed by ``problem_seed`` and lives in the task (not in the module), so stacking
K copies of the module stacks only ``x``; the initial ``x`` is drawn from ``init`` with the
module seed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from taskset_lab.errors import ConfigError
from taskset_lab.tasks.base import Batch, NoiseData, Task
from taskset_lab.tasks.nn import check_choice, derived_seed, family_rng, log_uniform, log_uniform_int
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.fields import Field

FAMILY = "lab_quadratic"
MAX_DIM = 3000
SPECTRA = ("linspace", "logspace", "uniform", "power_law", "one_large")
OUTPUTS = ("identity", "log")
LOG_EPS = 1e-8


def _sample_spectrum(rng: np.random.Generator) -> dict[str, Any]:
    kind = SPECTRA[rng.integers(len(SPECTRA))]
    if kind == "linspace":
        low = float(rng.uniform(0.01, 50.0))
        return {"kind": kind, "low": low, "high": low + float(rng.uniform(0.0, 100.0))}
    if kind == "logspace":
        return {"kind": kind, "low": log_uniform(rng, 1e-5, 1e-1), "high": log_uniform(rng, 1.0, 1e3)}
    if kind == "uniform":
        low = float(rng.uniform(0.01, 5.0))
        return {"kind": kind, "low": low, "high": low + float(rng.uniform(0.0, 50.0))}
    if kind == "power_law":
        return {"kind": kind, "high": log_uniform(rng, 1.0, 1e3), "exponent": float(rng.uniform(0.5, 2.0))}
    return {"kind": kind, "base": log_uniform(rng, 0.1, 10.0), "ratio": log_uniform(rng, 10.0, 1e4)}


def _sample_init(rng: np.random.Generator) -> dict[str, Any]:
    if rng.random() < 0.5:
        return {"kind": "normal", "mean": float(rng.normal(0.0, 1.0)), "std": float(rng.uniform(0.1, 2.0))}
    low = float(rng.uniform(-5.0, 2.5))
    return {"kind": "uniform", "low": low, "high": low + float(rng.uniform(0.1, 5.0))}


def sample(seed: int) -> dict[str, Any]:
    rng = family_rng(FAMILY.removeprefix("lab_"), seed)  # the stream of its 0.1 name: same configs
    return {
        "family": FAMILY,
        "dim": log_uniform_int(rng, 2, MAX_DIM),
        "spectrum": _sample_spectrum(rng),
        "rotate": bool(rng.random() < 0.8),
        "init": _sample_init(rng),
        "output": OUTPUTS[rng.integers(len(OUTPUTS))],
        "loss_scale": log_uniform(rng, 1e-5, 1e3),
        "noise_scale": log_uniform(rng, 0.01, 1.0) if rng.random() < 0.5 else 0.0,
        "problem_seed": derived_seed(rng),
        "data_seed": derived_seed(rng),
    }


def eigenvalues(spectrum: dict[str, Any], dim: int, rng: np.random.Generator) -> np.ndarray:
    """The ``dim`` eigenvalues (all > 0) of a spectrum config."""
    kind = check_choice(spectrum, "kind", SPECTRA, field="spectrum.kind")
    if kind == "linspace":
        eig = np.linspace(spectrum["low"], spectrum["high"], dim)
    elif kind == "logspace":
        eig = np.logspace(np.log10(spectrum["low"]), np.log10(spectrum["high"]), dim)
    elif kind == "uniform":
        eig = rng.uniform(spectrum["low"], spectrum["high"], dim)
    elif kind == "power_law":
        eig = spectrum["high"] * np.arange(1, dim + 1, dtype=float) ** -spectrum["exponent"]
    else:
        eig = np.full(dim, float(spectrum["base"]))
        eig[0] *= spectrum["ratio"]
    if not np.all(eig > 0):
        raise ConfigError("spectrum", f"eigenvalues must be positive, got min {eig.min()}")
    return eig


class QuadraticPoint(nn.Module):
    """Holds ``x``; returns it (the task computes the loss)."""

    def __init__(self, dim: int, init: dict[str, Any]):
        super().__init__()
        x = torch.empty(dim)
        if init["kind"] == "normal":
            nn.init.normal_(x, init["mean"], init["std"])
        else:
            nn.init.uniform_(x, init["low"], init["high"])
        self.x = nn.Parameter(x)

    def forward(self) -> Tensor:
        return self.x


class QuadraticTask(Task):
    def __init__(self, config: dict[str, Any], data: NoiseData, eig: Tensor, basis: Tensor | None):
        super().__init__(config, data)
        self._fixed = {(eig.device, eig.dtype): (eig, basis)}

    def fixed_tensors(self, like: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(eig, basis)`` on ``like``'s device and dtype (converted once, then cached)."""
        key = (like.device, like.dtype)
        if key not in self._fixed:
            eig, basis = next(iter(self._fixed.values()))
            self._fixed[key] = (eig.to(like.device, like.dtype),
                                None if basis is None else basis.to(like.device, like.dtype))
        return self._fixed[key]

    def make_module(self) -> nn.Module:
        return QuadraticPoint(self.config["dim"], self.config["init"])

    def model_inputs(self, batch: Batch) -> tuple[Tensor, ...]:
        return ()

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        eig, basis = self.fixed_tensors(output)
        z = output if basis is None else output @ basis  # Q^T x
        f = 0.5 * (eig * z * z).sum()
        if self.config["output"] == "log":
            f = torch.log(f.clamp_min(0.0) + LOG_EPS)
        return self.config["loss_scale"] * (f + (batch[0] * output).sum())


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> QuadraticTask:
    dim = int(config["dim"])
    if not 1 <= dim <= MAX_DIM:
        raise ConfigError("dim", f"must be in [1, {MAX_DIM}], got {dim}")
    check_choice(config, "output", OUTPUTS)
    check_choice(config.get("init"), "kind", ("normal", "uniform"), field="init.kind")
    rng = np.random.default_rng(int(config["problem_seed"]))
    eig = torch.from_numpy(eigenvalues(config["spectrum"], dim, rng))
    basis = None
    if config.get("rotate", True) and dim > 1:
        gaussian = torch.from_numpy(rng.standard_normal((dim, dim)))
        q, r = torch.linalg.qr(gaussian)
        basis = q * torch.sign(torch.diagonal(r))  # sign fix: Haar-distributed Q
    data = NoiseData((dim,), float(config.get("noise_scale", 0.0)), int(config["data_seed"]))
    return QuadraticTask(config, data, eig, basis)


FIELDS = {
    "dim": Field("int", low=1, high=1 << 16),
    "spectrum": Field("dict", check=lambda s: s.get("kind") in SPECTRA,
                      allowed=f"{{kind, ...}} with kind one of {', '.join(SPECTRA)}"),
    "rotate": Field("bool", optional=True),
    "init": Field("dict", check=lambda s: s.get("kind") in ("normal", "uniform"),
                  allowed="{kind: normal|uniform, ...}"),
    "output": Field("str", choices=OUTPUTS),
    "loss_scale": Field("float", low=0.0),
    "noise_scale": Field("float", low=0.0, optional=True),
    "problem_seed": Field("int", low=0),
    "data_seed": Field("int", low=0),
}

register_task_family(FAMILY, sample, build, fields=FIELDS)
