"""One task, one optimizer config, trained by a Lightning Trainer (the TRAIN pipeline)."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from taskset_lab.engine.evaluate import RunTracker, evaluate_model
from taskset_lab.engine.state import DEFAULT_DIVERGENCE_FACTOR, eval_steps
from taskset_lab.tasks.base import SPLITS, Task

OptimizerFactory = Callable[[Iterable[torch.nn.Parameter]], torch.optim.Optimizer]


class SingleTaskLearner(pl.LightningModule):
    """Trains ``task``'s module with ``optimizer(params)``, with the engine's semantics
    (docs/design.md §One training semantics): the batch of step ``s`` is
    ``task.data.batch("train", s)`` and its randomness that of (replica ``init_seed``,
    ``config_id``, ``s``); evaluations in eval mode at the engine's evaluation steps, before
    that step's update; the engine's divergence rule (:class:`RunTracker`): a bad minibatch
    or evaluation loss marks the run diverged, it stops at the next evaluation, and every
    evaluation from the divergence step on is NaN. So ``curve`` equals the population
    engine's curve for the same config. The curve travels in checkpoints, so a resumed run
    continues it.
    """

    def __init__(self, task: Task, optimizer: OptimizerFactory, eval_every: int,
                 eval_batches: int = 4, init_seed: int = 0, total_steps: int | None = None,
                 divergence_factor: float = DEFAULT_DIVERGENCE_FACTOR, config_id: int = 0):
        super().__init__()
        if eval_every < 1 or eval_batches < 1:
            raise ValueError("eval_every and eval_batches must be >= 1")
        if not divergence_factor > 0:
            raise ValueError(f"divergence_factor must be > 0, got {divergence_factor}")
        self.task = task
        self.optimizer_factory = optimizer
        self.eval_every = int(eval_every)
        self.eval_batches = int(eval_batches)
        self.total_steps = total_steps
        self.replica, self.config_id = int(init_seed), int(config_id)
        self.divergence_factor = float(divergence_factor)
        self.model = task.init_module(init_seed)
        self._eval_sets: dict[str, list] | None = None
        self._tracker: RunTracker | None = None
        self._saved: dict[str, Any] | None = None

    # -- data ---------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        dtype = next(self.model.parameters()).dtype
        self.task = self.task.to(self.device, dtype)
        self._eval_sets = {s: self.task.data.eval_batches(s, self.eval_batches) for s in SPLITS}
        self._ensure_tracker()

    def _ensure_tracker(self) -> RunTracker:
        if self._tracker is None:
            steps = eval_steps(int(self.total_steps or self.trainer.max_steps), self.eval_every)
            dtype = next(self.model.parameters()).dtype
            self._tracker = RunTracker(steps, self.divergence_factor, dtype=dtype, device=self.device)
            if self._saved:
                self._tracker.rows = [list(r) for r in self._saved["rows"]]
                self._tracker.bound = torch.tensor(self._saved["bound"], dtype=dtype, device=self.device)
                self._tracker.dstep = torch.tensor(self._saved["dstep"], dtype=torch.long, device=self.device)
                self._tracker.stopped = self._tracker.diverged_step is not None and bool(self._tracker.rows)
        return self._tracker

    def train_dataloader(self) -> DataLoader:
        # The loader only paces the loop; batches are drawn on the device in training_step.
        steps = self.total_steps or self.trainer.max_steps
        return DataLoader(range(max(int(steps), 1)), batch_size=None)

    # -- training -------------------------------------------------------------------------
    def _evaluate(self, step: int) -> None:
        """Evaluate all splits, record the row, and send it to every logger once."""
        assert self._eval_sets is not None
        tracker = self._ensure_tracker()
        if len(tracker.rows) > tracker.steps.index(step):
            return  # already evaluated (a resumed run)
        losses = evaluate_model(self.task, self.model, self._eval_sets, self.config_id, self.replica)
        tracker.record_eval(step, losses)
        for logger in self.loggers:
            logger.log_metrics({f"loss/{s}": v for s, v in losses.items()}, step=step)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        step = int(self.global_step)
        tracker = self._ensure_tracker()
        if step in tracker.steps:
            self._evaluate(step)
        if tracker.stopped:
            self.trainer.should_stop = True
            return None
        loss = self.task.train_loss(self.model, self.task.data.batch("train", step), step,
                                    self.config_id, self.replica)
        tracker.record_train_loss(step, loss.detach())
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False)
        return loss

    def on_train_end(self) -> None:
        tracker = self._ensure_tracker()
        last = tracker.steps[-1]
        if not tracker.stopped and int(self.global_step) >= last:
            self._evaluate(last)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.model.parameters())

    # -- checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        t = self._ensure_tracker()
        checkpoint["taskset_lab"] = {"rows": [list(r) for r in t.rows], "bound": float(t.bound),
                                     "dstep": int(t.dstep), "task_config": self.task.config,
                                     "task": self.task.name}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._saved = checkpoint.get("taskset_lab")
        self._tracker = None

    # -- results --------------------------------------------------------------------------
    @property
    def curve(self) -> list[dict[str, float]]:
        """One dict per evaluation done (``step`` and the four splits); a diverged run lists
        every evaluation step, NaN from its divergence step on (as the engine reports it)."""
        if self._tracker is None:
            return []
        full = self._tracker.curve()
        return full if self._tracker.stopped else full[:len(self._tracker.rows)]

    @property
    def diverged_step(self) -> int | None:
        return None if self._tracker is None else self._tracker.diverged_step

    @property
    def final_losses(self) -> dict[str, float]:
        curve = self.curve
        return {s: curve[-1][s] for s in SPLITS} if curve else {s: math.nan for s in SPLITS}
