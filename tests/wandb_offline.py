"""Read back what an offline W&B run logged (``WANDB_MODE=offline``), with no network.

An offline run keeps its records in ``run-<id>.wandb``: a LevelDB-style log (a 7-byte
header, then 32 KiB blocks of records ``crc32c(4) length(2, little-endian) type(1) data``,
a record split over blocks as FIRST/MIDDLE/LAST pieces) whose payloads are
``wandb_internal_pb2.Record`` protobufs. A test helper (the tests check what the loggers
wrote); uploading is ``wandb sync``'s job.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Iterator

HEADER_SIZE = 7
BLOCK_SIZE = 32 * 1024
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def _payloads(path: Path) -> Iterator[bytes]:
    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file")
    pos, pending = HEADER_SIZE, b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK_SIZE - (pos % BLOCK_SIZE)
        if left_in_block < RECORD_HEADER:  # block padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER])
        chunk = data[pos + RECORD_HEADER:pos + RECORD_HEADER + length]
        pos += RECORD_HEADER + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:  # zero fill at the end of a block
            pos += left_in_block - RECORD_HEADER
        else:
            raise ValueError(f"{path}: unknown record type {kind} at byte {pos}")


def run_file(run_dir: str | Path) -> Path:
    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    return files[0]


def read_offline_records(run_dir: str | Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    for payload in _payloads(run_file(run_dir)):
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _items(items) -> dict[str, Any]:
    out = {}
    for item in items:
        key = item.key or "/".join(item.nested_key)
        out[key] = json.loads(item.value_json)
    return out


def read_offline_history(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows the run logged with ``log`` (one dict per history step)."""
    return [_items(r.history.item) for r in read_offline_records(run_dir)
            if r.WhichOneof("record_type") == "history"]


def read_offline_summary(run_dir: str | Path) -> dict[str, Any]:
    """The run summary: the last value of each key, plus what was set on ``run.summary``."""
    summary: dict[str, Any] = {}
    for r in read_offline_records(run_dir):
        kind = r.WhichOneof("record_type")
        if kind == "summary":
            summary.update(_items(r.summary.update))
        elif kind == "history":
            summary.update(_items(r.history.item))
    return summary
