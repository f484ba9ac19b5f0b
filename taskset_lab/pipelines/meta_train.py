"""META_TRAIN: meta-train a learned optimizer by PES or antithetic ES over truncated unrolls of
a task set's training tasks, then evaluate it on held-out tasks (taskset_lab.meta).

    tasklab pipeline=META_TRAIN index=lopt_quickstart

Writes under ``output_dir`` (no timestamp in the quickstart: the same command resumes):
``meta_checkpoint.pt`` (the outer state, atomic, every ``lopt.checkpoint_every`` steps: a
killed run started again with the same command continues the same outer trajectory),
``meta_loss.csv`` (one row per outer step: meta-loss, gradient norm and its standard error,
pairs used, diverged pairs, skipped steps, truncated runs, inner config-steps/s), the
``logger`` group's loggers (CSV/TensorBoard/W&B through their ``log_metrics``),
``learned_optimizer.pt`` (the result: ``LearnedOptimizer(params, checkpoint=<that file>)``),
and, unless ``lopt.evaluation.horizons`` is empty, ``heldout.csv`` and ``heldout_summary.json``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from taskset_lab.errors import ConfigError
from taskset_lab.pipelines.base import Pipeline
from taskset_lab.pipelines.building import build_loggers, finish_loggers, plain, read_spec

log = logging.getLogger(__name__)


class MetaTrainPipeline(Pipeline):
    name = "META_TRAIN"
    required_fields = ("expr_name", "output_dir", "lopt", "lopt.train_tasks")

    def spec(self):
        from taskset_lab.meta.outer import MetaSpec

        spec = read_spec(self.cfg, MetaSpec, {f.name: f"lopt.{f.name}" for f in dataclasses.fields(MetaSpec)})
        for field, problem in spec.check():
            with self.problems:
                raise ConfigError(f"lopt.{field}", problem)
        return spec

    def evaluation(self) -> dict[str, Any]:
        node = OmegaConf.select(self.cfg, "lopt.evaluation", default=None)
        ev = plain(node) if node is not None else {}
        if not isinstance(ev, dict):
            raise ConfigError("lopt.evaluation", f"must be a mapping, got {ev!r}")
        unknown = sorted(set(ev) - {"horizons", "evals_per_run", "seeds", "lrs", "heldout", "eval_batches"})
        if unknown:
            raise ConfigError(f"lopt.evaluation.{unknown[0]}",
                              "unknown key; allowed: horizons, evals_per_run, seeds, lrs, heldout, eval_batches")
        horizons = ev.get("horizons", [])
        if not isinstance(horizons, list) or any(isinstance(h, bool) or not isinstance(h, int) or h < 2
                                                 for h in horizons):
            raise ConfigError("lopt.evaluation.horizons", f"must be a list of step counts >= 2, got {horizons!r}")
        lrs = ev.get("lrs", [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2])
        if 1e-3 not in [float(x) for x in lrs]:
            raise ConfigError("lopt.evaluation.lrs", "must hold 1e-3 (the Adam-1e-3 reference)")
        heldout = ev.get("heldout", {})
        if horizons and (not isinstance(heldout, dict) or not heldout):
            raise ConfigError("lopt.evaluation.heldout", "must map group names to task sets")
        return {"horizons": horizons, "evals_per_run": int(ev.get("evals_per_run", 10)),
                "seeds": [int(s) for s in ev.get("seeds", [0, 1])], "lrs": [float(x) for x in lrs],
                "heldout": heldout, "eval_batches": int(ev.get("eval_batches", 2))}

    def check(self) -> None:
        from taskset_lab.tasks.task_set import resolve_task_set

        with self.problems:
            self.spec()
        with self.problems:
            resolve_task_set(plain(self.cfg.lopt.train_tasks), "lopt.train_tasks")
        with self.problems:
            ev = self.evaluation()
            for group, task_set in ev["heldout"].items():
                with self.problems:
                    resolve_task_set(task_set, f"lopt.evaluation.heldout.{group}")

    def _build(self, task_set: Any, field: str) -> list:
        from taskset_lab.tasks.task_set import resolve_task_set

        misc = self.cfg.misc
        return [t.build(data_dir=str(misc.data_dir), download=bool(misc.download),
                        offline_data=str(misc.offline_data)) for t in resolve_task_set(task_set, field)]

    def run(self) -> dict[str, Any]:
        import torch

        from taskset_lab.pipelines import dashboards as dash

        spec, ev = self.spec(), self.evaluation()
        out = self.output_dir
        out.mkdir(parents=True, exist_ok=True)
        self.save_config()
        threads = OmegaConf.select(self.cfg, "lopt.threads", default=None)
        if threads:
            torch.set_num_threads(int(threads))
        tasks = self._build(plain(self.cfg.lopt.train_tasks), "lopt.train_tasks")
        loggers = dash.start_loggers(build_loggers(self.cfg))  # a W&B run that cannot start: one line
        run = dash.wandb_run_of(loggers)
        if run is not None:
            run.config.update(dash.flat_config(self.cfg), allow_val_change=True)
        try:
            return self._train(spec, ev, tasks, loggers, run)
        finally:
            finish_loggers(loggers)

    def _train(self, spec, ev, tasks, loggers, run) -> dict[str, Any]:
        """Meta-train (resuming from the outer checkpoint), save the result, score it on the
        held-out tasks, log what the loggers take."""
        import pandas as pd

        from taskset_lab.files import write_csv_atomic
        from taskset_lab.meta.heldout import heldout_evaluation
        from taskset_lab.meta.outer import MetaTrainer
        from taskset_lab.optim.learned import save_checkpoint
        from taskset_lab.pipelines import dashboards as dash

        out = self.output_dir
        csv_path = out / "meta_loss.csv"
        every = max(1, int(OmegaConf.select(self.cfg, "lopt.log_every", default=1)))
        trainer_ref: dict[str, MetaTrainer] = {}

        def on_step(row: dict[str, Any]) -> None:
            trainer = trainer_ref["t"]
            write_csv_atomic(csv_path, pd.DataFrame(trainer.state.rows))
            metrics = {f"meta/{k}": float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float))
                       and math.isfinite(float(v))}
            for lg in loggers:
                lg.log_metrics(metrics, step=int(row["step"]))
            if row["skipped"]:
                log.warning("outer step %d skipped: non-finite meta-gradient or no valid pair (%d skipped so far)",
                            row["step"], row["skipped_total"])
            if row["step"] % every == 0 or row["step"] == spec.outer_steps:
                log.info("outer step %d/%d  meta-loss %.4f  |g| %.3g (stderr %.3g)  pairs %d  diverged pairs %d  "
                         "truncated runs %d  skipped %d  %.0f inner config-steps/s", row["step"], spec.outer_steps,
                         row["meta_loss"], row["grad_norm"], row["grad_stderr_norm"], row["pairs"],
                         row["diverged_pairs"], row["truncated_runs_total"], row["skipped_total"],
                         row["inner_steps_per_s"])

        trainer = MetaTrainer(spec, tasks, checkpoint_path=out / "meta_checkpoint.pt", on_step=on_step)
        trainer_ref["t"] = trainer
        if trainer.resumed_from is not None:
            log.info("resuming from %s at outer step %d", out / "meta_checkpoint.pt", trainer.resumed_from)
        try:
            state = trainer.run()
        except KeyboardInterrupt:
            log.warning("interrupted: the outer state is checkpointed at %s; the same command continues",
                        out / "meta_checkpoint.pt")
            raise
        write_csv_atomic(csv_path, pd.DataFrame(state.rows))
        command = "tasklab pipeline=META_TRAIN index=" + str(OmegaConf.select(self.cfg, "expr_name"))
        result = trainer.result({"command": command, "train_tasks": [t.name for t in tasks]})
        save_checkpoint(result, out / "learned_optimizer.pt")
        summary: dict[str, Any] = {"outer_steps": state.step, "skipped_steps": state.skipped_steps,
                                   "diverged_pairs": state.diverged_pairs, "truncated_runs": state.truncated_runs,
                                   "finished_runs": state.finished_runs,
                                   "inner_config_steps": state.inner_config_steps,
                                   "final_meta_loss": state.rows[-1]["meta_loss"] if state.rows else None,
                                   "checkpoint": str(out / "learned_optimizer.pt")}
        if ev["horizons"]:
            groups = {g: self._build(ts, f"lopt.evaluation.heldout.{g}") for g, ts in ev["heldout"].items()}
            frame, summaries = heldout_evaluation(result, groups, ev["horizons"], ev["evals_per_run"], ev["seeds"],
                                                  ev["lrs"], ev["eval_batches"], progress=log.info)
            write_csv_atomic(out / "heldout.csv", frame)
            self.write_json("heldout_summary.json", summaries)
            for s in summaries:
                lo, hi = s["iqm_speedup_ci"]
                log.info("held-out %s at T=%d: beats Adam-1e-3 on %.0f%% of %d tasks, beats tuned Adam on %.0f%%, "
                         "IQM speedup over tuned Adam %.2f [%.2f, %.2f]", s["group"], s["horizon"],
                         100 * s["win_rate_vs_adam1e-3"], s["tasks"], 100 * s["win_rate_vs_tuned_adam"],
                         s["iqm_speedup"], lo, hi)
            summary["heldout"] = summaries
        self.write_json("meta_train_summary.json", summary)
        # W&B (docs/design.md §Dashboards): the meta-loss table, the held-out scores, the checkpoints
        dash.log_table(run, "meta/loss", pd.DataFrame(state.rows))
        if ev["horizons"]:
            dash.log_table(run, "meta/heldout", frame)
        dash.set_summary(run, {f"meta/{k}": v for k, v in summary.items() if isinstance(v, (int, float))})
        dash.log_artifact(run, dash.artifact_name(str(self.cfg.expr_name), "learned_optimizer"), "checkpoint",
                          [out / "learned_optimizer.pt", out / "meta_checkpoint.pt", csv_path,
                           out / "meta_train_summary.json"], root=out)
        log.info("META_TRAIN done: %d outer steps (%d skipped), %d diverged pairs, %d truncated runs; "
                 "optimizer at %s", state.step, state.skipped_steps, state.diverged_pairs, state.truncated_runs,
                 Path(summary["checkpoint"]))
        return summary
