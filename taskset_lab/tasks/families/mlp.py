"""``lab_mlp``: a fully connected classifier on flattened images (this project's family, not
TaskSet's ``mlp_family``).

**The one toy family kept** of the project's own 0.1 families (``lab_*``; the others were
retired for TaskSet's families and fixed tasks, which cover what they did). It stays because
the shipped learned optimizer ``small_fc_lopt_digits_pes`` was meta-trained on ``lab_mlp``
tasks (``example_configs/lopt/quickstart.yaml``; its checkpoint records their names), and
because its default dataset is the embedded 8x8 digits: a task that trains in milliseconds
with no data download, for tests, the TRAIN example and the learned-optimizer quick start.
Its configs, names and numbers are those of 0.1 (the stable-names test pins them).

Config: ``dataset`` (an image dataset of :data:`taskset_lab.data.IMAGE_DATASETS`; the sampler
draws from the embedded ones only, so default task sets run offline; pass ``datasets=`` to
draw from torchvision sources too), ``hidden`` (1-6 widths, log-uniform in [16, 128]),
``activation``, ``init`` (``{name, scale}``), ``center_data``, ``batch_size``, ``data_seed``.

Model: images scaled to [0, 1] (``center_data``: [-1, 1]) by
:class:`taskset_lab.tasks.images.ImageInput` (no augmentation), flattened, then
``Linear -> act -> ... -> Linear`` (PyTorch's ``[out, in]`` layout, zero biases); loss: mean
cross-entropy. Activations are TaskSet's table (:mod:`taskset_lab.tasks.activations`) under
this family's names: its ``leaky_relu`` is TaskSet's ``leaky_relu2`` (slope 0.2). Its
initializers are PyTorch's (``nn.init``: untruncated He/Glorot normals, ``[out, in]`` fans),
not TaskSet's TF initializers (:mod:`taskset_lab.tasks.initializers`), so they stay here.
"""

from __future__ import annotations

import math
import zlib
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from taskset_lab.data import EMBEDDED_IMAGE_DATASETS, IMAGE_DATASETS, load_dataset
from taskset_lab.errors import ConfigError, DataError
from taskset_lab.tasks.activations import ACTIVATIONS as TASKSET_ACTIVATIONS
from taskset_lab.tasks.base import TaskData, TensorData
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.images import ImageInput, TasksetImageClassification
from taskset_lab.tasks.registry import register_task_family
from taskset_lab.tasks.streaming import choose_task_data

FAMILY = "lab_mlp"
BATCH_SIZES = (32, 64, 128, 256)
DEFAULT_DATASETS: tuple[str, ...] = EMBEDDED_IMAGE_DATASETS
STAND_IN = "digits"

# ---------------------------------------------------------------- sampling helpers


def family_rng(family: str, seed: int) -> np.random.Generator:
    """The sampler's generator: a stream per (family, seed)."""
    return np.random.default_rng([zlib.crc32(family.encode()), int(seed) % (1 << 64)])


def log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def log_uniform_int(rng: np.random.Generator, low: int, high: int) -> int:
    return int(round(log_uniform(rng, low, high)))


def weighted_choice(rng: np.random.Generator, weights: Mapping[str, float]) -> str:
    names = sorted(weights)
    p = np.array([weights[n] for n in names], dtype=float)
    return str(names[rng.choice(len(names), p=p / p.sum())])


def derived_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def check_choice(config: Mapping[str, Any], key: str, options: Any) -> Any:
    """``config[key]`` if it is one of ``options``; otherwise a ConfigError naming the key."""
    if not isinstance(config, Mapping) or key not in config:
        raise ConfigError(key, "missing from the task config")
    value = config[key]
    if value not in options:
        raise ConfigError(key, f"{value!r} is not one of {', '.join(map(str, options))}")
    return value


# ---------------------------------------------------------------- activations

#: this family's activation names, mapped onto TaskSet's one table; ``leaky_relu`` is
#: TaskSet's ``leaky_relu2`` (slope 0.2)
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    **{name: TASKSET_ACTIVATIONS[name] for name in ("relu", "tanh", "cos", "elu", "sigmoid", "swish")},
    "leaky_relu": TASKSET_ACTIVATIONS["leaky_relu2"],
}
ACTIVATION_WEIGHTS = {"relu": 6, "tanh": 3, "cos": 1, "elu": 1, "sigmoid": 1, "swish": 1, "leaky_relu": 1}


