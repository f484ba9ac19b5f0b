"""Throughput of TaskSet's sequence families in the population engine (offline stand-ins).

For one released task per family (default: ``char_rnn_language_model_family_seed1`` on the
pydoc stand-in, at its released batch size and window) it measures config-steps per second
of ``train_population`` with K adam8p configs, and of ``train_single`` (one config, the
plain loop) on the same task, and reports the ratio.

    python benchmarks/bench_taskset_seq.py --task char_rnn_language_model_family_seed1 --k 8 --steps 100 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from taskset_lab.engine import train_population, train_single
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.registry import get_task


def measure(task_name: str, k: int, steps: int, single_steps: int, device: str) -> dict:
    task = get_task(task_name, offline_data="substitute")
    adam = get_optimizer_family("adam8p")
    hps = [adam.sample(i) for i in range(k)]
    train_population(task, adam, hps[:1], 2, 2, eval_batches=1, device=device)  # warm-up
    start = time.perf_counter()
    pop = train_population(task, adam, hps, steps, steps, eval_batches=1, device=device)
    pop_s = time.perf_counter() - start
    start = time.perf_counter()
    train_single(task, (adam, hps[0]), single_steps, single_steps, eval_batches=1, device=device)
    single_s = time.perf_counter() - start
    pop_rate, single_rate = k * steps / pop_s, single_steps / single_s
    return {"task": task.name, "config": task.config, "k": k, "steps": steps, "population_seconds": pop_s,
            "population_config_steps_per_s": pop_rate, "single_steps": single_steps, "single_seconds": single_s,
            "single_config_steps_per_s": single_rate, "population_over_single": pop_rate / single_rate,
            "finite_start": bool(torch.isfinite(pop.losses["train"][:, 0]).all()), "device": device,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="char_rnn_language_model_family_seed1")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--single-steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(measure(args.task, args.k, args.steps, args.single_steps, args.device), indent=1))


if __name__ == "__main__":
    main()
