"""benchmarks/bench_meta.py runs on small settings; with jax importable, its JAX peer of the PES
truncation follows the population engine's parameters (same model, batches and update)."""

from __future__ import annotations

import pytest

from benchmark_module import load_benchmark


def test_bench_meta_measures_the_engine(one_torch_thread, monkeypatch):
    """Eager and compiled (dynamo's aot_eager backend here: the same capture, no C++ build)."""
    monkeypatch.setenv("TASKLAB_COMPILE_BACKEND", "aot_eager")
    bench = load_benchmark("bench_meta")
    rows = bench.main(["--pairs", "2", "--steps", "3", "--repeats", "1", "--no-jax", "--hidden", "8",
                       "--batch-size", "16"])
    assert rows[0]["members"] == 4 and rows[0]["ours_config_steps_per_s"] > 0
    assert rows[0]["ours_compiled_config_steps_per_s"] > 0 and rows[0]["compile_s"] > 0
    assert "jax_config_steps_per_s" not in rows[0]
    eager_only = bench.main(["--pairs", "2", "--steps", "3", "--repeats", "1", "--no-jax", "--no-compile",
                             "--hidden", "8", "--batch-size", "16"])
    assert "ours_compiled_config_steps_per_s" not in eager_only[0]


def test_the_jax_peer_follows_the_engine(one_torch_thread, monkeypatch):
    bench = load_benchmark("bench_meta")
    if not bench.jax_importable():
        pytest.skip("jax is not installed (optional: the bench extra)")
    task, theta, eps, members = bench.make_case(2, [8], 16)
    assert bench.max_diff(task, theta, eps, members, steps=4) < 1e-5
    monkeypatch.setenv("TASKLAB_COMPILE_BACKEND", "aot_eager")
    assert bench.max_diff(task, theta, eps, members, steps=4, compile=True) < 1e-5
