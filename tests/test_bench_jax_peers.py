"""The benchmark's JAX peers train the same model as the population engine: tiny TaskSet conv
and char-RNN tasks, a few configs, 3 steps, parameters compared by name (float32)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("jax")
pytestmark = pytest.mark.benchmark

from benchmark_module import load_benchmark  # noqa: E402
from small_tasks import char_rnn_overrides, conv_overrides  # noqa: E402
from taskset_lab.tasks import build_task, sample_task, sample_task_config  # noqa: E402

TOL = 1e-5
CONFIGS = [dict(lr=lr, beta1=0.9, beta2=0.999, eps=1e-8) for lr in (1e-3, 3e-3, 1e-2)]


def _jax_peers() -> Any:
    return load_benchmark("jax_peers")


def _conv(**extra: Any) -> dict[str, Any]:
    """TaskSet's conv_pooling_family: 3x3 convs 4 -> 6, on the digits stand-in (28x28)."""
    config = sample_task_config("conv_pooling_family", 0, {**conv_overrides((4, 6), (1, 2)), "center_data": False})
    return {**config, **extra}


def _rnn(kind: str, trainable_init: bool = False) -> dict[str, Any]:
    """TaskSet's char_rnn_language_model_family: 8 units over 5 bytes of the pydoc stand-in."""
    return sample_task_config("char_rnn_language_model_family", 0,
                              {**char_rnn_overrides(kind=kind), "trainable_init": trainable_init})


@pytest.mark.parametrize("config", [
    _conv(),  # the benchmark's shape: stride 2 with TF's SAME padding (the odd row at the bottom/right)
    _conv(strides=[[2, 2], [2, 2]], padding=["VALID", "SAME"], pool_type="max", activation="tanh", center_data=True,
          use_bias=False),
    _conv(pool_type="squared_mean", activation="leaky_relu4"),
    _rnn("gru"),
    _rnn("gru", trainable_init=True),
], ids=["conv_same_mean", "conv_valid_max_nobias", "conv_squared_mean", "rnn_gru", "rnn_gru_trainable_init"])
def test_peer_matches_population_engine(config: dict[str, Any]) -> None:
    peers = _jax_peers()
    task = build_task(config, offline_data="substitute")
    peer = peers.make_peer(task, CONFIGS, 3)
    names = {name for name, _ in task.init_module(0).named_parameters()}
    assert set(peer.params0) == names
    diff = peers.max_param_diff(task, peer, 3)
    assert diff < TOL, f"{config['family']}: JAX peer differs from ours by {diff}"
    # the comparison means something only if training moved the parameters well past TOL
    _, trained = peer.run_per_step(3)
    moved = max(float(np.abs(np.asarray(trained[n]) - np.asarray(peer.params0[n])).max()) for n in names)
    assert moved > 100 * TOL
    if config["family"] == "char_rnn_language_model_family":  # lax.scan over steps (around the scan over time)
        scanned = peer.run_scan(3)[1]
        for name, value in trained.items():
            np.testing.assert_allclose(np.asarray(scanned[name]), np.asarray(value), atol=1e-6)


def test_no_peer_for_other_modules() -> None:
    peers = _jax_peers()
    with pytest.raises(NotImplementedError, match="no JAX peer"):
        peers.make_peer(sample_task("quadratic_family", 0), CONFIGS, 3)
    with pytest.raises(NotImplementedError, match="GRU core only"):
        peers.make_peer(build_task(_rnn("lstm"), offline_data="substitute"), CONFIGS, 3)
    augmented = _conv(dataset=["mnist", {"bs": 8, "num_train": None}, {
        "crop_amount": 0, "flip_left_right": True, "flip_up_down": False, "do_color_aug": False,
        "brightness": 0.0, "saturation": 0.0, "hue": 0.0, "contrast": 0.0}])
    with pytest.raises(NotImplementedError, match="without augmentation"):
        peers.make_peer(build_task(augmented, offline_data="substitute"), CONFIGS, 3)
