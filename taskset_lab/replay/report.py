"""What a replay benchmark writes: anytime curves (CSV and Parquet), the table at fixed
budgets, the lists, plots of best normalized loss against budget, and W&B tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from taskset_lab.files import atomic_path, write_csv_atomic, write_text_atomic
from taskset_lab.replay.benchmark import ReplayResult, format_table

LABELS = {"random": "random search", "random_exact": "random search (exact expectation)", "list": "learned list",
          "tpe": "TPE (KDE)", "asha": "ASHA", "list_asha": "ASHA seeded with the list",
          "hyperband": "Hyperband (async)", "bohb": "BOHB"}
ORDER = list(LABELS)


def write_outputs(out_dir: str | Path, result: ReplayResult, settings: Mapping[str, Any]) -> dict[str, Path]:
    """Every file of a replay under ``out_dir`` (each written atomically); returns them by name."""
    out = Path(out_dir)
    paths = {"curves_csv": write_csv_atomic(out / "anytime_curves.csv", result.curves),
             "summary_csv": write_csv_atomic(out / "anytime_summary.csv", result.summary),
             "table_csv": write_csv_atomic(out / "budget_table.csv", result.table),
             "table_txt": write_text_atomic(out / "budget_table.txt", format_table(result.table) + "\n")}
    for name, frame in (("curves_parquet", result.curves), ("task_curves_parquet", result.task_curves)):
        path = out / ("anytime_curves.parquet" if name == "curves_parquet" else "task_curves.parquet")
        with atomic_path(path, keep_suffix=True) as tmp:
            frame.to_parquet(tmp, index=False)
        paths[name] = path
    lists = {f"{scheme}/{fold}": entries for (scheme, fold), entries in result.lists.items()}
    paths["replay_json"] = write_text_atomic(out / "replay.json", json.dumps(
        {"settings": dict(settings), "lists_config_rows": lists,
         "table": result.table.to_dict(orient="records")}, indent=2, default=str))
    return paths


def plot_anytime(summary: pd.DataFrame, path: str | Path, scheme: str = "cv") -> Path:
    """Mean (over folds) best normalized test loss against budget in full trials, per method."""
    from taskset_lab.viz.plots import pyplot, save_figure

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    part = summary[summary["scheme"] == scheme]
    present = set(part["method"])
    for i, method in enumerate([m for m in ORDER if m in present] + sorted(present - set(ORDER))):
        rows = part[part["method"] == method].sort_values("budget")
        style = dict(ls="none", marker="o", ms=3) if method == "random_exact" else dict(lw=1.6)
        ax.plot(rows["budget"], rows["mean"], color=f"C{i}", label=LABELS.get(method, method), **style)
    ax.set_xscale("log")
    ax.set_xlabel("budget (full trials' training, simulated clock)")
    ax.set_ylabel("best normalized test loss so far")
    ax.set_title(f"held-out tasks ({scheme})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120)


def plot_all(summary: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """``anytime_<scheme>.png`` for every scheme."""
    return [plot_anytime(summary, Path(out_dir) / f"anytime_{s}.png", s) for s in sorted(summary["scheme"].unique())]


def _cell(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    return value if value is None or isinstance(value, (int, str, bool)) else str(value)


def _table(frame: pd.DataFrame) -> Any:
    import wandb

    return wandb.Table(columns=[str(c) for c in frame.columns],
                       data=[[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)])


def log_to_wandb(run: Any, result: ReplayResult, images: Mapping[str, str | Path] | None = None,
                 prefix: str = "replay") -> None:
    """Log ``{prefix}/table`` (budget table), ``{prefix}/summary`` and ``{prefix}/curves`` as W&B
    tables, a line plot ``{prefix}/anytime_<scheme>`` per scheme, the plots as images, and
    ``run.summary["{prefix}/<scheme>/<method>/b<budget>"]``."""
    import wandb

    logged: dict[str, Any] = {}
    for key, frame in (("table", result.table), ("summary", result.summary), ("curves", result.curves)):
        logged[f"{prefix}/{key}"] = _table(frame)
    for scheme, part in result.summary.groupby("scheme", sort=True):
        methods = [m for m in ORDER if m in set(part["method"])]
        xs = [part[part["method"] == m].sort_values("budget")["budget"].tolist() for m in methods]
        ys = [part[part["method"] == m].sort_values("budget")["mean"].tolist() for m in methods]
        logged[f"{prefix}/anytime_{scheme}"] = wandb.plot.line_series(
            xs=xs, ys=ys, keys=[LABELS.get(m, m) for m in methods],
            title=f"best normalized loss vs budget ({scheme})", xname="budget (full trials)")
    for name, path in (images or {}).items():
        if Path(path).is_file():
            logged[f"{prefix}/plots/{name}"] = wandb.Image(str(path))
    run.log(logged)
    for row in result.table.itertuples():
        if np.isfinite(row.mean):
            run.summary[f"{prefix}/{row.scheme}/{row.method}/b{row.budget:g}"] = float(row.mean)
