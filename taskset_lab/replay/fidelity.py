"""Normalized losses at every fidelity: what a search strategy sees after paying for s steps.

HPARAM_LIST's normalized loss (:mod:`taskset_lab.hparam_list.normalize`) reduces a whole run
to one number per split. A multi-fidelity strategy instead sees a run's *prefix*: after
``s`` training steps it knows the evaluations at steps ``<= s`` and nothing later. For every
recorded step ``s > 0`` and every run:

* ``reduce="best"``: the select value is the lowest select loss among the prefix's
  evaluations, the report value the report loss at that evaluation (earliest on ties), so
  early stopping on the select split picks the checkpoint; ``reduce="final"``: both at ``s``.
* the run counts as diverged at ``s`` when the prefix holds a NaN/inf on the select or report
  split or its record says it diverged at a step ``<= s``; a diverged prefix gets ``cap``.
* the scale is the task's, fixed once from the whole store exactly as
  :func:`~taskset_lab.hparam_list.normalize.normalized_losses` fixes it (``init``: median
  step-0 loss over all runs; ``best``: the lowest reduced loss of a run that never diverged),
  then ``(loss - best) / (init - best)`` clipped to ``[0, cap]``; replicas averaged after.

So at the last step the values equal HPARAM_LIST's normalized losses (a test checks it), and
a value at step ``s`` depends on nothing recorded after ``s``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from taskset_lab.hparam_list.normalize import _normalize
from taskset_lab.replay.arrays import StoreArrays


@dataclass
class FidelityValues:
    """``select``/``report``: ``[T, C, F]`` normalized values at ``steps[f]`` (steps > 0)."""

    tasks: list[str]
    families: list[str]
    config_ids: np.ndarray
    steps: np.ndarray
    select: np.ndarray
    report: np.ndarray
    cap: float


def _prefix_reduce(sel: np.ndarray, rep: np.ndarray, reduce: str) -> tuple[np.ndarray, np.ndarray]:
    """Per prefix ``[..., S]`` -> the select value and the report value at the picked step."""
    if reduce == "final":
        return sel.copy(), rep.copy()
    key = np.where(np.isfinite(sel), sel, np.inf)
    best = np.minimum.accumulate(key, axis=-1)
    s = sel.shape[-1]
    idx = np.broadcast_to(np.arange(s), sel.shape)
    # index of the earliest evaluation reaching the running minimum
    improved = key < np.concatenate([np.full(sel.shape[:-1] + (1,), np.inf), best[..., :-1]], axis=-1)
    pick = np.maximum.accumulate(np.where(improved, idx, 0), axis=-1)
    return np.take_along_axis(np.where(np.isfinite(sel), sel, np.nan), pick, -1), np.take_along_axis(rep, pick, -1)


def fidelity_values(arrays: StoreArrays, select_split: str = "valid_inner", report_split: str = "test",
                    reduce: str = "best", cap: float = 1.5) -> FidelityValues:
    """Normalized select/report values of every config at every recorded step > 0 (module doc)."""
    if reduce not in ("best", "final"):
        raise ValueError(f"reduce must be 'best' or 'final', got {reduce!r}")
    for split in (select_split, report_split):
        if split not in arrays.splits:
            raise ValueError(f"split {split!r} was not read from the store (read: {arrays.splits})")
    sel = arrays.losses[..., arrays.splits.index(select_split)].astype(np.float64)  # [T, C, R, S]
    rep = arrays.losses[..., arrays.splits.index(report_split)].astype(np.float64)
    steps = arrays.steps
    t, c, r, s = sel.shape
    bad = ~np.isfinite(sel) | ~np.isfinite(rep)
    div_prefix = np.logical_or.accumulate(bad, axis=-1)  # [T, C, R, S]
    runs = arrays.runs
    if "status" in runs.columns and not runs.empty:
        flagged = runs[runs["status"] == "diverged"]
        if not flagged.empty:
            ti = np.searchsorted(arrays.tasks, flagged["task"].to_numpy())
            ci = np.searchsorted(arrays.config_ids, flagged["config_id"].to_numpy().astype(int))
            ri = np.searchsorted(arrays.replicas, flagged["replica"].to_numpy().astype(int))
            dstep = (flagged["diverged_step"].to_numpy() if "diverged_step" in flagged.columns
                     else np.full(len(flagged), -1))
            for a, b, k, d in zip(ti, ci, ri, dstep):
                at = np.ones(s, dtype=bool) if (d is None or not np.isfinite(d) or d < 0) else steps >= d
                div_prefix[a, b, k] |= at
    sel_red, rep_red = _prefix_reduce(sel, rep, reduce)
    diverged_run = div_prefix[..., -1]  # [T, C, R]: the whole run
    out = {}
    for name, red, raw in (("select", sel_red, sel), ("report", rep_red, rep)):
        init_all = raw[..., 0].reshape(t, -1)
        init = np.array([np.median(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in init_all])
        full = np.where(diverged_run, np.nan, red[..., -1]).reshape(t, -1)
        best = np.array([np.nanmin(row) if np.isfinite(row).any() else np.nan for row in full])
        values = np.where(div_prefix, np.nan, red)  # [T, C, R, S]
        codes = np.broadcast_to(np.arange(t)[:, None, None, None], values.shape).ravel()
        norm = _normalize(values.ravel(), codes, init, best, float(cap)).reshape(values.shape)
        out[name] = norm.mean(axis=2)[..., steps > 0]  # replicas averaged after normalizing
    return FidelityValues(tasks=list(arrays.tasks), families=list(arrays.families), config_ids=arrays.config_ids,
                          steps=steps[steps > 0], select=out["select"], report=out["report"], cap=float(cap))
