"""TRAIN: one task trained with one optimizer config by a Lightning Trainer.

``resume=true output_dir=<run>`` continues a run with the config it saved (``config.yaml``):
only overrides that do not change what is trained (loggers, progress, where it stops:
``trainer.max_steps``) may be given, others are refused before anything is written, and a
finished run is left as it is. ``curve.csv``, ``metrics.csv``, ``summary.json`` and
``config.yaml`` are written atomically (temporary file, then rename), so a failure (a full
disk, a kill) keeps the previous good file.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shlex
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from taskset_lab.errors import ConfigError
from taskset_lab.files import atomic_path, write_csv_atomic
from taskset_lab.overrides import explicit_overrides, override_key
from taskset_lab.pipelines.base import Pipeline
from taskset_lab.pipelines.building import (build_callbacks, build_loggers, build_optimizer_factory, build_task,
                                            finish_loggers, quiet_lightning)
from taskset_lab.pipelines.dashboards import (is_tensorboard, log_table, save_file, set_summary, start_loggers,
                                              tensorboard_hparams, wandb_run_of, warn_failed)

log = logging.getLogger(__name__)

# Fields a resumed run may change: they do not change what is trained, only how it is watched
# and where it stops. Anything else differing from the saved config.yaml is refused.
RESUME_MAY_CHANGE = ("resume", "output_dir", "logger", "misc", "hydra", "progress", "verbose",
                     "trainer.max_steps", "trainer.enable_progress_bar", "trainer.log_every_n_steps",
                     "trainer.enable_model_summary", "trainer.accelerator", "trainer.devices")
# Overrides that say nothing about what a run trains (left out of W&B run names)
_NOT_VARYING = ("pipeline", "index", "output_dir", "resume", "logger", "hydra", "misc", "progress", "verbose",
                "debug")
# Lightning's console chatter (tips, accelerator lines) is INFO on these loggers


def _matches(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: node}


def resume_config(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """The saved config of the run in ``run_dir`` with the allowed explicit overrides applied.

    An explicit override that changes anything else (the task, the optimizer, total_steps…)
    raises :class:`ConfigError` naming it; nothing has been written at that point.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        raise ConfigError("resume", f"no saved config {saved_path}; output_dir must be the folder of the run")
    saved = OmegaConf.load(saved_path)
    with open_dict(cfg):
        cfg.output_dir = str(run_dir)
    try:
        asked = _leaves(OmegaConf.to_container(cfg, resolve=True))
    except Exception as exc:  # noqa: BLE001 - an unresolvable field of the command line
        raise ConfigError("resume", f"cannot resolve the composed config: {exc}") from exc
    old = _leaves(OmegaConf.to_container(saved, resolve=True))
    changed = sorted(k for k in set(asked) | set(old) if asked.get(k, "<absent>") != old.get(k, "<absent>"))
    explicit = explicit_overrides()
    if explicit is not None:  # from the CLI: only what was asked for explicitly counts
        keys = tuple(override_key(o) for o in explicit)
        changed = [k for k in changed if _matches(k, keys)]
    refused = [k for k in changed if not _matches(k, RESUME_MAY_CHANGE)]
    if refused:
        k = refused[0]
        raise ConfigError(k, f"is {old.get(k, '<absent>')!r} in the run being resumed ({saved_path}), not "
                             f"{asked.get(k, '<absent>')!r}: a resumed run keeps its config (only "
                             f"{', '.join(RESUME_MAY_CHANGE[2:])} may change); start a new run with another "
                             f"output_dir instead")
    merged = OmegaConf.create(OmegaConf.to_container(saved, resolve=True))
    with open_dict(merged):
        for k in changed:
            if k in asked:
                OmegaConf.update(merged, k, asked[k], force_add=True)
        merged.resume = True
        merged.output_dir = str(run_dir)
    return merged


def resume_hint(output_dir: Path) -> str:
    """The command that continues this run: the run's own overrides, then resume=true output_dir=…"""
    explicit = explicit_overrides() or []
    kept = [o for o in explicit if override_key(o) not in ("resume", "output_dir")]
    words = [*kept, "resume=true", f"output_dir={output_dir}"]
    return ("tasklab " if explicit else "") + " ".join(shlex.quote(w) for w in words)


def optimizer_hparams(factory: Any) -> dict[str, Any]:
    """The hyperparameters the optimizer factory really uses (a sampled or listed config's
    drawn values included), from an optimizer built on a dummy parameter."""
    import torch

    opt = factory([torch.nn.Parameter(torch.zeros(1))])
    values = dict(getattr(opt, "defaults", {}) or {})
    family = getattr(getattr(opt, "family", None), "name", None)
    values.pop("updates", None)  # the optimizer's own step bookkeeping, not a hyperparameter
    out = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
    out.update({k: str(v) for k, v in values.items() if isinstance(v, (tuple, list))})
    if family is not None:
        out["family"] = family
    return out


