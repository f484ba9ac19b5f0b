"""Data sources: embedded digits and pydoc text, text files, torchvision from hand-written files."""

from __future__ import annotations

import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from taskset_lab.data import (
    UNK_ID,
    VOCAB_SIZE,
    dataset_to_tensors,
    decode,
    encode,
    load_dataset,
    load_digits,
    load_text,
    pydoc_text,
    split_indices,
)
from taskset_lab.data.image import to_nchw
from taskset_lab.errors import DataError
from taskset_lab.tasks import SPLITS, build_task, sample_task_config

from small_tasks import conv_overrides


def test_digits_splits():
    splits = load_digits()
    assert tuple(splits) == SPLITS
    sizes = {s: len(splits[s][1]) for s in SPLITS}
    assert sizes == {"train": 1078, "valid_inner": 179, "valid_outer": 179, "test": 361}
    for x, y in splits.values():
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 8, 8) and len(x) == len(y)
        assert 0.0 <= x.min() and x.max() <= 1.0 and y.dtype == torch.int64
    assert set(splits["train"][1].tolist()) == set(range(10))
    assert splits["train"][0].max() == 1.0  # scaled by 16, not 255
    assert load_digits() is splits  # loaded once per process


def test_split_indices_disjoint_cover_and_fixed():
    parts = split_indices(100, [60, 10, 10, 20], seed=0)
    joined = torch.cat(parts)
    assert [len(p) for p in parts] == [60, 10, 10, 20]
    assert sorted(joined.tolist()) == list(range(100))
    assert all(torch.equal(a, b) for a, b in zip(parts, split_indices(100, [60, 10, 10, 20], seed=0)))
    assert not torch.equal(joined, torch.arange(100))  # shuffled
    with pytest.raises(ValueError):
        split_indices(10, [6, 6])


def test_vocabulary_round_trip_and_unknowns():
    text = "Hello, world!\n\tx = [1, 2]"
    ids = encode(text)
    assert ids.dtype == torch.uint8 and int(ids.max()) < UNK_ID and decode(ids) == text
    assert encode("é€a").tolist()[:2] == [UNK_ID, UNK_ID]
    assert VOCAB_SIZE == UNK_ID + 1 == 101


def test_pydoc_text_windows():
    seq_len = 32
    splits = load_text("pydoc", seq_len=seq_len)
    assert tuple(splits) == SPLITS
    text = pydoc_text()
    counts = {s: splits[s][0].shape[0] for s in SPLITS}
    assert counts["train"] > counts["test"] > counts["valid_inner"] > 0
    assert sum(counts.values()) * seq_len <= len(text)
    for inputs, targets in splits.values():
        assert inputs.dtype == targets.dtype == torch.int64 and inputs.shape[1] == seq_len
        assert torch.equal(inputs[:, 1:], targets[:, :-1])  # targets = inputs shifted by one
        assert int(inputs.max()) < VOCAB_SIZE
    assert decode(splits["train"][0][0]) == text[:seq_len]
    # held-out text lies after all training text: its first window is not training text
    test_start = decode(splits["test"][0][0])
    assert text.index(test_start) >= counts["train"] * seq_len


def test_text_file_source(tmp_path):
    path = tmp_path / "tiny.txt"
    path.write_text("abcdefghij" * 20)
    splits = load_text(f"file:{path}", seq_len=4)
    assert decode(splits["train"][0][0]) == "abcd" and decode(splits["train"][1][0]) == "bcde"
    assert decode(splits["train"][0][1]) == "efgh"
    with pytest.raises(DataError, match="missing.txt"):
        load_text(f"file:{tmp_path / 'missing.txt'}", seq_len=4)
    with pytest.raises(DataError, match="too short"):
        load_text(f"file:{path}", seq_len=50)


