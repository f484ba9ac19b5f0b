"""HPARAM_LIST: learn an ordered hparam list from a curve store and evaluate it on held-out tasks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from taskset_lab.errors import ConfigError, DataError
from taskset_lab.hparam_list.checks import WARNINGS_FILE, check_curves, check_store_optimizer, store_is_complete
from taskset_lab.hparam_list.references import normalize_with_references, reference_store
from taskset_lab.pipelines.hparam_list_config import (apply_store_manifest, check_settings, collect_reference_lists,
                                                       reference_lists)
from taskset_lab.pipelines.base import Pipeline
from taskset_lab.pipelines.curves import check_collection_fields, format_summary, run_collection
from taskset_lab.tasks.base import SPLITS

log = logging.getLogger(__name__)


def list_record(manifest: dict[str, Any] | None, evaluation: Any, ks: list[int]) -> dict[str, Any]:
    """What a list file records about where it came from: the collection's settings (optimizer,
    configs, horizon, evaluation spacing...), the command that learned it (when run by the CLI)
    and its held-out results (cv, mean over folds) at ``ks``: what a shipped list states."""
    from taskset_lab.curves.store import PART_SETTINGS

    record: dict[str, Any] = {}
    if manifest:
        record["collection"] = {k: manifest.get(k) for k in PART_SETTINGS}
        record["collection"]["replicas"] = manifest.get("replicas")
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():  # run by the CLI (not by a library call)
        record["command"] = "tasklab " + " ".join(HydraConfig.get().overrides.task)
    summary = evaluation.summary
    results: dict[str, Any] = {}
    for scheme in summary["scheme"].unique():
        part = summary[summary["scheme"] == scheme]
        table = {str(m): {str(k): float(v) for k, v in zip(g["k"], g["mean"]) if int(k) in ks}
                 for m, g in part.groupby("method", sort=True)}
        sp = evaluation.speedup[evaluation.speedup["scheme"] == scheme]
        table["random_trials_to_match_list"] = {str(int(k)): str(v) for k, v in zip(sp["k"], sp["random_trials_label"])}
        results[str(scheme)] = table
    record["results"] = results
    return record


class HparamListPipeline(Pipeline):
    name = "HPARAM_LIST"
    required_fields = ("expr_name", "output_dir", "curves_dir", "search_space.family", "hparam_list",
                       "hparam_list.length")

    def check(self) -> None:
        problems = self.problems
        apply_store_manifest(self.cfg)  # an existing store's own settings; contradicting overrides refused
        hl = self.cfg.hparam_list
        for field in ("select_split", "report_split"):
            with problems:
                if hl.get(field, None) not in SPLITS:
                    raise ConfigError(f"hparam_list.{field}", f"must be one of {SPLITS}, got {hl.get(field)!r}")
        with problems:
            if hl.get("reduce", "best") not in ("best", "final"):
                raise ConfigError("hparam_list.reduce", f"must be 'best' or 'final', got {hl.reduce!r}")
        with problems:
            if not float(hl.get("cap", 1.5)) > 0:
                raise ConfigError("hparam_list.cap", f"must be > 0, got {hl.cap!r}")
        with problems:
            self.require_positive_int("hparam_list.length")
            check_settings(self.cfg)  # the list's length and ks against the configs it chooses from
        with problems:
            folds = OmegaConf.select(self.cfg, "hparam_list.folds", default=5)
            if not isinstance(folds, int) or folds < 2:
                raise ConfigError("hparam_list.folds", f"must be an integer >= 2, got {folds!r}")
        with problems:
            if not self._store_has_parts() and OmegaConf.select(self.cfg, "collect_if_missing", default=False):
                check_collection_fields(self.cfg)
        with problems:
            from taskset_lab.hparam_list.scaling import scaling_settings

            try:
                scaling_settings(OmegaConf.select(self.cfg, "hparam_list.scaling", default=None))
            except ValueError as exc:
                raise ConfigError("hparam_list.scaling", str(exc)) from None
        with problems:
            reference_lists(self.cfg)  # published lists to compare with (hparam_list.reference_lists)

    def _store_has_parts(self) -> bool:
        return any((Path(str(self.cfg.curves_dir)) / "curves").glob("*.parquet"))

    def run(self) -> dict[str, Any]:
        from taskset_lab.curves.store import read_curves, read_manifest, read_runs
        from taskset_lab.hparam_list import (build_hparam_list, evaluate_hparam_list, format_table,
                                             hparams_frame, learn_hparam_list, normalization_info,
                                             task_families, write_report)
        from taskset_lab.viz.plots import plot_hparam_list_results

        cfg, hl = self.cfg, self.cfg.hparam_list
        self.save_config()
        store = Path(str(cfg.curves_dir))
        if not self._store_has_parts():
            if not OmegaConf.select(cfg, "collect_if_missing", default=False):
                raise DataError(f"no curve store at {store}; run pipeline=CURVES first or set collect_if_missing=true")
        # Collection when allowed: it completes a partial store (a complete one is learned from
        # as it is) and records the reference lists on the store's own tasks.
        references_asked = reference_lists(cfg)
        if OmegaConf.select(cfg, "collect_if_missing", default=False):
            if not store_is_complete(store, read_manifest(store)):
                log.info(format_summary(run_collection(cfg, store)))
            collect_reference_lists(cfg, store)
            num_shards = int(OmegaConf.select(cfg, "num_shards", default=1))
            if num_shards > 1:  # one shard of a parallel collection: the list is learned once, from all
                shard = int(OmegaConf.select(cfg, "shard_index", default=0))
                print(f"shard {shard}/{num_shards} collected into {store}; when every shard is done, the same "
                      f"command without num_shards/shard_index learns and evaluates the list")
                return {"collected_shard": shard, "num_shards": num_shards, "curves_dir": str(store)}
        else:  # collect_if_missing=false: compare with the lists the store holds
            missing = [n for n in references_asked if not any(reference_store(store, n).glob("curves/*.parquet"))]
            for name in missing:
                log.warning("no curves of reference list %s in %s and collect_if_missing=false; the table leaves "
                            "it out (collect_if_missing=true records it on the store's tasks)",
                            name, reference_store(store, name))
                references_asked.pop(name)
        optimizer = str(cfg.search_space.family)
        check_store_optimizer(store, optimizer)
        curves = read_curves(store, optimizers=[optimizer])
        runs = read_runs(store, optimizers=[optimizer])
        warnings = check_curves(curves, runs, store, hl.select_split, hl.report_split, self.output_dir)
        no_progress = [w.split(":")[0].removeprefix("task ") for w in warnings if "below the initial value" in w]
        norm, references = normalize_with_references(store, curves, runs, optimizer, references_asked,
                                                     select_split=hl.select_split, report_split=hl.report_split,
                                                     reduce=hl.reduce, cap=float(hl.cap))
        hparams = hparams_frame(runs, optimizer=optimizer)
        config_ids, objective = learn_hparam_list(norm, int(hl.length))
        tasks = sorted(norm["task"].unique())
        tpe = OmegaConf.select(cfg, "hparam_list.tpe", default=None) or {}
        ks = list(OmegaConf.select(cfg, "hparam_list.ks", default=[1, 3, 10, 30]))
        if int(hl.folds) > len(tasks):  # never cut silently while config.yaml says otherwise
            raise ConfigError("hparam_list.folds", f"{int(hl.folds)} folds need at least as many tasks; the store "
                                                   f"has {len(tasks)} (use hparam_list.folds<={len(tasks)})")
        evaluation = evaluate_hparam_list(
            norm, length=int(hl.length), folds=int(hl.folds), seed=int(OmegaConf.select(cfg, "global_seed", default=0)),
            leave_one_family_out=bool(hl.get("leave_one_family_out", True)), hparams=hparams,
            tpe_trials=int(tpe.get("trials", 0)) if tpe.get("enabled", False) else 0,
            tpe_seeds=int(tpe.get("seeds", 2)), speedup_ks=ks, references=references)
        hlist = build_hparam_list(optimizer, config_ids, hparams,
                                  normalization_info(hl.select_split, hl.report_split, hl.reduce, float(hl.cap)),
                                  tasks, task_families(norm, tasks), objective)
        hlist.update(list_record(read_manifest(store), evaluation, ks))
        paths = write_report(self.output_dir, hlist, norm, evaluation)
        plots = plot_hparam_list_results(evaluation.evaluation, self.output_dir)
        table = format_table(evaluation.summary, ks=ks, speedup=evaluation.speedup,
                             reference_speedup=evaluation.reference_speedup)
        self.log_dashboard(hlist, evaluation, ks, plots, paths, norm)
        print(table)
        scaling = self.scaling(curves, runs, optimizer, ks)
        if scaling is not None:
            paths["scaling"] = scaling
        if no_progress:  # reported apart: such a task only adds noise to every row above
            print(f"{len(no_progress)} of {len(tasks)} tasks where no run beats initialization "
                  f"(in the table, see {WARNINGS_FILE}): {', '.join(no_progress)}")
        print(f"hparam list: {self.output_dir / 'hparam_list.json'}")
        print(f"outputs in {self.output_dir}")
        return {"hparam_list": hlist, "paths": {k: str(v) for k, v in paths.items()},
                "plots": [str(p) for p in plots], "table": table, "no_progress_tasks": no_progress}

    def scaling(self, curves: Any, runs: Any, optimizer: str, ks: list[int]) -> Path | None:
        """With ``hparam_list.scaling``: the evaluation again on the collection's first N configs
        and shorter horizons (:mod:`taskset_lab.hparam_list.scaling`), into ``scaling.csv``."""
        from taskset_lab.files import write_csv_atomic
        from taskset_lab.hparam_list.scaling import format_scaling, scaling_settings, scaling_table

        hl = self.cfg.hparam_list
        configs, horizons = scaling_settings(OmegaConf.select(self.cfg, "hparam_list.scaling", default=None))
        if not configs:
            return None
        table = scaling_table(curves, runs, optimizer, configs=configs, horizons=horizons, ks=ks,
                              folds=int(hl.folds), seed=int(OmegaConf.select(self.cfg, "global_seed", default=0)),
                              select_split=hl.select_split, report_split=hl.report_split, reduce=hl.reduce,
                              cap=float(hl.cap))
        path = write_csv_atomic(self.output_dir / "scaling.csv", table)
        print(format_scaling(table))
        return path

    def log_dashboard(self, hlist: dict[str, Any], evaluation: Any, ks: list[int],
                      plots: list[Path], paths: dict[str, Path], norm: Any) -> None:
        """With ``logger=wandb``: one run (job type HPARAM_LIST) named after what varies, with the
        flat config and the store's shape as config, the list as a typed table, the evaluation per
        fold and per family as tables and line plots, the plots as images, ``hparam_list.json``
        and the result tables as artifacts, and the summary at every ``hparam_list.ks``."""
        from taskset_lab.hparam_list import log_to_wandb
        from taskset_lab.pipelines import dashboards as dash

        cfg = self.cfg
        if dash.wandb_node(cfg) is None:
            return
        config = dash.flat_config(cfg)
        config.update({"store.tasks": len(hlist["tasks"]), "store.task_families": len(hlist["task_families"]),
                       "store.configs": int(norm["config_id"].nunique()) if "config_id" in norm else None,
                       "list.optimizer": hlist["optimizer"], "list.length": len(hlist["entries"])})
        name = dash.run_name(cfg, describe=[str(hlist["optimizer"]), f"hparam_list.length={len(hlist['entries'])}"])
        run = dash.start_run(cfg, job_type="HPARAM_LIST", config=config, name=name)
        if run is None:
            return
        try:
            log_to_wandb(run, evaluation.summary, hlist, ks=ks, evaluation=evaluation.evaluation,
                         images={p.stem: p for p in plots}, list_path=paths["hparam_list"], speedup=evaluation.speedup)
        except Exception as exc:  # noqa: BLE001 - the results are written already; W&B never loses them
            dash.warn_failed("logging the hparam list", exc)
        results = [p for k, p in paths.items() if k not in ("hparam_list", "normalized_losses")]
        dash.log_artifact(run, f"hparam_list_results-{cfg.expr_name}", "results",
                          [*results, self.output_dir / "config.yaml"])
        dash.save_file(run, self.output_dir / "config.yaml", "tasklab/config.yaml")
        dash.finish_run(run)
