"""The ``mtl_compare`` table: one row per method (algorithm + optimizer) of a multirun, one
column per task metric (test, last evaluation), and Δm% (positive = better than STL).

``CompareTable`` is a Hydra callback: after the multirun it reads every job's
``summary.json`` under the sweep folder, prints the table and writes ``compare.csv`` and
``compare.md`` there. ``compare_table`` does the same for any list of run folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from taskset_lab.files import write_text_atomic

try:
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra < 1.1
    Callback = object  # type: ignore[misc,assignment]


def _label(summary: dict[str, Any]) -> str:
    return f"{summary['method']} + {summary['optimizer']}"


def compare_table(summaries: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows: STL (from the first summary's baseline) then each run; columns: task/metric, Δm%."""
    summaries = list(summaries)
    rows = []
    if summaries and summaries[0].get("baseline"):
        base = summaries[0]
        rows.append({"method": "STL (each task alone)", **_cells(base["baseline"], base["tasks"]), "delta_m%": 0.0})
    for s in summaries:
        if s["method"] == "STL":
            continue
        rows.append({"method": _label(s), **_cells(s["final"], s["tasks"]),
                     "delta_m%": s.get("delta_m") if s.get("delta_m") is not None else float("nan")})
    return pd.DataFrame(rows)


def _cells(final: dict, tasks: dict) -> dict[str, float]:
    cells = {}
    for t, metrics in final.items():
        for metric, value in metrics.items():
            if metric != "loss":
                cells[f"{tasks[str(t)] if str(t) in tasks else tasks[t]}/{metric}"] = value
    return cells


def read_summaries(folder: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted(folder.glob("*/summary.json")):
        summary = json.loads(path.read_text())
        summary["tasks"] = {str(k): v for k, v in summary["tasks"].items()}
        out.append(summary)
    return out


def to_markdown(table: pd.DataFrame) -> str:
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in table.itertuples(index=False):
        cells = [f"{v:+.2f}" if c == "delta_m%" else (f"{v:.4g}" if isinstance(v, float) else str(v))
                 for c, v in zip(cols, row)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_compare(folder: Path) -> pd.DataFrame | None:
    summaries = read_summaries(folder)
    if not summaries:
        return None
    table = compare_table(summaries)
    for name, text in (("compare.csv", table.to_csv(index=False)), ("compare.md", to_markdown(table) + "\n")):
        write_text_atomic(folder / name, text)
    return table


class CompareTable(Callback):
    """Hydra callback: the table of a finished ``mtl_compare`` multirun."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        folder = Path(str(config.hydra.sweep.dir))
        table = write_compare(folder)
        if table is None:
            print(f"mtl_compare: no finished runs under {folder}")
            return
        print(f"\nmtl_compare on {folder} (test metrics at the last step; Δm% > 0 is better than single-task):")
        print(to_markdown(table))
        print(f"(also in {folder / 'compare.csv'} and compare.md)")
        log_compare(config, folder, table)


def log_compare(config: Any, folder: Path, table: pd.DataFrame) -> None:
    """With ``logger=wandb``: one more W&B run, ``<expr_name>/compare`` in the multirun's group,
    holding the table (``mtl/compare``), a Δm% bar chart, ``delta_m%/<method>`` summary values
    and ``compare.csv``/``compare.md`` with every run's ``summary.json`` as an artifact. A W&B
    failure is one warning line (the table is written already)."""
    from omegaconf import OmegaConf

    from taskset_lab.pipelines import dashboards as dash

    if dash.wandb_node(config) is None:
        return
    name = str(OmegaConf.select(config, "expr_name", default="mtl"))
    sweep = OmegaConf.select(config, "hydra.sweep.dir", default=None)
    group = OmegaConf.select(config, "logger.wandb.group", default=None) or (
        f"{name}/{Path(str(sweep)).name}" if sweep else name)
    run = dash.start_run(config, job_type="MTL", config=dash.flat_config(config), name=f"{name}/compare",
                         group=group, save_dir=folder)
    if run is None:
        return
    dash.log_table(run, "mtl/compare", table)
    try:
        import wandb

        bars = wandb.Table(columns=["method", "delta_m%"],
                           data=[[str(m), float(v)] for m, v in zip(table["method"], table["delta_m%"]) if v == v])
        run.log({"mtl/delta_m": wandb.plot.bar(bars, "method", "delta_m%", title="Δm% (positive = better than STL)")})
    except Exception as exc:  # noqa: BLE001
        dash.warn_failed("logging the Δm% chart", exc)
    dash.set_summary(run, {f"delta_m%/{m}": v for m, v in zip(table["method"], table["delta_m%"])})
    dash.log_artifact(run, f"mtl_compare-{name}", "results",
                      [folder / "compare.csv", folder / "compare.md", *sorted(folder.glob("*/summary.json"))],
                      root=folder)
    dash.finish_run(run)
