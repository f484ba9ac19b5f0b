"""Published lists as baselines: a learned list against opt_list on the same held-out tasks.

``hparam_list.reference_lists: {opt_list: 20}`` asks HPARAM_LIST to also record the first
20 entries of the built-in list ``opt_list`` (or of any list a search space can name, see
:mod:`taskset_lab.optim.search_space`) on the same task set, with the same collection
settings. A curve store holds one collection, so a reference list's curves live in a
nested store ``<curves_dir>/lists/<name>`` -- unless every entry asked for is a config of the
collection itself (:func:`collection_ids`: opt_list's entries are ``nadamw_grid`` configs, so
a collection of TaskSet's 1000 ``nadamw_grid`` configs holds all of them): then the entries'
curves are the collection's own, read in the list's order, and nothing more is collected.

Both collections are **normalized together**: each task's ``init`` and ``best`` come from
the runs of the sampled configs and of the reference entries at once, so a value of 0 is
the best any of them reached. In the evaluation, the reference list is tried in its own
order on each fold's held-out tasks (it learns nothing from the training tasks), and the
speedup table gives how many of its entries are needed to match the learned list at k.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

log = logging.getLogger(__name__)

#: reference list j's entry k gets config id ``(j + 1)·REF_ID_BASE + k`` while normalizing
REF_ID_BASE = 1_000_000
LISTS_DIR = "lists"


def reference_store(store: str | Path, name: str) -> Path:
    """Where the curves of reference list ``name`` are kept, inside the curve store."""
    from taskset_lab.optim.search_space import resolve_search_space

    return Path(store) / LISTS_DIR / resolve_search_space(name).name


@lru_cache(maxsize=32)  # asked by the collection and again by the normalization of one run
def collection_ids(name: str, size: int, optimizer: str, seed_offset: int, num_configs: int) -> tuple[int, ...] | None:
    """The collection's config ids of the first ``size`` entries of list ``name``, in list order,
    when every one of them is a config the collection holds (same optimizer family, equal
    hparams): opt_list's entries are ``nadamw_grid`` configs, so a collection of TaskSet's 1000
    ``nadamw_grid`` configs holds all of them and needs no second collection. ``None`` otherwise."""
    import json

    from taskset_lab.optim.search_space import resolve_search_space

    space = resolve_search_space(name)
    if space.family.name != optimizer or (space.size is not None and space.size < size):
        return None
    collection = resolve_search_space(optimizer, int(seed_offset))
    key = {json.dumps(dict(collection.hparams(j)), sort_keys=True): j for j in range(int(num_configs))}
    ids = [key.get(json.dumps(dict(space.hparams(i)), sort_keys=True)) for i in range(int(size))]
    return None if any(i is None for i in ids) else tuple(int(i) for i in ids)


def from_collection(curves: pd.DataFrame, runs: pd.DataFrame, ids: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A reference list's curves and runs taken from the collection: the rows of config
    ``ids[k]`` relabelled as entry ``k``."""
    rank = {cid: k for k, cid in enumerate(ids)}
    out = []
    for frame in (curves, runs):
        part = frame[frame["config_id"].isin(rank)].copy()
        part["config_id"] = part["config_id"].map(rank).astype("int64")
        out.append(part)
    return out[0], out[1]


