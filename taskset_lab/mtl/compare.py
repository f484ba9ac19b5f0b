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
