"""Speed of the vectorized greedy list learner against the simple ways of writing it.

* ``vectorized``: :func:`taskset_lab.hparam_list.learn_greedy_list` (every candidate column
  scored at once with numpy; after the first entry, gains updated only on improved tasks);
* ``re-scoring``: the same in numpy, but every candidate re-scored on all tasks each step;
* ``per-candidate``: one numpy call per candidate column per step (``np.minimum(best, col).mean()``);
* ``python``: a pure Python double loop over candidates and tasks, timed on a smaller problem
  and scaled up by the ratio of work (tasks x configs x entries).

All three must return the same list (checked). Also times the exact random-search
expectation for k = 1..C.

    python benchmarks/bench_greedy.py [--tasks 1000] [--configs 1000] [--length 100]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from taskset_lab.hparam_list import learn_greedy_list, random_search_expectation
from taskset_lab.hparam_list.greedy import candidate_gains


def rescoring_greedy(m: np.ndarray, length: int) -> list[int]:
    """Vectorized, but every candidate re-scored over all tasks at every step (no incremental gains)."""
    c = m.shape[1]
    mean = m.mean(axis=0)
    chosen = [int(np.argmin(mean))]
    best = m[:, chosen[0]].copy()
    for _ in range(length - 1):
        gains = np.where(np.isin(np.arange(c), chosen), -np.inf, candidate_gains(m, best))
        j = int(np.flatnonzero(gains >= gains.max() - 1e-12 * max(1.0, best.mean()))[0])
        if not gains[j] > 0:
            means = np.where(np.isin(np.arange(c), chosen), np.inf, mean)
            j = int(np.flatnonzero(means <= means.min())[0])
        chosen.append(j)
        np.minimum(best, m[:, j], out=best)
    return chosen


def per_candidate_greedy(m: np.ndarray, length: int) -> list[int]:
    """Greedy with a numpy call per candidate (same tie and fill rules as the library)."""
    t, c = m.shape
    best = np.full(t, np.inf)
    chosen: list[int] = []
    for _ in range(length):
        scores = np.full(c, np.inf)
        for j in range(c):
            if j not in chosen:
                scores[j] = np.minimum(best, m[:, j]).mean()
        j = int(np.flatnonzero(scores <= scores.min() + 1e-12 * max(1.0, abs(scores.min())))[0])
        if chosen and not scores[j] < best.mean():  # nothing improves: best mean loss among the rest
            means = np.where(np.isin(np.arange(c), chosen), np.inf, m.mean(axis=0))
            j = int(np.flatnonzero(means <= means.min())[0])
        chosen.append(j)
        best = np.minimum(best, m[:, j])
    return chosen


def python_greedy(rows: list[list[float]], length: int) -> list[int]:
    """Greedy as a plain Python double loop over candidates and tasks."""
    t, c = len(rows), len(rows[0])
    best = [float("inf")] * t
    chosen: list[int] = []
    for _ in range(length):
        top, top_j = float("inf"), -1
        for j in range(c):
            if j in chosen:
                continue
            total = 0.0
            for i in range(t):
                v = rows[i][j]
                total += v if v < best[i] else best[i]
            score = total / t
            if score < top - 1e-12 * max(1.0, abs(top) if top < float("inf") else 1.0):
                top, top_j = score, j
        chosen.append(top_j)
        best = [min(b, rows[i][top_j]) for i, b in enumerate(best)]
    return chosen


def timed(fn, *args, repeat: int = 1) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--length", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    t, c, length = args.tasks, args.configs, args.length
    rng = np.random.default_rng(args.seed)
    # configs share a quality level plus task noise (squashed into (0, 1.5), so no value ties
    # and every step still improves): a realistic, non-trivial greedy problem
    m = 1.5 / (1.0 + np.exp(-(0.5 * rng.normal(size=(1, c)) + rng.normal(size=(t, c)))))

    vec_s, result = timed(learn_greedy_list, m, length, repeat=3)
    print(f"problem: {t} tasks x {c} configs, list of {length}")
    flat = next((i for i in range(1, length) if result.objective[i] >= result.objective[i - 1]), None)
    print(f"vectorized      : {vec_s:8.3f} s   (objective {result.objective[0]:.4f} -> "
          f"{result.objective[-1]:.4f}; {'improves at every entry' if flat is None else f'flat from entry {flat}'})")

    full_s, full_list = timed(rescoring_greedy, m, length)
    assert full_list == result.indices, "re-scoring greedy disagrees with the incremental one"
    print(f"re-scoring      : {full_s:8.3f} s   ({full_s / vec_s:6.1f}x slower; vectorized, all tasks every step)")

    cand_s, cand_list = timed(per_candidate_greedy, m, length)
    assert cand_list == result.indices, "per-candidate greedy disagrees with the vectorized one"
    print(f"per-candidate   : {cand_s:8.3f} s   ({cand_s / vec_s:6.1f}x slower)")

    small_t, small_c, small_len = 100, 100, 10
    small = m[:small_t, :small_c]
    py_s, py_list = timed(python_greedy, small.tolist(), small_len)
    assert py_list == learn_greedy_list(small, small_len).indices, "python greedy disagrees"
    # work of a greedy step ~ tasks x remaining candidates; summed over the list
    work = lambda tt, cc, ll: tt * sum(cc - i for i in range(ll))  # noqa: E731
    py_scaled = py_s * work(t, c, length) / work(small_t, small_c, small_len)
    print(f"python loop     : {py_s:8.3f} s on {small_t}x{small_c}, list of {small_len}; "
          f"scaled to the full problem ~{py_scaled:8.1f} s   ({py_scaled / vec_s:8.0f}x slower)")

    ks = np.arange(1, c + 1)
    rs_s, _ = timed(random_search_expectation, m, ks, m + 0.01, repeat=3)
    print(f"random-search expectation, k = 1..{c}, select/report: {rs_s:.3f} s")


if __name__ == "__main__":
    main()
