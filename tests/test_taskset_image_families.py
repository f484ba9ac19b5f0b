"""TaskSet's mlp / conv_pooling / conv_fc / quadratic families and TaskSet's image datasets.

Families: every seed 0-7 builds on the digits stand-in and trains in the population engine;
config-in-population == config-alone (float64) with augmentation; TF's SAME/VALID shapes;
the quadratic's loss against a hand computation from its config. Datasets: each loader
reads small files this test writes in the real format; absent data fails with one line.
"""

from __future__ import annotations

import colorsys
import csv
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import assert_population_equals_alone
from taskset_lab.data.taskset_images import DATASETS, IndexedImages, taskset_image_splits
from taskset_lab.engine import train_population
from taskset_lab.errors import ConfigError, DataError
from taskset_lab.optim import get_optimizer_family
from taskset_lab.tasks.context import StepContext, step_context
from taskset_lab.tasks.families.taskset_conv import conv_stack_shapes
from taskset_lab.tasks.layers import same_padding
from taskset_lab.tasks.images import augment_images, hsv_to_rgb, random_crop, rgb_to_hsv
from taskset_lab.tasks.registry import build_task, get_task, sample_task, sample_task_config

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py

F64 = torch.float64
IMAGE_FAMILIES = ["mlp_family", "conv_pooling_family", "conv_fc_family"]
AUG = {"crop_amount": 2, "flip_left_right": True, "flip_up_down": True, "do_color_aug": True,
       "brightness": 0.1, "saturation": 0.5, "hue": 0.1, "contrast": 0.5}




def _small_batch(config: dict, bs: int = 4) -> dict:
    name, dcfg, aug = config["dataset"]
    return {"dataset": [name, {**dcfg, "bs": bs}, aug]}


# ------------------------------------------------------------------ every seed builds and trains


@pytest.mark.parametrize("family", IMAGE_FAMILIES + ["quadratic_family"])
def test_seeds_0_to_7_build_offline_and_train(family):
    adam = get_optimizer_family("adam1p")
    configs = [adam.sample(0), adam.sample(1)]
    for seed in range(8):
        task = get_task(f"{family}_seed{seed}", offline_data="substitute")
        if family == "quadratic_family":
            assert task.name == f"{family}_seed{seed}"
        else:
            assert task.name == f"{family}_seed{seed}_on_digits" and task.data_substitute == "digits"
            x, y = task.data.batch("train", 0)
            assert tuple(x.shape[1:]) == DATASETS[task.config["dataset"][0]].shape
            assert x.dtype == torch.uint8 and int(y.max()) < task.num_classes
            # the released config itself, with a 4-image batch so 20 steps stay cheap here
            task = sample_task(family, seed, _small_batch(task.config), offline_data="substitute")
        result = train_population(task, adam, configs, total_steps=20, eval_every=20, eval_batches=1)
        assert result.steps == [0, 20]
        assert torch.isfinite(result.losses["train"][:, 0]).all(), (task.name, result.losses["train"])


# ------------------------------------------------------------------ population == alone (float64)


def _assert_population_equals_alone(task, steps: int = 6):
    return assert_population_equals_alone(task, steps=steps, eval_every=3, eval_batches=2, rtol=1e-9,
                                          equal_nan=True)


def test_augmented_mlp_population_equals_alone_and_augmentation_is_per_config():
    base = sample_task_config("mlp_family", 4)  # food101_32x32: 3 channels, so colour augmentation runs
    name, dcfg, _ = base["dataset"]
    overrides = {"layer_sizes": [8], "dataset": [name, {**dcfg, "bs": 6}, AUG]}
    task = sample_task("mlp_family", 4, overrides, offline_data="substitute")
    assert task.seen_shape == (3, 30, 30)
    pop = _assert_population_equals_alone(task)
    # with identical hparams the two configs differ only by their augmentation draws
    adam = get_optimizer_family("adam8p")
    same = train_population(task, adam, [adam.sample(3)] * 2, 3, 3, eval_batches=1, dtype=F64)
    assert not torch.equal(same.losses["train"][0], same.losses["train"][1])
    assert torch.isfinite(pop.losses["test"]).all()


