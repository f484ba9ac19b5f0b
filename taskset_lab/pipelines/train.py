"""TRAIN: one task trained with one optimizer config by a Lightning Trainer."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import OmegaConf

from taskset_lab.errors import ConfigError, TasklabError
from taskset_lab.pipelines.base import Pipeline
from taskset_lab.pipelines.building import (build_callbacks, build_loggers, build_optimizer_factory, build_task,
                                            finish_loggers)

log = logging.getLogger(__name__)


class TrainPipeline(Pipeline):
    name = "TRAIN"
    required_fields = ("expr_name", "output_dir", "global_seed", "total_steps", "eval_every",
                       "task", "optimizer", "learner", "trainer")

    def check(self) -> None:
        total = self.require_positive_int("total_steps")
        every = self.require_positive_int("eval_every")
        if every > total:
            raise ConfigError("eval_every", f"({every}) is larger than total_steps ({total})")
        resume = OmegaConf.select(self.cfg, "resume", default=False)
        if resume and not self.last_checkpoint().is_file():
            raise ConfigError("resume", f"no checkpoint to resume from at {self.last_checkpoint()}")

    def last_checkpoint(self) -> Path:
        return self.output_dir / "checkpoints" / "last.ckpt"

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        pl.seed_everything(int(cfg.global_seed), workers=True, verbose=False)
        self.save_config()
        task = build_task(cfg)
        optimizer = build_optimizer_factory(cfg)
        learner = instantiate(cfg.learner, task=task, optimizer=optimizer, total_steps=int(cfg.total_steps))
        loggers = build_loggers(cfg)
        trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg))
        ckpt = str(self.last_checkpoint()) if OmegaConf.select(cfg, "resume", default=False) else None
        log.info("TRAIN %s with %s for %d steps -> %s", task.name, cfg.optimizer._target_,
                 cfg.total_steps, self.output_dir)
        history = csv_metrics_history(loggers) if ckpt else {}
        start = time.perf_counter()
        try:
            trainer.fit(learner, ckpt_path=ckpt)
        except SystemExit:  # Lightning turns Ctrl-C into a graceful shutdown and exit(1)
            if not trainer.interrupted:
                raise
            self.write_curve(task.name, learner.curve)
            finish_loggers(loggers)
            log.warning("interrupted at step %d: the curve so far is in %s; continue from the last "
                        "checkpoint with: resume=true output_dir=%s", learner.global_step,
                        self.output_dir / "curve.csv", self.output_dir)
            raise KeyboardInterrupt from None
        finally:
            restore_csv_history(history)
        seconds = time.perf_counter() - start

        self.write_curve(task.name, learner.curve)
        final = learner.final_losses
        finish_loggers(loggers)
        summary = {"task": task.name, "task_config": task.config, "steps": int(learner.global_step),
                   "final": final, "diverged_step": learner.diverged_step, "seconds": seconds,
                   "output_dir": str(self.output_dir)}
        self.write_json("summary.json", summary)
        if learner.diverged_step is not None:
            log.warning("loss became non-finite at step %d; the curve up to there is in %s",
                        learner.diverged_step, self.output_dir / "curve.csv")
        print(f"TRAIN done: {task.name}, {learner.global_step} steps, final test loss "
              f"{final['test']:.4g}; outputs in {self.output_dir}")
        return summary

    def write_curve(self, task: str, rows: list[dict[str, Any]]) -> Path:
        """The evaluations so far as ``curve.csv`` (one row per evaluation step)."""
        curve = pd.DataFrame(rows)
        curve.insert(0, "task", task)
        path = self.output_dir / "curve.csv"
        curve.to_csv(path, index=False)
        return path


def csv_metrics_history(loggers: list[Any]) -> dict[Path, pd.DataFrame]:
    """Each CSV logger's ``metrics.csv`` before a resumed fit (Lightning deletes the file when
    it logs into an existing folder)."""
    from pytorch_lightning.loggers import CSVLogger

    history = {}
    for logger in loggers:
        path = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
        if path is not None and path.is_file():
            history[path] = pd.read_csv(path)
    return history


def restore_csv_history(history: dict[Path, pd.DataFrame]) -> None:
    """Put back the rows logged before the resumed run's first logged step."""
    for path, old in history.items():
        new = pd.read_csv(path) if path.is_file() else old.iloc[:0]
        kept = old[old["step"] < new["step"].min()] if len(new) else old
        pd.concat([kept, new], ignore_index=True).to_csv(path, index=False)
