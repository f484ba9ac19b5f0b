"""MTL in W&B and TensorBoard (docs/design.md §Dashboards).

A run (job type MTL, named after what varies, a multirun's runs grouped) holds its
evaluations as they happen (the module logs them), and at the end

* summary: ``final/<task>/<metric>`` (test, last evaluation), ``delta_m`` (Δm%, positive is
  better than single-task), ``diverged``; TensorBoard gets them as HParams metrics;
* ``mtl/compare``: the methods side by side in the ``mtl_compare`` shape (STL first, then
  this run's method + optimizer; one column per task metric, ``delta_m%``);
* ``mtl/plots/<name>``: ``metrics.png`` and ``rau_heatmap.png``;
* artifact ``mtl_results``: ``metrics.csv``, ``final_metrics.csv``, ``delta_m.csv``,
  ``au.csv``, ``loss_weights.csv``, ``summary.json`` and ``config.yaml``.
A multirun's table of every method is logged by ``mtl.compare.CompareTable`` (``<expr_name>/compare``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from taskset_lab.pipelines import dashboards as dash

RESULT_FILES = ("metrics.csv", "final_metrics.csv", "delta_m.csv", "au.csv", "loss_weights.csv", "summary.json",
                "config.yaml")
PLOTS = ("metrics.png", "rau_heatmap.png")


def result_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The numbers runs are ranked by: ``final/<task name>/<metric>``, ``delta_m``, ``diverged``."""
    tasks = {str(k): v for k, v in summary.get("tasks", {}).items()}
    out: dict[str, float] = {}
    for t, metrics in (summary.get("final") or {}).items():
        for metric, value in metrics.items():
            out[f"final/{tasks.get(str(t), t)}/{metric}"] = float(value)
    if summary.get("delta_m") is not None:
        out["delta_m"] = float(summary["delta_m"])
    out["diverged"] = float(summary.get("diverged_step") is not None)
    return out


def log_mtl_results(run: Any, loggers: list[Any], hparams: Mapping[str, Any], summary: Mapping[str, Any],
                    out: Path) -> None:
    """Everything the module docstring lists; each failure one warning line."""
    from taskset_lab.mtl.compare import compare_table

    metrics = result_metrics(summary)
    for logger in loggers:
        if dash.is_tensorboard(logger):
            dash.tensorboard_hparams(logger, hparams, metrics, step=int(summary.get("steps") or 0))
    if run is None:
        return
    dash.set_summary(run, {**metrics, "method": summary.get("method"), "optimizer": summary.get("optimizer")})
    if summary.get("final"):
        try:
            table = compare_table([dict(summary)])
        except (KeyError, TypeError) as exc:
            dash.warn_failed("building the comparison table", exc)
        else:
            dash.log_table(run, "mtl/compare", table)
    dash.log_images(run, {f"mtl/plots/{Path(name).stem}": out / name for name in PLOTS})
    name = f"mtl_results-{summary.get('method', '')}-{summary.get('optimizer', '')}"
    dash.log_artifact(run, name, "results", [out / f for f in RESULT_FILES])
    dash.save_file(run, out / "config.yaml", "tasklab/config.yaml")
