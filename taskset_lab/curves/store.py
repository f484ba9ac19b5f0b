"""The curve store: learning curves and run records as Parquet parts in a folder.

Layout::

    <store>/curves/<part>.parquet   one row per (task, config_id, replica, step)
    <store>/runs/<part>.parquet     one row per (task, config_id, replica)

with ``part = "<task>__<optimizer>__c<chunk:04d>__r<replica:02d>"`` (:func:`part_name`).
Writing is atomic per file (a temporary file in the same folder, then ``os.replace``), the
runs file first and the curves file last, so a part is finished exactly when its curves file
exists; a killed writer leaves at most ``*.tmp`` files, which readers ignore.

Reads go through ``pyarrow.dataset``: only the requested columns are read, and row filters
(task, family, optimizer, config id, replica) are pushed down; filters on task and optimizer
also skip whole part files by name before any file is opened.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from taskset_lab.errors import DataError
from taskset_lab.tasks.base import SPLITS

CURVES_DIR = "curves"
RUNS_DIR = "runs"
SUFFIX = ".parquet"
KEY_COLUMNS = ("task", "task_family", "optimizer", "config_id", "replica", "step")
RUN_COLUMNS = ("task", "task_family", "task_config", "optimizer", "config_id", "replica", "hparams",
               "config_seed", "status", "diverged_step", "total_steps", "eval_every", "seconds", "device")

_INT_TYPES = {"config_id": pa.int32(), "replica": pa.int16(), "step": pa.int32(),
              "diverged_step": pa.int32(), "total_steps": pa.int32(), "eval_every": pa.int32(),
              "config_seed": pa.int64()}


def part_name(task: str, optimizer: str, chunk: int, replica: int) -> str:
    """The name of the part holding ``chunk`` of the configs of ``(task, optimizer)``, one replica."""
    for label, value in (("task", task), ("optimizer", optimizer)):
        if "__" in value or "/" in value or not value:
            raise ValueError(f"{label} name {value!r} must be non-empty without '__' or '/'")
    return f"{task}__{optimizer}__c{int(chunk):04d}__r{int(replica):02d}"


def parse_part_name(part: str) -> tuple[str, str] | None:
    """``(task, optimizer)`` from a part name, or None when it does not follow the pattern."""
    pieces = part.split("__")
    if len(pieces) != 4 or not pieces[2].startswith("c") or not pieces[3].startswith("r"):
        return None
    return pieces[0], pieces[1]


_TASK_NAME = re.compile(r"^(?P<family>.+)_[0-9a-f]{8}$")


def _family_of(task: str) -> str | None:
    """The family part of a task name ``<family>_<8 hex>`` (None for other names)."""
    match = _TASK_NAME.match(task)
    return match.group("family") if match else None


def part_done(store: str | os.PathLike, part: str) -> bool:
    """Whether ``part`` is finished (its curves file exists)."""
    return (Path(store) / CURVES_DIR / f"{part}{SUFFIX}").is_file()


def _atomic_write(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _to_table(df: pd.DataFrame) -> pa.Table:
    table = pa.Table.from_pandas(df, preserve_index=False)
    fields = []
    for f in table.schema:
        if f.name in _INT_TYPES:
            fields.append(pa.field(f.name, _INT_TYPES[f.name]))
        elif pa.types.is_large_string(f.type):
            fields.append(pa.field(f.name, pa.string()))
        else:
            fields.append(f)
    return table.cast(pa.schema(fields))


def write_part(store: str | os.PathLike, part: str, curves_df: pd.DataFrame, runs_df: pd.DataFrame) -> None:
    """Write a part atomically: runs file first, curves file (the "done" marker) last."""
    missing = [c for c in (*KEY_COLUMNS, *SPLITS) if c not in curves_df.columns]
    if missing:
        raise ValueError(f"curves of part {part} lack columns {missing}")
    root = Path(store)
    (root / CURVES_DIR).mkdir(parents=True, exist_ok=True)
    (root / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    _atomic_write(_to_table(runs_df), root / RUNS_DIR / f"{part}{SUFFIX}")
    _atomic_write(_to_table(curves_df), root / CURVES_DIR / f"{part}{SUFFIX}")


def list_parts(store: str | os.PathLike) -> list[str]:
    """Names of the finished parts of a store (sorted)."""
    folder = Path(store) / CURVES_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


def _files(store: str | os.PathLike, sub: str, tasks: set[str] | None, task_families: set[str] | None,
           optimizers: set[str] | None) -> list[str]:
    root = Path(store)
    if not root.is_dir():
        raise DataError(f"curve store {root} does not exist")
    parts = list_parts(root)
    if not parts:
        raise DataError(f"curve store {root} holds no finished parts (no {CURVES_DIR}/*{SUFFIX} files)")
    files = []
    for part in parts:
        parsed = parse_part_name(part)
        if parsed is not None:
            task, optimizer = parsed
            if tasks is not None and task not in tasks:
                continue
            if optimizers is not None and optimizer not in optimizers:
                continue
            family = _family_of(task)
            if task_families is not None and family is not None and family not in task_families:
                continue
        path = root / sub / f"{part}{SUFFIX}"
        if sub == RUNS_DIR and not path.is_file():
            raise DataError(f"curve store {root}: finished part {part} has no runs file {path}")
        files.append(str(path))
    return files


def _as_set(values: Iterable | None) -> set | None:
    if values is None:
        return None
    if isinstance(values, (str, int)):
        values = [values]
    return set(values)


def _filter(tasks: set | None, task_families: set | None, optimizers: set | None,
            config_ids: set | None, replicas: set | None) -> ds.Expression | None:
    expr = None
    for column, values in (("task", tasks), ("task_family", task_families), ("optimizer", optimizers),
                           ("config_id", config_ids), ("replica", replicas)):
        if values is None:
            continue
        term = ds.field(column).isin(sorted(values))
        expr = term if expr is None else expr & term
    return expr


def _locate_bad_file(files: Sequence[str], exc: Exception) -> DataError:
    """A DataError naming the first unreadable file among ``files``."""
    for f in files:
        try:
            pq.read_table(f)
        except Exception as err:  # noqa: BLE001 - any failure means unreadable
            return DataError(f"unreadable curve-store file {f}: {err}")
    return DataError(f"reading the curve store failed: {exc}")


def _read(files: list[str], columns: list[str], expr: ds.Expression | None) -> pd.DataFrame:
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    try:
        dataset = ds.dataset(files, format="parquet")
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several error types
        raise _locate_bad_file(files, exc) from exc
    unknown = [c for c in columns if c not in dataset.schema.names]
    if unknown:
        raise ValueError(f"unknown columns {unknown}; known: {', '.join(dataset.schema.names)}")
    try:
        table = dataset.to_table(columns=columns, filter=expr)
    except Exception as exc:  # noqa: BLE001
        raise _locate_bad_file(files, exc) from exc
    return table.to_pandas()


def read_curves(store: str | os.PathLike, tasks: Iterable[str] | str | None = None,
                task_families: Iterable[str] | str | None = None,
                optimizers: Iterable[str] | str | None = None,
                config_ids: Iterable[int] | int | None = None,
                splits: Iterable[str] | str | None = None,
                columns: Sequence[str] | None = None,
                replicas: Iterable[int] | int | None = None) -> pd.DataFrame:
    """Curves in long format, filtered; only the key columns plus the ``splits`` asked for
    (default all four) are read, or exactly ``columns`` when given."""
    t, f, o = _as_set(tasks), _as_set(task_families), _as_set(optimizers)
    if columns is None:
        wanted = list(SPLITS) if splits is None else [splits] if isinstance(splits, str) else list(splits)
        bad = [s for s in wanted if s not in SPLITS]
        if bad:
            raise ValueError(f"unknown splits {bad}; known: {', '.join(SPLITS)}")
        columns = [*KEY_COLUMNS, *wanted]
    files = _files(store, CURVES_DIR, t, f, o)
    return _read(files, list(columns), _filter(t, f, o, _as_set(config_ids), _as_set(replicas)))


def read_runs(store: str | os.PathLike, tasks: Iterable[str] | str | None = None,
              task_families: Iterable[str] | str | None = None,
              optimizers: Iterable[str] | str | None = None,
              config_ids: Iterable[int] | int | None = None,
              columns: Sequence[str] | None = None,
              replicas: Iterable[int] | int | None = None) -> pd.DataFrame:
    """The runs table of the finished parts (one row per task, config, replica), filtered."""
    t, f, o = _as_set(tasks), _as_set(task_families), _as_set(optimizers)
    files = _files(store, RUNS_DIR, t, f, o)
    return _read(files, list(columns or RUN_COLUMNS), _filter(t, f, o, _as_set(config_ids), _as_set(replicas)))
