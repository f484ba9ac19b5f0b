"""TaskSet's image tasks: the dataset config and its fields, the input pipeline, and the
builders every image family and fixed image task uses (:func:`build_image_task`,
:func:`build_fixed_image_task`).

A TaskSet image dataset config is ``[name, {bs, num_train, just_train, ...}, augmentation or
None]`` (``taskset_lab.tasks.released.sampling.sample_image_dataset``). What TaskSet's
``utils.get_image_dataset`` + ``datasets.get_image_datasets`` do with it, and what this does:

* images uint8 -> float in [0, 1]; then the augmentation (when given) on **every split**
  (TaskSet maps it over train, valid and test alike); the model then applies ``center_data``
  (x -> 2x - 1);
* augmentation, per example: random crop to ``(H - crop, W - crop)`` (offsets uniform over
  the ``crop + 1`` positions), left-right flip w.p. 1/2, up-down flip w.p. 1/2, and for
  3-channel images when ``do_color_aug``: brightness ``+U(-b, b)``, saturation ``x U(1-s, 1+s)``
  (HSV, clipped to [0, 1]), hue ``+U(-h, h)`` (mod 1), contrast ``(x - mean) U(1-c, 1+c) + mean``
  per channel, in TF's order. Its randomness comes from
  :func:`taskset_lab.tasks.context.draw`, so it is fixed per (config, step);
* ``num_train`` keeps the first ``num_train`` training examples; ``just_train`` is **not**
  used by TaskSet's image families (``utils._get_image`` ignores it), so it is ignored here;
* ``bs``: batch size (batches drop nothing: each step draws ``bs`` examples).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from taskset_lab.data.taskset_images import DATASETS, digits_stand_in, taskset_image_splits
from taskset_lab.errors import ConfigError, DataError
from taskset_lab.tasks.base import Batch, Task, TaskData
from taskset_lab.tasks.context import draw
from taskset_lab.tasks.activations import ACTIVATIONS
from taskset_lab.tasks.initializers import is_initializer
from taskset_lab.tasks.fields import Field
from taskset_lab.tasks.streaming import choose_task_data

TaskT = TypeVar("TaskT", bound=Task)

AUGMENTATION_KEYS = {"crop_amount": int, "flip_left_right": bool, "flip_up_down": bool, "do_color_aug": bool,
                     "brightness": float, "saturation": float, "hue": float, "contrast": float}


# ------------------------------------------------------------------ config checks


def is_augmentation(aug: Any) -> bool:
    if aug is None:
        return True
    if not isinstance(aug, Mapping) or set(aug) != set(AUGMENTATION_KEYS):
        return False
    for key, kind in AUGMENTATION_KEYS.items():
        v = aug[key]
        if kind is bool and not isinstance(v, bool):
            return False
        if kind is int and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            return False
        if kind is float and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            return False
    return True


def is_image_dataset(value: Any) -> bool:
    """``[name, {bs, num_train, ...}, augmentation or None]`` with a known dataset name."""
    if not isinstance(value, (list, tuple)) or len(value) != 3 or value[0] not in DATASETS:
        return False
    cfg = value[1]
    if not isinstance(cfg, Mapping) or not isinstance(cfg.get("bs"), int) or cfg["bs"] < 1:
        return False
    num_train = cfg.get("num_train")
    if num_train is not None and (not isinstance(num_train, int) or num_train < 1):
        return False
    return is_augmentation(value[2])


DATASET_FIELD = Field("list", check=is_image_dataset,
                      allowed=f"[name, {{bs >= 1, num_train (int or null), just_train, ...}}, augmentation "
                              f"{{{', '.join(AUGMENTATION_KEYS)}}} or null] with name one of "
                              f"{', '.join(DATASETS)}")
ACTIVATION_FIELD = Field("str", choices=tuple(ACTIVATIONS))
INIT_FIELD = Field("list", check=is_initializer,
                   allowed="[name, scale]: he_normal/he_uniform/glorot_normal/glorot_uniform with scale null, "
                           "or orthogonal/random_uniform/random_normal/truncated_normal/variance_scaling "
                           "with a scale > 0")
WIDTHS_FIELD = Field("list", items="int", check=lambda v: len(v) >= 1 and all(u >= 1 for u in v),
                     allowed="layer widths (ints >= 1), at least one")


# ------------------------------------------------------------------ augmentation


def _select(options: Sequence[Tensor], onehot: Tensor) -> Tensor:
    """``sum_i onehot[:, i] * options[i]`` (an exact pick: one weight is 1, the rest 0)."""
    view = (-1,) + (1,) * (options[0].dim() - 1)
    out = options[0] * onehot[:, 0].reshape(view)
    for i in range(1, len(options)):
        out = out + options[i] * onehot[:, i].reshape(view)
    return out


def random_crop(x: Tensor, crop: int, u: Tensor) -> Tensor:
    """Per-example crop of ``[B, C, H, W]`` to ``[B, C, H-crop, W-crop]``; ``u [B, 2]`` uniform
    picks the row and column offsets among the ``crop + 1`` positions."""
    if crop <= 0:
        return x
    h, w = x.shape[-2] - crop, x.shape[-1] - crop
    n = crop + 1
    off = torch.clamp(torch.floor(u * n), max=crop)
    positions = torch.arange(n, dtype=u.dtype, device=u.device)
    oh = (off[:, :1] == positions).to(x.dtype)  # [B, n]
    ow = (off[:, 1:] == positions).to(x.dtype)
    rows = _select([x[:, :, i:i + h, :] for i in range(n)], oh)
    return _select([rows[:, :, :, j:j + w] for j in range(n)], ow)


def rgb_to_hsv(rgb: Tensor) -> Tensor:
    """TF's ``rgb_to_hsv`` on ``[B, 3, H, W]`` (hue in [0, 1))."""
    r, g, b = rgb.unbind(1)
    v = torch.maximum(torch.maximum(r, g), b)
    mn = torch.minimum(torch.minimum(r, g), b)
    rng = v - mn
    safe_v = torch.where(v > 0, v, torch.ones_like(v))
    s = torch.where(v > 0, rng / safe_v, torch.zeros_like(v))
    safe = torch.where(rng > 0, rng, torch.ones_like(rng))
    h = torch.where(v == r, (g - b) / safe, torch.where(v == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    h = torch.where(rng > 0, h / 6.0, torch.zeros_like(h))
    h = torch.where(h < 0, h + 1.0, h)
    return torch.stack([h, s, v], dim=1)


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """TF's ``hsv_to_rgb`` (piecewise-linear hue ramps)."""
    h, s, v = hsv.unbind(1)
    h6 = h.unsqueeze(1) * 6.0
    offsets = torch.tensor([3.0, 2.0, 4.0], dtype=hsv.dtype, device=hsv.device).reshape(1, 3, 1, 1)
    signs = torch.tensor([1.0, -1.0, -1.0], dtype=hsv.dtype, device=hsv.device).reshape(1, 3, 1, 1)
    base = torch.tensor([-1.0, 2.0, 2.0], dtype=hsv.dtype, device=hsv.device).reshape(1, 3, 1, 1)
    ramps = torch.clamp(base + signs * torch.abs(h6 - offsets), 0.0, 1.0)
    return ((ramps - 1.0) * s.unsqueeze(1) + 1.0) * v.unsqueeze(1)


def color_augment(x: Tensor, aug: Mapping[str, Any], u: Tensor) -> Tensor:
    """TF's random brightness, saturation, hue, contrast (in that order) on ``[B, 3, H, W]``;
    ``u [B, 4]`` uniform gives each example's four factors."""
    view = (-1, 1, 1, 1)
    b, s, h, c = (float(aug[k]) for k in ("brightness", "saturation", "hue", "contrast"))
    x = x + ((2.0 * u[:, 0] - 1.0) * b).reshape(view)
    hsv = rgb_to_hsv(x)
    sat = torch.clamp(hsv[:, 1] * (1.0 - s + 2.0 * s * u[:, 1]).reshape(-1, 1, 1), 0.0, 1.0)
    hue = hsv[:, 0] + ((2.0 * u[:, 2] - 1.0) * h).reshape(-1, 1, 1)
    hue = hue - torch.floor(hue)
    x = hsv_to_rgb(torch.stack([hue, sat, hsv[:, 2]], dim=1))
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * (1.0 - c + 2.0 * c * u[:, 3]).reshape(view) + mean


def augment_images(x: Tensor, aug: Mapping[str, Any] | None, key: str = "augment") -> Tensor:
    """TaskSet's ``get_augmentation(aug)`` on float images ``[B, C, H, W]`` in [0, 1]; random
    numbers from the step context under ``key/crop``, ``key/flips``, ``key/color``."""
    if not aug:
        return x
    batch = x.shape[0]
    crop = int(aug["crop_amount"])
    if crop:
        x = random_crop(x, crop, draw(f"{key}/crop", (batch, 2), "uniform", x))
    if aug["flip_left_right"] or aug["flip_up_down"]:
        flips = draw(f"{key}/flips", (batch, 2), "uniform", x)
        if aug["flip_left_right"]:
            x = torch.where((flips[:, 0] < 0.5).reshape(-1, 1, 1, 1), x.flip(-1), x)
        if aug["flip_up_down"]:
            x = torch.where((flips[:, 1] < 0.5).reshape(-1, 1, 1, 1), x.flip(-2), x)
    if aug["do_color_aug"] and x.shape[1] == 3:
        x = color_augment(x, aug, draw(f"{key}/color", (batch, 4), "uniform", x))
    return x


def augmented_shape(shape: Sequence[int], aug: Mapping[str, Any] | None) -> tuple[int, int, int]:
    """``(C, H, W)`` of the images the model sees (a crop shrinks H and W)."""
    c, h, w = (int(v) for v in shape)
    crop = int(aug["crop_amount"]) if aug else 0
    if crop >= min(h, w):
        raise ConfigError("task.dataset", f"crop_amount {crop} leaves no pixels of a {h}x{w} image")
    return c, h - crop, w - crop


class ImageInput(nn.Module):
    """uint8 (or [0, 1] float) images -> what TaskSet's model sees: scaled to [0, 1], augmented,
    then centred to [-1, 1] when ``center_data``. Holds no parameters."""

    def __init__(self, augmentation: Mapping[str, Any] | None, center: bool):
        super().__init__()
        self.augmentation = dict(augmentation) if augmentation else None
        self.center = bool(center)

    def forward(self, x: Tensor, like: Tensor) -> Tensor:
        x = x.to(like.dtype) / 255.0 if x.dtype == torch.uint8 else x.to(like.dtype)
        x = augment_images(x, self.augmentation, getattr(self, "_noise_key", "augment"))
        return x * 2.0 - 1.0 if self.center else x


def nhwc_flatten(x: Tensor) -> Tensor:
    """``snt.BatchFlatten`` of an NHWC tensor, from our NCHW one (same feature order as TF)."""
    return x.permute(0, 2, 3, 1).flatten(1)


# ------------------------------------------------------------------ data and task


def config_seed(config: Mapping[str, Any]) -> int:
    """A stable seed for a config's batch order (same config, same batches)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.blake2b(canonical.encode(), digest_size=8).digest(), "little") >> 2


def image_task_data(config: Mapping[str, Any], data_dir: str | None = None, download: bool = False,
                    offline_data: str = "error", num_per_valid: int | None = None
                    ) -> tuple[TaskData, tuple[int, int, int], int, str | None]:
    """``(task data, image shape (C, H, W) before augmentation, number of classes, stand-in or
    None)`` for a task config with a TaskSet ``dataset`` entry. Absent data raises the loader's
    one-line DataError, or with ``offline_data="substitute"`` builds on the digits stand-in."""
    name, dcfg, _aug = config["dataset"]
    spec = DATASETS[name]
    num_train = dcfg.get("num_train")
    substitute = None
    try:
        splits: Mapping[str, Any] = taskset_image_splits(name, data_dir, download, num_per_valid, num_train)
    except DataError:
        if offline_data != "substitute":
            raise
        splits, substitute = digits_stand_in(spec.shape, num_train, spec.num_classes), "digits"
    data = choose_task_data(splits, int(dcfg["bs"]), seed=config_seed(config))
    return data, spec.shape, spec.num_classes, substitute


def build_image_task(make: Callable[[TaskData, tuple[int, int, int], int], TaskT], config: Mapping[str, Any],
                     data_dir: str | None = None, download: bool = False, offline_data: str = "error",
                     num_per_valid: int | None = None) -> TaskT:
    """The task ``make(data, image shape, number of classes)`` builds on the config's dataset
    (:func:`image_task_data`), marked with the stand-in it runs on, if any
    (``task.data_substitute``; the registry puts it in the task's name)."""
    data, shape, num_classes, substitute = image_task_data(config, data_dir, download, offline_data, num_per_valid)
    task = make(data, shape, num_classes)
    task.data_substitute = substitute
    return task


class TasksetImageClassification(Task):
    """Mean softmax cross-entropy of the logits against the labels (TaskSet's
    ``softmax_cross_entropy_with_logits_v2`` on one-hot labels, averaged)."""

    def loss(self, output: Tensor, batch: Batch) -> Tensor:
        return F.cross_entropy(output, batch[1])


#: ``get_image_datasets``' default validation size, used by every fixed image task (the
#: families use 5000)
NUM_PER_VALID = 3000


def build_fixed_image_task(make: Callable[[Any, tuple[int, int, int], int], TaskT], spec: Any,
                           data_dir: str | None, download: bool, offline_data: str,
                           num_per_valid: int = NUM_PER_VALID) -> TaskT:
    """A fixed image task (MLP, conv, AE, VAE, flow) on ``get_image_datasets(spec.dataset,
    spec.batch_size, num_per_valid=...)``: ``make(data, (C, H, W), classes)``, marked with
    its stand-in if any (:func:`build_image_task`); the batch order is seeded by the name."""
    config = {"name": spec.name, "dataset": [spec.dataset, {"bs": int(spec.batch_size), "num_train": None}, None]}
    task = build_image_task(make, config, data_dir, download, offline_data, num_per_valid=int(num_per_valid))
    task.dataset_name = spec.dataset  # the dataset the code loads (the catalogue shows it)
    return task