def test_conv_population_equals_alone():
    overrides = {"hidden_units": [3, 4, 5], "dataset": ["fashion_mnist", {"bs": 5, "num_train": 300,
                                                                        "num_classes": 10, "just_train": False},
                                                        dict(AUG, crop_amount=1)]}
    for family in ("conv_pooling_family", "conv_fc_family"):
        task = sample_task(family, 3, overrides, offline_data="substitute")  # strides 2, SAME/VALID/VALID
        assert task.config["padding"] == ["SAME", "VALID", "VALID"]
        _assert_population_equals_alone(task, steps=4)


# ------------------------------------------------------------------ conv shapes (TF SAME / VALID)


def test_conv_shapes_follow_tf_same_and_valid():
    config = sample_task_config("conv_pooling_family", 0)  # cifar100, 5 layers, strides 1,2,1,2,1
    assert config["padding"] == ["SAME", "SAME", "VALID", "SAME", "VALID"]
    # TF: SAME -> ceil(n / s), VALID -> ceil((n - 2) / s)
    want = [(46, 32, 32), (48, 16, 16), (47, 14, 14), (29, 7, 7), (18, 5, 5)]
    assert conv_stack_shapes((3, 32, 32), config["hidden_units"], config["strides"], config["padding"]) == want
    assert same_padding(32, 2) == (0, 1) and same_padding(7, 2) == (1, 1) and same_padding(5, 1) == (1, 1)
    task = build_task(config, offline_data="substitute")
    module = task.init_module(0)
    seen = []
    for layer in module.convs.layers:
        layer.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[1:])))
    logits = module(task.data.batch("train", 0)[0])
    assert seen == want and logits.shape == (10, 100)
    assert "bias" not in dict(build_task({**config, "use_bias": False}, offline_data="substitute")
                              .init_module(0).convs.layers[0].named_parameters())
    # conv_fc flattens the last conv output: 18 * 5 * 5 inputs to its first dense layer
    fc = build_task(sample_task_config("conv_fc_family", 0), offline_data="substitute").init_module(0)
    assert fc.head.layers[0].w.shape == (18 * 5 * 5, 62)
    with pytest.raises(ConfigError, match="no output pixels"):
        conv_stack_shapes((3, 16, 16), [4] * 4, [[2, 2]] * 4, ["VALID"] * 4)


def test_conv_initializer_uses_tf_kernel_fans():
    config = {**sample_task_config("conv_pooling_family", 2), "w_init": ["he_uniform", None],
              "hidden_units": [64]}
    w = build_task(config, offline_data="substitute").init_module(0).convs.layers[0].weight
    bound = math.sqrt(6.0 / (3 * 3 * 3))  # fan_in of a [3, 3, 3, 64] kernel
    w = w.detach()
    assert w.shape == (64, 3, 3, 3) and float(w.abs().max()) <= bound and float(w.abs().max()) > 0.9 * bound


# ------------------------------------------------------------------ augmentation pieces


