"""EVALUATE: score optimizers across a task set against learning-rate-tuned Adam, the way
optimizer papers report it (docs/design.md §Scoring optimizers).

Stages, each resumable (a killed run started again with the same ``output_dir`` skips what is
finished):

1. the tuned-Adam reference (``adam_lr_grid`` × seeds) into ``baselines_dir``, a curve store
   reused by every evaluation that names it (its manifest refuses another horizon);
2. every entry of ``optimizers`` into ``curves_dir`` (population entries as curve
   collections; ``torch.optim`` entries as one job per (task, seed), ``n_jobs`` processes);
3. scoring (cheap, redone every time): ``per_task.parquet`` (one row per optimizer, task and
   seed), ``per_task.csv`` (medians over seeds), ``leaderboard.csv``/``.md``,
   ``families.csv``, ``win_rates.csv``, ``evaluation_summary.json`` and the plots
   ``profiles.png``, ``families.png``, ``curves.png``; with ``logger=wandb`` the same as a
   W&B run's tables and images.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from taskset_lab.errors import ConfigError, DataError
from taskset_lab.pipelines.base import Pipeline
from taskset_lab.pipelines.building import plain, read_spec

log = logging.getLogger(__name__)


class EvaluatePipeline(Pipeline):
    name = "EVALUATE"
    required_fields = ("expr_name", "output_dir", "curves_dir", "baselines_dir", "task_set", "optimizers",
                       "total_steps", "eval_every", "seeds", "learner")

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self._readers: dict[tuple[Path, str], Any] = {}  # (store, label) -> its curves, read once

    # -- checks -----------------------------------------------------------------------
    def check(self) -> None:
        from taskset_lab.evaluate.entries import LEARNED, parse_entries
        from taskset_lab.evaluate.runs import check_baseline_store

        problems = self.problems
        spec = None
        with problems:
            spec = self.collection_spec()
        with problems:
            self.report_tasks()
        with problems:
            entries = parse_entries(plain(self.cfg.optimizers))
            learned = [e.name for e in entries if e.form == LEARNED]
            if learned and not self.train_tasks():
                raise ConfigError(f"optimizers.{learned[0]}", "learns its list on the task split's train tasks, and "
                                  "there are none: set task_split.by and task_split.test")
        with problems:
            n_jobs = OmegaConf.select(self.cfg, "n_jobs", default=1)
            if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
                raise ConfigError("n_jobs", f"must be a positive integer, got {n_jobs!r}")
        with problems:
            plot_tasks = OmegaConf.select(self.cfg, "plot_tasks", default=4)
            if isinstance(plot_tasks, bool) or not isinstance(plot_tasks, int) or plot_tasks < 0:
                raise ConfigError("plot_tasks", f"must be an integer >= 0, got {plot_tasks!r}")
        if spec is not None:
            with problems:
                try:
                    check_baseline_store(Path(str(self.cfg.baselines_dir)), spec)
                except DataError as exc:
                    raise ConfigError("baselines_dir", str(exc)) from None

    def collection_spec(self):
        """The run settings as a collection spec (its ``optimizer`` is set per store)."""
        from taskset_lab.curves.spec import CollectionSpec
        from taskset_lab.evaluate.runs import BASELINE_SPACE

        view = self.cfg.copy()
        OmegaConf.set_struct(view, False)
        view.search_space = {"family": BASELINE_SPACE, "num_configs": 1}  # set per store when collecting
        keys = {**CollectionSpec.CONFIG_KEYS, "replicas": "seeds"}
        return read_spec(view, CollectionSpec, keys)

    def task_split(self):
        from taskset_lab.evaluate.split import split_tasks
        from taskset_lab.pipelines.curves import task_specs

        tasks = task_specs(self.cfg)
        node = OmegaConf.select(self.cfg, "task_split", default=None)
        split = plain(node) if node is not None else {}
        if not isinstance(split, dict):
            raise ConfigError("task_split", f"must be a mapping {{by, test, report_on}}, got {split!r}")
        unknown = sorted(set(split) - {"by", "test", "report_on"})
        if unknown:
            raise ConfigError(f"task_split.{unknown[0]}", "unknown key; allowed: by, test, report_on")
        return tasks, split_tasks(tasks, split.get("by", "none"), split.get("test") or []), \
            split.get("report_on", "test")

    def train_tasks(self):
        """The split's ``train`` tasks (where learned lists are learned)."""
        tasks, split, _ = self.task_split()
        return [t for t in tasks if split[t.name] == "train"]

    def report_tasks(self):
        from taskset_lab.evaluate.split import tasks_to_report

        tasks, split, report_on = self.task_split()
        return tasks_to_report(tasks, split, report_on), split, report_on

    # -- running ----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from taskset_lab.evaluate.entries import parse_entries

        cfg = self.cfg
        self.save_config()
        spec = self.collection_spec()
        tasks, split, report_on = self.report_tasks()
        entries = parse_entries(plain(cfg.optimizers))
        n_jobs = int(OmegaConf.select(cfg, "n_jobs", default=1))
        out = self.output_dir
        try:
            collected = self.collect(spec, tasks, entries, n_jobs)
        except KeyboardInterrupt:
            log.warning("interrupted: every finished run is kept; the same command with output_dir=%s continues "
                        "from there (baselines in %s)", out, cfg.baselines_dir)
            raise
        frame, baselines, skipped = self.score(spec, tasks, split, entries)
        summary = self.report(frame, baselines, spec, entries, report_on, skipped, collected)
        return summary

    def locations(self, entries):
        from taskset_lab.evaluate.runs import entry_locations

        return entry_locations(entries, Path(str(self.cfg.curves_dir)), Path(str(self.cfg.baselines_dir)),
                               self.output_dir / "entries")

    def collect(self, spec, tasks, entries, n_jobs: int) -> list[dict[str, Any]]:
        """Stages 1 and 2: the baseline store, then every entry's runs (finished parts skipped)."""
        from taskset_lab.curves.collect import collect_curves
        from taskset_lab.evaluate.entries import LEARNED
        from taskset_lab.evaluate.runs import (baseline_spec, collect_population, collect_torch, learn_entry_list,
                                               population_stores)

        curves_dir, out = Path(str(self.cfg.curves_dir)), []
        log.info("EVALUATE: %d tasks x %d seeds, %d steps; tuned-Adam reference in %s", len(tasks), spec.replicas,
                 spec.total_steps, self.cfg.baselines_dir)
        out.append(collect_curves(baseline_spec(spec), tasks, Path(str(self.cfg.baselines_dir))))
        for entry in entries:
            if entry.form == LEARNED:  # its list first: it decides which configs run on the reported tasks
                out.append(learn_entry_list(entry, spec, self.train_tasks(), curves_dir, self.output_dir / "entries"))
        stores, where = population_stores(entries, self.output_dir / "entries"), self.locations(entries)
        done = set()
        for entry in entries:
            if where[entry.name].shared_with_baseline:
                log.info("EVALUATE %s: the baseline's own curves (%s)", entry.name, where[entry.name].folder)
            elif entry.on_population:
                store = stores[entry.name]
                if store in done:
                    continue
                done.add(store)
                log.info("EVALUATE %s: %d configs of %s on the population engine", entry.name,
                         store.num_configs, store.label)
                out.append(collect_population(spec, tasks, store, curves_dir))
            else:
                out.append(collect_torch(entry, spec, tasks, where[entry.name].folder, n_jobs))
        return out

    def score(self, spec, tasks, split, entries):
        """Stage 3: the per-(entry, task, seed) frame and the baselines it was scored against."""
        from taskset_lab.evaluate.report import score_curves
        from taskset_lab.evaluate.runs import BASELINE_SPACE, baseline_spec, eval_steps
        from taskset_lab.evaluate.score import baseline_from_curves
        from taskset_lab.optim.hparam_list import LOPT_BASELINE_LRS

        steps = eval_steps(spec.total_steps, spec.eval_every)
        seeds = spec.replicas
        where = self.locations(entries)
        base = baseline_spec(spec)
        rows, baselines, skipped = [], {}, []
        for task in tasks:
            name = self._stored_name(task, spec)
            adam = self.stored(Path(str(self.cfg.baselines_dir)), BASELINE_SPACE).task(name, base.num_configs, seeds, steps)
            try:
                baselines[name] = baseline_from_curves(name, adam.steps, LOPT_BASELINE_LRS, range(seeds), adam.losses)
            except ValueError as exc:  # every learning rate diverged: no reference on this task
                log.warning("task %s is left out: %s", name, exc)
                skipped.append(name)
                continue
            for entry in entries:
                at = where[entry.name]
                curves = self.stored(at.folder, at.label).task(name, at.num_configs, seeds, steps)
                rows += score_curves(entry.name, name, task.family, curves.losses, curves.steps, curves.diverged,
                                     baselines[name], entry.trials, entry.studies, split[task.name])
        if not rows:
            raise DataError("no task has a tuned-Adam reference (every learning rate diverged on every task)")
        return pd.DataFrame(rows), baselines, skipped

    def stored(self, folder: Path, label: str):
        """The curves of ``label`` in ``folder``, read once per run (scoring and plots share them)."""
        from taskset_lab.evaluate.runs import StoredCurves

        if (folder, label) not in self._readers:
            self._readers[(folder, label)] = StoredCurves(folder, label)
        return self._readers[(folder, label)]

    @staticmethod
    def _stored_name(task, spec) -> str:
        """The name a task's curves carry in the store (a stand-in run says so in its name)."""
        if task.config is None and spec.offline_data != "substitute":
            return task.name
        return task.build(data_dir=spec.data_dir, download=spec.download, offline_data=spec.offline_data).name

    def report(self, frame: pd.DataFrame, baselines, spec, entries, report_on: str, skipped: list[str],
               collected: list[dict[str, Any]]) -> dict[str, Any]:
        from taskset_lab.evaluate.report import (families, format_leaderboard, leaderboard, leaderboard_markdown,
                                                 per_task_summary, win_rates)
        from taskset_lab.evaluate.runs import summarize_collection
        from taskset_lab.files import atomic_path, write_csv_atomic, write_text_atomic
        from taskset_lab.optim.hparam_list import LOPT_BASELINE_LRS

        out = self.output_dir
        with atomic_path(out / "per_task.parquet", keep_suffix=True) as tmp:
            frame.to_parquet(tmp, index=False)
        write_csv_atomic(out / "per_task.csv", per_task_summary(frame))
        board = leaderboard(frame, baselines)
        write_csv_atomic(out / "leaderboard.csv", board)
        fam = families(frame)
        write_csv_atomic(out / "families.csv", fam)
        wins = win_rates(frame)
        write_csv_atomic(out / "win_rates.csv", wins.reset_index())
        settings = {"expr_name": str(self.cfg.expr_name), "tasks": int(frame["task"].nunique()),
                    "report_on": report_on, "seeds": spec.replicas, "total_steps": spec.total_steps,
                    "baseline_lrs": len(LOPT_BASELINE_LRS)}
        write_text_atomic(out / "leaderboard.md", leaderboard_markdown(board, settings))
        plots = self.plot(frame, board, fam, baselines)
        table = format_leaderboard(board)
        print(f"\nEVALUATE: {settings['tasks']} tasks ({report_on}), {spec.replicas} seeds, {spec.total_steps} steps; "
              f"speedup over learning-rate-tuned Adam (1 = as fast), normalized test loss (0 = tuned Adam's best)\n"
              f"{table}\n(tuned Adam's own profile score: {board.attrs['profile_score_tuned_adam']:.3f})")
        if skipped:
            print(f"left out (every Adam learning rate diverged, no reference): {', '.join(skipped)}")
        summary = {"tasks": settings["tasks"], "seeds": spec.replicas, "total_steps": spec.total_steps,
                   "report_on": report_on, "skipped_tasks": skipped,
                   "profile_score_tuned_adam": board.attrs["profile_score_tuned_adam"],
                   "leaderboard": board.to_dict(orient="records"), "collection": summarize_collection(collected),
                   "plots": [str(p) for p in plots]}
        self.write_json("evaluation_summary.json", summary)
        self.log_wandb(frame, board, fam, plots, summary)
        log.info("EVALUATE done: results in %s", out)
        return summary

    def plot(self, frame: pd.DataFrame, board: pd.DataFrame, fam: pd.DataFrame, baselines) -> list[Path]:
        from taskset_lab.viz.evaluation import plot_families, plot_profiles, plot_task_curves

        out = self.output_dir
        taus, rho, names, scores = board.attrs["profiles"]
        paths = [plot_profiles(taus, rho, names, out / "profiles.png", scores), plot_families(fam, out / "families.png")]
        n = int(OmegaConf.select(self.cfg, "plot_tasks", default=4))
        if n:
            curves = self._plot_curves(frame, baselines, n)
            envelopes = {t: (baselines[t].envelope.steps, baselines[t].envelope.losses) for t in curves}
            paths.append(plot_task_curves(curves, envelopes, out / "curves.png"))
        return paths

    def _plot_curves(self, frame: pd.DataFrame, baselines, n: int) -> dict[str, dict[str, tuple]]:
        """The seed-mean training curve of each entry's pick on the first ``n`` tasks, smoothed
        as the scores read it (EMA over evaluations)."""
        from taskset_lab.evaluate.entries import parse_entries
        from taskset_lab.evaluate.metrics import ema

        entries = parse_entries(plain(self.cfg.optimizers))
        where = self.locations(entries)
        out: dict[str, dict[str, tuple]] = {}
        seeds = int(frame["seed"].max()) + 1
        for task in list(dict.fromkeys(frame["task"]))[:n]:
            out[task] = {}
            for entry in entries:
                picks = frame[(frame["task"] == task) & (frame["optimizer"] == entry.name)]
                at = where[entry.name]
                curves = self.stored(at.folder, at.label).task(task, at.num_configs, seeds,
                                                               baselines[task].steps.astype(int))
                train = curves.losses["train"]
                mean = np.mean([train[c, s] for c, s in zip(picks["config"], picks["seed"])], axis=0)
                out[task][entry.name] = (curves.steps, ema(mean))  # smoothed as the envelope and the score are
        return out

    def log_wandb(self, frame: pd.DataFrame, board: pd.DataFrame, fam: pd.DataFrame, plots: list[Path],
                  summary: dict[str, Any]) -> None:
        """With ``logger=wandb``: one run (docs/design.md §Dashboards) with the flat config, the
        leaderboard, the per-task and per-family tables, the win rates, the plots, each entry's
        IQM speedup and profile score as summary values and the result files as an artifact. A run
        that cannot start is one warning line; the files above are written either way."""
        from taskset_lab.pipelines import dashboards as dash

        run = dash.start_run(self.cfg, job_type="EVALUATE", config=dash.flat_config(self.cfg))
        if run is None:
            return
        out = self.output_dir
        try:
            dash.log_table(run, "evaluate/leaderboard", board)
            dash.log_table(run, "evaluate/per_task", frame)
            dash.log_table(run, "evaluate/families", fam)
            dash.log_table(run, "evaluate/win_rates", pd.read_csv(out / "win_rates.csv"))
            dash.log_images(run, {f"evaluate/{p.stem}": p for p in plots})
            dash.set_summary(run, {f"{row['optimizer']}/{key}": row[key] for row in summary["leaderboard"]
                                   for key in ("speedup_iqm", "normalized_iqm", "profile_score",
                                               "win_rate_vs_tuned_adam", "diverged_fraction")})
            dash.log_artifact(run, dash.artifact_name(str(self.cfg.expr_name), "evaluation"), "evaluation",
                              [out / n for n in ("leaderboard.csv", "leaderboard.md", "per_task.parquet",
                                                 "per_task.csv", "families.csv", "win_rates.csv",
                                                 "evaluation_summary.json")], root=out)
        finally:
            dash.finish_run(run)
