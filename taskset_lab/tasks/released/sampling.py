"""TaskSet's generic config-sampling pieces, draw for draw.

TaskSet (google-research `task_set/tasks/utils.py`) samples every task config from a
`numpy.random.RandomState`. To reproduce its released configs exactly, each helper here
makes the same numpy calls, with the same argument types, in the same order; a helper
that skips or reorders one draw shifts every later value. Values come back as plain
Python types (str, int, float, bool, None, list, dict) so configs compare equal to the
released JSON.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

RandomState = np.random.RandomState


# --------------------------------------------------------------------- scalars
def sample_log_int(rng: RandomState, low: float, high: float) -> int:
    """Integer drawn log-uniformly in [low, high], rounded half-to-even like TaskSet."""
    sample = rng.uniform(np.log(float(low)), np.log(float(high)))
    return int(np.round(np.exp(sample)))


def sample_linear_int(rng: RandomState, low: float, high: float) -> int:
    """Integer drawn uniformly in [low, high], rounded half-to-even like TaskSet."""
    return int(np.round(rng.uniform(float(low), float(high))))


def sample_log_float(rng: RandomState, low: float, high: float) -> float:
    """Float drawn log-uniformly in [low, high]."""
    return float(np.exp(rng.uniform(np.log(float(low)), np.log(float(high)))))


def sample_bool(rng: RandomState, p: float) -> bool:
    """True with probability `p` (one uniform draw, as TaskSet)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError("p must be between 0 and 1.")
    return bool(rng.uniform(0.0, 1.0) < p)