def combine_with_references(curves: pd.DataFrame, runs: pd.DataFrame, optimizer: str,
                            references: Mapping[str, tuple[pd.DataFrame, pd.DataFrame]],
                            ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, list[int]]]:
    """One curves/runs pair holding the sampled configs and every reference list's entries.

    Reference rows are relabelled ``optimizer`` with config ids ``(j + 1)·REF_ID_BASE + k``
    (k = the entry's rank), so :func:`normalized_losses` treats them as more configs of the
    same tasks. Returns the combined frames and each list's config ids in list order.
    """
    parts_c, parts_r = [curves[curves["optimizer"] == optimizer]], [runs[runs["optimizer"] == optimizer]]
    ids: dict[str, list[int]] = {}
    for j, (name, (ref_curves, ref_runs)) in enumerate(references.items()):
        base = (j + 1) * REF_ID_BASE
        if ref_curves.empty:
            raise ValueError(f"reference list {name} has no curves")
        if int(ref_curves["config_id"].max()) >= REF_ID_BASE:
            raise ValueError(f"reference list {name} has more than {REF_ID_BASE} entries")
        parts_c.append(ref_curves.assign(optimizer=optimizer, config_id=ref_curves["config_id"].astype("int64") + base))
        parts_r.append(ref_runs.assign(optimizer=optimizer, config_id=ref_runs["config_id"].astype("int64") + base))
        ids[name] = [base + int(k) for k in sorted(ref_curves["config_id"].unique())]
    both_c = pd.concat(parts_c, ignore_index=True)
    both_r = pd.concat(parts_r, ignore_index=True)
    both_c["config_id"] = both_c["config_id"].astype("int64")
    both_r["config_id"] = both_r["config_id"].astype("int64")
    return both_c, both_r, ids


def split_references(norm: pd.DataFrame, ids: Mapping[str, list[int]]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """The normalized losses of the sampled configs, and of each reference list with its
    config ids back to entry ranks (0 = the list's first entry)."""
    is_ref = norm["config_id"] >= REF_ID_BASE
    main = norm[~is_ref].reset_index(drop=True)
    main.attrs = dict(norm.attrs)
    refs = {}
    for j, name in enumerate(ids):
        base = (j + 1) * REF_ID_BASE
        part = norm[(norm["config_id"] >= base) & (norm["config_id"] < base + REF_ID_BASE)].copy()
        part["config_id"] = part["config_id"] - base
        part = part.reset_index(drop=True)
        part.attrs = dict(norm.attrs)
        refs[name] = part
    return main, refs


def normalize_with_references(store: str | Path, curves: pd.DataFrame, runs: pd.DataFrame, optimizer: str,
                              lists: Mapping[str, int], **norm_kwargs: Any) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Normalized losses of the store's configs and of the reference lists' first N entries,
    normalized together (``norm_kwargs`` go to :func:`normalized_losses`). Without reference
    lists this is :func:`normalized_losses` alone."""
    from taskset_lab.curves.store import read_curves, read_runs
    from taskset_lab.errors import DataError
    from taskset_lab.hparam_list.normalize import normalized_losses
    from taskset_lab.optim.search_space import resolve_search_space

    if not lists:
        return normalized_losses(curves, runs, optimizer=optimizer, **norm_kwargs), {}
    from taskset_lab.curves.store import read_manifest

    manifest = read_manifest(Path(store)) or {}
    loaded = {}
    for name, size in lists.items():
        ids = collection_ids(name, size, optimizer, int(manifest.get("config_seed_offset", 0) or 0),
                             int(manifest.get("num_configs", 0) or 0)) if manifest.get("optimizer") == optimizer else None
        if ids is not None:  # the list's entries are configs of the collection: their curves are here
            loaded[name] = from_collection(curves, runs, ids)
            continue
        label = resolve_search_space(name).name
        sub = reference_store(store, name)
        ref_c = read_curves(sub, optimizers=[label])
        ref_r = read_runs(sub, optimizers=[label])
        if ref_c.empty:
            raise DataError(f"no curves of reference list {name} in {sub}; run with collect_if_missing=true")
        tasks = set(curves["task"])
        keep = (ref_c["config_id"] < size) & ref_c["task"].isin(tasks)
        loaded[name] = (ref_c[keep], ref_r[(ref_r["config_id"] < size) & ref_r["task"].isin(tasks)])
        missing = sorted(set(curves["task"]) - set(ref_c["task"]))
        if missing:
            raise DataError(f"reference list {name} in {sub} lacks tasks {missing[:5]}; "
                            "run with collect_if_missing=true to complete it")
    both_c, both_r, ids = combine_with_references(curves, runs, optimizer, loaded)
    norm = normalized_losses(both_c, both_r, optimizer=optimizer, **norm_kwargs)
    return split_references(norm, ids)
