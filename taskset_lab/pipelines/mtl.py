"""MTL: several tasks share one backbone; an algorithm and an optimizer (plain or AdaTask)
decide how their gradients combine. CLArena's ``MTL_EXPR`` is the interface model.

A run trains the model on ``train_tasks``, evaluates ``eval_tasks`` on val and test, and
writes under ``output_dir``: ``metrics.csv`` (every evaluation: step, epoch, split, task,
metric, value), ``final_metrics.csv``, ``delta_m.csv`` (Δm% against single-task baselines;
positive is better), ``au.csv`` (AU and rAU per shared layer and task), ``loss_weights.csv``,
plots, ``summary.json`` and the resolved ``config.yaml``.

Baselines for Δm (``baseline``): ``train`` trains each task alone with the same dataset,
backbone, optimizer family (AdaTask with one task is its base optimizer) and steps, and keeps
them under ``baseline_cache_dir/<key>`` so every run of a sweep reuses them; a folder path
reads ``final_metrics.csv`` of an earlier STL run; ``none`` skips Δm.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from taskset_lab.errors import ConfigError, DataError
from taskset_lab.files import write_csv_atomic, write_text_atomic
from taskset_lab.pipelines.base import Pipeline, require_positive_int
from taskset_lab.pipelines.building import build_callbacks, build_loggers, finish_loggers, instantiate_field

log = logging.getLogger(__name__)


def parse_task_list(value: Any, field: str) -> list[int]:
    """An int N means tasks 1…N; a list names the tasks."""
    if isinstance(value, bool):
        raise ConfigError(field, f"must be a positive int N (tasks 1..N) or a list of task ids, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(field, f"must be >= 1, got {value}")
        return list(range(1, value + 1))
    if isinstance(value, (list, tuple, ListConfig)):
        ids = list(value)
        if not ids or any(isinstance(t, bool) or not isinstance(t, int) or t < 1 for t in ids):
            raise ConfigError(field, f"must list positive task ids, got {ids}")
        if len(set(ids)) != len(ids):
            raise ConfigError(field, f"lists a task twice: {ids}")
        return ids
    raise ConfigError(field, f"must be a positive int N (tasks 1..N) or a list of task ids, got {value!r}")


#: a finished single-task baseline: its settings and final metrics (written last, atomically)
BASELINE_RECORD = "baseline.json"


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def check_optimizer_factory(cfg: DictConfig, field: str = "optimizer") -> None:
    """The optimizer config builds a factory, and the factory an optimizer (on one dummy
    parameter, in a shared group as MTL passes it), so a bad hyperparameter (``lr=-1``) is
    refused before any training."""
    from taskset_lab.mtl.module import _is_taskwise

    if OmegaConf.select(cfg, f"{field}._partial_", default=False) is not True:
        raise ConfigError(field, "must build a factory (set _partial_: true)")
    factory = instantiate_field(cfg, field)
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "mtl_role": "shared"}]
    try:
        factory(groups, n_tasks=1) if _is_taskwise(factory) else factory(groups)
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(field, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


class MTLPipeline(Pipeline):
    name = "MTL"
    required_fields = ("expr_name", "output_dir", "global_seed", "total_steps", "eval_every", "train_tasks",
                       "eval_tasks", "mtl_dataset", "mtl_algorithm", "backbone", "optimizer", "trainer")

    def check(self) -> None:
        problems = self.problems
        with problems:
            total = self.require_positive_int("total_steps")
            every = self.require_positive_int("eval_every")
            if every > total:
                raise ConfigError("eval_every", f"({every}) is larger than total_steps ({total})")
        with problems:
            train = parse_task_list(self.cfg.train_tasks, "train_tasks")
            evaluated = parse_task_list(self.cfg.eval_tasks, "eval_tasks")
            if not set(evaluated) <= set(train):
                raise ConfigError("eval_tasks", f"{evaluated} must be among train_tasks {train} (a head is trained "
                                  f"only for a trained task)")
        with problems:
            require_positive_int(self.cfg, "torch_threads", nullable=True)
        with problems:
            baseline = str(OmegaConf.select(self.cfg, "baseline", default="none"))
            if baseline not in ("train", "none") and not (Path(baseline) / "final_metrics.csv").is_file():
                raise ConfigError("baseline", f"must be train, none or a folder with final_metrics.csv, "
                                              f"got {baseline!r}")
        with problems:
            check_optimizer_factory(self.cfg)

    # -- building -------------------------------------------------------------------------
    def _datamodule(self):
        dm = instantiate_field(self.cfg, "mtl_dataset")
        try:
            dm.setup()
        except (ValueError, FileNotFoundError) as exc:
            raise DataError(f"mtl_dataset: {exc}") from None
        train = parse_task_list(self.cfg.train_tasks, "train_tasks")
        unknown = [t for t in train if t not in dm.tasks]
        if unknown:
            raise ConfigError("train_tasks", f"tasks {unknown} do not exist in {dm.name} (tasks "
                              f"{', '.join(f'{t}={s.name}' for t, s in dm.tasks.items())})")
        return dm

    def _module(self, dm, tasks: list[int], algorithm, eval_tasks: list[int]):
        from taskset_lab.mtl.models import MTLModel
        from taskset_lab.mtl.module import MTLModule

        torch.manual_seed(int(self.cfg.global_seed))
        backbone = instantiate_field(self.cfg, "backbone", in_shape=list(dm.input_shape))
        try:
            model = MTLModel(backbone, {t: dm.tasks[t] for t in tasks})
        except ValueError as exc:
            raise ConfigError("backbone", str(exc)) from None
        optimizer = instantiate_field(self.cfg, "optimizer")
        scheduler = instantiate_field(self.cfg, "lr_scheduler") \
            if OmegaConf.select(self.cfg, "lr_scheduler._target_", default=None) else None
        metrics = OmegaConf.select(self.cfg, "metrics", default=None) or {}
        return MTLModule(model, dm, algorithm, optimizer, scheduler, eval_every=int(self.cfg.eval_every),
                         eval_tasks=eval_tasks, au_beta=float(metrics.get("au_beta", 0.999)),
                         track_au=bool(metrics.get("track_au", True)))

    def _fit(self, module, out: Path, with_loggers: bool) -> dict[str, Any]:
        """Train ``module``; with ``with_loggers`` the loggers stay open (``self.loggers``) for
        the results, :meth:`log_results` closes them."""
        cfg = self.cfg
        loggers = self.start_loggers() if with_loggers else []
        callbacks = build_callbacks(cfg) if with_loggers else []
        trainer_cfg = copy.deepcopy(cfg.trainer)
        extra: dict[str, Any] = {"default_root_dir": str(out)}
        if not with_loggers:  # the STL baselines keep their records, not checkpoints
            extra["enable_checkpointing"] = False
        with_root = OmegaConf.merge(trainer_cfg, extra)
        try:
            trainer = instantiate(with_root, logger=loggers or False, callbacks=callbacks)
        except Exception as exc:  # noqa: BLE001 - a bad trainer field
            cause = exc.__cause__ or exc
            raise ConfigError("trainer", str(cause).splitlines()[0] if str(cause) else type(cause).__name__) from exc
        pl.seed_everything(int(cfg.global_seed), workers=True, verbose=False)
        start = time.perf_counter()
        try:
            trainer.fit(module)
        except SystemExit:
            if not trainer.interrupted:
                raise
            # the records so far, never final metrics: a half-trained model's numbers must not
            # pass for a finished run's (a rerun would take them for a finished baseline)
            self._write_records(module, out, final=False)
            finish_loggers(loggers)
            self.loggers = []
            raise KeyboardInterrupt from None
        seconds = time.perf_counter() - start
        if not with_loggers:
            finish_loggers(loggers)
        self._write_records(module, out, final=module.diverged_step is None)
        return {"seconds": seconds, "steps": int(module.global_step), "diverged_step": module.diverged_step}

    def _write_records(self, module, out: Path, final: bool = True) -> None:
        out.mkdir(parents=True, exist_ok=True)
        if not final:
            for stale in ("final_metrics.csv", "delta_m.csv", BASELINE_RECORD):
                (out / stale).unlink(missing_ok=True)
        if module.records:
            write_csv_atomic(out / "metrics.csv", pd.DataFrame(module.records))
        if module.au_records:
            write_csv_atomic(out / "au.csv", pd.DataFrame(module.au_records))
        if module.weight_records:
            write_csv_atomic(out / "loss_weights.csv", pd.DataFrame(module.weight_records))
        if not final:
            return
        final_metrics = module.final_metrics()
        rows = [{"task": t, "task_name": module.dm.tasks[t].name, "metric": m, "value": v}
                for t, metrics in final_metrics.items() for m, v in metrics.items()]
        if rows:
            write_csv_atomic(out / "final_metrics.csv", pd.DataFrame(rows))

    # -- baselines ------------------------------------------------------------------------
    def baseline_key(self, tasks: list[int]) -> str:
        text = json.dumps(self.baseline_settings(tasks), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def baseline_settings(self, tasks: list[int]) -> dict[str, Any]:
        """What decides a single-task baseline's numbers (recorded with it, compared on reuse)."""
        from taskset_lab.mtl.optim import BASE_NAME

        opt = _plain(self.cfg.optimizer)
        target = opt.pop("_target_", "")
        cls = next((c for c in BASE_NAME if f"{c.__module__}.{c.__name__}" == target), None)
        opt["family"] = BASE_NAME[cls] if cls is not None else target
        payload = {"dataset": _plain(self.cfg.mtl_dataset), "backbone": _plain(self.cfg.backbone), "optimizer": opt,
                   "lr_scheduler": _plain(OmegaConf.select(self.cfg, "lr_scheduler", default=None)),
                   "steps": int(self.cfg.total_steps), "eval_every": int(self.cfg.eval_every),
                   "seed": int(self.cfg.global_seed), "tasks": tasks,
                   "trainer_accelerator": str(OmegaConf.select(self.cfg, "trainer.accelerator", default=""))}
        return json.loads(json.dumps(payload, sort_keys=True, default=str))

    def finished_baseline(self, folder: Path, task: int) -> dict[str, float] | None:
        """The metrics of the finished baseline of ``task`` in ``folder``, or None (with a
        warning naming the path) when there is none or it cannot be used: damaged, trained
        with other settings, or not finite. Such a baseline is trained again, never mixed in."""
        record = folder / BASELINE_RECORD
        if not record.is_file():
            if (folder / "final_metrics.csv").is_file():
                log.warning("MTL: %s has no %s (an unfinished or older baseline): training it again",
                            folder, BASELINE_RECORD)
            return None
        try:
            data = json.loads(record.read_text())
            settings, metrics = data["settings"], {str(k): float(v) for k, v in data["metrics"].items()}
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("MTL: damaged baseline record %s (%s): training it again", record, exc)
            return None
        if settings != self.baseline_settings([task]):
            log.warning("MTL: baseline %s was trained with other settings: training it again", folder)
            return None
        if not metrics or not all(math.isfinite(v) for v in metrics.values()):
            log.warning("MTL: baseline %s holds no finite metrics (%s): training it again", record, metrics)
            return None
        return metrics

    def _write_baseline_record(self, folder: Path, task: int, metrics: dict[str, float]) -> None:
        path = folder / BASELINE_RECORD
        write_text_atomic(path, json.dumps({"settings": self.baseline_settings([task]), "metrics": metrics}, indent=2))

    def train_single_tasks(self, dm, tasks: list[int], root: Path) -> dict[int, dict[str, float]]:
        """Each task trained alone (STL); ``root/task_<t>/`` holds its records."""
        from taskset_lab.mtl.algorithms import STL

        results = {}
        for t in tasks:
            folder = root / f"task_{t}"
            found = self.finished_baseline(folder, t)
            if found is not None:
                results[t] = found
                continue
            module = self._module(dm, [t], STL(), [t])
            log.info("MTL: single-task baseline for task %d (%s)", t, dm.tasks[t].name)
            info = self._fit(module, folder, with_loggers=False)
            if info["diverged_step"] is not None:
                raise DataError(f"the single-task baseline of task {t} ({dm.tasks[t].name}) diverged at step "
                                f"{info['diverged_step']}: no Δm against it (lower optimizer.lr?)")
            results[t] = {str(m): float(v) for m, v in module.final_metrics()[t].items()}
            self._write_baseline_record(folder, t, results[t])
        rows = [{"task": t, "task_name": dm.tasks[t].name, "metric": m, "value": v}
                for t, metrics in results.items() for m, v in metrics.items()]
        write_csv_atomic(root / "final_metrics.csv", pd.DataFrame(rows))
        return results

    def baseline_metrics(self, dm, tasks: list[int]) -> tuple[dict[int, dict[str, float]] | None, str | None]:
        mode = str(OmegaConf.select(self.cfg, "baseline", default="none"))
        if mode == "none":
            return None, None
        if mode != "train":
            path = Path(mode) / "final_metrics.csv"
            found = read_final_metrics(path)
            missing = [t for t in tasks if t not in found]
            if missing:
                raise DataError(f"baseline {mode} has no results for tasks {missing}")
            check_baseline_values({t: found[t] for t in tasks}, path)
            return {t: found[t] for t in tasks}, mode
        cache = OmegaConf.select(self.cfg, "baseline_cache_dir", default=None)
        root = Path(str(cache)) / self.baseline_key(tasks) if cache else self.output_dir / "stl_baseline"
        results = self.train_single_tasks(dm, tasks, root)
        check_baseline_values(results, root / "final_metrics.csv")
        return results, str(root)

    # -- dashboards -----------------------------------------------------------------------
    loggers: list[Any] = []

    def start_loggers(self) -> list[Any]:
        """The run's Lightning loggers, the W&B run named after what varies and grouped with
        its multirun, a W&B logger that cannot start left out (one line), the flat config
        logged as hyperparameters."""
        from omegaconf import open_dict

        from taskset_lab.pipelines import dashboards as dash

        cfg = self.cfg
        if dash.wandb_node(cfg) is not None:
            with open_dict(cfg):
                if OmegaConf.select(cfg, "logger.wandb.name", default=None) == cfg.expr_name:
                    cfg.logger.wandb.name = dash.run_name(cfg)
                cfg.logger.wandb.group = dash.run_group(cfg)
        self.loggers = dash.start_loggers(build_loggers(cfg))
        self.hparams = dash.flat_config(cfg)
        for logger in self.loggers:
            try:
                logger.log_hyperparams(self.hparams)
            except Exception as exc:  # noqa: BLE001 - a tracker's failure never stops the run
                dash.warn_failed(f"{type(logger).__name__}: logging the hparams", exc)
        return self.loggers

    def log_results(self, summary: dict[str, Any]) -> None:
        """The results where runs are compared (pipelines/mtl_dashboard.py), then the loggers
        closed. A single-task (STL) run, trained without loggers, gets a W&B run of its own."""
        from taskset_lab.pipelines import dashboards as dash
        from taskset_lab.pipelines.mtl_dashboard import log_mtl_results

        loggers, self.loggers = self.loggers, []
        run = dash.wandb_run_of(loggers)
        own = None
        if not loggers and summary.get("method") == "STL":
            own = run = dash.start_run(self.cfg, job_type="MTL", config=dash.flat_config(self.cfg))
        try:
            log_mtl_results(run, loggers, getattr(self, "hparams", {}), summary, self.output_dir)
        finally:
            finish_loggers(loggers)
            dash.finish_run(own)

    # -- running --------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        finally:  # an error after training: the loggers still close (their records complete)
            if self.loggers:
                finish_loggers(self.loggers)
                self.loggers = []

    def _run(self) -> dict[str, Any]:
        from taskset_lab.mtl.metrics import delta_m

        cfg = self.cfg
        from taskset_lab.pipelines.building import quiet_lightning

        quiet_lightning(bool(OmegaConf.select(cfg, "verbose", default=False)))
        threads = OmegaConf.select(cfg, "torch_threads", default=None)
        if threads is not None:  # small models: one thread avoids thread contention on a busy CPU
            torch.set_num_threads(int(threads))
        if (self.output_dir / "metrics.csv").is_file() and not (self.output_dir / "final_metrics.csv").is_file():
            log.warning("MTL: %s holds an unfinished (interrupted or diverged) run; MTL does not resume from checkpoints: the model is "
                        "trained again from step 0 (finished single-task baselines are reused)", self.output_dir)
        self.save_config()
        dm = self._datamodule()
        train = parse_task_list(cfg.train_tasks, "train_tasks")
        evaluated = parse_task_list(cfg.eval_tasks, "eval_tasks")
        algorithm = instantiate_field(cfg, "mtl_algorithm")
        out = self.output_dir
        log.info("MTL %s on %s tasks %s with %s -> %s", algorithm.name, dm.name, train,
                 cfg.optimizer._target_.rsplit(".", 1)[-1], out)
        given = str(OmegaConf.select(cfg, "baseline", default="none"))
        early = None  # a baseline folder given by the user is checked before any training
        if given not in ("train", "none") and not algorithm.single_task:
            early = self.baseline_metrics(dm, evaluated)
        if algorithm.single_task:
            final = self.train_single_tasks(dm, train, out)
            final = {t: final[t] for t in evaluated}
            run_info: dict[str, Any] = {"steps": int(cfg.total_steps), "diverged_step": None}
            module = None
        else:
            module = self._module(dm, train, algorithm, evaluated)
            run_info = self._fit(module, out, with_loggers=True)
            final = module.final_metrics() if run_info["diverged_step"] is None else {}  # no step-0 numbers
        optimizer_name = cfg.optimizer._target_.rsplit(".", 1)[-1]
        if algorithm.single_task:
            baseline, baseline_from = final, "self"
        elif run_info.get("diverged_step") is not None:  # no Δm for a diverged run: no baselines to train
            baseline, baseline_from = None, None
        else:
            baseline, baseline_from = early if early is not None else self.baseline_metrics(dm, evaluated)
        dm_value = None
        diverged = run_info.get("diverged_step") is not None
        if diverged:  # no result of an earlier run may stay beside this one's
            (out / "delta_m.csv").unlink(missing_ok=True)
        if baseline is not None and final and not diverged:
            dm_value = delta_m(final, baseline)
            row = {"method": algorithm.name, "optimizer": optimizer_name, "delta_m": dm_value}
            for t in evaluated:
                for metric, value in final[t].items():
                    row[f"{dm.tasks[t].name}/{metric}"] = value
                    if metric in baseline[t]:
                        row[f"{dm.tasks[t].name}/{metric}/stl"] = baseline[t][metric]
            write_csv_atomic(out / "delta_m.csv", pd.DataFrame([row]))
        if module is not None:
            self._plots(module, dm, out, algorithm.name, optimizer_name)
        summary = {"method": algorithm.name, "optimizer": optimizer_name, "dataset": dm.name,
                   "tasks": {t: dm.tasks[t].name for t in evaluated}, "final": final, "baseline": baseline,
                   "baseline_from": baseline_from, "delta_m": dm_value, "output_dir": str(out), **run_info}
        self.write_json("summary.json", summary)
        self.log_results(summary)
        if run_info.get("diverged_step") is not None:
            log.warning("a task loss became non-finite at step %s; records up to there are in %s",
                        run_info["diverged_step"], out)
        print(format_summary(summary))
        return summary

    def _plots(self, module, dm, out: Path, method: str, optimizer_name: str) -> None:
        from taskset_lab.mtl.plots import metric_curves, rau_heatmap

        if module.records:
            metric_curves(pd.DataFrame(module.records), out / "metrics.png")
        if module.au is not None and module.au.steps:
            names = [dm.tasks[t].name for t in module.task_ids]
            rau_heatmap(module.au.rau_per_layer(), names, out / "rau_heatmap.png",
                        title=f"rAU: {method} + {optimizer_name} on {dm.name}")


