"""TRANSFER: trials of each method on large model/data pairs, then best loss after k trials.

``trial=all`` runs every trial of the budget in order (k first); ``trial=<method>[@r]:<k>`` runs
one (a Hydra multirun over ``trial=`` spreads them over processes or machines, all writing
into one ``output_dir``); ``trial=aggregate`` only rebuilds the outputs from finished trials.
Every run ends by aggregating what is finished: ``transfer.csv``, ``transfer.png``,
``transfer_table.txt`` (also printed) and ``summary.json`` in the results folder.

The results folder is ``results_dir`` when set, else ``output_dir`` in a single run and the
sweep folder (``hydra.sweep.dir``) in a ``--multirun``, whose jobs each get their own
``output_dir`` but must share the trials. Starting the same command again (with the same
folder) skips the finished trials.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from taskset_lab.errors import ConfigError
from taskset_lab.pipelines.base import Pipeline

log = logging.getLogger(__name__)


class TransferPipeline(Pipeline):
    name = "TRANSFER"
    required_fields = ("expr_name", "output_dir", "global_seed", "total_steps", "eval_every", "pairs", "methods",
                       "trainer")

    # -- checks -----------------------------------------------------------------------------
    def check(self) -> None:
        from taskset_lab.transfer.methods import METHODS, check_trial, method_trials, parse_trial
        from taskset_lab.transfer.module import KINDS

        cfg, problems = self.cfg, self.problems
        with problems:
            total, every = self.require_positive_int("total_steps"), self.require_positive_int("eval_every")
            if every > total:
                raise ConfigError("eval_every", f"({every}) is larger than total_steps ({total})")
        methods = cfg.methods
        with problems:
            unknown = sorted(set(methods) - set(METHODS))
            if unknown:
                raise ConfigError("methods", f"unknown method(s) {', '.join(unknown)}; known: {', '.join(METHODS)}")
        for method in methods:
            with problems:
                self.require_positive_int(f"methods.{method}.trials")
        if "random" in methods:
            with problems:
                self.require_positive_int("methods.random.repeats")
        if "adam_lr_grid" in methods:
            with problems:
                lrs = OmegaConf.select(cfg, "methods.adam_lr_grid.lrs", default=None)
                if not lrs or len(lrs) < method_trials(methods, "adam_lr_grid"):
                    raise ConfigError("methods.adam_lr_grid.lrs", f"needs at least methods.adam_lr_grid.trials "
                                                                  f"learning rates, got {list(lrs or [])}")
        with problems:
            if not cfg.pairs:
                raise ConfigError("pairs", "no model/data pair configured")
        for name, pair in (cfg.pairs or {}).items():
            with problems:
                kind = OmegaConf.select(pair, "kind", default=None)
                if kind not in KINDS:
                    raise ConfigError(f"pairs.{name}.kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
            for field in ("data", "model"):
                with problems:
                    if OmegaConf.select(pair, field, default=None) is None:
                        raise ConfigError(f"pairs.{name}.{field}", "missing")
            with problems:
                check_divergence_multiple(pair, f"pairs.{name}")
            with problems:
                if "reference" in methods and OmegaConf.select(pair, "reference", default=None) is None:
                    raise ConfigError(f"pairs.{name}.reference", "the reference method needs the pair's recipe")
        with problems:
            self.selected_pairs()
        with problems:
            for k in OmegaConf.select(cfg, "table_ks", default=[1, 3, 10]):
                if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                    raise ConfigError("table_ks", f"must be positive integers, got {k!r}")
        if problems.errors:  # the trial and the list are read against valid methods
            return
        trial = str(OmegaConf.select(cfg, "trial", default="all"))
        if trial not in ("all", "aggregate"):
            check_trial(parse_trial(trial), methods)
        if trial == "all":
            self._check_list(method_trials(methods, "list"))
        elif trial != "aggregate":
            spec = parse_trial(trial)
            if spec.method in ("list", "random"):
                self._check_list(spec.k + 1 if spec.method == "list" else 0)

    def _check_list(self, needs: int) -> None:
        """The list exists and has the ``needs`` entries the trials use (before any training)."""
        from taskset_lab.optim import hparam_list_entry

        methods = self.cfg.methods
        random_family = OmegaConf.select(self.cfg, "methods.random.family", default=None)
        if needs == 0 and ("random" not in methods or random_family):
            return
        name = OmegaConf.select(self.cfg, "list", default=None)
        if not name:
            raise ConfigError("list", "the list and random methods need list=<hparam_list.json path or built-in "
                                      "list name>")
        hparam_list_entry(str(name), max(needs, 1) - 1)

    def selected_pairs(self) -> list[str]:
        pair = str(OmegaConf.select(self.cfg, "pair", default="all"))
        names = list(self.cfg.pairs)
        if pair == "all":
            return names
        if pair not in names:
            raise ConfigError("pair", f"must be all or one of {', '.join(names)}, got {pair!r}")
        return [pair]

    # -- running ----------------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        """Where the trials and the aggregated outputs go (see the module docstring)."""
        explicit = OmegaConf.select(self.cfg, "results_dir", default=None)
        if explicit:
            return Path(str(explicit))
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            return Path(str(HydraConfig.get().sweep.dir))
        return self.output_dir

    def run(self) -> dict[str, Any]:
        from taskset_lab.transfer.methods import parse_trial, plan_trials
        from taskset_lab.transfer.runner import check_setup, is_rank_zero, run_trial, setup_record

        cfg = self.cfg
        from taskset_lab.pipelines.building import quiet_lightning

        quiet_lightning(bool(OmegaConf.select(cfg, "verbose", default=False)))
        trial = str(OmegaConf.select(cfg, "trial", default="all"))
        if is_rank_zero() and trial != "aggregate":  # aggregating reads a run; its config.yaml stays
            self.save_config()
        elsewhere: list[str] = []
        if trial != "aggregate":
            from taskset_lab.files import clear_stale_claims
            from taskset_lab.transfer.runner import CLAIMS_DIR

            specs = plan_trials(cfg.methods) if trial == "all" else [parse_trial(trial)]
            self.check_data()
            for pair in self.selected_pairs():
                results = self.results_dir / pair
                check_setup(results, setup_record(cfg, pair))
                clear_stale_claims(results / CLAIMS_DIR)  # claims of killed runs
                for spec in specs:
                    if run_trial(cfg, pair, spec, results) is None:
                        elsewhere.append(f"{pair} {spec}")
                clear_stale_claims(results / CLAIMS_DIR)
        if not is_rank_zero():
            return {}
        summary = self.aggregate()
        if elsewhere:
            print(f"TRANSFER: {len(elsewhere)} trials were being run by another process ({', '.join(elsewhere)}); "
                  f"trial=aggregate counts them once it has finished")
            summary["trials_elsewhere"] = elsewhere
        return summary

    def check_data(self) -> None:
        """Every selected pair's data is there (a cheap look: folders and globs), before any
        trial starts, and so before a multi-device trainer spawns one process per device."""
        from taskset_lab.pipelines.building import instantiate_field

        for pair in self.selected_pairs():
            datamodule = instantiate_field(self.cfg, f"pairs.{pair}.data")
            check = getattr(datamodule, "check_available", None)
            if check is not None:
                check()

    def aggregate(self) -> dict[str, Any]:
        """transfer.csv, transfer.png, the table, summary.json from every finished trial."""
        from taskset_lab.files import write_text_atomic
        from taskset_lab.transfer.results import (best_after_k, format_table, load_trials, plot_transfer,
                                                  summary_numbers, uncounted_trials, write_csv_atomic)
        from taskset_lab.transfer.runner import write_json_atomic

        ks = [int(k) for k in OmegaConf.select(self.cfg, "table_ks", default=[1, 3, 10])]
        root = self.results_dir
        if not root.is_dir():
            root.mkdir(parents=True, exist_ok=True)
        damaged: list[str] = []
        trials = load_trials(root, damaged)
        uncounted = uncounted_trials(trials)
        table = best_after_k(trials)
        text = format_table(table, ks) if len(table) else "no finished trials yet\n"
        if damaged or uncounted:  # never dropped silently: the table says what it leaves out
            text += "".join(f"not counted, damaged trial file {d}\n" for d in damaged)
            text += "".join(f"not counted: {u}\n" for u in uncounted)
            text += "(the same command with trial=all runs the missing and damaged trials again)\n"
            for line in damaged + uncounted:
                log.warning("TRANSFER aggregate: %s", line)
        diverged = int((trials["status"] == "diverged").sum()) if len(trials) else 0
        summary = {"trials_finished": int(len(trials)), "trials_diverged": diverged,
                   "seconds": float(trials["seconds"].sum()) if len(trials) else 0.0,
                   "test_loss_after_k": summary_numbers(table, ks), "transfer_csv": str(root / "transfer.csv"),
                   "plot": None, "results_dir": str(root), "damaged_trials": damaged, "uncounted_trials": uncounted}
        plot = None
        try:
            write_csv_atomic(table, root / "transfer.csv")
            write_text_atomic(root / "transfer_table.txt", text)
            plot = plot_transfer(table, root / "transfer.png") if len(table) else None
            summary["plot"] = str(plot) if plot else None
            write_json_atomic(root / "summary.json", summary)
        except OSError as exc:  # a read-only archive: the table is still shown
            from taskset_lab.errors import os_error_line

            line = os_error_line(exc)
            if line is None or OmegaConf.select(self.cfg, "trial", default="all") != "aggregate":
                raise
            summary["not_written"] = line
            print(f"TRANSFER: results not written ({line}); the table below is printed only")
        self._log_wandb(table, plot)
        print(text, end="")
        print(f"TRANSFER: {len(trials)} finished trials ({diverged} diverged); outputs in {root}")
        return summary

    def _log_wandb(self, table: Any, plot: Any) -> None:
        """With ``logger=wandb``: one more run (job type TRANSFER, ``<expr_name>/transfer``,
        grouped with the experiment) comparing the methods (pipelines/transfer_dashboard.py)."""
        from taskset_lab.pipelines import dashboards as dash
        from taskset_lab.pipelines.transfer_dashboard import log_comparison

        if dash.wandb_node(self.cfg) is None or not len(table):
            return
        ks = [int(k) for k in OmegaConf.select(self.cfg, "table_ks", default=[1, 3, 10])]
        config = dash.flat_config(self.cfg)
        config.update({"results.trials": int(table.groupby(["pair", "method"])["trials_used"].max().sum()),
                       "results.pairs": int(table["pair"].nunique()),
                       "results.methods": int(table["method"].nunique())})
        run = dash.start_run(self.cfg, job_type="TRANSFER", config=config, name=f"{self.cfg.expr_name}/transfer",
                             save_dir=dash.wandb_node(self.cfg).get("save_dir") or self.results_dir)
        log_comparison(run, table, ks, plot, self.results_dir)
        dash.finish_run(run)


def check_divergence_multiple(pair: DictConfig, where: str) -> None:
    """A pair's ``divergence_multiple`` is a number > 0 or null (no bound); the name it had
    before it was told apart from the engine's rule, ``divergence_factor``, is refused."""
    if "divergence_factor" in pair:
        raise ConfigError(f"{where}.divergence_factor", "is now called divergence_multiple (a trial diverges above "
                                                        "this multiple of its first training loss)")
    value = OmegaConf.select(pair, "divergence_multiple", default=None)
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                              or not math.isfinite(value) or value <= 0):
        raise ConfigError(f"{where}.divergence_multiple", f"must be a finite number > 0 or null, got {value!r}")
