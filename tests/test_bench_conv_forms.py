"""The conv forms timed by benchmarks/bench_conv_forms.py compute the same gradients as
``F.conv2d`` under ``vmap(grad)`` (float64, K = 3), so its timings compare like with like."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from benchmark_module import load_benchmark


def _bench() -> ModuleType:
    return load_benchmark("bench_conv_forms")


@pytest.mark.parametrize("form", ["im2col", "im2col_first", "space_to_depth"])
def test_conv_forms_give_the_direct_gradients(form):
    bench = _bench()
    x, w1, w2 = bench.inputs(3, dtype=torch.float64)
    direct = bench.stacked_grads("conv2d", x, w1, w2)
    other = bench.stacked_grads(form, x, w1, w2)
    for a, b in zip(direct, other):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)
    assert float(direct[1].abs().sum()) > 0  # a real gradient, not zeros on both sides


def test_space_to_depth_stride2_conv_equals_the_strided_conv():
    bench = _bench()
    gen = torch.Generator().manual_seed(3)
    h = torch.randn(2, 5, 8, 6, generator=gen, dtype=torch.float64)
    w = torch.randn(7, 5, 3, 3, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(bench.conv_space_to_depth(h, w, 2), bench.conv_direct(h, w, 2), rtol=1e-12, atol=1e-12)


def test_bench_conv_forms_reports_every_timing():
    report = _bench().main(["--k", "2", "--reps", "1"])
    timings = {**report["vmap_grad"], **report["stride2_layer"]}
    assert {"vmap_grad_conv2d_ms", "one_config_grads_x_k_ms", "input_grad_channels_last_ms",
            "input_grad_space_to_depth_ms"} <= set(timings)
    assert all(v > 0 for v in timings.values())
