"""The LightningModule of the MTL pipeline: per-task gradients, the algorithm, the optimizer.

Manual optimization: each step computes every task's loss on the same batch, each task's
gradient of the shared parameters (``torch.autograd.grad``, one call per task) and of its
own head, asks the algorithm for loss weights and (PCGrad) projected gradients, and hands
the per-task shared gradients to the optimizer (``step(task_grads=...)``; a plain torch
optimizer gets their sum in ``.grad``). Every ``eval_every`` steps and at the end it
evaluates the val and test splits; the rows are kept in ``self.records`` and sent to the
Lightning loggers. AU is updated every step from the optimizer's per-task update shares.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from torch import Tensor

from taskset_lab.mtl.algorithms import MTLAlgorithm
from taskset_lab.mtl.datasets.base import MTLDataModule
from taskset_lab.mtl.kinds import MetricAccumulator, task_loss
from taskset_lab.mtl.metrics import AUTracker
from taskset_lab.mtl.models import MTLModel
from taskset_lab.mtl.optim import TaskwiseOptimizer

EVAL_SPLITS = ("val", "test")


def _is_taskwise(factory: Callable) -> bool:
    target = factory.func if isinstance(factory, functools.partial) else factory
    return isinstance(target, type) and issubclass(target, TaskwiseOptimizer)


class MTLModule(pl.LightningModule):
    def __init__(self, model: MTLModel, datamodule: MTLDataModule, algorithm: MTLAlgorithm,
                 optimizer: Callable, lr_scheduler: Callable | None = None, eval_every: int = 50,
                 eval_tasks: list[int] | None = None, au_beta: float = 0.999, track_au: bool = True):
        super().__init__()
        self.model = model
        self.dm = datamodule
        self.algorithm = algorithm
        self.optimizer_factory, self.scheduler_factory = optimizer, lr_scheduler
        self.eval_every = int(eval_every)
        self.task_ids = model.task_ids
        self.eval_tasks = list(eval_tasks) if eval_tasks is not None else list(self.task_ids)
        self.algorithm.setup(len(self.task_ids))
        self.shared_named = model.shared_named_parameters()
        self.au = AUTracker(self.shared_named, len(self.task_ids), au_beta) if track_au else None
        self.au_beta = au_beta
        self.automatic_optimization = False
        self.records: list[dict[str, Any]] = []
        self.au_records: list[dict[str, Any]] = []
        self.weight_records: list[dict[str, Any]] = []
        self.diverged_step: int | None = None
        self._epoch_losses: list[Tensor] = []
        self._last_eval_step = -1

    # -- setup ----------------------------------------------------------------------------
    def train_dataloader(self):
        return self.dm.train_dataloader()

    def configure_optimizers(self) -> Any:
        groups = [{"params": [p for _, p in self.shared_named], "mtl_role": "shared"}]
        for t in self.task_ids:
            groups.append({"params": list(self.model.heads[str(t)].parameters()), "mtl_role": "task", "mtl_task": t})
        if _is_taskwise(self.optimizer_factory):
            optimizer = self.optimizer_factory(groups, n_tasks=len(self.task_ids),
                                               record_task_updates=self.au is not None)
        else:
            optimizer = self.optimizer_factory(groups)
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "step"}}

    def on_fit_start(self) -> None:
        self.algorithm.setup(len(self.task_ids), self.device)
        if self.au is not None:
            self.au.au = [a.to(self.device) for a in self.au.au]

    # -- training -------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> None:
        step = int(self.global_step)
        if step % self.eval_every == 0 and self._last_eval_step < step:
            self.evaluate(step)
        x, targets = batch
        preds = self.model(x)
        specs = self.dm.tasks
        losses = torch.stack([task_loss(specs[t].kind, preds[t], targets[t]) for t in self.task_ids])
        if not torch.isfinite(losses).all():
            self.diverged_step = step
            self.trainer.should_stop = True
            return None
        shared = [p for _, p in self.shared_named]
        task_grads, head_grads = [], []
        for i, t in enumerate(self.task_ids):
            head = list(self.model.heads[str(t)].parameters())
            grads = torch.autograd.grad(losses[i], shared + head, retain_graph=i < len(self.task_ids) - 1,
                                        allow_unused=True)
            params = shared + head
            grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
            task_grads.append(grads[: len(shared)])
            head_grads.append(grads[len(shared):])
        weights = self.algorithm.weights(losses.detach(), task_grads, step).to(losses.device)
        weighted = [[w * g for g in grads] for w, grads in zip(weights, task_grads)]
        combined = self.algorithm.combine(weighted)
        for i, t in enumerate(self.task_ids):
            for p, g in zip(self.model.heads[str(t)].parameters(), head_grads[i]):
                p.grad = weights[i] * g
        opt = self.optimizers()
        inner = opt.optimizer if hasattr(opt, "optimizer") else opt
        if isinstance(inner, TaskwiseOptimizer):
            opt.step(task_grads=[[combined[t][k] for t in range(len(self.task_ids))] for k in range(len(shared))])
            shares = [inner.task_updates.get(p) for p in shared] if self.au is not None else None
        else:  # a plain torch optimizer: the summed gradient; AU then measures gradient shares
            for k, p in enumerate(shared):
                p.grad = torch.stack([combined[t][k] for t in range(len(self.task_ids))]).sum(0)
            opt.step()
            lr = inner.param_groups[0]["lr"]
            shares = [[-lr * combined[t][k] for t in range(len(self.task_ids))] for k in range(len(shared))]
        opt.zero_grad()
        if self.au is not None and shares is not None:
            self.au.update([s if s is not None else [None] * len(self.task_ids) for s in shares])
        scheduler = self.lr_schedulers()
        if scheduler is not None:
            scheduler.step()
        self._epoch_losses.append(losses.detach())
        names = {t: self.dm.tasks[t].name for t in self.task_ids}
        self.log_dict({f"train/{names[t]}/loss": losses[i].detach() for i, t in enumerate(self.task_ids)},
                      on_step=True, on_epoch=False)
        if step % self.eval_every == 0:
            self.weight_records.append({"step": step, **{names[t]: float(weights[i])
                                                         for i, t in enumerate(self.task_ids)}})
        return None

    def on_train_epoch_end(self) -> None:
        if self._epoch_losses:
            self.algorithm.on_epoch_end(torch.stack(self._epoch_losses).mean(0))
        self._epoch_losses = []

    def on_train_end(self) -> None:
        if self.diverged_step is None and self._last_eval_step < self.global_step:
            self.evaluate(int(self.global_step))

    # -- evaluation -----------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, step: int) -> list[dict[str, Any]]:
        """Loss and metrics of every evaluated task on val and test; the task average too."""
        self._last_eval_step = step
        was_training = self.model.training
        self.model.eval()
        rows = []
        for split in EVAL_SPLITS:
            accs = {t: MetricAccumulator(self.dm.tasks[t]) for t in self.eval_tasks}
            for x, targets in self.dm.eval_dataloader(split):
                x = x.to(self.device)
                preds = self.model(x)
                for t in self.eval_tasks:
                    accs[t].update(preds[t], targets[t].to(self.device))
            per_metric: dict[str, list[float]] = {}
            for t, acc in accs.items():
                for metric, value in acc.result().items():
                    rows.append({"step": step, "epoch": int(self.current_epoch), "split": split, "task": t,
                                 "task_name": self.dm.tasks[t].name, "metric": metric, "value": value})
                    per_metric.setdefault(metric, []).append(value)
            for metric, values in per_metric.items():
                rows.append({"step": step, "epoch": int(self.current_epoch), "split": split, "task": 0,
                             "task_name": "average", "metric": metric, "value": sum(values) / len(values)})
        self.model.train(was_training)
        self.records.extend(rows)
        for logger in self.loggers:
            logger.log_metrics({f"{r['split']}/{r['task_name']}/{r['metric']}": r["value"] for r in rows}, step=step)
        if self.au is not None and self.au.steps:
            self._record_au(step)
        return rows

    def _record_au(self, step: int) -> None:
        assert self.au is not None
        rau, au = self.au.rau_per_layer(), self.au.au_per_layer()
        flat = {}
        for layer, values in rau.items():
            for i, t in enumerate(self.task_ids):
                name = self.dm.tasks[t].name
                self.au_records.append({"step": step, "layer": layer, "task": t, "task_name": name,
                                        "au": au[layer][i], "rau": values[i]})
                if not math.isnan(values[i]):
                    flat[f"rau/{layer}/{name}"] = values[i]
        for logger in self.loggers:
            logger.log_metrics(flat, step=step)

    def final_metrics(self, split: str = "test") -> dict[int, dict[str, float]]:
        """The last evaluation's metrics of each evaluated task on ``split``."""
        if not self.records:
            return {}
        last = max(r["step"] for r in self.records)
        out: dict[int, dict[str, float]] = {}
        for r in self.records:
            if r["step"] == last and r["split"] == split and r["task"] != 0:
                out.setdefault(r["task"], {})[r["metric"]] = r["value"]
        return out