def check_baseline_values(found: dict[int, dict[str, float]], path: Path) -> None:
    """A baseline Δm can be measured against: finite metrics, and no 0 where Δm divides by it."""
    from taskset_lab.mtl.metrics import HIGHER_IS_BETTER

    bad = {t: m for t, metrics in found.items() for m, v in metrics.items() if not math.isfinite(v)}
    if bad:
        raise DataError(f"baseline {path} holds non-finite metrics (task: metric {bad}); no Δm against it")
    zero = {t: m for t, metrics in found.items() for m, v in metrics.items() if m in HIGHER_IS_BETTER and v == 0}
    if zero:
        raise DataError(f"baseline {path} holds metrics of exactly 0 (task: metric {zero}); Δm divides by the "
                        f"baseline's values, so it is undefined against this one")


def read_final_metrics(path: Path) -> dict[int, dict[str, float]]:
    try:
        frame = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    if not {"task", "metric", "value"} <= set(frame.columns):
        raise DataError(f"{path} needs columns task, metric, value")
    out: dict[int, dict[str, float]] = {}
    try:
        for row in frame.itertuples():
            out.setdefault(int(row.task), {})[str(row.metric)] = float(row.value)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{path}: a task id or value is not a number ({exc})") from None
    return out


def format_summary(summary: dict[str, Any]) -> str:
    parts = [f"{summary['tasks'][t]}: " + ", ".join(f"{m}={v:.4g}" for m, v in metrics.items() if m != "loss")
             for t, metrics in summary["final"].items()]
    dm = summary.get("delta_m")
    if summary.get("diverged_step") is not None:
        return (f"MTL diverged: {summary['method']} + {summary['optimizer']} on {summary['dataset']}: a task loss "
                f"became non-finite at step {summary['diverged_step']}; no final test result and no Δm "
                f"(records up to there in {summary['output_dir']})")
    tail = f"; Δm={dm:+.2f}% (positive = better than single-task)" if dm is not None else ""
    return (f"MTL done: {summary['method']} + {summary['optimizer']} on {summary['dataset']}, test "
            f"{' | '.join(parts)}{tail}; outputs in {summary['output_dir']}")


__all__ = ["MTLPipeline", "parse_task_list"]
