"""Writing the results of the HPARAM_LIST pipeline: list JSON, tables, a text table, W&B.

``hparam_list.json``::

    {"optimizer": "nadamw",
     "entries": [{"rank": 0, "config_id": 12, "hparams": {...}}, ...],
     "normalization": {"select_split": ..., "report_split": ..., "reduce": ..., "cap": ...},
     "tasks": [...], "task_families": [...], "objective_by_k": [...]}

``taskset_lab.optim.hparam_list_optimizer`` reads ``optimizer`` and ``entries[i]["hparams"]``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from taskset_lab.hparam_list.evaluate import Evaluation

LIST_FILE = "hparam_list.json"
METHOD_LABELS = {"list": "list", "random": "random", "best_single": "best single", "tpe": "tpe"}


def _plain(value: Any) -> Any:
    """JSON-ready Python values (numpy scalars and arrays unwrapped)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def build_hparam_list(optimizer: str, config_ids: Sequence[int], hparams: pd.DataFrame | Mapping[int, Mapping],
                      normalization: Mapping[str, Any], tasks: Sequence[str], task_families: Sequence[str],
                      objective_by_k: Sequence[float]) -> dict[str, Any]:
    """The list as the dict written to ``hparam_list.json``.

    ``hparams`` maps config id to its hparams: a table indexed by config id (NaN cells, from
    configs lacking a key, are dropped) or a plain mapping.
    """
    entries = []
    for rank, cid in enumerate(config_ids):
        cid = int(cid)
        if isinstance(hparams, pd.DataFrame):
            row = hparams.loc[cid]
            hp = {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
        else:
            hp = dict(hparams[cid])
        entries.append({"rank": rank, "config_id": cid, "hparams": _plain(hp)})
    return {"optimizer": str(optimizer), "entries": entries, "normalization": _plain(dict(normalization)),
            "tasks": [str(t) for t in tasks], "task_families": sorted({str(f) for f in task_families}),
            "objective_by_k": [float(v) for v in objective_by_k]}


def write_hparam_list(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write the list JSON (pretty, keys in insertion order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_plain(dict(data)), indent=2) + "\n")
    return path


def read_hparam_list(path: str | Path) -> dict[str, Any]:
    """Read a list JSON back (no checks; ``taskset_lab.optim.load_hparam_list`` checks)."""
    return json.loads(Path(path).read_text())


def write_report(out_dir: str | Path, hparam_list: Mapping[str, Any], norm_df: pd.DataFrame,
                 evaluation: Evaluation) -> dict[str, Path]:
    """Write ``hparam_list.json``, ``normalized_losses.parquet``, ``evaluation.csv``,
    ``summary.csv`` and ``speedup.csv`` into ``out_dir``; returns their paths by name."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"hparam_list": write_hparam_list(out / LIST_FILE, hparam_list)}
    norm = norm_df.copy()
    norm.attrs = {}
    paths["normalized_losses"] = out / "normalized_losses.parquet"
    norm.to_parquet(paths["normalized_losses"], index=False)
    frames = [("evaluation", evaluation.evaluation), ("summary", evaluation.summary),
              ("speedup", evaluation.speedup)]
    if len(evaluation.reference_speedup):
        frames.append(("reference_speedup", evaluation.reference_speedup))
    for name, frame in frames:
        paths[name] = out / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    return paths


def format_table(summary: pd.DataFrame, ks: Sequence[int] = (1, 3, 10), scheme: str | None = None,
                 speedup: pd.DataFrame | None = None, reference_speedup: pd.DataFrame | None = None) -> str:
    """A compact text table: mean held-out normalized loss per method at the given trial counts.

    ``scheme`` defaults to ``cv`` when present. Methods missing at some k show ``-``; reference
    lists (methods not in :data:`METHOD_LABELS`, e.g. ``opt_list``) follow the others. With a
    ``speedup`` table, a row gives the random-search trials needed to match the list; with a
    ``reference_speedup`` table, one row per reference list gives its entries needed.
    """
    schemes = list(summary["scheme"].unique())
    if not schemes:
        return "(no evaluation)"
    scheme = scheme or ("cv" if "cv" in schemes else schemes[0])
    part = summary[summary["scheme"] == scheme]
    methods = [m for m in METHOD_LABELS if m in set(part["method"])]
    methods += sorted(set(part["method"]) - set(METHOD_LABELS))
    n_folds = int(part["n_folds"].max()) if len(part) else 0
    head = ["method"] + [f"k={k}" for k in ks]
    body = []
    for m in methods:
        vals = part[part["method"] == m].set_index("k")["mean"]
        body.append([METHOD_LABELS.get(m, m)] + [f"{vals[k]:.4f}" if k in vals.index else "-" for k in ks])
    if speedup is not None and len(speedup):
        sp = speedup[speedup["scheme"] == scheme].set_index("k") if "scheme" in speedup else speedup.set_index("k")
        body.append(["random trials to match list"]
                    + [str(sp.loc[k, "random_trials_label"]) if k in sp.index else "-" for k in ks])
    if reference_speedup is not None and len(reference_speedup):
        ref = reference_speedup[reference_speedup["scheme"] == scheme]
        for name in ref["reference"].unique():
            sp = ref[ref["reference"] == name].set_index("k")
            body.append([f"{name} trials to match list"]
                        + [str(sp.loc[k, "random_trials_label"]) if k in sp.index else "-" for k in ks])
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    title = f"held-out normalized loss after k trials ({scheme}, {n_folds} folds; lower is better)"
    rule = "-" * len(line(head))
    return "\n".join([title, line(head), rule, *map(line, body)])


def log_to_wandb(run: Any, evaluation_summary: pd.DataFrame, hparam_list: Mapping[str, Any],
                 prefix: str = "hparam_list", ks: Sequence[int] = (1, 3, 10)) -> None:
    """Log curves, the list and headline numbers to a W&B run.

    * ``{prefix}/curves_<scheme>``: a line plot of mean held-out loss vs trials per method;
    * ``{prefix}/summary``: the summary table; ``{prefix}/entries``: the list;
    * ``run.summary["{prefix}/<scheme>/<method>/k<k>"]`` for ``k`` in ``ks``.
    """
    import wandb

    logged: dict[str, Any] = {}
    for scheme in evaluation_summary["scheme"].unique():
        part = evaluation_summary[evaluation_summary["scheme"] == scheme]
        methods = [m for m in METHOD_LABELS if m in set(part["method"])]
        methods += sorted(set(part["method"]) - set(METHOD_LABELS))  # reference lists
        xs, ys = [], []
        for m in methods:
            rows = part[part["method"] == m].sort_values("k")
            xs.append(rows["k"].astype(int).tolist())
            ys.append(rows["mean"].astype(float).tolist())
            for k in ks:
                hit = rows[rows["k"] == k]
                if len(hit):
                    run.summary[f"{prefix}/{scheme}/{m}/k{k}"] = float(hit["mean"].iloc[0])
        logged[f"{prefix}/curves_{scheme}"] = wandb.plot.line_series(
            xs=xs, ys=ys, keys=[METHOD_LABELS.get(m, m) for m in methods],
            title=f"held-out normalized loss vs trials ({scheme})", xname="trials")
    table = wandb.Table(columns=["rank", "config_id", "hparams"],
                        data=[[int(e["rank"]), int(e["config_id"]), json.dumps(e["hparams"], sort_keys=True)]
                              for e in hparam_list.get("entries", [])])
    logged[f"{prefix}/entries"] = table
    logged[f"{prefix}/summary"] = wandb.Table(dataframe=evaluation_summary.reset_index(drop=True))
    run.log(logged)
    run.summary[f"{prefix}/length"] = len(hparam_list.get("entries", []))
    run.summary[f"{prefix}/optimizer"] = str(hparam_list.get("optimizer", ""))
