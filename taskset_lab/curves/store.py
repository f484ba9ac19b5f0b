"""The curve store: learning curves and run records as Parquet parts in a folder.

Layout::

    <store>/curves/<part>.parquet   one row per (task, config_id, replica, step)
    <store>/runs/<part>.parquet     one row per (task, config_id, replica)

with ``part = "<task>__<optimizer>__c<chunk:04d>__r<replica:02d>"`` (:func:`part_name`), and

    <store>/manifest.json           the collection settings, recorded once (:func:`ensure_manifest`)
    <store>/claims/<part>.claim     a lock held by the process computing that part
    <store>/damaged/                finished parts that failed verification, moved aside
Writing is atomic per file (a temporary file in the same folder, then ``os.replace``), the
runs file first and the curves file last, so a part is finished exactly when its curves file
exists; a killed writer leaves at most ``*.tmp`` files, which readers ignore.

A finished part is verified before it counts as done (:func:`part_done`): both files readable
and the expected numbers of rows (from the manifest); a damaged one is logged by path, moved
to ``damaged/`` and computed again. A writer whose settings differ from the manifest's is
refused (:class:`DataError`), so one store never mixes collections. Writers with the same
settings share the work: a part is computed only by the process holding its claim, an OS
lock (``fcntl``) that dies with its holder, so a killed writer never blocks a part; the claim
files such a writer leaves behind are removed by the next collection (:func:`clear_stale_claims`).

Reads go through ``pyarrow.dataset``: only the requested columns are read, and row filters
(task, family, optimizer, config id, replica) are pushed down; filters on task and optimizer
also skip whole part files by name before any file is opened.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from taskset_lab import files
from taskset_lab.errors import DataError
from taskset_lab.tasks.base import SPLITS

log = logging.getLogger(__name__)

CURVES_DIR = "curves"
RUNS_DIR = "runs"
CLAIMS_DIR = "claims"
DAMAGED_DIR = "damaged"
MANIFEST = "manifest.json"
# the settings that decide what a part holds: a store never mixes two values of any of them
PART_SETTINGS = ("optimizer", "num_configs", "config_seed_offset", "total_steps", "eval_every",
                 "eval_batches", "chunk_size", "dtype", "divergence_factor")
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


def part_done(store: str | os.PathLike, part: str) -> bool:
    """Whether ``part`` is finished: its curves file exists and passes :func:`verify_part`.

    A part that fails verification is logged by path, moved to ``damaged/`` and reported
    as not done, so the collection computes it again.
    """
    root = Path(store)
    if not (root / CURVES_DIR / f"{part}{SUFFIX}").is_file():
        return False
    problem = verify_part(root, part)
    if problem is None:
        return True
    log.warning("curve store %s: finished part %s is damaged (%s); it is moved to %s and computed again",
                root, root / CURVES_DIR / f"{part}{SUFFIX}", problem, root / DAMAGED_DIR)
    _quarantine(root, part)
    return False


def _eval_steps(total_steps: int, eval_every: int) -> int:
    """How many evaluations a run of ``total_steps`` has (step 0, every ``eval_every``, the end)."""
    steps = list(range(0, total_steps + 1, eval_every))
    return len(steps) + (steps[-1] != total_steps)


def _num_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def expected_rows(manifest: dict | None, part: str) -> tuple[int, int] | None:
    """(runs rows, curves rows) a finished ``part`` has under ``manifest``, or None if unknown."""
    if not manifest:
        return None
    try:
        chunk = int(part.split("__")[2][1:])
        n, size = int(manifest["num_configs"]), int(manifest["chunk_size"])
        configs = max(0, min(n, (chunk + 1) * size) - chunk * size)
        return configs, configs * _eval_steps(int(manifest["total_steps"]), int(manifest["eval_every"]))
    except (KeyError, ValueError, IndexError, TypeError):
        return None


def verify_part(store: str | os.PathLike, part: str) -> str | None:
    """What is wrong with a finished part (unreadable file, missing runs, wrong row count), or None."""
    root = Path(store)
    curves, runs = root / CURVES_DIR / f"{part}{SUFFIX}", root / RUNS_DIR / f"{part}{SUFFIX}"
    if not runs.is_file():
        return f"its runs file {runs} is missing"
    rows = {}
    for label, path in (("curves", curves), ("runs", runs)):
        try:
            rows[label] = _num_rows(path)
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad file
            return f"{path} is not a readable Parquet file: {str(exc).splitlines()[0] if str(exc) else exc!r}"
    if rows["runs"] < 1 or rows["curves"] % rows["runs"]:
        return f"{rows['curves']} curve rows do not split into {rows['runs']} runs"
    expected = expected_rows(read_manifest(root), part)
    if expected is not None and (rows["runs"], rows["curves"]) != expected:
        return (f"{rows['runs']} runs and {rows['curves']} curve rows where the store's settings give "
                f"{expected[0]} and {expected[1]}")
    return None


def _quarantine(root: Path, part: str) -> None:
    """Move a damaged part's files to ``damaged/`` (kept for inspection, out of every read)."""
    target = root / DAMAGED_DIR
    target.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for sub in (CURVES_DIR, RUNS_DIR):  # the curves file (the "done" marker) first
        path = root / sub / f"{part}{SUFFIX}"
        try:
            os.replace(path, target / f"{sub}__{part}.{stamp}.{uuid.uuid4().hex[:6]}{SUFFIX}")
        except FileNotFoundError:  # another writer moved it already
            pass


# -- the manifest: a store's collection settings, recorded once --------------------------------
def read_manifest(store: str | os.PathLike) -> dict | None:
    """The store's manifest (its collection settings), or None for a store without one."""
    path = Path(store) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"curve store manifest {path} is unreadable: {exc}") from None