def run_hparams(cfg: DictConfig, task: Any, opt_hparams: dict[str, Any]) -> dict[str, Any]:
    """What the loggers record as the run's hyperparameters (TensorBoard hparams, W&B config):
    the whole resolved config flattened (``trainer.max_steps``, ``learner.eval_batches``...),
    the task, its family and config (``task_config.<key>``: sizes, batch size), the
    optimizer's drawn values (``optimizer/<key>``) and the explicit overrides
    (``override/<key>``), numbers as numbers."""
    from taskset_lab.pipelines.dashboards import flat_config

    hp: dict[str, Any] = flat_config(cfg)
    hp.update({"task": task.name, "task_family": getattr(task, "family", None),
               "optimizer": str(cfg.optimizer._target_).rsplit(".", 1)[-1],
               "total_steps": int(cfg.total_steps), "eval_every": int(cfg.eval_every),
               "global_seed": int(cfg.global_seed)})
    hp.update(flat_config(getattr(task, "config", None) or {}, prefix="task_config"))
    hp.update({f"optimizer/{k}": v for k, v in opt_hparams.items()})
    for o in explicit_overrides() or []:
        key = override_key(o)
        if "=" in o and not _matches(key, _NOT_VARYING):
            hp[f"override/{key}"] = o.split("=", 1)[1]
    return {k: v for k, v in hp.items() if v is not None}


def run_metrics(curve: list[dict[str, Any]], steps: int, diverged_step: int | None) -> dict[str, float]:
    """The numbers runs are ranked by: ``final/<split>`` (the last evaluation),
    ``best/<split>`` (min over the evaluations of the finite values), ``diverged`` (0 or 1)
    and ``steps``; NaN where a split has no (finite) value."""
    from taskset_lab.tasks.base import SPLITS

    out: dict[str, float] = {}
    for s in SPLITS:
        values = [float(row[s]) for row in curve if s in row]
        finite = [v for v in values if math.isfinite(v)]
        out[f"final/{s}"] = values[-1] if values else math.nan
        out[f"best/{s}"] = min(finite) if finite else math.nan
    out["diverged"] = float(diverged_step is not None)
    out["steps"] = float(steps)
    return out


def run_name(cfg: DictConfig) -> str:
    """A W&B run name that says what varies: the experiment and its explicit overrides."""
    from taskset_lab.pipelines.dashboards import run_name as dashboard_name

    return dashboard_name(cfg, overrides=explicit_overrides() or [])


def make_csv_logger_atomic(loggers: list[Any]) -> None:
    """Lightning's CSV logger appends to ``metrics.csv`` in place; make each save a whole-file
    atomic rewrite, so a full disk or a kill leaves the previous complete file."""
    from pytorch_lightning.loggers import CSVLogger

    for logger in loggers:
        if not isinstance(logger, CSVLogger):
            continue
        writer = logger.experiment

        def save(writer: Any = writer) -> None:
            if not writer.metrics:
                return
            writer._record_new_keys()
            path = Path(writer.metrics_file_path)
            rows = []
            if path.is_file():
                with open(path, newline="") as f:
                    rows = list(csv.DictReader(f))
            with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
                out = csv.DictWriter(f, fieldnames=writer.metrics_keys, extrasaction="ignore")
                out.writeheader()
                out.writerows([*rows, *writer.metrics])
            writer.metrics = []

        writer.save = save


