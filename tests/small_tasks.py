"""Small TaskSet tasks for tests: a family's sampled config with size overrides, so one
step costs milliseconds on a CPU. Image and text tasks run on the offline stand-ins
(digits, pydoc text; their names end in ``_on_digits`` / ``_on_pydoc``).

The architectures the tests need besides ``lab_mlp`` (the one toy family kept):

* a noisy quadratic (``quadratic_family``): ``loss_scale · ‖(A + A_noise) x‖²``;
* a convnet with pooling (``conv_pooling_family``);
* a character RNN language model (``char_rnn_language_model_family``, GRU or LSTM core);
* a 2-D toy problem (TaskSet's fixed ``TwoD_*`` tasks).
"""

from __future__ import annotations

from typing import Any

from taskset_lab.tasks import get_task, sample_task
from taskset_lab.tasks.base import Task

#: ``lab_mlp``, one small hidden layer (its sampler draws the rest)
MLP = {"hidden": [8], "batch_size": 16}
#: ``quadratic_family`` in 6 dimensions, identity output (a log output grows too slowly to
#: diverge), unit loss scale
QUADRATIC = {"dims": 6, "output_fn": "identity", "loss_scale": 1.0}
GLOROT = ["glorot_uniform", None]


def conv_overrides(channels: tuple[int, ...] = (4,), strides: tuple[int, ...] = (2,), batch_size: int = 8
                   ) -> dict[str, Any]:
    """``conv_pooling_family``: ``channels`` 3x3 SAME convs with ``strides``, relu, mean pooling,
    on MNIST's shape (the digits stand-in offline)."""
    return {"hidden_units": list(channels), "strides": [[s, s] for s in strides], "padding": ["SAME"] * len(channels),
            "activation": "relu", "w_init": ["he_normal", None], "pool_type": "mean", "use_bias": True,
            "center_data": True, "dataset": ["mnist", {"bs": int(batch_size), "num_train": None, "just_train": False},
                                             None]}


def core(kind: str, hidden: int) -> list[Any]:
    """A TaskSet ``[kind, args]`` RNN core of width ``hidden``, glorot-uniform initialisers."""
    if kind == "gru":
        return ["gru", {"core_dim": hidden, **{k: GLOROT for k in ("wh", "wz", "wr", "uh", "uz", "ur")}}]
    if kind == "lstm":
        return ["lstm", {"core_dim": hidden, "w_gates": GLOROT}]
    return ["vrnn", {"core_dim": hidden, "act_fn": "tanh", "in_to_hidden": GLOROT, "hidden_to_hidden": GLOROT}]


def char_rnn_overrides(seq_len: int = 5, hidden: int = 8, embed_dim: int = 4, batch_size: int = 4,
                       kind: str = "gru") -> dict[str, Any]:
    """``char_rnn_language_model_family``: ``kind`` core of ``hidden`` units over ``seq_len``
    bytes of lm1b (the pydoc text offline), zero initial state."""
    return {"embed_dim": int(embed_dim), "core": core(kind, hidden), "trainable_init": False, "w_init": GLOROT,
            "dataset": ["lm1b/bytes", {"patch_length": int(seq_len), "batch_size": int(batch_size),
                                       "just_train": False, "num_train": None}]}


#: every small task by a short name: (family, seed, overrides)
SMALL: dict[str, tuple[str, int, dict[str, Any]]] = {
    "mlp": ("lab_mlp", 0, MLP),
    "quadratic": ("quadratic_family", 0, QUADRATIC),
    "conv": ("conv_pooling_family", 0, conv_overrides()),
    "char_rnn": ("char_rnn_language_model_family", 0, char_rnn_overrides()),
}


def small_task(name: str, seed: int | None = None) -> Task:
    """The small task ``name`` (a key of :data:`SMALL`, or a fixed task such as ``TwoD_Rosenbrock``)."""
    if name not in SMALL:
        return get_task(name)
    family, default_seed, overrides = SMALL[name]
    return sample_task(family, default_seed if seed is None else seed, overrides, offline_data="substitute")