def test_named_text_from_data_dir(tmp_path):
    with pytest.raises(DataError) as err:
        load_text("lm1b", seq_len=8, data_dir=tmp_path)
    assert str(tmp_path / "lm1b") in str(err.value)
    folder = tmp_path / "lm1b" / "training"
    folder.mkdir(parents=True)
    (folder / "news.en-00002").write_text("second part. " * 30)
    (folder / "news.en-00001").write_text("first part. " * 30)
    splits = load_text("lm1b", seq_len=8, data_dir=tmp_path)
    assert decode(splits["train"][0][0]) == "first pa"  # files read in sorted order
    with pytest.raises(DataError, match="data_dir"):
        load_text("lm1b", seq_len=8)


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (the MNIST format): magic (ubyte type, ndim), big-endian dims, bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _write_mnist(root: Path, folder: str, n_train: int, n_test: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("name,folder", [("mnist", "MNIST"), ("fashion_mnist", "FashionMNIST")])
def test_torchvision_from_hand_written_idx_files(tmp_path, name, folder):
    arrays = _write_mnist(tmp_path, folder, n_train=50, n_test=12)
    splits = load_dataset(name, data_dir=tmp_path)
    assert tuple(splits) == SPLITS
    assert {s: len(splits[s][1]) for s in SPLITS} == {"train": 40, "valid_inner": 5, "valid_outer": 5,
                                                      "test": 12}
    for x, y in splits.values():
        assert x.dtype == torch.uint8 and x.shape[1:] == (1, 28, 28) and y.dtype == torch.int64
    # the official test split is kept as is; train+valid together are exactly the train file
    assert np.array_equal(splits["test"][0][:, 0].numpy(), arrays["t10k"][0])
    pooled = torch.cat([splits[s][0] for s in ("train", "valid_inner", "valid_outer")])[:, 0]
    rows = {bytes(img) for img in pooled.numpy()}
    assert rows == {bytes(img) for img in arrays["train"][0]}
    pooled_labels = torch.cat([splits[s][1] for s in ("train", "valid_inner", "valid_outer")])
    assert sorted(pooled_labels.tolist()) == sorted(arrays["train"][1].tolist())
    assert load_dataset(name, data_dir=tmp_path) is splits  # cached per (name, data_dir)


def test_missing_torchvision_data_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", data_dir=tmp_path / "nothing_here")
    assert str(tmp_path / "nothing_here") in str(err.value) and "download=true" in str(err.value)
    with pytest.raises(DataError, match="unknown image dataset"):
        load_dataset("imagenet21k")


def test_dataset_to_tensors_reads_items_and_arrays():
    from torchvision.datasets import FakeData

    fake = FakeData(size=6, image_size=(3, 10, 12), num_classes=4, transform=lambda img: 0)
    x, y = dataset_to_tensors(fake)
    assert x.shape == (6, 3, 10, 12) and x.dtype == torch.uint8 and y.dtype == torch.int64
    assert set(y.tolist()) <= set(range(4))
    assert fake.transform is not None  # transform restored after reading raw items
    # CIFAR keeps numpy [N, H, W, C]; SVHN [N, C, H, W]
    nhwc = np.arange(2 * 4 * 5 * 3, dtype=np.uint8).reshape(2, 4, 5, 3)
    x, y = dataset_to_tensors(SimpleNamespace(data=nhwc, targets=[1, 0]), layout="nhwc")
    assert x.shape == (2, 3, 4, 5) and x[1, 2, 3, 4] == nhwc[1, 3, 4, 2] and y.tolist() == [1, 0]
    assert torch.equal(to_nchw(x.numpy(), "nchw"), x)


@pytest.mark.parametrize("family", ["lab_mlp", "conv_pooling_family"])
def test_image_tasks_train_on_uint8_torchvision_data(tmp_path, family):
    # TaskSet's families take two validation splits of 5000 from the training images
    _write_mnist(tmp_path, "MNIST", n_train=40 if family == "lab_mlp" else 10_040, n_test=8)
    if family == "lab_mlp":
        overrides = {"dataset": "mnist", "batch_size": 4, "hidden": [8]}
    else:  # TaskSet's convnet: two 3x3 VALID convs, stride 2
        overrides = {**conv_overrides((4, 4), (2, 2), batch_size=4), "padding": ["VALID", "VALID"]}
    task = build_task(sample_task_config(family, 1, overrides), data_dir=str(tmp_path)).to("cpu", torch.float64)
    module = task.init_module(0).double()
    batch = task.data.batch("train", 0)
    assert batch[0].dtype == torch.uint8 and batch[0].shape == (4, 1, 28, 28)
    loss = task.forward_loss(module, batch)
    loss.backward()
    assert torch.isfinite(loss) and loss.dtype == torch.float64
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())


def test_task_data_seed_drives_batches():
    base = sample_task_config("lab_mlp", 3, {"batch_size": 16})
    a, b = build_task(base), build_task({**base, "data_seed": base["data_seed"] + 1})
    assert torch.equal(a.data.batch("train", 0)[1], build_task(base).data.batch("train", 0)[1])
    assert not torch.equal(a.data.batch("train", 0)[1], b.data.batch("train", 0)[1])


def test_corrupt_mnist_files_are_one_line_through_the_cli(tmp_path):
    """Garbage or truncated IDX files: one line naming the dataset and what to do, exit 2."""
    from conftest import run_tasklab

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        (raw / name).write_bytes(b"\x00\x00\x08\x03" + b"garbage" * 7)  # an IDX header, then junk
    out = run_tasklab(["pipeline=TRAIN", "index=train_mlp_digits", "task=mnist_mlp", "debug=train",
                       f"misc.data_dir={tmp_path / 'data'}", f"output_dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert "dataset 'mnist'" in lines[0] and "unreadable" in lines[0] and "misc.download=true" in lines[0]


def test_the_data_layer_does_not_import_the_task_layer():
    """Datasets and corpora (taskset_lab.data) sit below the tasks that batch them: no module of
    the data package imports taskset_lab.tasks, at the top or inside a function."""
    import ast

    import taskset_lab.data

    offenders = []
    for path in sorted(Path(taskset_lab.data.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names if n == "taskset_lab.tasks" or
                          n.startswith("taskset_lab.tasks.")]
    assert offenders == []
