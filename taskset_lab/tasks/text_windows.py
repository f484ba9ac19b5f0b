"""TaskSet's text batches: ``patch_length``-token windows of a tokenized corpus
(:class:`taskset_lab.data.taskset_text.Corpus`), as a task's :class:`TaskData`."""

from __future__ import annotations

import torch
from torch import Tensor

from taskset_lab.data.taskset_text import Corpus, seed_of
from taskset_lab.tasks.base import SPLITS, Batch, TaskData, block_indices


class TextWindowData(TaskData):
    """Batches of ``patch_length``-token windows, one per sampled example (TaskSet's
    ``random_slice_text_data``): the start is uniform in ``{0, …, len − patch_length − 1}``
    when ``len > patch_length`` (TF's exclusive maxval), else 0; short examples are
    right-padded with 0. Example indices and starts are drawn per block of steps from
    generators seeded by (seed, split, block), so a batch is a pure function of
    (seed, split, step). Examples are drawn with replacement (TaskSet shuffles per epoch).
    Batches: ``(text [B, T] int64,)`` or ``(text, label [B])`` when ``labels``."""

    BLOCK = 256

    def __init__(self, splits: dict[str, Corpus], patch_length: int, batch_size: int, seed: int = 0,
                 labels: bool = False):
        missing = [s for s in SPLITS if s not in splits or len(splits[s]) < 1]
        if missing:
            raise ValueError(f"TextWindowData needs non-empty splits {SPLITS}; missing {missing}")
        self.splits = splits
        self.patch_length, self.batch_size = int(patch_length), int(batch_size)
        self.seed, self.labels = int(seed), bool(labels)
        self._blocks: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}

    @property
    def device(self) -> torch.device:
        return self.splits["train"].tokens.device

    def _block(self, split: str, block: int) -> tuple[Tensor, Tensor]:
        key = (split, block)
        hit = self._blocks.get(key)
        if hit is None:
            n = len(self.splits[split])
            idx = block_indices(self.seed, split, block, n, self.batch_size, self.device)
            gen = torch.Generator(device=self.device)
            gen.manual_seed(seed_of("window", self.seed, split, block))
            u = torch.rand((self.BLOCK, self.batch_size), generator=gen, dtype=torch.float64, device=self.device)
            if len(self._blocks) > 64:
                self._blocks.clear()
            hit = self._blocks[key] = (idx, u)
        return hit

    def batch(self, split: str, step: int) -> Batch:
        block, row = divmod(int(step), self.BLOCK)
        idx_block, u_block = self._block(split, block)
        idx, u = idx_block[row], u_block[row]
        corpus = self.splits[split]
        t = self.patch_length
        begin = corpus.offsets[idx]
        length = corpus.offsets[idx + 1] - begin
        max_idx = length - t
        start = torch.where(max_idx > 0, torch.floor(u * max_idx.to(u.dtype)).to(torch.int64),
                            torch.zeros_like(max_idx))
        pos = start.unsqueeze(1) + torch.arange(t, device=self.device).unsqueeze(0)
        inside = pos < length.unsqueeze(1)
        flat = (begin.unsqueeze(1) + pos).clamp(max=max(corpus.tokens.shape[0] - 1, 0))
        text = torch.where(inside, corpus.tokens[flat].to(torch.int64), torch.zeros((), dtype=torch.int64,
                                                                                      device=self.device))
        if self.labels:
            return text, corpus.labels[idx]
        return (text,)

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> "TextWindowData":
        splits = {s: c.to(device) for s, c in self.splits.items()}
        return TextWindowData(splits, self.patch_length, self.batch_size, self.seed, self.labels)
