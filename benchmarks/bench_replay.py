"""What a replay costs: Syne Tune's simulator (the Tuner loop, schedulers, event heap) against
the plain numpy computation of the same numbers, measured in the same run.

* ``random (simulator)``: :func:`taskset_lab.replay.run_replay` with ``RandomSearch`` on one
  task's table, then :func:`~taskset_lab.replay.anytime` at every full trial;
* ``random (numpy)``: HPARAM_LIST's :func:`order_curve` on the same permutation -- the same
  values (checked), no simulation;
* ``asha``/``hyperband``/``bohb``/``tpe`` (simulator): the same budget, for scale.

    python benchmarks/bench_replay.py [--configs 32] [--fidelities 5] [--budget 10] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from taskset_lab.hparam_list.baselines import ConfigSpace, order_curve
from taskset_lab.replay import MultiFidelity, anytime, recorded_configs, run_replay, scheduler_factory


def table(configs: int, fidelities: int, seed: int = 0) -> tuple[ConfigSpace, object, np.ndarray, np.ndarray]:
    """A synthetic task: decreasing select curves, report = select + noise, steps 10, 20, ..."""
    rng = np.random.default_rng(seed)
    sel = np.sort(rng.uniform(0, 1.5, (configs, fidelities)), axis=1)[:, ::-1].copy()
    rep = sel + 0.01 * rng.standard_normal(sel.shape)
    hp = pd.DataFrame({"lr": 10 ** rng.uniform(-5, -1, configs), "beta1": rng.uniform(0.5, 0.99, configs)},
                      index=pd.Index(range(configs), name="config_id"))
    space = ConfigSpace(hp)
    steps = 10 * np.arange(1, fidelities + 1)
    bb = recorded_configs(space, sel, rep, steps, np.broadcast_to(steps.astype(float), sel.shape))
    return space, bb, sel, rep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=32)
    parser.add_argument("--fidelities", type=int, default=5)
    parser.add_argument("--budget", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    space, bb, sel, rep = table(args.configs, args.fidelities)
    t_full = 10 * args.fidelities
    mf = MultiFidelity(max_t=t_full, grace_period=10)
    times = np.arange(1, args.budget + 1) * float(t_full)
    run_replay(bb, scheduler_factory("random", space, bb.configuration_space, 0, mf), times[-1])  # warm-up
    results = {}
    sim_t, np_t = 0.0, 0.0
    for seed in range(args.repeats):
        start = time.perf_counter()
        obs = run_replay(bb, scheduler_factory("random", space, bb.configuration_space, seed, mf), times[-1])
        curve = anytime(obs.observations, times)
        sim_t += time.perf_counter() - start
        order = obs.observations.drop_duplicates("trial")["config"].tolist()[: args.budget]
        start = time.perf_counter()
        plain = order_curve(sel[None, :, -1], rep[None, :, -1], order)[0]
        np_t += time.perf_counter() - start
        assert np.array_equal(curve, plain), (curve, plain)
    results["random (simulator)"] = sim_t / args.repeats
    results["random (numpy)"] = np_t / args.repeats
    for name in ("asha", "hyperband", "bohb", "tpe"):
        start = time.perf_counter()
        for seed in range(args.repeats):
            run_replay(bb, scheduler_factory(name, space, bb.configuration_space, seed, mf), times[-1], seed=seed)
        results[f"{name} (simulator)"] = (time.perf_counter() - start) / args.repeats
    base = results["random (numpy)"]
    print(f"{args.configs} configs x {args.fidelities} fidelities, budget {args.budget} full trials, "
          f"{args.repeats} replays each")
    for name, sec in results.items():
        print(f"{name:<22} {sec * 1e3:9.2f} ms/replay   {sec / base:10.0f}x numpy")


if __name__ == "__main__":
    main()
