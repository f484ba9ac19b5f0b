"""MTL dataset loaders on small files in the real layouts, and the models built on them."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import torch

from taskset_lab.errors import DataError
from taskset_lab.mtl.datasets import CityScapes, DigitsMTL, GradNormSynthetic, MultiMNIST
from taskset_lab.mtl.datasets.multimnist import overlay_pairs
from taskset_lab.mtl.kinds import MTLTaskSpec, task_loss
from taskset_lab.mtl.models import CNNBackbone, MLPBackbone, MTLModel, SegNetBackbone


def test_digits_pairs_carry_both_labels_and_their_sum():
    dm = DigitsMTL(batch_size=32)
    from taskset_lab.data.embedded import load_digits

    x_train, y_train = load_digits()["train"]
    data = dm.split("train")
    assert len(data) == 2 * len(y_train) and data.x.shape[1:] == (1, 8, 16)
    for i in range(5):
        image, targets = data[i]
        # each half is a real training digit with the label the task asks for
        left = (x_train[:, 0] == image[0, :, :8]).all(2).all(1).nonzero().flatten()
        right = (x_train[:, 0] == image[0, :, 8:]).all(2).all(1).nonzero().flatten()
        assert len(left) and len(right)
        assert int(targets[1]) == int(y_train[left[0]]) and int(targets[2]) == int(y_train[right[0]])
        assert float(targets[3]) == int(targets[1]) + int(targets[2])
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 8, 16) and set(y) == {1, 2, 3}  # every batch gives every task its targets
    assert len(dm.split("test")) == 2 * len(load_digits()["test"][1])


def test_gradnorm_synthetic_follows_its_formula():
    dm = GradNormSynthetic(sigmas=[1.0, 50.0], in_dim=12, out_dim=5, n_train=40, n_val=10, n_test=10)
    b, eps = dm.functions()
    data = dm.split("train")
    expected = 50.0 * torch.tanh((data.x * dm.input_std) @ (b + eps[1]).T)  # the network sees x / input_std
    assert 0.8 < float(data.x.std()) < 1.2
    torch.testing.assert_close(data.targets[2], expected)
    assert b.std() > 5 and 2 < eps[0].std() < 5  # std 10 and 3.5
    assert 30 < data.targets[2].abs().max() <= 50 and data.targets[1].abs().max() <= 1
    assert [s.name for s in dm.tasks.values()] == ["sigma_1", "sigma_50"]
    with pytest.raises(ValueError, match="sigmas"):
        GradNormSynthetic(sigmas=[])


def _write_idx(path, array: np.ndarray) -> None:
    code = 0x08  # unsigned byte
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.mark.parametrize("source, folder", [("mnist", "MNIST"), ("fashion", "FashionMNIST")])
def test_multimnist_reads_torchvision_raw_files(tmp_path, source, folder):
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (20, 28, 28)), "t10k": rng.integers(0, 256, (6, 28, 28))}
    labels = {"train": np.arange(20) % 10, "t10k": np.arange(6) % 10}
    for split in ("train", "t10k"):
        _write_idx(raw / f"{split}-images-idx3-ubyte", images[split])
        _write_idx(raw / f"{split}-labels-idx1-ubyte", labels[split])
    dm = MultiMNIST(data_dir=str(tmp_path), source=source, val_fraction=0.25, batch_size=4)
    train, val, test = dm.split("train"), dm.split("val"), dm.split("test")
    assert (len(train), len(val), len(test)) == (15, 5, 6)
    assert train.x.shape[1:] == (1, 28, 28) and 0.0 <= float(train.x.min()) and float(train.x.max()) <= 1.0
    # task 1 is the top-left digit: its label is the image's own; task 2 its partner's
    assert train.targets[1].tolist() == (np.arange(15) % 10).tolist()
    # the partners are the permutation drawn first from pair_seed (train split)
    perm = torch.from_numpy(np.random.default_rng(0).permutation(15))
    assert train.targets[2].tolist() == (perm.numpy() % 10).tolist()
    expected = overlay_pairs(torch.from_numpy(images["train"][:15].astype(np.uint8)), torch.arange(15), perm)
    torch.testing.assert_close(train.x, expected)
    assert dm.name == ("MultiMNIST" if source == "mnist" else "MultiFashion")


def test_overlay_puts_digits_at_opposite_corners():
    a = torch.zeros(2, 28, 28, dtype=torch.uint8)
    a[0, :4, :4] = 255  # top-left blob in image 0
    a[1, -4:, -4:] = 255  # bottom-right blob in image 1
    out = overlay_pairs(a, torch.tensor([0]), torch.tensor([1]))[0, 0]
    assert out[:3, :3].min() > 0.5 and out[-3:, -3:].min() > 0.5 and out[12:16, 12:16].max() == 0


def test_multimnist_missing_files_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="MNIST files not found"):
        MultiMNIST(data_dir=str(tmp_path)).setup()


def _write_cityscapes(root, n_train=3, n_val=2, h=8, w=16):
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("val", n_val)):
        for sub in ("image", "label_7", "depth"):
            (root / split / sub).mkdir(parents=True)
        for i in range(n):
            np.save(root / split / "image" / f"{i}.npy", rng.random((h, w, 3)).astype(np.float32))
            label = rng.integers(-1, 7, (h, w)).astype(np.float32)
            np.save(root / split / "label_7" / f"{i}.npy", label)
            depth = rng.random((h, w, 1)).astype(np.float32)
            depth[0, 0, 0] = 0.0  # a pixel without depth
            np.save(root / split / "depth" / f"{i}.npy", depth)


def test_cityscapes_reads_the_mtan_npy_layout(tmp_path):
    _write_cityscapes(tmp_path)
    dm = CityScapes(root=str(tmp_path), height=8, width=16, batch_size=2, eval_batch_size=2)
    assert (len(dm.split("train")), len(dm.split("val")), len(dm.split("test"))) == (3, 2, 2)
    image, targets = dm.split("train")[1]
    assert image.shape == (3, 8, 16) and image.dtype == torch.float32
    np.testing.assert_allclose(image.numpy(), np.moveaxis(np.load(tmp_path / "train/image/1.npy"), -1, 0))
    assert targets[1].dtype == torch.int64 and targets[1].min() >= -1 and targets[1].max() <= 6
    assert targets[2].shape == (1, 8, 16)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (2, 3, 8, 16) and y[1].shape == (2, 8, 16) and y[2].shape == (2, 1, 8, 16)
    # the SegNet-style model gives per-pixel outputs for both tasks, and their losses are finite
    model = MTLModel(SegNetBackbone(dm.input_shape, channels=(4, 8)), dm.tasks)
    out = model(x)
    assert out[1].shape == (2, 7, 8, 16) and out[2].shape == (2, 1, 8, 16)
    assert torch.isfinite(task_loss("segmentation", out[1], y[1])) and torch.isfinite(task_loss("depth", out[2], y[2]))


def test_cityscapes_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        CityScapes(root=str(tmp_path / "nope")).setup()
    _write_cityscapes(tmp_path, h=8, w=16)
    with pytest.raises(DataError, match="images are"):
        CityScapes(root=str(tmp_path), height=16, width=16).setup()
    (tmp_path / "val" / "depth").rename(tmp_path / "val" / "depth_gone")
    with pytest.raises(DataError, match="depth"):
        CityScapes(root=str(tmp_path), height=8, width=16).setup()


def test_heads_follow_the_task_kind_and_dense_needs_segnet():
    tasks = {1: MTLTaskSpec("a", "classification", 10), 2: MTLTaskSpec("b", "regression", 3)}
    for backbone in (MLPBackbone((1, 8, 16), hidden=[16]), CNNBackbone((1, 8, 16), channels=[4], hidden=8)):
        out = MTLModel(backbone, tasks)(torch.randn(5, 1, 8, 16))
        assert out[1].shape == (5, 10) and out[2].shape == (5, 3)
    with pytest.raises(ValueError, match="dense backbone"):
        MTLModel(MLPBackbone((3, 8, 8)), {1: MTLTaskSpec("s", "segmentation", 7)})
    with pytest.raises(ValueError, match="vector backbone"):
        MTLModel(SegNetBackbone((3, 8, 8), channels=(4,)), tasks)
