"""REPLAY: search strategies replayed on a curve store's recorded curves (taskset_lab.replay).

Reads the store at ``curves_dir`` (collecting it first when it is missing and
``collect_if_missing`` is set, as HPARAM_LIST does), replays every strategy of ``replay.*``
through Syne Tune's simulator on held-out tasks, and writes the anytime curves, the table at
fixed budgets, the plots (and W&B tables with ``logger=wandb``) under ``output_dir``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from taskset_lab.errors import ConfigError, DataError
from taskset_lab.pipelines.base import Pipeline
from taskset_lab.tasks.base import SPLITS

log = logging.getLogger(__name__)


def replay_settings(cfg: Any) -> Any:
    """The :class:`~taskset_lab.replay.benchmark.ReplaySettings` of ``cfg.replay`` (plain values)."""
    from taskset_lab.pipelines.building import plain
    from taskset_lab.replay.benchmark import ReplaySettings

    node = plain(cfg.replay)
    names = {f.name for f in dataclasses.fields(ReplaySettings)}
    values = {k: v for k, v in node.items() if k in names and k not in ("seed",)}
    values["seed"] = int(OmegaConf.select(cfg, "global_seed", default=0) or 0)
    for key in ("strategies", "budgets"):
        if key in values and isinstance(values[key], (str, int, float)):
            values[key] = [values[key]]
    return ReplaySettings(**values)


class ReplayPipeline(Pipeline):
    name = "REPLAY"
    required_fields = ("expr_name", "output_dir", "curves_dir", "replay")

    def check(self) -> None:
        from taskset_lab.pipelines.hparam_list_config import apply_store_manifest

        problems, r = self.problems, self.cfg.replay
        with problems:
            apply_store_manifest(self.cfg)  # an existing store's own settings
        for field in ("select_split", "report_split"):
            with problems:
                if r.get(field, None) not in SPLITS:
                    raise ConfigError(f"replay.{field}", f"must be one of {SPLITS}, got {r.get(field)!r}")
        with problems:
            if r.get("reduce", "best") not in ("best", "final"):
                raise ConfigError("replay.reduce", f"must be 'best' or 'final', got {r.get('reduce')!r}")
        with problems:
            cap = r.get("cap", 1.5)
            if isinstance(cap, bool) or not isinstance(cap, (int, float)) or not cap > 0:
                raise ConfigError("replay.cap", f"must be a number > 0, got {cap!r}")
        with problems:
            settings = replay_settings(self.cfg)
            total = OmegaConf.select(self.cfg, "total_steps", default=None)
            found = settings.problems(total if isinstance(total, int) else None)
            if found:
                field, problem = found[0]
                for extra_field, extra in found[1:]:
                    with problems:
                        raise ConfigError(f"replay.{extra_field}", extra)
                raise ConfigError(f"replay.{field}", problem)
        with problems:
            if not self._store_has_parts() and OmegaConf.select(self.cfg, "collect_if_missing", default=False):
                from taskset_lab.pipelines.curves import check_collection_fields

                check_collection_fields(self.cfg)

    def _store_has_parts(self) -> bool:
        return any((Path(str(self.cfg.curves_dir)) / "curves").glob("*.parquet"))

    def run(self) -> dict[str, Any]:
        import numpy as np

        from taskset_lab.curves.store import read_manifest
        from taskset_lab.hparam_list.checks import store_is_complete
        from taskset_lab.pipelines.building import build_loggers, finish_loggers, plain
        from taskset_lab.replay import fidelity_values, replay_benchmark, store_arrays
        from taskset_lab.replay.benchmark import format_table
        from taskset_lab.replay.report import log_to_wandb, plot_all, write_outputs

        cfg, r = self.cfg, self.cfg.replay
        self.save_config()
        store = Path(str(cfg.curves_dir))
        collect = bool(OmegaConf.select(cfg, "collect_if_missing", default=False))
        if not self._store_has_parts() and not collect:
            raise DataError(f"no curve store at {store}; run pipeline=CURVES first or set collect_if_missing=true")
        if collect and not store_is_complete(store, read_manifest(store)):
            from taskset_lab.pipelines.curves import format_summary, run_collection

            log.info(format_summary(run_collection(cfg, store)))
        settings = replay_settings(cfg)
        optimizer = r.get("optimizer", None) or OmegaConf.select(cfg, "search_space.family", default=None)
        tasks = plain(r.get("tasks", None))
        arrays = store_arrays(store, optimizer=None if optimizer is None else str(optimizer), tasks=tasks,
                              splits=sorted({str(r.select_split), str(r.report_split)}, key=SPLITS.index))
        if len(arrays.tasks) < 2:
            raise DataError(f"curve store {store}: held-out evaluation needs at least 2 tasks, it has {arrays.tasks}")
        if settings.folds > len(arrays.tasks):
            raise ConfigError("replay.folds", f"{settings.folds} folds need at least as many tasks; the store has "
                                              f"{len(arrays.tasks)} (use replay.folds<={len(arrays.tasks)})")
        if settings.grace_period is not None and settings.grace_period > int(arrays.steps.max()):
            raise ConfigError("replay.grace_period", f"is {settings.grace_period} but the store's runs stop at step "
                                                     f"{int(arrays.steps.max())}")
        fv = fidelity_values(arrays, select_split=str(r.select_split), report_split=str(r.report_split),
                             reduce=str(r.get("reduce", "best")), cap=float(r.get("cap", 1.5)))
        seconds = np.nanmean(arrays.seconds, axis=2) if settings.clock == "seconds" else None
        if seconds is not None and not (np.isfinite(seconds).all() and (seconds > 0).all()):
            raise DataError(f"curve store {store} lacks measured seconds for some runs; use replay.clock=steps")
        log.info("REPLAY: %d tasks x %d configs of %s, %d steps; strategies %s, %d seeds, budget %g trials",
                 len(arrays.tasks), len(arrays.config_ids), arrays.optimizer, arrays.total_steps,
                 ", ".join(settings.strategies), settings.seeds, settings.budget)
        result = replay_benchmark(fv, arrays.hparams, int(arrays.total_steps), settings, seconds=seconds,
                                  progress=bool(OmegaConf.select(cfg, "progress", default=False)))
        settings_dict = {**dataclasses.asdict(settings), "store": str(store), "optimizer": arrays.optimizer,
                         "tasks": arrays.tasks, "select_split": str(r.select_split),
                         "report_split": str(r.report_split)}
        paths = write_outputs(self.output_dir, result, settings_dict)
        plots = plot_all(result.summary, self.output_dir)
        if bool(OmegaConf.select(cfg, "replay.export.syne_tune", default=False)):
            from taskset_lab.replay.syne_export import export_syne_tune

            paths["syne_tune"] = export_syne_tune(store, self.output_dir / "syne_tune", optimizer=arrays.optimizer,
                                                  tasks=tasks)
        if bool(OmegaConf.select(cfg, "replay.export.mf_prior_bench", default=False)):
            from taskset_lab.replay.mfpbench_export import export_mf_prior_bench

            export_mf_prior_bench(store, self.output_dir / "mf_prior_bench", optimizer=arrays.optimizer, tasks=tasks)
            paths["mf_prior_bench"] = self.output_dir / "mf_prior_bench"
        loggers = build_loggers(cfg)
        for lg in loggers:
            if type(lg).__name__ == "WandbLogger":
                log_to_wandb(lg.experiment, result, images={p.stem: p for p in plots})
        finish_loggers(loggers)
        table = format_table(result.table)
        print(table)
        print(f"outputs in {self.output_dir}")
        return {"table": table, "paths": {k: str(v) for k, v in paths.items()}, "plots": [str(p) for p in plots],
                "result": result}
