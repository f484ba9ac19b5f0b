"""One task, one optimizer config, trained by a Lightning Trainer (the TRAIN pipeline)."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from taskset_lab.engine.evaluate import evaluate_model
from taskset_lab.tasks.base import SPLITS, Task

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class SingleTaskLearner(pl.LightningModule):
    """Trains ``task``'s module with ``optimizer(params)``; evaluates every ``eval_every`` steps.

    The training batch of step ``s`` is ``task.data.batch("train", s)``, the same one the
    population engine uses, so a curve from here matches the engine's for the same config.
    The curve (``self.curve``: one dict per evaluation) travels in checkpoints, so a resumed
    run continues it. A non-finite training loss stops the run and is recorded in
    ``self.diverged_step``; nothing computed before it is lost.
    """

    def __init__(self, task: Task, optimizer: OptimizerFactory, eval_every: int,
                 eval_batches: int = 4, init_seed: int = 0, total_steps: int | None = None):
        super().__init__()
        if eval_every < 1 or eval_batches < 1:
            raise ValueError("eval_every and eval_batches must be >= 1")
        self.task = task
        self.optimizer_factory = optimizer
        self.eval_every = int(eval_every)
        self.eval_batches = int(eval_batches)
        self.total_steps = total_steps
        self.model = task.init_module(init_seed)
        self.curve: list[dict[str, float]] = []
        self.diverged_step: int | None = None
        self._eval_sets: dict[str, list] | None = None

    # -- data ---------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dtype = next(self.model.parameters()).dtype
        self.task = self.task.to(self.device, dtype)
        self._eval_sets = {s: self.task.data.eval_batches(s, self.eval_batches) for s in SPLITS}

    def train_dataloader(self) -> DataLoader:
        # The loader only paces the loop; batches are drawn on the device in training_step.
        steps = self.total_steps or self.trainer.max_steps
        return DataLoader(range(max(int(steps), 1)), batch_size=None)

    # -- training -------------------------------------------------------------------------
    def _evaluate(self) -> None:
        """Evaluate all splits, append to the curve, and send the row to every logger once."""
        assert self._eval_sets is not None
        step = int(self.global_step)
        losses = evaluate_model(self.task, self.model, self._eval_sets)
        self.curve.append({"step": step, **losses})
        for logger in self.loggers:
            logger.log_metrics({f"loss/{s}": v for s, v in losses.items()}, step=step)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        step = int(self.global_step)
        if step % self.eval_every == 0 and (not self.curve or self.curve[-1]["step"] < step):
            self._evaluate()
        loss = self.task.forward_loss(self.model, self.task.data.batch("train", step))
        if not torch.isfinite(loss):
            self.diverged_step = step
            self.trainer.should_stop = True
            return None
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_end(self) -> None:
        if self.diverged_step is None and (not self.curve or self.curve[-1]["step"] < self.global_step):
            self._evaluate()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())

    # -- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["taskset_lab"] = {"curve": list(self.curve), "diverged_step": self.diverged_step,
                                     "task_config": self.task.config}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("taskset_lab", {})
        self.curve = [dict(r) for r in saved.get("curve", [])]
        self.diverged_step = saved.get("diverged_step")

    @property
    def final_losses(self) -> dict[str, float]:
        return {s: self.curve[-1][s] for s in SPLITS} if self.curve else {s: math.nan for s in SPLITS}
