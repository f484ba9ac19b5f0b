"""Does the engine wait on disk? Streaming task data with and without the prefetcher.

A consumer steps through ``--steps`` training batches of a memory-mapped ``.npy`` dataset
(``NpyDataset``) and waits ``--compute-ms`` per step (the accelerator's step time, during
which the host only waits). Reading a batch is made to cost ``--read-ms`` more (a slow disk:
page-cache misses are not reproducible on a warm machine, so the latency is a sleep, which
like real I/O releases the GIL). Both are sleeps so that the numbers measure overlap, not
how busy a shared machine is. Three ways:

* ``resident``: :class:`TensorData` (everything in memory; the floor);
* ``streaming, no prefetch``: :class:`StreamingData` with ``prefetch=0`` (each read in line);
* ``streaming, prefetch N``: the default read-ahead on the thread pool.

All three must give the same batches (checked). Each way runs ``--repeats`` times (the best
counts: a shared machine only ever slows a run down). Prints seconds per step and the ratios.

    python benchmarks/bench_streaming.py [--steps 200] [--read-ms 4] [--compute-ms 4] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from taskset_lab.tasks.base import SPLITS, TensorData
from taskset_lab.tasks.streaming import NpyDataset, StreamingData


class SlowNpy(NpyDataset):
    """An ``NpyDataset`` whose batch reads take ``read_s`` longer (a slow disk)."""

    def __init__(self, paths, read_s: float):
        super().__init__(paths)
        self.read_s = read_s

    def get_batch(self, indices):
        time.sleep(self.read_s)
        return super().get_batch(indices)


def run(data, steps: int, compute_s: float) -> tuple[float, list]:
    start = time.perf_counter()
    firsts = []
    for s in range(steps):
        batch = data.batch("train", s)
        firsts.append(batch[1][:4].clone())
        time.sleep(compute_s)  # the device computes; the host waits
    return (time.perf_counter() - start) / steps, firsts


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--read-ms", type=float, default=4.0)
    ap.add_argument("--compute-ms", type=float, default=4.0)
    ap.add_argument("--examples", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        splits, datasets = {}, {}
        for s in SPLITS:
            x = rng.integers(0, 256, (args.examples, 1, 28, 28), dtype=np.uint8)
            y = rng.integers(0, 10, args.examples).astype(np.int64)
            paths = [Path(tmp) / f"{s}_x.npy", Path(tmp) / f"{s}_y.npy"]
            np.save(paths[0], x)
            np.save(paths[1], y)
            splits[s] = (torch.from_numpy(x), torch.from_numpy(y))
            datasets[s] = SlowNpy(paths, args.read_ms / 1000)
        compute = args.compute_ms / 1000
        results = {}
        ways = {"resident": lambda: TensorData(splits, args.batch, seed=1),
                "streaming, no prefetch": lambda: StreamingData(datasets, args.batch, seed=1, prefetch=0),
                f"streaming, prefetch {args.prefetch}":
                    lambda: StreamingData(datasets, args.batch, seed=1, prefetch=args.prefetch)}
        ref = None
        for _ in range(args.repeats):
            for name, make in ways.items():
                data = make()
                t, got = run(data, args.steps, compute)
                if isinstance(data, StreamingData):
                    data.close()
                ref = got if ref is None else ref
                if not all(torch.equal(a, b) for a, b in zip(ref, got)):
                    raise SystemExit(f"{name}: batches differ from the resident ones")
                results[name] = min(t, results.get(name, float("inf")))
    report = {"settings": vars(args), "seconds_per_step": results,
              "ratio_vs_resident": {k: v / results["resident"] for k, v in results.items()}}
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print(f"{args.steps} steps, batch {args.batch}, read {args.read_ms} ms + compute {args.compute_ms} ms per step")
        for k, v in results.items():
            print(f"  {k:28s} {v * 1000:7.2f} ms/step  ({v / results['resident']:.2f}x resident)")
    return report


if __name__ == "__main__":
    main()
