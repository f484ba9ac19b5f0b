"""Pick the tasks of a CPU-sized curve collection from measured costs, and write the task set.

    tasklab pipeline=TASKS plot=cost seeds_per_family=40 output_dir=outputs/task_costs
    python scripts/select_cpu_tasks.py outputs/task_costs/task_costs.csv \
        --budget-minutes 90 --configs 1000 --steps 300 --max-per-family 40 \
        --out example_configs/task_set/taskset_cpu.yaml      # how taskset_cpu was chosen

Every TaskSet family gets its cheapest task(s) (``--min-per-family``), then the cheapest of
the rest join while the estimated collection time (``taskset_lab.curves.budget``) fits the
budget. The task set lists each task with its measured cost as a comment.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from taskset_lab.curves.budget import budget_summary, select_within_budget
from taskset_lab.files import write_text_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("costs", type=Path, help="task_costs.csv from `tasklab pipeline=TASKS plot=cost`")
    parser.add_argument("--budget-minutes", type=float, default=75.0)
    parser.add_argument("--configs", type=int, default=1100, help="configs per task (sampled + reference lists)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--min-per-family", type=int, default=1)
    parser.add_argument("--max-per-family", type=int, default=None)
    parser.add_argument("--all-kinds", action="store_true",
                        help="also give each fixed-task kind its cheapest task (default: only TaskSet's sampled families)")
    parser.add_argument("--max-us", type=float, default=None,
                        help="leave out tasks over this many microseconds per config-step (the required ones too)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        rows = pd.read_csv(args.costs).to_dict("records")
    except (OSError, ValueError) as exc:
        print(f"error: cannot read {args.costs}: {exc}", file=sys.stderr)
        return 2
    if args.max_us is not None:
        rows = [r for r in rows if r["seconds_per_config_step"] * 1e6 <= args.max_us]
    required = None if args.all_kinds else sorted({r["family"] for r in rows if str(r["family"]).endswith("_family")})
    chosen = select_within_budget(rows, args.budget_minutes * 60, args.configs, args.steps,
                                  min_per_family=args.min_per_family, max_per_family=args.max_per_family,
                                  required=required)
    summary = budget_summary(chosen)
    lines = [
        f"# {summary['tasks']} TaskSet tasks chosen by measured cost for a {args.configs}-config x {args.steps}-step",
        f"# collection within ~{args.budget_minutes:.0f} min (estimated {summary['estimated_seconds'] / 60:.0f} min "
        f"at the measured rates, {summary['threads']} threads):",
        f"#   python scripts/select_cpu_tasks.py {args.costs} --budget-minutes {args.budget_minutes:g} "
        f"--configs {args.configs} --steps {args.steps} --min-per-family {args.min_per_family}"
        + (f" --max-per-family {args.max_per_family}" if args.max_per_family else "")
        + (" --all-kinds" if args.all_kinds else "") + (f" --max-us {args.max_us:g}" if args.max_us else "")
        + f" --out {args.out}",
        "# Costs from `tasklab pipeline=TASKS plot=cost seeds_per_family=40` (taskset_lab/curves/budget.py);",
        "# image tasks run on the digits stand-in and text tasks on the pydoc stand-in",
        "# (misc.offline_data=substitute), so the per-step costs are those of the stand-ins' shapes.",
        "# Per family: " + ", ".join(f"{f} {n}" for f, n in sorted(summary["families"].items())),
        "families: []",
        "fixed:",
    ]
    for r in sorted(chosen, key=lambda r: (r["family"], r["name"])):
        lines.append(f"  - {r['name']:<48} # {r['parameters']:>9,} params, "
                     f"{r['seconds_per_config_step'] * 1e6:7.1f} us/config-step, ~{r['collection_seconds']:5.0f} s")
    write_text_atomic(args.out, "\n".join(lines) + "\n")
    print(f"{summary['tasks']} tasks, {len(summary['families'])} families, estimated "
          f"{summary['estimated_seconds'] / 60:.0f} min -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
