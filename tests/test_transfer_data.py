"""TRANSFER's loaders on tiny files written in the real layouts (ImageNet's ImageFolder tree,
LM1B's tokenized shuffled / held-out files), and the Transformer's causality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from taskset_lab.errors import ConfigError, DataError
from taskset_lab.transfer import ImageDataModule, TextDataModule, TransformerLM
from taskset_lab.transfer.text_data import decode_bytes

COLORS = {"n01440764": (255, 0, 0), "n01443537": (0, 0, 255)}  # two ImageNet wnids


def write_imagefolder(root: Path, per_class: dict[str, int]) -> None:
    from PIL import Image

    for split, n in per_class.items():
        for wnid, color in COLORS.items():
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.zeros((12, 16, 3), np.uint8) + np.array(color, np.uint8)
                pixels[i % 12, :, 1] = 255  # images differ
                Image.fromarray(pixels).save(folder / f"{wnid}_{i}.JPEG", format="JPEG", quality=95)


def test_imagefolder_reads_imagenet_layout(tmp_path):
    write_imagefolder(tmp_path, {"train": 10, "val": 3})
    dm = ImageDataModule(source="imagefolder", root=str(tmp_path), image_size=8, batch_size=4,
                         eval_batch_size=6, valid_size=1000)
    info = dm.describe()
    assert info["num_classes"] == 2
    assert (info["train_examples"], info["valid_examples"], info["test_examples"]) == (18, 2, 6)
    train_idx, valid_idx = set(dm.splits["train"].indices), set(dm.splits["valid"].indices)
    assert not train_idx & valid_idx and len(train_idx | valid_idx) == 20  # held out, never trained on
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 8, 8) and x.dtype == torch.float32 and set(y.tolist()) <= {0, 1}
    valid_loader, test_loader = dm.val_dataloader()
    x, y = next(iter(test_loader))
    assert y.tolist() == [0, 0, 0, 1, 1, 1]  # val/<wnid>/ folders in sorted order
    # red images of class 0 are far above the ImageNet mean in the red channel, blue ones in blue
    assert (x[:3, 0].mean() > 1.5) and (x[3:, 2].mean() > 1.5) and (x[:3, 2].mean() < -1.0)


def test_imagefolder_missing_val_is_a_data_error(tmp_path):
    write_imagefolder(tmp_path, {"train": 2})
    with pytest.raises(DataError, match="val"):
        ImageDataModule(source="imagefolder", root=str(tmp_path)).setup()
    with pytest.raises(ConfigError, match="data.root"):
        ImageDataModule(source="imagefolder")


TRAIN_DIR = "training-monolingual.tokenized.shuffled"
HELDOUT_DIR = "heldout-monolingual.tokenized.shuffled"


def write_lm1b(root: Path) -> dict[str, str]:
    """Three tiny shards in LM1B's file names: tokenized sentences, one per line."""
    texts = {
        f"{TRAIN_DIR}/news.en-00001-of-00100": "The cat sat on the mat .\nIt was warm .\n" * 20,
        f"{TRAIN_DIR}/news.en-00002-of-00100": "Stocks rose 3 % on Monday , traders said .\n" * 20,
        f"{HELDOUT_DIR}/news.en.heldout-00000-of-00050": "Test sentence number one .\nAnd another one .\n" * 5,
        f"{HELDOUT_DIR}/news.en.heldout-00001-of-00050": "Validation text , naïve café .\n" * 5,
    }
    for name, text in texts.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    return texts


def test_lm1b_files_give_byte_windows_from_the_right_splits(tmp_path):
    texts = write_lm1b(tmp_path)
    dm = TextDataModule(source="lm1b", root=str(tmp_path), seq_len=16, batch_size=4, eval_batch_size=2,
                        eval_batches=2, seed=3)
    info = dm.describe()
    assert info["train_files"] == 2 and info["train_bytes"] == sum(len(t.encode()) for n, t in texts.items()
                                                                      if n.startswith(TRAIN_DIR))
    valid_loader, test_loader = dm.val_dataloader()
    test_bytes = texts[f"{HELDOUT_DIR}/news.en.heldout-00000-of-00050"].encode()
    valid_bytes = texts[f"{HELDOUT_DIR}/news.en.heldout-00001-of-00050"].encode()
    x, y = next(iter(test_loader))
    assert bytes(x[0].tolist()) == test_bytes[:16] and bytes(y[0].tolist()) == test_bytes[1:17]
    x, _ = next(iter(valid_loader))
    assert bytes(x.reshape(-1).tolist()) == valid_bytes[:32]  # UTF-8 bytes, "ï" is two tokens
    assert sum(len(b[0]) for b in valid_loader) == 2 * 2  # eval_batches x eval_batch_size windows
    batches = iter(dm.train_dataloader())
    train_text = [texts[n].encode() for n in texts if n.startswith(TRAIN_DIR)]
    for _ in range(3):
        x, y = next(batches)
        assert x.shape == (4, 16) and x.dtype == torch.int64 and torch.equal(x[:, 1:], y[:, :-1])
        for row, target in zip(x, y):
            window = bytes(row.tolist()) + bytes([int(target[-1])])
            assert any(window in t for t in train_text)  # every window lies inside one training file
    again = next(iter(TextDataModule(source="lm1b", root=str(tmp_path), seq_len=16, batch_size=4,
                                     seed=3).train_dataloader()))
    assert torch.equal(again[0], next(iter(dm.train_dataloader()))[0])  # the seed fixes the stream


def test_text_files_source_and_layout_errors(tmp_path):
    (tmp_path / "a.txt").write_text("hello world, " * 40)
    (tmp_path / "b.txt").write_text("held out text " * 10)
    dm = TextDataModule(source="files", train=[str(tmp_path / "a*.txt")], valid=str(tmp_path / "b.txt"),
                        test=str(tmp_path / "b.txt"), seq_len=8, batch_size=2, eval_batches=1)
    x, _ = next(iter(dm.val_dataloader()[1]))
    assert decode_bytes(x[0]) == "held out"
    with pytest.raises(DataError, match="train"):
        TextDataModule(source="lm1b", root=str(tmp_path / "missing"), seq_len=8).setup()
    with pytest.raises(ConfigError, match="tokenizer"):
        TextDataModule(source="pydoc", tokenizer="sentencepiece")


def test_transformer_is_causal():
    torch.manual_seed(0)
    model = TransformerLM(vocab_size=256, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_len=12).eval()
    ids = torch.randint(0, 256, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 256
    a, b = model(ids), model(changed)
    assert a.shape == (2, 12, 256)
    assert torch.allclose(a[:, :7], b[:, :7], atol=1e-5)  # positions before 7 never see tokens 7+
    assert not torch.allclose(a[:, 7:], b[:, 7:], atol=1e-3)
