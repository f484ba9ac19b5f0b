"""TRANSFER's comparison of methods in W&B (docs/design.md §Dashboards).

The aggregate run holds

* ``transfer``: the whole ``transfer.csv`` table (pair, method, k, losses, accuracies...);
* ``transfer/compare``: one row per (pair, method): the trials run, then the test and valid
  loss of the best-on-valid trial at each k of ``table_ks`` (``test_loss@k3``...) and the
  diverged fraction at the largest k;
* ``transfer/plot/<pair>``: test loss against k, one line per method; ``transfer_plot``:
  ``transfer.png``;
* summary ``transfer/<pair>/<method>/k<k>``: the test loss after k trials;
* artifact ``transfer_results``: ``transfer.csv``, ``summary.json``, ``transfer_table.txt``
  and every finished trial's record (``<pair>/trials/*.json``).
Per-trial runs (Lightning loggers) get the trial's config and final losses (transfer/runner.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from taskset_lab.pipelines import dashboards as dash


def compare_methods(table: pd.DataFrame, ks: Sequence[int]) -> pd.DataFrame:
    """One row per (pair, method) of a ``transfer.csv`` table: ``trials`` (the largest k),
    ``test_loss@k<k>`` and ``valid_loss@k<k>`` for each ``k`` (NaN where the method has fewer
    trials; +inf, a diverged pick, as NaN), ``diverged`` at the largest k."""
    rows = []
    for (pair, method), part in table.groupby(["pair", "method"], sort=False):
        by_k = part.set_index("k")
        row: dict[str, Any] = {"pair": pair, "method": method, "trials": int(by_k.index.max())}
        for metric in ("test_loss", "valid_loss"):
            for k in ks:
                value = float(by_k.loc[k, metric]) if k in by_k.index else math.nan
                row[f"{metric}@k{k}"] = value if math.isfinite(value) else math.nan
        row["diverged"] = float(by_k.loc[by_k.index.max(), "diverged"])
        rows.append(row)
    return pd.DataFrame(rows)


def log_comparison(run: Any, table: pd.DataFrame, ks: Sequence[int], plot: Path | None, root: Path) -> None:
    """Everything the module docstring lists, onto ``run`` (a no-op with ``run=None``)."""
    if run is None:
        return
    clean = table.replace([np.inf, -np.inf], np.nan)
    dash.log_table(run, "transfer", clean)
    dash.log_table(run, "transfer/compare", compare_methods(table, ks))
    for pair, part in clean.groupby("pair", sort=True):
        dash.line_plot(run, f"transfer/plot/{pair}", part, x="k", y="test_loss", series="method",
                       title=f"{pair}: test loss of the best-on-valid trial after k trials")
    if plot is not None:
        dash.log_images(run, {"transfer_plot": plot})
    dash.set_summary(run, {f"transfer/{r.pair}/{r.method}/k{int(r.k)}": r.test_loss
                           for r in table.itertuples() if int(r.k) in set(ks)})
    files = [root / "transfer.csv", root / "summary.json", root / "transfer_table.txt",
             *sorted(root.glob("*/trials/*.json"))]
    dash.log_artifact(run, "transfer_results", "results", files, root=root)
