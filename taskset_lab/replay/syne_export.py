"""Export a curve store to Syne Tune's blackbox repository format (``BlackboxTabular``).

One blackbox per task, all sharing the store's configs (as Syne Tune's ``serialize``
requires), written by Syne Tune's own ``serialize`` so its ``deserialize`` reads it back:

* ``hyperparameters``: one row per config (config ids in order, also kept in the metadata),
  one column per hparam, as recorded;
* ``objectives_evaluations[config, seed, fidelity, objective]``: seeds are the store's
  replicas, fidelities its recorded steps (step 0, the loss at initialization, included), the
  objectives the split losses (NaN after a divergence, as stored) followed by
  ``elapsed_time``: measured seconds of the run times ``step / total_steps`` (NaN where the
  store recorded none);
* ``fidelity_space``: ``{"step": randint(0, total_steps)}``, ``fidelity_values`` the steps;
* ``configuration_space``: per hparam, ``loguniform``/``reverseloguniform``/``uniform`` over
  the recorded range (the scale inferred as HPARAM_LIST's TPE infers it), ``choice`` for
  booleans and strings, the value itself for a constant column.

Syne Tune stores the objectives as float32, which is exactly what the store holds for a
float32 collection.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from taskset_lab.errors import DataError
from taskset_lab.replay.arrays import StoreArrays, store_arrays

FIDELITY = "step"
ELAPSED = "elapsed_time"


def configuration_space(hparams: pd.DataFrame) -> dict[str, Any]:
    """Syne Tune domains of the recorded hparams (see the module docstring)."""
    from syne_tune.config_space import choice, loguniform, reverseloguniform, uniform

    from taskset_lab.hparam_list.baselines import _transform

    space: dict[str, Any] = {}
    for name in hparams.columns:
        col = hparams[name]
        values = col.dropna().unique().tolist()
        if len(values) <= 1:
            space[str(name)] = values[0] if values else None
            continue
        if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
            space[str(name)] = choice(sorted(values, key=str))
            continue
        x = col.dropna().to_numpy(dtype=float)
        lo, hi = float(x.min()), float(x.max())
        scale = _transform(x)[1]
        if scale == "log" and lo > 0:
            space[str(name)] = loguniform(lo, hi)
        elif scale == "log1m" and 0 <= lo < hi < 1:
            space[str(name)] = reverseloguniform(lo, hi)
        else:
            space[str(name)] = uniform(lo, hi)
    return space


def to_blackboxes(arrays: StoreArrays) -> dict[str, Any]:
    """``{task: BlackboxTabular}`` of :class:`StoreArrays` (see the module docstring)."""
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import randint

    hp = arrays.hparams.reset_index(drop=True)
    if hp.duplicated().any():
        raise DataError("some configs have identical hparams; Syne Tune's tabular blackbox needs distinct rows")
    space = configuration_space(arrays.hparams)
    fidelity_space = {FIDELITY: randint(int(arrays.steps.min()), max(int(arrays.total_steps), int(arrays.steps.max())))}
    frac = arrays.steps.astype(float) / float(max(arrays.total_steps, 1))
    out = {}
    for i, task in enumerate(arrays.tasks):
        losses = np.moveaxis(arrays.losses[i], 2, 2)  # [C, R, S, splits]
        elapsed = arrays.seconds[i][:, :, None] * frac[None, None, :]  # [C, R, S]
        objectives = np.concatenate([losses.astype(np.float64), elapsed[..., None]], axis=-1)
        out[task] = BlackboxTabular(hyperparameters=hp, configuration_space=space, fidelity_space=fidelity_space,
                                    objectives_evaluations=objectives, fidelity_values=arrays.steps.copy(),
                                    objectives_names=[*arrays.splits, ELAPSED])
    return out


def export_syne_tune(store: str | os.PathLike, dest: str | os.PathLike, optimizer: str | None = None,
                     tasks: Sequence[str] | None = None, splits: Sequence[str] | None = None) -> Path:
    """Write the store (or ``tasks``/``optimizer``/``splits`` of it) as a Syne Tune tabular
    blackbox folder at ``dest``, readable by ``syne_tune.blackbox_repository.blackbox_tabular.deserialize``.

    The folder is written next to ``dest`` and moved into place when complete (a killed
    export leaves no half folder at ``dest``). Returns ``dest``.
    """
    from syne_tune.blackbox_repository.blackbox_tabular import serialize

    from taskset_lab.curves.store import read_manifest

    arrays = store_arrays(store, optimizer=optimizer, tasks=tasks, splits=splits)
    bbs = to_blackboxes(arrays)
    manifest = read_manifest(store) or {}
    metadata = {"source": "taskset_lab curve store", "store": str(store), "optimizer": arrays.optimizer,
                "config_ids": [int(c) for c in arrays.config_ids], "replicas": [int(r) for r in arrays.replicas],
                "task_families": dict(zip(arrays.tasks, arrays.families)), "splits": list(arrays.splits),
                "total_steps": int(arrays.total_steps),
                "collection": {k: v for k, v in manifest.items() if k not in ("tasks", "host", "created")}}
    return _write_folder(Path(dest), lambda tmp: serialize(bbs, str(tmp), metadata=metadata))


def _write_folder(dest: Path, write) -> Path:
    """Write a folder via ``write(tmp)`` into a sibling temporary folder, then move it to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        tmp.mkdir()
        write(tmp)
        if dest.exists():
            old = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.old"
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return dest