def to_python(value: Any) -> Any:
    """numpy scalars and tuples -> the plain types the released JSON holds."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.ndarray):
        return [to_python(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    if isinstance(value, dict):
        return {str(k): to_python(v) for k, v in value.items()}
    return value


def choice(rng: RandomState, options: Sequence[Any], p: Sequence[float] | None = None) -> Any:
    """`rng.choice(options)` (one draw), returned as a plain Python value.

    numpy turns `options` into a 1-D array first (so mixed int/float lists pick
    floats, as in TaskSet); the pick is converted back to a Python scalar.
    """
    return to_python(rng.choice(options, p=p))


def weighted_choice(rng: RandomState, weights: dict[str, float]) -> str:
    """Pick a key with probability proportional to its weight, keys sorted by name.

    TaskSet's activation/initializer pickers: names sorted, probs = w / sum(w).
    """
    names = sorted(weights)
    w = np.asarray([weights[n] for n in names])
    probs = w / np.sum(w)
    return str(rng.choice(names, p=probs))


# ----------------------------------------------------------------- activations
ACTIVATION_WEIGHTS: dict[str, int] = {
    "relu": 6, "tanh": 3, "cos": 1, "elu": 1, "sigmoid": 1, "swish": 1,
    "leaky_relu4": 1, "leaky_relu2": 1, "leaky_relu1": 1,
}


def sample_activation(rng: RandomState) -> str:
    """An activation name, relu 6x and tanh 3x as likely as the others."""
    return weighted_choice(rng, ACTIVATION_WEIGHTS)


# ---------------------------------------------------------------- initializers
INITIALIZER_WEIGHTS: dict[str, int] = {
    "he_normal": 2, "he_uniform": 2, "glorot_normal": 2, "glorot_uniform": 2,
    "orthogonal": 1, "random_uniform": 1, "random_normal": 1, "truncated_normal": 1,
    "variance_scaling": 1,
}
# Initializers that carry a scale, drawn log-uniformly in [0.1, 10] right after the name.
SCALED_INITIALIZERS = frozenset(
    {"orthogonal", "random_uniform", "random_normal", "truncated_normal", "variance_scaling"}
)


def sample_initializer(rng: RandomState) -> list:
    """`[name, scale]`; scale is None for the he_*/glorot_* initializers."""
    name = weighted_choice(rng, INITIALIZER_WEIGHTS)
    scale = sample_log_float(rng, 0.1, 10) if name in SCALED_INITIALIZERS else None
    return [name, scale]


# ------------------------------------------------------------------- RNN cores
def sample_rnn_core(rng: RandomState) -> list:
    """`[core, args]` for a small vrnn/gru/lstm core (TaskSet's `sample_rnn_core`)."""
    core = choice(rng, ["vrnn", "gru", "lstm"])
    # linked: one initializer shared by every matrix (4x as likely as unlinked)
    linked = choice(rng, [True, True, True, True, False])
    args: dict[str, Any] = {}
    if core == "vrnn":
        if linked:
            init = sample_initializer(rng)
            args["hidden_to_hidden"] = init
            args["in_to_hidden"] = list(init)
        else:
            args["hidden_to_hidden"] = sample_initializer(rng)
            args["in_to_hidden"] = sample_initializer(rng)
        args["act_fn"] = sample_activation(rng)
        args["core_dim"] = sample_log_int(rng, 32, 128)
    elif core == "gru":
        args["core_dim"] = sample_log_int(rng, 32, 128)
        keys = ["wh", "wz", "wr", "uh", "uz", "ur"]
        if linked:
            init = sample_initializer(rng)
            for key in keys:
                args[key] = list(init)
        else:
            for key in keys:
                args[key] = sample_initializer(rng)
    else:  # lstm
        args["w_gates"] = sample_initializer(rng)
        args["core_dim"] = sample_log_int(rng, 32, 128)
    return [core, args]


# -------------------------------------------------------------- image datasets
def sample_augmentation(rng: RandomState) -> dict:
    """Crop/flip/colour augmentation config; every field is drawn, used or not."""
    return {
        "crop_amount": choice(rng, [0, 0, 0, 1, 2]),
        "flip_left_right": choice(rng, [False, True]),
        "flip_up_down": choice(rng, [False, True]),
        "do_color_aug": choice(rng, [False, True]),
        "brightness": sample_log_float(rng, 0.001, 64.0 / 255.0),
        "saturation": sample_log_float(rng, 0.01, 1.0),
        "hue": sample_log_float(rng, 0.01, 0.5),
        "contrast": sample_log_float(rng, 0.01, 1.0),
    }


def sample_mnist_and_fashion_mnist(rng: RandomState) -> dict:
    """Batch size 8-512 (log), a 1000-55000 training subset, rarely train-only."""
    bs = sample_log_int(rng, 8, 512)
    num_train = sample_linear_int(rng, 1000, 55000)
    return {"bs": bs, "num_train": num_train, "num_classes": 10,
            "just_train": sample_bool(rng, 0.1)}


def sample_cifar_image(rng: RandomState) -> dict:
    """Batch size 8-256 (log), a 1000-50000 training subset."""
    bs = sample_log_int(rng, 8, 256)
    num_train = sample_linear_int(rng, 1000, 50000)
    return {"bs": bs, "num_train": num_train, "just_train": sample_bool(rng, 0.2)}


def sample_default_image(rng: RandomState) -> dict:
    """Batch size 8-256 (log), the full training set."""
    bs = sample_log_int(rng, 8, 256)
    return {"bs": bs, "just_train": sample_bool(rng, 0.2), "num_train": None}


IMAGE_DATASET_SAMPLERS = {
    "mnist": sample_mnist_and_fashion_mnist,
    "fashion_mnist": sample_mnist_and_fashion_mnist,
    "cifar10": sample_cifar_image,
    "cifar100": sample_cifar_image,
    "food101_32x32": sample_default_image,
    "coil100_32x32": sample_default_image,
    "deep_weeds_32x32": sample_default_image,
    "sun397_32x32": sample_default_image,
    "imagenet_resized/32x32": sample_default_image,
    "imagenet_resized/16x16": sample_default_image,
}


def sample_image_dataset(rng: RandomState) -> list:
    """`[name, dataset_config, augmentation or None]`, augmentation 30% of the time.

    Order matters: name, augmentation coin (and augmentation), then the dataset's config.
    """
    name = choice(rng, sorted(IMAGE_DATASET_SAMPLERS))
    augmentation = sample_augmentation(rng) if sample_bool(rng, 0.3) else None
    return [name, IMAGE_DATASET_SAMPLERS[name](rng), augmentation]


# --------------------------------------------------------------- text datasets
def sample_text_classification(rng: RandomState) -> dict:
    """TaskSet's `sample_text_classification` dataset config."""
    num_train = sample_linear_int(rng, 1000, 50000) if sample_bool(rng, 0.2) else None
    return {
        "bs": sample_log_int(rng, 8, 512),
        "num_train": num_train,
        "max_token": 8185,
        "just_train": sample_bool(rng, 0.2),
        "patch_length": sample_log_int(rng, 8, 128),
    }


# TaskSet's list misses a comma after "imdb_reviews/subwords8k", so the first name is
# the concatenation below; kept because it changes the sorted order of the draw.
TEXT_CLASSIFICATION_DATASETS = [
    "imdb_reviews/subwords8k" "imdb_reviews/bytes",
    "tokenized_amazon_reviews/Books_v1_02_bytes",
    "tokenized_amazon_reviews/Camera_v1_00_bytes",
    "tokenized_amazon_reviews/Home_v1_00_bytes",
    "tokenized_amazon_reviews/Video_v1_00_bytes",
    "tokenized_amazon_reviews/Books_v1_02_subwords8k",
    "tokenized_amazon_reviews/Camera_v1_00_subwords8k",
    "tokenized_amazon_reviews/Home_v1_00_subwords8k",
    "tokenized_amazon_reviews/Video_v1_00_subwords8k",
]


def sample_text_dataset(rng: RandomState) -> list:
    """`[name, config]` for TaskSet's text-classification datasets."""
    name = choice(rng, sorted(TEXT_CLASSIFICATION_DATASETS))
    return [name, sample_text_classification(rng)]


def sample_byte_config(rng: RandomState) -> dict:
    """TaskSet's `sample_byte_config` (char LM datasets)."""
    num_train = sample_linear_int(rng, 1000, 50000) if sample_bool(rng, 0.2) else None
    return {
        "patch_length": sample_log_int(rng, 10, 160),
        "batch_size": sample_log_int(rng, 8, 512),
        "just_train": sample_bool(rng, 0.2),
        "num_train": num_train,
    }


CHAR_LM_DATASETS = [
    "lm1b/bytes",
    "imdb_reviews/bytes",
    "tokenized_wikipedia/20190301.zh_bytes",
    "tokenized_wikipedia/20190301.ru_bytes",
    "tokenized_wikipedia/20190301.ja_bytes",
    "tokenized_wikipedia/20190301.hsb_bytes",
    "tokenized_wikipedia/20190301.en_bytes",
    "tokenized_amazon_reviews/Books_v1_02_bytes",
    "tokenized_amazon_reviews/Camera_v1_00_bytes",
    "tokenized_amazon_reviews/Home_v1_00_bytes",
    "tokenized_amazon_reviews/Video_v1_00_bytes",
]


def sample_char_lm_dataset(rng: RandomState) -> list:
    """`[name, config]` for TaskSet's byte-level LM datasets."""
    name = choice(rng, sorted(CHAR_LM_DATASETS))
    return [name, sample_byte_config(rng)]


def sample_word_dataset_config(rng: RandomState) -> dict:
    """TaskSet's `sample_word_dataset_config` (subword LM datasets)."""
    num_train = sample_linear_int(rng, 1000, 50000) if sample_bool(rng, 0.2) else None
    return {
        "patch_length": sample_log_int(rng, 10, 256),
        "batch_size": sample_log_int(rng, 8, 512),
        "just_train": sample_bool(rng, 0.2),
        "num_train": num_train,
    }


WORD_LM_DATASETS = [
    "lm1b/subwords8k",
    "imdb_reviews/subwords8k",
    "tokenized_wikipedia/20190301.zh_subwords8k",
    "tokenized_wikipedia/20190301.ru_subwords8k",
    "tokenized_wikipedia/20190301.ja_subwords8k",
    "tokenized_wikipedia/20190301.hsb_subwords8k",
    "tokenized_wikipedia/20190301.en_subwords8k",
    "tokenized_amazon_reviews/Books_v1_02_subwords8k",
    "tokenized_amazon_reviews/Camera_v1_00_subwords8k",
    "tokenized_amazon_reviews/Home_v1_00_subwords8k",
    "tokenized_amazon_reviews/Video_v1_00_subwords8k",
]


def sample_word_lm_dataset(rng: RandomState) -> list:
    """`[name, config]` for TaskSet's subword LM datasets."""
    name = choice(rng, sorted(WORD_LM_DATASETS))
    return [name, sample_word_dataset_config(rng)]