def sample_activation(rng: np.random.Generator) -> str:
    return weighted_choice(rng, ACTIVATION_WEIGHTS)


# ---------------------------------------------------------------- initializers (PyTorch's)

INITIALIZER_WEIGHTS = {"he_normal": 2, "he_uniform": 2, "glorot_normal": 2, "glorot_uniform": 2,
                       "orthogonal": 1, "random_normal": 1, "random_uniform": 1}
#: initializers with a scale (orthogonal: gain; random_normal: std; random_uniform: bound)
#: and the log-uniform range it is drawn from
INITIALIZER_SCALES = {"orthogonal": (0.1, 10.0), "random_normal": (0.01, 1.0), "random_uniform": (0.01, 1.0)}
INIT_ALLOWED = (f"{{name, scale}} with name one of {', '.join(INITIALIZER_WEIGHTS)} "
                f"(a positive scale for {', '.join(INITIALIZER_SCALES)})")


def sample_initializer(rng: np.random.Generator) -> dict[str, Any]:
    """``{"name": ..., "scale": float or None}``."""
    name = weighted_choice(rng, INITIALIZER_WEIGHTS)
    scale = log_uniform(rng, *INITIALIZER_SCALES[name]) if name in INITIALIZER_SCALES else None
    return {"name": name, "scale": scale}


def check_initializer(spec: Any, key: str = "init") -> dict[str, Any]:
    if not isinstance(spec, Mapping) or spec.get("name") not in INITIALIZER_WEIGHTS:
        raise ConfigError(key, f"must be {{name, scale}} with name one of {', '.join(INITIALIZER_WEIGHTS)}; "
                               f"got {spec!r}")
    if spec["name"] in INITIALIZER_SCALES and not (isinstance(spec.get("scale"), (int, float))
                                                   and spec["scale"] > 0):
        raise ConfigError(key, f"initializer {spec['name']!r} needs a positive 'scale'")
    return dict(spec)


def valid_init(spec: Any) -> bool:
    """Whether ``spec`` is a valid ``{name, scale}`` initializer config."""
    try:
        check_initializer(spec)
        return True
    except ConfigError:
        return False


@torch.no_grad()
def init_weight_(weight: Tensor, spec: Mapping[str, Any]) -> Tensor:
    """Initialise a weight (``[out, in]`` layout) in place from the global RNG with PyTorch's
    ``nn.init``: ``he_*`` = Kaiming (ReLU gain, fan in), ``glorot_*`` = Xavier,
    ``orthogonal`` (gain = scale), ``random_normal`` N(0, scale²), ``random_uniform`` U(±scale)."""
    name, scale = spec["name"], spec.get("scale")
    if name == "he_normal":
        return nn.init.kaiming_normal_(weight, nonlinearity="relu")
    if name == "he_uniform":
        return nn.init.kaiming_uniform_(weight, nonlinearity="relu")
    if name == "glorot_normal":
        return nn.init.xavier_normal_(weight)
    if name == "glorot_uniform":
        return nn.init.xavier_uniform_(weight)
    if name == "orthogonal":
        return nn.init.orthogonal_(weight, gain=scale)
    if name == "random_normal":
        return nn.init.normal_(weight, 0.0, scale)
    if name == "random_uniform":
        return nn.init.uniform_(weight, -scale, scale)
    raise ValueError(f"unknown initializer {name!r}")


# ---------------------------------------------------------------- the sampler


def sample_dataset(rng: np.random.Generator, datasets: Sequence[str]) -> str:
    if not datasets:
        raise ValueError("empty dataset pool")
    unknown = [d for d in datasets if d not in IMAGE_DATASETS]
    if unknown:
        raise ValueError(f"unknown image datasets {unknown}; known: {', '.join(IMAGE_DATASETS)}")
    return str(datasets[rng.integers(len(datasets))])


