"""The kinds of MTL task: a head's output size, the training loss, and the evaluation metrics.

Metric directions (used by Δm): accuracy, mIoU and pixel accuracy are higher-is-better;
regression MSE and the depth errors are lower-is-better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

KINDS = ("classification", "regression", "segmentation", "depth")
DENSE_KINDS = ("segmentation", "depth")
HIGHER_IS_BETTER = {"accuracy": True, "miou": True, "pix_acc": True, "mse": False, "abs_err": False,
                    "rel_err": False}
METRICS = {"classification": ("accuracy",), "regression": ("mse",), "segmentation": ("miou", "pix_acc"),
           "depth": ("abs_err", "rel_err")}
IGNORE_LABEL = -1  # segmentation pixels without a class (CityScapes' preprocessed labels)


@dataclass(frozen=True)
class MTLTaskSpec:
    """One MTL task: ``out_dim`` is the class count (classification, segmentation) or the
    number of regressed values (regression; depth has 1)."""

    name: str
    kind: str
    out_dim: int

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown task kind {self.kind!r}; one of {KINDS}")

    @property
    def dense(self) -> bool:
        return self.kind in DENSE_KINDS


def _depth_mask(target: Tensor) -> Tensor:
    """Pixels with a depth value (0 marks no measurement, as in the MTAN preprocessing)."""
    return (target.sum(dim=1, keepdim=True) != 0).to(target.dtype)


def task_loss(kind: str, pred: Tensor, target: Tensor) -> Tensor:
    """The training loss of one task on one batch (a scalar)."""
    if kind == "classification":
        return F.cross_entropy(pred, target.long())
    if kind == "regression":
        return F.mse_loss(pred, target.reshape(pred.shape).to(pred.dtype))
    if kind == "segmentation":
        return F.cross_entropy(pred, target.long(), ignore_index=IGNORE_LABEL)
    if kind == "depth":
        mask = _depth_mask(target)
        return ((pred - target).abs() * mask).sum() / mask.sum().clamp_min(1.0)
    raise ValueError(f"unknown task kind {kind!r}")


class MetricAccumulator:
    """Sums over evaluation batches; ``result()`` gives the loss and the kind's metrics."""

    def __init__(self, spec: MTLTaskSpec):
        self.spec = spec
        self.loss_sum = 0.0
        self.batches_weight = 0
        self.sums: dict[str, float] = {}
        self.confusion = torch.zeros(spec.out_dim, spec.out_dim, dtype=torch.int64) \
            if spec.kind == "segmentation" else None

    def _add(self, name: str, value: float) -> None:
        self.sums[name] = self.sums.get(name, 0.0) + float(value)

    @torch.no_grad()
    def update(self, pred: Tensor, target: Tensor) -> None:
        kind, n = self.spec.kind, pred.shape[0]
        self.loss_sum += float(task_loss(kind, pred, target)) * n
        self.batches_weight += n
        if kind == "classification":
            self._add("correct", (pred.argmax(1) == target.long()).sum())
        elif kind == "regression":
            self._add("se", ((pred - target.reshape(pred.shape)) ** 2).sum())
            self._add("count", pred.numel())
        elif kind == "segmentation":
            labels, guess = target.long().flatten(), pred.argmax(1).flatten()
            keep = labels != IGNORE_LABEL
            k = self.spec.out_dim
            idx = labels[keep] * k + guess[keep]
            self.confusion += torch.bincount(idx.cpu(), minlength=k * k).reshape(k, k)
        elif kind == "depth":
            mask = _depth_mask(target)
            err = (pred - target).abs() * mask
            self._add("abs", err.sum())
            self._add("rel", (err / target.abs().clamp_min(1e-12) * mask).sum())
            self._add("pixels", mask.sum())

    def result(self) -> dict[str, float]:
        n = max(self.batches_weight, 1)
        out = {"loss": self.loss_sum / n}
        s = self.sums
        if self.spec.kind == "classification":
            out["accuracy"] = s.get("correct", 0.0) / n
        elif self.spec.kind == "regression":
            out["mse"] = s.get("se", 0.0) / max(s.get("count", 0.0), 1.0)
        elif self.spec.kind == "segmentation":
            out.update(segmentation_scores(self.confusion))
        elif self.spec.kind == "depth":
            pixels = max(s.get("pixels", 0.0), 1.0)
            out["abs_err"] = s.get("abs", 0.0) / pixels
            out["rel_err"] = s.get("rel", 0.0) / pixels
        return out


def segmentation_scores(confusion: Tensor) -> dict[str, float]:
    """mIoU over the classes that occur (in labels or predictions) and pixel accuracy."""
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    present = union > 0
    miou = float((tp[present] / union[present]).mean()) if present.any() else 0.0
    total = float(confusion.sum())
    return {"miou": miou, "pix_acc": float(tp.sum()) / total if total else 0.0}
