"""CURVES: learning curves of a task set × M configs of one optimizer family × R replicas."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from taskset_lab.errors import ConfigError
from taskset_lab.pipelines.base import Pipeline, require_positive_int
from taskset_lab.tasks.task_set import resolve_task_set

log = logging.getLogger(__name__)

ENGINE_DTYPES = ("float32", "float64")


class CurvesPipeline(Pipeline):
    name = "CURVES"
    required_fields = ("expr_name", "output_dir", "total_steps", "eval_every", "task_set",
                       "search_space", "search_space.family", "search_space.num_configs",
                       "learner", "curves_dir")

    def check(self) -> None:
        check_collection_fields(self.cfg)

    def run(self) -> dict[str, Any]:
        # shards of a multirun share output_dir: each keeps its own config and summary
        suffix = shard_suffix(self.cfg)
        self.save_config(f"config{suffix}.yaml")
        summary = run_collection(self.cfg, Path(str(self.cfg.curves_dir)))
        path = self.write_json(f"curves_summary{suffix}.json", summary)
        log.info("%s -> %s", format_summary(summary), path)
        return summary


def shard_suffix(cfg: DictConfig) -> str:
    """``""`` for an unsharded run, ``"_shard-<i>-of-<n>"`` for shard i of n."""
    shards = int(OmegaConf.select(cfg, "num_shards", default=1))
    return "" if shards == 1 else f"_shard-{int(cfg.shard_index)}-of-{shards}"


def format_summary(summary: dict[str, Any]) -> str:
    """One line for the log: what a collection did and how fast."""
    rate = summary.get("config_steps_per_s")
    diverged = summary.get("diverged_fraction")
    return (f"CURVES done: {summary['tasks']} tasks x {summary['configs']} configs "
            f"(shard {summary['shard_index']}/{summary['num_shards']}): {summary['parts_done']} parts run, "
            f"{summary['parts_skipped']} already done; "
            f"diverged {'-' if diverged is None else f'{diverged:.1%}'}, {summary['seconds']:.1f} s, "
            f"{'-' if rate is None else f'{rate:,.0f}'} config-steps/s")


def check_collection_fields(cfg: DictConfig) -> None:
    """Field checks shared by CURVES and HPARAM_LIST (which may collect curves first)."""
    from taskset_lab.optim import family_names as optimizer_families

    for field in ("total_steps", "eval_every", "search_space.num_configs", "replicas",
                  "num_shards", "learner.eval_batches", "learner.chunk_size"):
        require_positive_int(cfg, field, default=1)
    require_positive_int(cfg, "learner.max_population", nullable=True)
    if cfg.eval_every > cfg.total_steps:
        raise ConfigError("eval_every", f"({cfg.eval_every}) is larger than total_steps ({cfg.total_steps})")
    shard = OmegaConf.select(cfg, "shard_index", default=0)
    shards = OmegaConf.select(cfg, "num_shards", default=1)
    if not (isinstance(shard, int) and 0 <= shard < shards):
        raise ConfigError("shard_index", f"must be in [0, num_shards={shards}), got {shard!r}")
    family = cfg.search_space.family
    if family not in optimizer_families():
        raise ConfigError("search_space.family",
                          f"unknown optimizer family {family!r}; known: {', '.join(optimizer_families())}")
    dtype = OmegaConf.select(cfg, "learner.dtype", default="float32")
    if dtype not in ENGINE_DTYPES:
        raise ConfigError("learner.dtype", f"must be one of {ENGINE_DTYPES}, got {dtype!r}")
    resolve_task_set(cfg.task_set)  # raises ConfigError naming the bad entry


def run_collection(cfg: DictConfig, store_dir: Path) -> dict[str, Any]:
    """Collect the curves the config asks for into ``store_dir`` (skipping finished parts)."""
    import torch

    from taskset_lab.curves.collect import collect_curves

    learner = cfg.learner
    device = str(OmegaConf.select(learner, "device", default="auto"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    tasks = resolve_task_set(cfg.task_set)
    log.info("CURVES: %d tasks x %d %s configs x %d replicas, %d steps -> %s", len(tasks),
             cfg.search_space.num_configs, cfg.search_space.family,
             OmegaConf.select(cfg, "replicas", default=1), cfg.total_steps, store_dir)
    try:
        return collect_curves(
            task_specs=tasks,
            optimizer=str(cfg.search_space.family),
            num_configs=int(cfg.search_space.num_configs),
            config_seed_offset=int(OmegaConf.select(cfg, "search_space.seed_offset", default=0)),
            replicas=int(OmegaConf.select(cfg, "replicas", default=1)),
            total_steps=int(cfg.total_steps),
            eval_every=int(cfg.eval_every),
            eval_batches=int(learner.eval_batches),
            store_dir=store_dir,
            shard_index=int(OmegaConf.select(cfg, "shard_index", default=0)),
            num_shards=int(OmegaConf.select(cfg, "num_shards", default=1)),
            chunk_size=int(learner.chunk_size),
            max_population=OmegaConf.select(learner, "max_population", default=None),
            device=device,
            dtype=getattr(torch, str(OmegaConf.select(learner, "dtype", default="float32"))),
            divergence_factor=float(learner.divergence_factor),
            data_dir=str(cfg.misc.data_dir),
            download=bool(cfg.misc.download),
            progress=bool(OmegaConf.select(cfg, "progress", default=True)),
        )
    except KeyboardInterrupt:
        from taskset_lab.curves.store import list_parts

        log.warning("interrupted: %d finished parts are kept in %s; the same command with curves_dir=%s "
                    "continues from there", len(list_parts(store_dir)), store_dir, store_dir)
        raise
