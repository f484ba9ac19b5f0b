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


def wait_for_exit(run_dir: str | Path, timeout: float = 60.0) -> None:
    """Wait until the run file holds its exit record: W&B's service process may still be
    writing it after ``finish()`` returned (a loaded machine)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if any(r.WhichOneof("record_type") == "exit" for r in read_offline_records(run_dir)):
                return
        except (ValueError, FileNotFoundError):  # a record half written
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_dir}: the offline run file never got its exit record")
        time.sleep(0.2)


def offline_runs(folder: str | Path) -> list[Path]:
    """The offline run folders under ``folder`` (``<folder>/**/offline-run-*``), each finished."""
    runs = sorted(Path(folder).rglob("offline-run-*"))
    for run in runs:
        wait_for_exit(run)
    return runs


def read_offline_run(run_dir: str | Path) -> dict[str, Any]:
    """The run's name, group, job type and config (``config`` as logged, updates applied)."""
    info: dict[str, Any] = {"config": {}}
    for r in read_offline_records(run_dir):
        kind = r.WhichOneof("record_type")
        if kind == "run":
            info.update(name=r.run.display_name, group=r.run.run_group, job_type=r.run.job_type,
                        project=r.run.project)
            info["config"].update(_items(r.run.config.update))
        elif kind == "config":
            info["config"].update(_items(r.config.update))
    info["config"].pop("_wandb", None)
    return info


def read_offline_artifacts(run_dir: str | Path) -> dict[str, dict[str, Any]]:
    """The artifacts the run logged, by name: ``{"type": ..., "files": {path: size}}``
    (W&B's own ``run_table`` artifacts included)."""
    out: dict[str, dict[str, Any]] = {}
    for r in read_offline_records(run_dir):
        if r.WhichOneof("record_type") == "artifact":
            a = r.artifact
            out[a.name] = {"type": a.type, "files": {c.path: int(c.size) for c in a.manifest.contents}}
    return out


def read_offline_files(run_dir: str | Path) -> set[str]:
    """The paths (under the run's ``files/``) the run saved or logged media to."""
    return {f.path for r in read_offline_records(run_dir) if r.WhichOneof("record_type") == "files"
            for f in r.files.files}


def read_offline_table(run_dir: str | Path, key: str):
    """The W&B table last logged as ``key``, as a pandas frame (from ``files/<path>``)."""
    import pandas as pd

    path = read_offline_summary(run_dir).get(f"{key}/path")
    if path is None:
        raise KeyError(f"{run_dir}: no table {key!r} logged")
    table = json.loads((Path(run_dir) / "files" / path).read_text())
    return pd.DataFrame(table["data"], columns=table["columns"])
