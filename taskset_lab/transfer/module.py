"""The LightningModule of a TRANSFER trial: one model, one optimizer spec, a loss curve.

Works unchanged under DDP (every rank runs it; evaluation sums are all-reduced, the
divergence decision is agreed by all ranks), bf16-mixed precision and gradient accumulation
(``total_steps`` counts optimizer steps, as Lightning's ``max_steps`` does).
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from taskset_lab.transfer.methods import build_optimizer

KINDS = ("classifier", "lm")

#: a trial diverges above this multiple of its first step's training loss (TRANSFER's rule)
DIVERGENCE_MULTIPLE = 5.0


def is_diverged(losses: Mapping[str, float], bound: float | None) -> bool:
    """The divergence rule of a trial, over every loss it reports (train, valid, test): one
    of them NaN/inf, or above ``bound`` when a bound is set."""
    return any(not math.isfinite(v) or (bound is not None and v > bound) for v in losses.values())


class TransferModule(pl.LightningModule):
    """Trains ``model`` with the optimizer described by ``optimizer``; ``curve`` holds one row
    per evaluation: step, mean train loss since the last one, valid and test loss (and
    accuracy for classifiers).

    A trial diverges when a training loss, or a valid or test loss at an evaluation, is NaN/inf
    or above ``divergence_multiple`` times the first step's loss (floored at 1e-3; or above
    ``divergence_bound`` when given): training stops at once and ``diverged_step`` records
    where. (The population engine's rule, ``divergence_factor``, is another one: a loss above
    ``L0 + factor·max(|L0|, 1e-12)``; the two names keep them apart.)
    """

    def __init__(self, model: torch.nn.Module, kind: str, optimizer: Mapping[str, Any], total_steps: int,
                 divergence_multiple: float | None = DIVERGENCE_MULTIPLE, divergence_bound: float | None = None):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.model, self.kind = model, kind
        self.optimizer_spec = dict(optimizer)
        self.total_steps = int(total_steps)
        self.divergence_multiple = divergence_multiple
        self.bound = divergence_bound
        self.curve: list[dict[str, float]] = []
        self.diverged_step: int | None = None
        self._train_sum = torch.zeros(2)  # loss sum, count since the last evaluation
        self._eval: dict[int, torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _losses(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(summed loss, number correct, count) of a batch."""
        x, y = batch
        logits = self.model(x)
        if self.kind == "lm":
            logits, y = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        loss = F.cross_entropy(logits.float(), y, reduction="sum")
        return loss, (logits.argmax(-1) == y).sum(), y.numel()

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        total, _, n = self._losses(batch)
        loss = total / n
        value = float(loss.detach())
        if self.bound is None and self.divergence_multiple and math.isfinite(value):
            self.bound = float(self.divergence_multiple) * max(value, 1e-3)
        bad = is_diverged({"train": value}, self.bound)
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            if self.diverged_step is None:
                self.diverged_step = int(self.global_step)
            self.trainer.should_stop = True
        else:
            self._train_sum += torch.tensor([value, 1.0])
            self.log("train_loss", loss.detach(), prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def configure_optimizers(self) -> Any:
        trainer = self.trainer
        global_batch = self._batch_size() * trainer.world_size * trainer.accumulate_grad_batches
        optimizer, scheduler = build_optimizer(self.optimizer_spec, self.parameters(), self.total_steps,
                                               global_batch)
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _batch_size(self) -> int:
        dm = getattr(self.trainer, "datamodule", None)
        return int(getattr(dm, "batch_size", 1) or 1)

    # -- evaluation ---------------------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._eval = {}

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        total, correct, n = self._losses(batch)
        sums = torch.stack([total.detach().float(), correct.float(),
                            torch.tensor(float(n), device=total.device)])
        self._eval[dataloader_idx] = self._eval.get(dataloader_idx, torch.zeros_like(sums)) + sums

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        strategy = self.trainer.strategy
        row: dict[str, float] = {"step": int(self.global_step)}
        train = strategy.reduce(self._train_sum.to(self.device), reduce_op="sum")
        row["train"] = float(train[0] / train[1]) if float(train[1]) > 0 else math.nan
        self._train_sum = torch.zeros(2)
        for idx, split in enumerate(("valid", "test")):
            sums = self._eval.get(idx, torch.zeros(3, device=self.device))
            sums = strategy.reduce(sums, reduce_op="sum")
            count = float(sums[2])
            row[split] = float(sums[0]) / count if count else math.nan
            if self.kind == "classifier":
                row[f"{split}_accuracy"] = float(sums[1]) / count if count else math.nan
        if self.curve and self.curve[-1]["step"] == row["step"]:
            self.curve[-1] = row
        else:
            self.curve.append(row)
        # the rule sees every split it reports: a test loss of 1,300 is a divergence too (the
        # splits are reduced over ranks above, so every rank takes the same decision)
        evaluated = {k: row[k] for k in ("valid", "test")}
        if self.diverged_step is None and is_diverged(evaluated, self.bound):
            self.diverged_step = int(self.global_step)
            self.trainer.should_stop = True
        metrics = {f"loss/{k}": v for k, v in row.items() if k in ("train", "valid", "test")}
        metrics.update({f"accuracy/{k[:-9]}": v for k, v in row.items() if k.endswith("_accuracy")})
        for logger in self.loggers:
            logger.log_metrics(metrics, step=int(self.global_step))
