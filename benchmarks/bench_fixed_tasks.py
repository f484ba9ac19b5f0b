"""Time per training step of every fixed task (TaskSet's 109) here, one config, in the
population engine — what `task_set=fixed_all` costs per 1000 steps per config.

    .venv/bin/python benchmarks/bench_fixed_tasks.py [--pattern 'FixedMLP_*'] [--steps 5] [--threads 1]

Each task is built on its offline stand-in where its data is absent (same shapes, so the same
cost), warmed up for one step, then timed over ``--steps`` steps (no evaluations). Prints one
line per task and the total; ``--json`` writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from taskset_lab.engine import Population
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.registry import FIXED_TASKS, build_fixed_task


def seconds_per_step(name: str, steps: int) -> float:
    task = build_fixed_task(name, offline_data="substitute")
    population = Population(task, "adam8p", [get_optimizer_family("adam8p").sample(0)], steps + 1, eval_batches=1)
    state = population.step(population.init())  # warm-up (allocations, probe passes)
    start = time.perf_counter()
    for _ in range(steps):
        state = population.step(state)
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", default="*")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = {}
    for name in FIXED_TASKS.names(args.pattern):
        rows[name] = seconds_per_step(name, args.steps)
        print(f"{name:<72} {rows[name] * 1e3:9.1f} ms/step  {rows[name] * 1000 / 60:7.1f} min/1000 steps", flush=True)
    total = sum(rows.values())
    print(f"{len(rows)} tasks: {total * 1000 / 3600:.2f} h per 1000 steps per config "
          f"({torch.get_num_threads()} threads, CPU)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds_per_step": rows, "threads": torch.get_num_threads()}, f, indent=2)


if __name__ == "__main__":
    main()
