"""The synthetic regression tasks of GradNorm (Chen et al., ICML 2018), generated.

Task i regresses f_i(x) = sigma_i * tanh((B + eps_i) x): B (shared by all tasks) and eps_i have
i.i.d. normal elements with standard deviations 10 and 3.5, as in the paper; the task
scales ``sigmas`` make the losses differ by orders of magnitude (MSE grows as sigma_i^2), so
the large-sigma tasks dominate equal weighting. The paper does not give the input
distribution; x ~ N(0, input_std^2) with input_std 0.01 keeps the tanh out of saturation for
in_dim 250 (pre-activation std about 1.7), so the targets are smooth functions of x. The
network is fed x / input_std (unit variance; a fixed rescaling, so the task is unchanged).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch.utils.data import Dataset

from taskset_lab.mtl.datasets.base import MTLDataModule, TensorMTLDataset
from taskset_lab.mtl.kinds import MTLTaskSpec


class GradNormSynthetic(MTLDataModule):
    def __init__(self, sigmas: Sequence[float] = (1.0, 10.0, 100.0), in_dim: int = 250, out_dim: int = 100,
                 n_train: int = 10000, n_val: int = 500, n_test: int = 1000, input_std: float = 0.01,
                 b_std: float = 10.0, eps_std: float = 3.5, data_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        sigmas = [float(s) for s in sigmas]
        if not sigmas or min(sigmas) <= 0:
            raise ValueError(f"sigmas must be a non-empty list of positive scales, got {sigmas}")
        if min(in_dim, out_dim, n_train, n_val, n_test) < 1:
            raise ValueError("in_dim, out_dim and the split sizes must be >= 1")
        self.sigmas, self.in_dim, self.out_dim = sigmas, int(in_dim), int(out_dim)
        self.sizes = {"train": int(n_train), "val": int(n_val), "test": int(n_test)}
        self.input_std, self.b_std, self.eps_std, self.data_seed = input_std, b_std, eps_std, int(data_seed)
        self.tasks = {i + 1: MTLTaskSpec(f"sigma_{s:g}", "regression", self.out_dim) for i, s in enumerate(sigmas)}
        self.input_shape = (self.in_dim,)

    def functions(self) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """B and the eps_i (drawn first, in this order, from ``data_seed``)."""
        g = torch.Generator().manual_seed(self.data_seed)
        b = torch.randn(self.out_dim, self.in_dim, generator=g) * self.b_std
        eps = [torch.randn(self.out_dim, self.in_dim, generator=g) * self.eps_std for _ in self.sigmas]
        return b, eps

    def build(self) -> dict[str, Dataset]:
        b, eps = self.functions()
        g = torch.Generator().manual_seed(self.data_seed + 1)
        out = {}
        for split in ("train", "val", "test"):
            x = torch.randn(self.sizes[split], self.in_dim, generator=g) * self.input_std
            targets = {i + 1: s * torch.tanh(x @ (b + e).T) for i, (s, e) in enumerate(zip(self.sigmas, eps))}
            out[split] = TensorMTLDataset(x / self.input_std, targets)
        return out
