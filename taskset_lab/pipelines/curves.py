"""CURVES: learning curves of a task set × M configs of one optimizer family × R replicas."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.pipelines.base import Pipeline
from taskset_lab.pipelines.building import plain, read_spec
from taskset_lab.tasks.task_set import TaskSpec, resolve_task_set

log = logging.getLogger(__name__)


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
        config_path = self.save_config(f"config{suffix}.yaml")
        store = Path(str(self.cfg.curves_dir))
        run = self.start_dashboard()
        try:
            summary = run_collection(self.cfg, store)
            path = self.write_json(f"curves_summary{suffix}.json", summary)
            log.info("%s -> %s", format_summary(summary), path)
            self.log_dashboard(run, store, summary, [config_path, path])
        finally:
            from taskset_lab.pipelines.dashboards import finish_run

            finish_run(run)
        return summary

    def start_dashboard(self) -> Any:
        """With ``logger=wandb``: this shard's W&B run (pipelines/curves_dashboard.py), started
        before the collection so its runtime covers it; None otherwise."""
        from taskset_lab.pipelines import dashboards as dash
        from taskset_lab.pipelines.curves_dashboard import collection_config

        if dash.wandb_node(self.cfg) is None:
            return None
        spec = collection_spec(self.cfg)
        shard = "" if spec.num_shards == 1 else f" shard {spec.shard_index}/{spec.num_shards}"
        name = dash.run_name(self.cfg, describe=[spec.optimizer, f"search_space.num_configs={spec.num_configs}"],
                             suffix=shard)
        return dash.start_run(self.cfg, job_type="CURVES", name=name,
                              config=collection_config(self.cfg, spec, len(task_specs(self.cfg))))

    def log_dashboard(self, run: Any, store: Path, summary: dict[str, Any], files: list[Path]) -> None:
        if run is None:
            return
        from taskset_lab.curves.collect import work_items
        from taskset_lab.pipelines.curves_dashboard import log_collection

        spec, tasks = collection_spec(self.cfg), task_specs(self.cfg)
        items = [it for it in work_items(tasks, summary["optimizer"], spec.num_configs, spec.replicas,
                                         spec.chunk_size) if it.index % spec.num_shards == spec.shard_index]
        log_collection(run, store, summary, [t.name for t in tasks], items, spec.total_steps, files)


def collection_spec(cfg: DictConfig) -> CollectionSpec:
    """The collection spec of a composed CURVES / HPARAM_LIST config (``CollectionSpec.CONFIG_KEYS``
    says where each field is read from); absent optional keys take the spec's defaults.
    Raises :class:`ConfigError` naming the config key of a missing or bad value."""
    return read_spec(cfg, CollectionSpec, CollectionSpec.CONFIG_KEYS)


def task_specs(cfg: DictConfig, field: str = "task_set") -> list[TaskSpec]:
    """The tasks of ``cfg.<field>`` (ConfigError naming the bad entry)."""
    return resolve_task_set(plain(cfg[field]), field)


def shard_suffix(cfg: DictConfig) -> str:
    """``""`` for an unsharded run, ``"_shard-<i>-of-<n>"`` for shard i of n."""
    spec = collection_spec(cfg)
    return "" if spec.num_shards == 1 else f"_shard-{spec.shard_index}-of-{spec.num_shards}"


def format_summary(summary: dict[str, Any]) -> str:
    """One line for the log: what a collection did and how fast."""
    rate = summary.get("config_steps_per_s")
    diverged = summary.get("diverged_fraction")
    return (f"CURVES done: {summary['tasks']} tasks x {summary['configs']} configs "
            f"(shard {summary['shard_index']}/{summary['num_shards']}): {summary['parts_done']} parts run, "
            f"{summary['parts_skipped']} already done; "
            f"diverged {'-' if diverged is None else f'{diverged:.1%}'}, {summary['seconds']:.1f} s, "
            f"{'-' if rate is None else f'{rate:,.0f}'} config-steps/s")


def check_collection_fields(cfg: DictConfig) -> CollectionSpec:
    """The collection spec of ``cfg``, every field and the task set checked (ConfigError naming
    the key); shared by CURVES and HPARAM_LIST (which may collect curves first)."""
    from taskset_lab.errors import ConfigProblems

    problems, spec = ConfigProblems(), None
    with problems:
        spec = collection_spec(cfg)
    with problems:
        task_specs(cfg)  # raises ConfigError naming the bad entry
    problems.raise_all()
    return spec


def run_collection(cfg: DictConfig, store_dir: Path) -> dict[str, Any]:
    """Collect the curves the config asks for into ``store_dir`` (skipping finished parts)."""
    from taskset_lab.curves.collect import collect_curves

    spec = collection_spec(cfg)
    tasks = task_specs(cfg)
    log.info("CURVES: %d tasks x %d %s configs x %d replicas, %d steps -> %s", len(tasks), spec.num_configs,
             spec.optimizer, spec.replicas, spec.total_steps, store_dir)
    try:
        return collect_curves(spec, tasks, store_dir)
    except KeyboardInterrupt:
        from taskset_lab.curves.store import list_parts

        log.warning("interrupted: %d finished parts are kept in %s; the same command with curves_dir=%s "
                    "continues from there", len(list_parts(store_dir)), store_dir, store_dir)
        raise
