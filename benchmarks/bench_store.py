"""Speed of curve-store queries on millions of rows, against the simple way.

Builds a synthetic store (``--tasks`` tasks in 4 families x ``--configs`` configs x
``--evals`` evaluation steps, one part per task, written with the real ``write_part``) and
times three queries two ways:

* ``read_curves``: :func:`taskset_lab.curves.store.read_curves` (parts pruned by file name
  and by the task families the store's manifest records, only the needed columns read, the
  remaining filters pushed down to Parquet);
* ``simple``: ``pandas.read_parquet`` of every curves file, then filtering in pandas.

Both must return the same rows (checked). Prints rows/s and the ratio simple / read_curves.

    python benchmarks/bench_store.py [--tasks 400] [--configs 64] [--evals 51] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from taskset_lab.curves.store import CURVES_DIR, read_curves, write_part
from taskset_lab.tasks.base import SPLITS

FAMILIES = ("mlp_family", "conv_pooling_family", "quadratic_family", "losg_tasks_family")  # labels only


def build_store(root: Path, tasks: int, configs: int, evals: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    names = []
    for t in range(tasks):
        family = FAMILIES[t % len(FAMILIES)]
        task = f"{family}_{t:08x}"
        names.append(task)
        n = configs * evals
        curves = pd.DataFrame({
            "task": task, "task_family": family, "optimizer": "nadamw",
            "config_id": np.repeat(np.arange(configs, dtype=np.int32), evals),
            "replica": np.zeros(n, dtype=np.int16),
            "step": np.tile(np.arange(evals, dtype=np.int32) * 10, configs),
            **{s: rng.random(n, dtype=np.float32) for s in SPLITS},
        })
        runs = pd.DataFrame({
            "task": task, "task_family": family, "task_config": "{}", "optimizer": "nadamw",
            "config_id": np.arange(configs, dtype=np.int32), "replica": np.zeros(configs, dtype=np.int16),
            "hparams": "{}", "config_seed": np.arange(configs, dtype=np.int64), "status": "ok",
            "diverged_step": np.full(configs, -1, dtype=np.int32),
            "total_steps": np.full(configs, (evals - 1) * 10, dtype=np.int32),
            "eval_every": np.full(configs, 10, dtype=np.int32), "seconds": 0.0, "device": "cpu",
        })
        write_part(root, f"{task}__nadamw__c0000__r00", curves, runs)
    # the task list of the manifest, as the collector records it (name and family per task)
    tasks = [{"name": n, "family": FAMILIES[t % len(FAMILIES)], "config": None} for t, n in enumerate(names)]
    (root / "manifest.json").write_text(json.dumps({"tasks": tasks}))
    return names


def simple_query(root: Path, tasks=None, families=None, configs=None, split=None) -> pd.DataFrame:
    frame = pd.concat([pd.read_parquet(f) for f in sorted((root / CURVES_DIR).glob("*.parquet"))],
                      ignore_index=True)
    keep = np.ones(len(frame), dtype=bool)
    if tasks is not None:
        keep &= frame["task"].isin(tasks).to_numpy()
    if families is not None:
        keep &= frame["task_family"].isin(families).to_numpy()
    if configs is not None:
        keep &= frame["config_id"].isin(configs).to_numpy()
    frame = frame[keep]
    if split is not None:
        frame = frame[["task", "task_family", "optimizer", "config_id", "replica", "step", split]]
    return frame.reset_index(drop=True)


def timed(fn, repeats: int = 3):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def canonical(frame: pd.DataFrame) -> pd.DataFrame:
    cols = sorted(frame.columns)
    return frame[cols].sort_values(["task", "config_id", "step"]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=400)
    parser.add_argument("--configs", type=int, default=64)
    parser.add_argument("--evals", type=int, default=51)
    parser.add_argument("--json", action="store_true", help="print a JSON report on stdout")
    args = parser.parse_args()
    log = sys.stderr if args.json else sys.stdout

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "store"
        start = time.perf_counter()
        names = build_store(root, args.tasks, args.configs, args.evals)
        rows = args.tasks * args.configs * args.evals
        print(f"store: {rows:,} rows in {args.tasks} parts, written in {time.perf_counter() - start:.1f} s",
              file=log)
        queries = {
            "one_task": (dict(tasks=[names[len(names) // 2]]), dict(tasks=[names[len(names) // 2]])),
            "family_test_split": (dict(task_families=[FAMILIES[0]], splits="test"),
                                  dict(families=[FAMILIES[0]], split="test")),
            "configs_0_to_7": (dict(config_ids=range(8)), dict(configs=list(range(8)))),
            "everything": ({}, {}),
        }
        report = {"rows": rows, "tasks": args.tasks, "queries": {}}
        for name, (fast_kw, simple_kw) in queries.items():
            t_fast, fast = timed(lambda: read_curves(root, **fast_kw))
            t_simple, simple = timed(lambda: simple_query(root, **simple_kw))
            pd.testing.assert_frame_equal(canonical(fast), canonical(simple), check_dtype=False)
            report["queries"][name] = {"rows_returned": len(fast), "read_curves_s": t_fast, "simple_s": t_simple,
                                       "speedup_vs_simple": t_simple / t_fast}
            print(f"{name:18s} {len(fast):>10,} rows  read_curves {t_fast * 1e3:8.1f} ms  "
                  f"simple {t_simple * 1e3:8.1f} ms  -> {t_simple / t_fast:5.1f}x", file=log)
    if args.json:
        print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
