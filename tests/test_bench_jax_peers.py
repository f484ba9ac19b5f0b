"""The benchmark's JAX peers train the same model as the population engine: tiny conv and
char-RNN tasks, a few configs, 3 steps, parameters compared by name (float32)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("jax")
pytestmark = pytest.mark.benchmark

from benchmark_module import load_benchmark  # noqa: E402
from taskset_lab.tasks import build_task, get_task_family  # noqa: E402

TOL = 1e-5
CONFIGS = [dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-8) for lr in (1e-3, 3e-3, 1e-2)]


def _jax_peers() -> Any:
    return load_benchmark("jax_peers")


def _conv(**extra: Any) -> dict[str, Any]:
    return {"family": "lab_conv_pooling", "dataset": "digits", "channels": [4, 6], "strides": [1, 2],
            "padding": "same", "pooling": "mean", "activation": "relu", "center_data": False,
            "init": {"name": "he_normal", "scale": None}, "batch_size": 8, "data_seed": 0, **extra}


def _rnn(core: str) -> dict[str, Any]:
    return {"family": "lab_char_rnn_language_model", "dataset": "pydoc", "core": core, "hidden": 8,
            "embed_dim": 4, "seq_len": 5, "init": {"name": "glorot_uniform", "scale": None},
            "batch_size": 4, "data_seed": 0}


@pytest.mark.parametrize("config", [
    _conv(),  # the benchmark's shape: stride 2 with 'same' padding (ours pads 1 on each side)
    _conv(strides=[2, 2], padding="valid", pooling="max", activation="tanh", center_data=True),
    _rnn("gru"),
], ids=["conv_same_mean", "conv_valid_max", "rnn_gru"])
def test_peer_matches_population_engine(config: dict[str, Any]) -> None:
    peers = _jax_peers()
    task = build_task(config)
    peer = peers.make_peer(task, CONFIGS, 3)
    names = {name for name, _ in task.init_module(0).named_parameters()}
    assert set(peer.params0) == names
    diff = peers.max_param_diff(task, peer, 3)
    assert diff < TOL, f"{config['family']}: JAX peer differs from ours by {diff}"
    # the comparison means something only if training moved the parameters well past TOL
    _, trained = peer.run_per_step(3)
    moved = max(float(np.abs(np.asarray(trained[n]) - np.asarray(peer.params0[n])).max()) for n in names)
    assert moved > 100 * TOL
    if config["family"] == "lab_char_rnn_language_model":  # lax.scan over steps (around the scan over time)
        scanned = peer.run_scan(3)[1]
        for name, value in trained.items():
            np.testing.assert_allclose(np.asarray(scanned[name]), np.asarray(value), atol=1e-6)


def test_no_peer_for_other_modules() -> None:
    peers = _jax_peers()
    with pytest.raises(NotImplementedError, match="no JAX peer"):
        peers.make_peer(build_task(get_task_family("lab_quadratic").sample(0)), CONFIGS, 3)
    with pytest.raises(NotImplementedError, match="GRU core only"):
        peers.make_peer(build_task(_rnn("lstm")), CONFIGS, 3)
