"""EVALUATE's training throughput against its peers, measured in one run.

Two claims, each as a ratio of config-steps/s on the same tasks, same horizon, same seeds:

* a **TaskSet family** entry (``{list: opt_list, k: K}``) runs on the population engine, through
  the same collector as CURVES: its rate over the rate of ``collect_curves`` on the same configs
  (``family / curves``) should be about 1;
* a **torch.optim** entry (``{_target_: torch.optim.Adam}``) runs one config at a time, one
  (task, seed) job per process: its rate over the plain loop's rate (``engine.train_single``
  in this process, the simple way) should be about the number of processes used
  (``torch / plain``, with ``--jobs``; each job runs one torch thread).

Prints a table and, with ``--json``, one JSON object (keys checked by a quick test).

    python benchmarks/bench_evaluate.py [--steps 200] [--seeds 2] [--k 16] [--jobs 2] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from taskset_lab.curves.collect import collect_curves
from taskset_lab.curves.spec import CollectionSpec
from taskset_lab.engine.single import train_single
from taskset_lab.evaluate.entries import parse_entry
from taskset_lab.evaluate.runs import collect_population, collect_torch, population_stores
from taskset_lab.tasks.task_set import resolve_task_set

TASKS = ["quadratic_family_seed8", "losg_tasks_family_seed15", "TwoD_Bowl10", "mlp_ae_family_seed25"]


def _rate(config_steps: int, seconds: float) -> float:
    return config_steps / seconds if seconds > 0 else float("nan")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--k", type=int, default=16, help="configs of the family entry")
    parser.add_argument("--jobs", type=int, default=2, help="processes for the torch.optim entry")
    parser.add_argument("--tasks", nargs="*", default=TASKS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    tasks = resolve_task_set({"fixed": list(args.tasks)})
    spec = CollectionSpec(optimizer="opt_list", num_configs=args.k, total_steps=args.steps, eval_every=args.steps // 10,
                          replicas=args.seeds, eval_batches=1, compile=False, offline_data="substitute",
                          progress=False, device="cpu")
    family = parse_entry("family", {"list": "opt_list", "k": args.k})
    adam = parse_entry("adam", {"_target_": "torch.optim.Adam", "lr": 1e-3})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        collect_curves(spec, tasks, root / "curves")
        curves_s = time.perf_counter() - start

        store = population_stores([family], root / "lists")["family"]
        start = time.perf_counter()
        collect_population(spec, tasks, store, root / "entries")
        family_s = time.perf_counter() - start

        built = [t.build(offline_data="substitute") for t in tasks]
        start = time.perf_counter()
        for task in built:
            for seed in range(args.seeds):
                train_single(task, adam.factory(), args.steps, spec.eval_every, eval_batches=1, replica=seed)
        plain_s = time.perf_counter() - start

        torch_spec = dataclasses.replace(spec, num_configs=1)
        start = time.perf_counter()  # start the worker processes once (loky keeps them for the next call)
        collect_torch(adam, dataclasses.replace(torch_spec, total_steps=1, eval_every=1), tasks, root / "warm",
                      n_jobs=args.jobs)
        startup_s = time.perf_counter() - start
        start = time.perf_counter()
        collect_torch(adam, torch_spec, tasks, root / "torch", n_jobs=args.jobs)
        torch_s = time.perf_counter() - start
    family_steps = len(tasks) * args.seeds * args.k * args.steps
    single_steps = len(tasks) * args.seeds * args.steps
    report = {
        "tasks": len(tasks), "seeds": args.seeds, "steps": args.steps, "k": args.k, "jobs": args.jobs,
        "curves_cfg_steps_per_s": _rate(family_steps, curves_s),
        "family_cfg_steps_per_s": _rate(family_steps, family_s),
        "plain_cfg_steps_per_s": _rate(single_steps, plain_s),
        "torch_cfg_steps_per_s": _rate(single_steps, torch_s),
        "workers_startup_s": startup_s,
    }
    report["family_over_curves"] = report["family_cfg_steps_per_s"] / report["curves_cfg_steps_per_s"]
    report["torch_over_plain"] = report["torch_cfg_steps_per_s"] / report["plain_cfg_steps_per_s"]
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{len(tasks)} tasks x {args.seeds} seeds x {args.steps} steps (1 torch thread per process)")
        print(f"  family entry (k={args.k}): {report['family_cfg_steps_per_s']:>10,.0f} cfg-steps/s   "
              f"CURVES: {report['curves_cfg_steps_per_s']:>10,.0f}   ratio {report['family_over_curves']:.2f}")
        print(f"  torch.optim entry, {args.jobs} jobs: {report['torch_cfg_steps_per_s']:>8,.0f} cfg-steps/s   "
              f"plain loop: {report['plain_cfg_steps_per_s']:>8,.0f}   ratio {report['torch_over_plain']:.2f}"
              f" (ideal {args.jobs}; starting the workers took {startup_s:.1f} s, not counted)")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
