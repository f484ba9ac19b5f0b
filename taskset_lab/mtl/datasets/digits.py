"""Offline multi-task digits: two of scikit-learn's 8x8 digits side by side (an 8x16 image).

Tasks: 1 = the left digit (10 classes), 2 = the right digit (10 classes), 3 = the sum of
the two digits as a regression target (0…18, MSE). The regression loss starts near 100
while the classification losses start near 2.3, so task 3 dominates the shared layers' gradients
under equal weighting: the imbalance AdaTask and the loss-weighting methods are about.
Ships with scikit-learn: no download.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from taskset_lab.data.embedded import load_digits
from taskset_lab.mtl.datasets.base import MTLDataModule, TensorMTLDataset
from taskset_lab.mtl.kinds import MTLTaskSpec


class DigitsMTL(MTLDataModule):
    """Pairs are drawn once from a fixed seed; the digits' own split (train / the two
    validation parts / test) keeps train and test images apart."""

    def __init__(self, pairs_per_image: int = 2, pair_seed: int = 0, **kwargs):
        super().__init__(**kwargs)
        if pairs_per_image < 1:
            raise ValueError("pairs_per_image must be >= 1")
        self.pairs_per_image, self.pair_seed = int(pairs_per_image), int(pair_seed)
        self.tasks = {1: MTLTaskSpec("left_digit", "classification", 10),
                      2: MTLTaskSpec("right_digit", "classification", 10),
                      3: MTLTaskSpec("digit_sum", "regression", 1)}
        self.input_shape = (1, 8, 16)

    def build(self) -> dict[str, Dataset]:
        digits = load_digits()
        sources = {"train": [digits["train"]], "val": [digits["valid_inner"], digits["valid_outer"]],
                   "test": [digits["test"]]}
        rng = np.random.default_rng(self.pair_seed)
        out = {}
        for split, parts in sources.items():
            x = torch.cat([p[0] for p in parts])
            y = torch.cat([p[1] for p in parts])
            n = len(y) * self.pairs_per_image
            left = torch.from_numpy(rng.integers(0, len(y), n))
            right = torch.from_numpy(rng.integers(0, len(y), n))
            image = torch.cat([x[left], x[right]], dim=3)
            out[split] = TensorMTLDataset(image, {1: y[left], 2: y[right],
                                                  3: (y[left] + y[right]).float().unsqueeze(1)})
        return out