def test_crop_flip_and_hsv_match_their_definitions():
    x = torch.arange(2 * 1 * 4 * 4, dtype=F64).reshape(2, 1, 4, 4)
    u = torch.tensor([[0.0, 0.99], [0.5, 0.2]], dtype=F64)  # offsets (0, 2) and (1, 0) of 3 positions
    out = random_crop(x, 2, u)
    assert torch.equal(out[0], x[0, :, 0:2, 2:4]) and torch.equal(out[1], x[1, :, 1:3, 0:2])
    rgb = torch.rand(3, 3, 2, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    hsv = rgb_to_hsv(rgb)
    ref = [colorsys.rgb_to_hsv(*rgb[i, :, 0, 1].tolist()) for i in range(3)]
    torch.testing.assert_close(hsv[:, :, 0, 1], torch.tensor(ref, dtype=F64))
    torch.testing.assert_close(hsv_to_rgb(hsv), rgb)
    # flips only, with draws < 0.5: both flips happen
    flips = {"crop_amount": 0, "flip_left_right": True, "flip_up_down": True, "do_color_aug": False,
             "brightness": 0.1, "saturation": 0.1, "hue": 0.1, "contrast": 0.1}
    with step_context(StepContext(noise={"k/flips": torch.zeros(2, 2, dtype=F64)})):
        assert torch.equal(augment_images(x, flips, "k"), x.flip(-1).flip(-2))


# ------------------------------------------------------------------ the quadratic


def test_quadratic_loss_matches_hand_computation():
    # seed 0: A ~ normal, x0 ~ uniform, identity output, per-step linspace_eigen noise on A
    task = get_task("quadratic_family_seed0")
    c = task.config
    module = task.init_module(0)
    a, x0 = module.A.double().numpy(), module.weight.detach().double().numpy()
    assert a.shape == (c["dims"], c["dims"]) and x0.shape == (c["dims"],)
    lo, hi = c["initial_dist"][1]["min"], c["initial_dist"][1]["max"]
    assert lo <= x0.min() and x0.max() <= hi
    assert torch.equal(task.init_module(5).weight, module.weight)  # fixed by the config's seed
    assert abs(a.mean() - c["A_dist"][1]["mean"]) < 0.5 and abs(a.std() - c["A_dist"][1]["std"]) < 0.5
    u = torch.rand(c["dims"], c["dims"], dtype=F64, generator=torch.Generator().manual_seed(1))
    with step_context(StepContext(noise={"quadratic/A_noise/uniform": u})):
        got = float(task.forward_loss(module.double(), task.data.batch("train", 0)).detach())
    q, r = np.linalg.qr(u.numpy() * 2 - 1)
    q = q * np.sign(np.diag(r))
    kind, params = c["noise"]["A_noise"]
    spec = np.linspace(params["min"], params["max"], c["dims"]).astype(np.float32)
    noisy = a + q @ np.diag(spec) @ q.T
    want = c["loss_scale"] * float(np.sum((noisy @ x0) ** 2))
    assert kind == "linspace_eigen" and got == pytest.approx(want, rel=1e-10)


def test_quadratic_eigen_matrix_and_log_output():
    task = get_task("quadratic_family_seed1")  # A: linspace_eigen spectrum
    c = task.config
    a = task.init_module(0).A.double().numpy()
    want = np.linspace(c["A_dist"][1]["min"], c["A_dist"][1]["max"], c["dims"]).astype(np.float32)
    np.testing.assert_allclose(np.linalg.eigvalsh((a + a.T) / 2), np.sort(want), rtol=1e-4)
    task = get_task("quadratic_family_seed2")  # log output, no noise
    c, module = task.config, task.init_module(0)
    assert c["noise"] is None and c["output_fn"] == "log"
    a, x = module.A.double(), module.weight.detach().double()
    want = c["loss_scale"] * math.log(float(((a @ x) ** 2).sum()) + 1e-8)
    got = task.eval_loss(module.double(), task.data.batch("test", -1), "eval:test:0").detach()
    assert float(got) == pytest.approx(want, rel=1e-12)


# ------------------------------------------------------------------ loaders on files in the real format


def _img(value: int, size: int, channels: int = 3) -> np.ndarray:
    return np.full((size, size, channels), value, dtype=np.uint8)


def _save(path: Path, array: np.ndarray, fmt: str | None = None) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def _check_labels_follow_pixels(splits, value_of_label, sizes: dict[str, int], shape):
    for split, n in sizes.items():
        data = splits[split]
        x, y = data.get_batch(range(len(data))) if isinstance(data, IndexedImages) else data
        assert x.shape == (n, *shape) and x.dtype == torch.uint8 and y.dtype == torch.int64, split
        centre = x[:, 0, shape[1] // 2, shape[2] // 2].int()
        want = torch.tensor([value_of_label(int(v)) for v in y])
        assert (centre - want).abs().max() <= 3, split  # JPEG may be off by a little


def _idx(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    code = 0x08
    header = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_mnist_and_cifar_loaders(tmp_path):
    for folder, name in (("MNIST", "mnist"), ("FashionMNIST", "fashion_mnist")):
        for prefix, n in (("train", 30), ("t10k", 7)):
            labels = np.arange(n) % 10
            _idx(tmp_path / folder / "raw" / f"{prefix}-images-idx3-ubyte",
                 np.stack([np.full((28, 28), 20 * int(v)) for v in labels]))
            _idx(tmp_path / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        splits = taskset_image_splits(name, tmp_path, num_per_valid=5, num_train=12)
        _check_labels_follow_pixels(splits, lambda v: 20 * v, {"train": 12, "valid_inner": 5, "valid_outer": 5,
                                                               "test": 7}, (1, 28, 28))
    for name, folder, files, key, classes in (
            ("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
             b"labels", 10),
            ("cifar100", "cifar-100-python", ["train", "test"], b"fine_labels", 100)):
        for f in files:
            labels = np.arange(6) % classes + (3 if f.startswith("test") else 0)
            data = np.stack([np.full(3072, 2 * int(v)) for v in labels]).astype(np.uint8)
            (tmp_path / folder).mkdir(exist_ok=True)
            with open(tmp_path / folder / f, "wb") as fh:
                pickle.dump({b"data": data, key: labels.tolist()}, fh)
        if name == "cifar10":  # 5 x 6 training images
            splits = taskset_image_splits(name, tmp_path, num_per_valid=4)
            _check_labels_follow_pixels(splits, lambda v: 2 * v, {"train": 22, "valid_inner": 4,
                                                                  "valid_outer": 4, "test": 6}, (3, 32, 32))
    with pytest.raises(DataError, match="too small"):
        taskset_image_splits("cifar100", tmp_path, num_per_valid=4)
    splits = taskset_image_splits("cifar100", tmp_path, num_per_valid=2)
    assert {s: len(v[1]) for s, v in splits.items()} == {"valid_inner": 2, "valid_outer": 2, "train": 2, "test": 6}


def test_food101_and_sun397_loaders_resize(tmp_path):
    meta = {"train": {}, "test": {}}
    for c, cls in enumerate(["apple_pie", "baby_back_ribs"]):
        for split, ids in (("train", range(6)), ("test", range(6, 8))):
            meta[split][cls] = [f"{cls}/{i}" for i in ids]
            for i in ids:
                _save(tmp_path / "food-101" / "images" / cls / f"{i}.jpg", _img(60 + 100 * c, 80), "JPEG")
    (tmp_path / "food-101" / "meta").mkdir()
    for split in meta:
        (tmp_path / "food-101" / "meta" / f"{split}.json").write_text(json.dumps(meta[split]))
    for name, size in (("food101_32x32", 32), ("food101_64x64", 64)):
        splits = taskset_image_splits(name, tmp_path, num_per_valid=2)
        _check_labels_follow_pixels(splits, lambda v: 60 + 100 * v, {"train": 8, "valid_inner": 2,
                                                                    "valid_outer": 2, "test": 4}, (3, size, size))
    (tmp_path / "SUN397").mkdir()
    (tmp_path / "SUN397" / "ClassName.txt").write_text("/a/abbey\n/b/beach\n")
    for c, rel in enumerate(["a/abbey", "b/beach"]):
        for i in range(10):
            _save(tmp_path / "SUN397" / rel / f"sun_{c}{i:03d}.jpg", _img(40 + 150 * c, 50), "JPEG")
    splits = taskset_image_splits("sun397_32x32", tmp_path, num_per_valid=3)
    # 20 images: train 14 / validation 2 / test 4, and valid_inner = 3 of the 14
    _check_labels_follow_pixels(splits, lambda v: 40 + 150 * v, {"train": 11, "valid_inner": 3, "valid_outer": 2,
                                                                "test": 4}, (3, 32, 32))
    assert isinstance(splits["train"], IndexedImages)  # resized once, cached, memory-mapped
    assert (tmp_path / "tasklab_cache" / "sun397_32x32" / "train_x.npy").is_file()


def test_coil100_deep_weeds_colorectal_loaders(tmp_path):
    for obj in (1, 2, 3):
        for angle in (0, 5, 10, 15):
            _save(tmp_path / "coil100" / "coil-100" / f"obj{obj}__{angle}.png", _img(50 * obj, 128))
    (tmp_path / "coil100" / "coil-100" / "convertGroupppm2png.pl").write_text("not an image")
    splits = taskset_image_splits("coil100_32x32", tmp_path, num_per_valid=2)
    _check_labels_follow_pixels(splits, lambda v: 50 * (v + 1), {"train": 6, "valid_inner": 2, "valid_outer": 2,
                                                                "test": 2}, (3, 32, 32))
    rows = [{"Filename": f"2017{i:04d}-1.jpg", "Label": i % 9, "Species": "x"} for i in range(12)]
    for row in rows:
        _save(tmp_path / "deep_weeds" / "images" / row["Filename"], _img(20 * row["Label"], 256), "JPEG")
    with open(tmp_path / "deep_weeds" / "labels.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["Filename", "Label", "Species"])
        writer.writeheader()
        writer.writerows(rows)
    splits = taskset_image_splits("deep_weeds_32x32", tmp_path, num_per_valid=3)
    _check_labels_follow_pixels(splits, lambda v: 20 * v, {"train": 3, "valid_inner": 3, "valid_outer": 3,
                                                          "test": 3}, (3, 32, 32))
    base = tmp_path / "colorectal_histology" / "Kather_texture_2016_image_tiles_5000"
    for c, cls in enumerate(["01_TUMOR", "02_STROMA", "03_COMPLEX"]):
        for i in range(3):
            _save(base / cls / f"{i}_CRC-Prim-HE.tif", _img(30 + 70 * c, 150), "TIFF")
    splits = taskset_image_splits("colorectal_histology_32x32", tmp_path, num_per_valid=2)
    _check_labels_follow_pixels(splits, lambda v: 30 + 70 * v, {"train": 3, "valid_inner": 2, "valid_outer": 2,
                                                               "test": 2}, (3, 32, 32))


def test_imagenet_resized_npz_loader(tmp_path):
    for size in (16, 32):
        folder = tmp_path / "imagenet_resized" / f"{size}x{size}"
        folder.mkdir(parents=True)
        rng = np.random.default_rng(size)
        batches = {}
        for fname, n in (("train_data_batch_1", 7), ("train_data_batch_2", 6), ("val_data", 5)):
            labels = rng.integers(1, 1001, n)
            data = np.zeros((n, 3, size, size), dtype=np.uint8)
            data[:, 0] = (labels % 256)[:, None, None]  # red plane encodes the label
            data[:, 2] = 255  # blue plane: channel-major rows must land in channel 2
            np.savez(folder / f"{fname}.npz", data=data.reshape(n, -1), labels=labels,
                     **({"mean": np.zeros(3 * size * size)} if fname != "val_data" else {}))
            batches[fname] = labels
        splits = taskset_image_splits(f"imagenet_resized/{size}x{size}", tmp_path, num_per_valid=3, num_train=5)
        assert {s: len(v) for s, v in splits.items()} == {"valid_inner": 3, "valid_outer": 3, "train": 5, "test": 5}
        x, y = splits["test"].get_batch(range(5))
        assert x.shape == (5, 3, size, size) and bool((x[:, 2] == 255).all())
        assert sorted((y + 1).tolist()) == sorted(batches["val_data"].tolist())  # labels 1..1000 -> 0..999
        assert torch.equal(x[:, 0, 0, 0].long(), (y + 1) % 256)
        train_labels = np.concatenate([batches["train_data_batch_1"], batches["train_data_batch_2"]]) - 1
        seen = np.concatenate([splits[s].get_batch(range(len(splits[s])))[1].numpy()
                               for s in ("valid_inner", "valid_outer")])
        assert set(seen) <= set(train_labels)


# ------------------------------------------------------------------ absent data


def test_missing_data_is_one_line_error_or_explicit_stand_in(tmp_path):
    with pytest.raises(DataError) as err:
        get_task("mlp_family_seed3", data_dir=str(tmp_path))  # mnist
    msg = str(err.value)
    assert "\n" not in msg and "'mnist'" in msg and str(tmp_path) in msg
    assert "misc.data_dir" in msg and "misc.download=true" in msg and "misc.offline_data=substitute" in msg
    with pytest.raises(DataError) as err:
        get_task("mlp_family_seed13", data_dir=str(tmp_path))
    name = sample_task_config("mlp_family", 13)["dataset"][0]
    msg = str(err.value)
    assert "\n" not in msg and f"'{name}'" in msg and "misc.offline_data=substitute" in msg
    assert ("misc.download=true" in msg) == DATASETS[name].downloadable
    task = get_task("mlp_family_seed3", data_dir=str(tmp_path), offline_data="substitute")
    assert task.name == "mlp_family_seed3_on_digits" and len(task.data.splits["train"][0]) <= 34429