def _store_folder(store: str | os.PathLike) -> Path:
    root = Path(store)
    if root.exists() and not root.is_dir():
        raise DataError(f"curve store {root} is a file, not a folder (curves_dir must name a folder)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError):
        raise DataError(f"curve store {root}: a parent of it is a file, not a folder") from None
    return root


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return False
    return a == b


def manifest_differences(manifest: dict, settings: dict) -> list[str]:
    """``key=value (store: value)`` for each of :data:`PART_SETTINGS` where ``settings``
    differ from a store's ``manifest`` (numbers compared as numbers); empty when they agree."""
    return [f"{k}={settings[k]!r} (store: {manifest.get(k)!r})" for k in PART_SETTINGS
            if not _same(settings[k], manifest.get(k))]


def ensure_manifest(store: str | os.PathLike, settings: dict, tasks: Sequence[dict] = (),
                    replicas: int = 1) -> dict:
    """Record the collection ``settings`` in a new store, or check them against an existing one.

    ``settings`` holds :data:`PART_SETTINGS`; a store recorded with other values refuses the
    writer with a :class:`DataError` naming them. ``tasks`` (full task configs) and
    ``replicas`` are merged into the manifest, so it lists everything collected there.
    """
    import fcntl

    root = _store_folder(store)
    settings = {k: settings[k] for k in PART_SETTINGS}
    with open(root / ".manifest.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = read_manifest(root)
        if manifest is None:
            manifest = {"version": 1, **settings, "replicas": int(replicas), "tasks": [],
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "host": socket.gethostname()}
        else:
            diffs = manifest_differences(manifest, settings)
            if diffs:
                raise DataError(f"curve store {root} was collected with other settings: {', '.join(diffs)}; "
                                f"use another curves_dir, or the store's settings ({root / MANIFEST})")
        known = {json.dumps(t, sort_keys=True) for t in manifest["tasks"]}
        added = [t for t in tasks if json.dumps(t, sort_keys=True) not in known]
        if added or int(replicas) > int(manifest.get("replicas", 1)) or not (root / MANIFEST).is_file():
            manifest["tasks"] = [*manifest["tasks"], *[json.loads(json.dumps(t)) for t in added]]
            manifest["replicas"] = max(int(replicas), int(manifest.get("replicas", 1)))
            files.write_text_atomic(root / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


# -- claims: which process computes a part ----------------------------------------------------
def _claim_path(store: str | os.PathLike, part: str) -> Path:
    return Path(store) / CLAIMS_DIR / f"{part}.claim"


def claim_part(store: str | os.PathLike, part: str) -> bool:
    """Take ``part`` for this process: False when another live process holds it or it is done.

    The claim (:func:`taskset_lab.files.claim`) is an exclusive ``fcntl`` lock on
    ``claims/<part>.claim``; the OS drops it when the holder exits or is killed, so a dead
    writer's claim never blocks anyone. :func:`write_part` (or :func:`release_part`) gives it back.
    """
    return files.claim(_claim_path(store, part), done=lambda: part_done(store, part))


def release_part(store: str | os.PathLike, part: str) -> None:
    """Give back this process's claim on ``part`` (nothing if it holds none)."""
    files.release(_claim_path(store, part))


def clear_stale_claims(store: str | os.PathLike) -> list[str]:
    """Remove the claim files no live process holds; returns the parts they named.

    A claim file outlives its holder when the holder was killed after writing its part but
    before giving the claim back (:func:`write_part` writes the part, then releases); see
    :func:`taskset_lab.files.clear_stale_claims`.
    """
    cleared = files.clear_stale_claims(Path(store) / CLAIMS_DIR)
    if cleared:
        log.info("curve store %s: removed %d claims of writers that are gone", store, len(cleared))
    return cleared


def _atomic_write(table: pa.Table, path: Path) -> None:
    with files.atomic_path(path) as tmp:
        pq.write_table(table, tmp)


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
    release_part(root, part)


def list_parts(store: str | os.PathLike) -> list[str]:
    """Names of the finished parts of a store (sorted)."""
    folder = Path(store) / CURVES_DIR
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(SUFFIX)] for p in folder.iterdir() if p.name.endswith(SUFFIX))


def _families(root: Path) -> dict[str, str]:
    """Task name -> family as the collector recorded them in the manifest (empty without one)."""
    manifest = read_manifest(root) or {}
    return {t["name"]: t["family"] for t in manifest.get("tasks", [])
            if isinstance(t, dict) and isinstance(t.get("name"), str) and isinstance(t.get("family"), str)}


def _files(store: str | os.PathLike, sub: str, tasks: set[str] | None, task_families: set[str] | None,
           optimizers: set[str] | None) -> list[str]:
    """The files of the finished parts that may hold ``tasks`` / ``optimizers`` (by part name)
    and ``task_families`` (by the families the manifest records; names are never parsed). The
    ``task_family`` column, filtered when the files are read, has the final word."""
    root = Path(store)
    if not root.is_dir():
        raise DataError(f"curve store {root} does not exist")
    parts = list_parts(root)
    if not parts:
        raise DataError(f"curve store {root} holds no finished parts (no {CURVES_DIR}/*{SUFFIX} files)")
    families = _families(root) if task_families is not None else {}
    files = []
    for part in parts:
        parsed = parse_part_name(part)
        if parsed is not None:
            task, optimizer = parsed
            if tasks is not None and task not in tasks:
                continue
            if optimizers is not None and optimizer not in optimizers:
                continue
            if task in families and families[task] not in task_families:  # type: ignore[operator]
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
