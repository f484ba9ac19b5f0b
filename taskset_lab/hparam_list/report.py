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
    """Write the list JSON (pretty, keys in insertion order), atomically."""
    from taskset_lab.files import write_text_atomic

    return write_text_atomic(path, json.dumps(_plain(dict(data)), indent=2) + "\n")


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


def _cell(value: Any) -> Any:
    """A table cell as W&B takes it: numbers as numbers, NaN as null, anything else as JSON text."""
    value = _plain(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True)


def entries_frame(hparam_list: Mapping[str, Any]) -> pd.DataFrame:
    """The list as a table: ``rank``, ``config_id``, then one typed column per hyperparameter
    (sorted by name; a value an entry lacks is null)."""
    entries = list(hparam_list.get("entries", []))
    keys = sorted({k for e in entries for k in e.get("hparams", {})})
    rows = [{"rank": int(e["rank"]), "config_id": int(e["config_id"]),
             **{k: _cell(e["hparams"].get(k)) for k in keys}} for e in entries]
    return pd.DataFrame(rows, columns=["rank", "config_id", *keys])


def _table(frame: pd.DataFrame) -> Any:
    import wandb

    return wandb.Table(columns=[str(c) for c in frame.columns],
                       data=[[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)])


def _method_order(methods: Sequence[str]) -> list[str]:
    present = set(methods)
    return [m for m in METHOD_LABELS if m in present] + sorted(present - set(METHOD_LABELS))


def log_to_wandb(run: Any, evaluation_summary: pd.DataFrame, hparam_list: Mapping[str, Any],
                 prefix: str = "hparam_list", ks: Sequence[int] = (1, 3, 10),
                 evaluation: pd.DataFrame | None = None, images: Mapping[str, str | Path] | None = None,
                 list_path: str | Path | None = None, speedup: pd.DataFrame | None = None) -> None:
    """Log the list, its evaluation and headline numbers to a W&B run (one ``log`` call).

    * ``{prefix}/entries``: the list, one typed column per hyperparameter (sortable, plottable);
    * ``{prefix}/curves_<scheme>``: a line plot of mean held-out loss vs trials per method;
    * ``{prefix}/summary``: the summary table (per scheme, method and k: mean over folds...);
    * with ``evaluation``: ``{prefix}/evaluation`` (every fold, method and k) and, for
      leave-one-family-out, ``{prefix}/families`` (its rows) with a line plot per held-out
      family ``{prefix}/family/<family>`` (value vs trials per method);
    * with ``speedup``: ``{prefix}/speedup``; with ``images``: ``{prefix}/plots/<name>``;
    * with ``list_path``: ``hparam_list.json`` as an artifact of type ``hparam_list``;
    * ``run.summary["{prefix}/<scheme>/<method>/k<k>"]`` for each ``k`` in ``ks``.
    """
    import wandb

    logged: dict[str, Any] = {}
    for scheme in evaluation_summary["scheme"].unique():
        part = evaluation_summary[evaluation_summary["scheme"] == scheme]
        methods = _method_order(list(part["method"]))
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
    logged[f"{prefix}/entries"] = _table(entries_frame(hparam_list))
    logged[f"{prefix}/summary"] = _table(evaluation_summary.reset_index(drop=True))
    if evaluation is not None and len(evaluation):
        logged[f"{prefix}/evaluation"] = _table(evaluation.reset_index(drop=True))
        lofo = evaluation[evaluation["held_out_family"].notna()] if "held_out_family" in evaluation else evaluation[:0]
        if len(lofo):
            logged[f"{prefix}/families"] = _table(lofo.reset_index(drop=True))
            for family, part in lofo.groupby("held_out_family", sort=True):
                methods = _method_order(list(part["method"]))
                xs, ys = [], []
                for m in methods:
                    rows = part[part["method"] == m].groupby("k", sort=True)["value"].mean()
                    xs.append([int(k) for k in rows.index])
                    ys.append([float(v) for v in rows.to_numpy()])
                logged[f"{prefix}/family/{family}"] = wandb.plot.line_series(
                    xs=xs, ys=ys, keys=[METHOD_LABELS.get(m, m) for m in methods],
                    title=f"normalized loss vs trials, held-out family {family}", xname="trials")
    if speedup is not None and len(speedup):
        logged[f"{prefix}/speedup"] = _table(speedup.reset_index(drop=True))
    for name, path in (images or {}).items():
        if Path(path).is_file():
            logged[f"{prefix}/plots/{name}"] = wandb.Image(str(path))
    run.log(logged)
    run.summary[f"{prefix}/length"] = len(hparam_list.get("entries", []))
    run.summary[f"{prefix}/optimizer"] = str(hparam_list.get("optimizer", ""))
    if list_path is not None and Path(list_path).is_file():
        artifact = wandb.Artifact(f"{prefix}-{hparam_list.get('optimizer', 'list')}", type="hparam_list",
                                  metadata={"optimizer": str(hparam_list.get("optimizer", "")),
                                            "length": len(hparam_list.get("entries", []))})
        artifact.add_file(str(list_path), name=LIST_FILE)
        run.log_artifact(artifact)