class TrainPipeline(Pipeline):
    name = "TRAIN"
    required_fields = ("expr_name", "output_dir", "global_seed", "total_steps", "eval_every",
                       "task", "optimizer", "learner", "trainer")

    def check(self) -> None:
        resume = OmegaConf.select(self.cfg, "resume", default=False)
        if resume:
            if not self.last_checkpoint().is_file():
                raise ConfigError("resume", f"no checkpoint to resume from at {self.last_checkpoint()}")
            self.cfg = resume_config(self.cfg, self.output_dir)
        with self.problems:
            total = self.require_positive_int("total_steps")
            every = self.require_positive_int("eval_every")
            if every > total:
                raise ConfigError("eval_every", f"({every}) is larger than total_steps ({total})")
        with self.problems:
            build_optimizer_factory(self.cfg)  # bad hyperparameters (lr=-1) before any training

    def last_checkpoint(self) -> Path:
        return self.output_dir / "checkpoints" / "last.ckpt"

    def finished_summary(self) -> dict[str, Any] | None:
        """The saved summary when this run already reached its last step (or diverged)."""
        path = self.output_dir / "summary.json"
        if not path.is_file():
            return None
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        stop = OmegaConf.select(self.cfg, "trainer.max_steps", default=None)
        stop = int(self.cfg.total_steps) if stop is None or int(stop) < 0 else int(stop)
        done = summary.get("diverged_step") is not None or int(summary.get("steps", -1)) >= stop
        return summary if done else None

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        resume = bool(OmegaConf.select(cfg, "resume", default=False))
        if resume:
            done = self.finished_summary()
            if done is not None:
                print(f"TRAIN: the run in {self.output_dir} is already finished ({done.get('steps')} steps); "
                      f"nothing to do (a new run needs another output_dir)")
                return done
        quiet_lightning(bool(OmegaConf.select(cfg, "verbose", default=False)))
        pl.seed_everything(int(cfg.global_seed), workers=True, verbose=False)
        task = build_task(cfg)
        optimizer = build_optimizer_factory(cfg)
        opt_hparams = optimizer_hparams(optimizer)
        learner = instantiate(cfg.learner, task=task, optimizer=optimizer, total_steps=int(cfg.total_steps))
        if OmegaConf.select(cfg, "logger.wandb", default=None) is not None:
            from taskset_lab.pipelines.dashboards import run_group

            with open_dict(cfg):
                if OmegaConf.select(cfg, "logger.wandb.name", default=None) == cfg.expr_name:
                    cfg.logger.wandb.name = run_name(cfg)
                cfg.logger.wandb.group = run_group(cfg)  # a multirun's jobs together
        self.save_config()
        loggers = start_loggers(build_loggers(cfg))  # a W&B run that cannot start: one line, no W&B
        history = csv_metrics_history(loggers) if resume else {}  # before the CSV writer starts
        make_csv_logger_atomic(loggers)
        hparams = run_hparams(cfg, task, opt_hparams)
        for logger in loggers:
            try:
                logger.log_hyperparams(hparams)
            except Exception as exc:  # noqa: BLE001 - a tracker's failure never stops the run
                warn_failed(f"{type(logger).__name__}: logging the hparams", exc)
        trainer = instantiate(cfg.trainer, logger=loggers or False, callbacks=build_callbacks(cfg))
        ckpt = str(self.last_checkpoint()) if resume else None
        log.info("TRAIN %s with %s for %d steps -> %s", task.name, cfg.optimizer._target_,
                 cfg.total_steps, self.output_dir)
        if opt_hparams:
            log.info("optimizer hparams: %s", ", ".join(f"{k}={v}" for k, v in sorted(opt_hparams.items())))
        start = time.perf_counter()
        try:
            trainer.fit(learner, ckpt_path=ckpt)
        except SystemExit:  # Lightning turns Ctrl-C into a graceful shutdown and exit(1)
            if not trainer.interrupted:
                raise
            self.write_curve(task.name, learner.curve)
            finish_loggers(loggers)
            log.warning("interrupted at step %d: the curve so far is in %s; continue from the last "
                        "checkpoint with: %s", learner.global_step, self.output_dir / "curve.csv",
                        resume_hint(self.output_dir))
            raise KeyboardInterrupt from None
        finally:
            restore_csv_history(history)
        seconds = time.perf_counter() - start

        self.write_curve(task.name, learner.curve)
        final = learner.final_losses
        self.log_results(loggers, hparams, learner)
        finish_loggers(loggers)
        summary = {"task": task.name, "task_config": task.config, "steps": int(learner.global_step),
                   "final": final, "diverged_step": learner.diverged_step, "seconds": seconds,
                   "optimizer_hparams": opt_hparams, "output_dir": str(self.output_dir)}
        self.write_json("summary.json", summary)
        if learner.diverged_step is not None:
            log.warning("loss became non-finite at step %d; the curve up to there is in %s",
                        learner.diverged_step, self.output_dir / "curve.csv")
        print(f"TRAIN done: {task.name}, {learner.global_step} steps, final test loss "
              f"{final['test']:.4g}; outputs in {self.output_dir}")
        return summary

    def log_results(self, loggers: list[Any], hparams: dict[str, Any], learner: Any) -> None:
        """The run's final and best losses where runs are compared: TensorBoard's HParams
        metrics (with the hparams), W&B's summary; W&B also gets the curve as a table and
        the resolved config as ``files/tasklab/config.yaml``."""
        metrics = run_metrics(learner.curve, int(learner.global_step), learner.diverged_step)
        for logger in loggers:
            if is_tensorboard(logger):
                tensorboard_hparams(logger, hparams, metrics, step=int(learner.global_step))
        run = wandb_run_of(loggers)
        if run is None:
            return
        set_summary(run, {**metrics, "diverged_step": learner.diverged_step})
        if learner.curve:
            log_table(run, "curve", pd.DataFrame(learner.curve))
        save_file(run, self.output_dir / "config.yaml", "tasklab/config.yaml")

    def write_curve(self, task: str, rows: list[dict[str, Any]]) -> Path:
        """The evaluations so far as ``curve.csv`` (one row per evaluation step), atomically."""
        curve = pd.DataFrame(rows)
        curve.insert(0, "task", task)
        return write_csv_atomic(self.output_dir / "curve.csv", curve)


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
        write_csv_atomic(path, pd.concat([kept, new], ignore_index=True))
