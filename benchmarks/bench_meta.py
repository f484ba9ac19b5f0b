"""Meta-training throughput: one PES truncation of ``small_fc_lopt`` on the population engine
(``taskset_lab.meta.unroll.InnerRun``: the vmapped gradient, the learned update of all
members at once with per-member weights θ±ε, the divergence rule) against its JAX peer
(``jax_peers.make_pes_peer``: the same model, initial parameters, batches and update,
``jit(vmap(step))`` over the members called once per step), interleaved in one process on one
thread. Ours runs twice: eager, and with the batched gradient and the learned update compiled
(``InnerRun(compile=True)``; compile time reported apart, as JAX's jit is).
Reported: inner config-steps per second (members × steps / s) of each, best of
``--repeats`` rounds, and ours over JAX; before timing, both run 5 steps from the same start and
their parameters are compared (max |ours − JAX|, eager and compiled).

    python benchmarks/bench_meta.py                 # K = 16, 32 (the quickstart's) and 64 members, 50 steps
    PYTHONPATH=/path/to/jax python benchmarks/bench_meta.py --json

The JAX column is left out when jax is not importable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def jax_importable() -> bool:
    try:
        import jax  # noqa: F401
    except ImportError:
        return False
    return True


def make_case(pairs: int, hidden: list[int], batch_size: int, seed: int = 0):
    """The task, the centre weights θ, the perturbations ε ``[pairs, D]`` and the K = 2·pairs
    member weights ``[θ+ε; θ−ε]``."""
    from taskset_lab.optim.learned import SMALL_FC_LOPT
    from taskset_lab.tasks import sample_task

    task = sample_task("lab_mlp", seed, {"hidden": hidden, "batch_size": batch_size})
    theta = SMALL_FC_LOPT.designed_theta().float()
    eps = torch.randn(pairs, SMALL_FC_LOPT.num_weights, generator=torch.Generator().manual_seed(seed)) * 0.01
    return task, theta, eps, torch.cat([theta + eps, theta - eps]).numpy()


def ours(task, theta, eps, steps: int, lr: float = 1e-3, compile: bool = False) -> tuple[float, Any]:
    """Seconds of one truncation of ``steps`` steps on the engine, and the run (``compile``:
    the gradient and the learned update compiled, else eager)."""
    from taskset_lab.meta.unroll import InnerRun
    from taskset_lab.optim.learned import SMALL_FC_LOPT

    run = InnerRun(SMALL_FC_LOPT, task, unroll_length=steps, num_pairs=eps.shape[0], estimator="pes", lr=lr,
                   compile=compile)
    start = time.perf_counter()
    run.truncation(theta, eps, steps)
    return time.perf_counter() - start, run


def max_diff(task, theta, eps, members: np.ndarray, steps: int = 5, compile: bool = False) -> float:
    from jax_peers import make_pes_peer

    _, run = ours(task, theta, eps, steps, compile=compile)
    _, params = make_pes_peer(task, members, 1e-3, steps).run(steps)
    return max(float(np.abs(run.state.params[n].numpy() - np.asarray(params[n])).max()) for n in params)


def measure(pairs: int, steps: int, repeats: int, use_jax: bool, hidden: list[int], batch_size: int,
            compiled: bool = True) -> dict[str, Any]:
    from taskset_lab.engine.compiled import compile_available

    task, theta, eps, members = make_case(pairs, hidden, batch_size)
    k = 2 * pairs
    row: dict[str, Any] = {"members": k, "steps": steps, "hidden": hidden, "batch_size": batch_size}
    peer = None
    if use_jax:
        from jax_peers import make_pes_peer

        row["max_param_diff_5_steps"] = max_diff(task, theta, eps, members)
        peer = make_pes_peer(task, members, 1e-3, steps)
        start = time.perf_counter()
        peer.run(2)  # compile
        row["jax_compile_s"] = time.perf_counter() - start
    if compiled and compile_available(torch.device("cpu")):
        start = time.perf_counter()
        ours(task, theta, eps, 3, compile=True)  # compile
        row["compile_s"] = time.perf_counter() - start
        if use_jax:
            row["max_param_diff_5_steps_compiled"] = max_diff(task, theta, eps, members, compile=True)
    else:
        compiled = False
    ours(task, theta, eps, 3)  # warm up
    best = {"eager": float("inf"), "compiled": float("inf"), "jax": float("inf")}
    for _ in range(repeats):
        best["eager"] = min(best["eager"], ours(task, theta, eps, steps)[0])
        if compiled:
            best["compiled"] = min(best["compiled"], ours(task, theta, eps, steps, compile=True)[0])
        if peer is not None:
            best["jax"] = min(best["jax"], peer.run(steps)[0])
    row["ours_config_steps_per_s"] = k * steps / best["eager"]
    if compiled:
        row["ours_compiled_config_steps_per_s"] = k * steps / best["compiled"]
    if peer is not None:
        row["jax_config_steps_per_s"] = k * steps / best["jax"]
        row["ours_over_jax"] = row["ours_config_steps_per_s"] / row["jax_config_steps_per_s"]
        if compiled:
            row["ours_compiled_over_jax"] = row["ours_compiled_config_steps_per_s"] / row["jax_config_steps_per_s"]
    return row


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hidden", type=int, nargs="+", default=[32])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-jax", action="store_true")
    parser.add_argument("--no-compile", action="store_true", help="time the eager update only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    use_jax = not args.no_jax and jax_importable()
    rows = [measure(p, args.steps, args.repeats, use_jax, args.hidden, args.batch_size, not args.no_compile)
            for p in args.pairs]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            jax = r.get("jax_config_steps_per_s")
            line = f"K={r['members']:4d}  ours eager {r['ours_config_steps_per_s']:,.0f}"
            if jax:
                line += f" ({r['ours_over_jax']:.2f}x)"
            if "ours_compiled_config_steps_per_s" in r:
                line += f"  compiled {r['ours_compiled_config_steps_per_s']:,.0f}"
                line += f" ({r['ours_compiled_over_jax']:.2f}x)" if jax else ""
                line += f" [compile {r['compile_s']:.0f} s]"
            line += (f"  JAX {jax:,.0f} [compile {r['jax_compile_s']:.1f} s]  config-steps/s; max param diff after "
                     f"5 steps {r['max_param_diff_5_steps']:.1e}" if jax else "  config-steps/s (no jax)")
            print(line)
    return rows


if __name__ == "__main__":
    main()