def sample(seed: int, datasets: Sequence[str] = DEFAULT_DATASETS) -> dict[str, Any]:
    rng = family_rng(FAMILY.removeprefix("lab_"), seed)  # the stream of its 0.1 name: same configs
    dataset = sample_dataset(rng, datasets)
    n_layers = int(rng.integers(1, 7))
    return {
        "family": FAMILY,
        "dataset": dataset,
        "hidden": [log_uniform_int(rng, 16, 128) for _ in range(n_layers)],
        "activation": sample_activation(rng),
        "init": sample_initializer(rng),
        "center_data": bool(rng.random() < 0.5),
        "batch_size": int(BATCH_SIZES[rng.integers(len(BATCH_SIZES))]),
        "data_seed": derived_seed(rng),
    }


# ---------------------------------------------------------------- data, model, task


def image_task_data(config: dict[str, Any], data_dir: str | None, download: bool, offline_data: str = "error"
                    ) -> tuple[TaskData, tuple[int, ...], int, str | None]:
    """``(task data, image shape [C, H, W], number of classes, stand-in)`` of
    ``config["dataset"]``; the data is device-resident unless it exceeds the memory budget (then
    it streams). With ``offline_data="substitute"`` an absent dataset is replaced by the
    embedded digits (stand-in ``"digits"``, else None)."""
    name = check_choice(config, "dataset", tuple(IMAGE_DATASETS))
    batch_size = int(config["batch_size"])
    if batch_size < 1:
        raise ConfigError("batch_size", f"must be >= 1, got {batch_size}")
    substitute = None
    try:
        splits = load_dataset(name, data_dir=data_dir, download=download)
    except DataError:
        if offline_data != "substitute":
            raise
        splits, substitute, name = load_dataset(STAND_IN), STAND_IN, STAND_IN
    data = choose_task_data(splits, batch_size, seed=int(config["data_seed"]))
    return data, tuple(splits["train"][0].shape[1:]), IMAGE_DATASETS[name].num_classes, substitute


class MLP(nn.Module):
    def __init__(self, in_features: int, hidden: Sequence[int], num_classes: int,
                 activation: str, init: dict[str, Any], center: bool):
        super().__init__()
        sizes = [in_features, *hidden, num_classes]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        for layer in self.layers:
            init_weight_(layer.weight, init)
            nn.init.zeros_(layer.bias)
        self.activation = activation
        self.input = ImageInput(None, center)  # no parameters: the state dict is the layers'

    @property
    def center(self) -> bool:
        return self.input.center

    def forward(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        h = self.input(x, self.layers[0].weight).flatten(1)
        for layer in self.layers[:-1]:
            h = act(layer(h))
        return self.layers[-1](h)


class MLPTask(TasksetImageClassification):
    """Mean cross-entropy of the MLP's logits against the labels."""

    def __init__(self, config: dict[str, Any], data: TaskData, in_features: int, num_classes: int):
        super().__init__(config, data)
        self.in_features, self.num_classes = in_features, num_classes

    def make_module(self) -> nn.Module:
        c = self.config
        return MLP(self.in_features, c["hidden"], self.num_classes, c["activation"], c["init"],
                   bool(c.get("center_data", False)))


def build(config: dict[str, Any], data_dir: str | None = None, download: bool = False,
          offline_data: str = "error") -> MLPTask:
    check_choice(config, "activation", tuple(ACTIVATIONS))
    check_initializer(config.get("init"))
    hidden = config.get("hidden")
    if not (isinstance(hidden, list) and all(isinstance(h, int) and h >= 1 for h in hidden)):
        raise ConfigError("hidden", f"must be a list of positive layer widths, got {hidden!r}")
    data, shape, num_classes, substitute = image_task_data(config, data_dir, download, offline_data)
    in_features = 1
    for s in shape:
        in_features *= int(s)
    task = MLPTask(config, data, in_features, num_classes)
    if substitute:
        task.data_substitute = substitute
    return task


FIELDS = {
    "hidden": Field("list", items="int", low=1, high=1 << 16, allowed="a list of positive layer widths"),
    "dataset": Field("str", choices=tuple(IMAGE_DATASETS)),
    "activation": Field("str", choices=tuple(ACTIVATIONS)),
    "init": Field("dict", check=valid_init, allowed=INIT_ALLOWED),
    "center_data": Field("bool", optional=True),
    "batch_size": Field("int", low=1, high=65536),
    "data_seed": Field("int", low=0),
}

register_task_family(FAMILY, sample, build, fields=FIELDS)
