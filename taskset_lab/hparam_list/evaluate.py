"""Held-out evaluation of a learned hparam list against search baselines.

Tasks are split two ways:

* ``cv``: k-fold cross-validation over tasks (seeded shuffle, folds as equal as possible);
* ``lofo``: leave-one-family-out, one fold per task family (skipped with one family).

For every fold the list is learned greedily on the training tasks' *select* matrix, and each
method is scored on the held-out tasks by the same rule: after k trials the config with the
lowest select value among those tried is kept (ties: the earliest tried) and its *report*
value counts. ``value`` is the mean of that over the held-out tasks.

Methods: ``list`` (the learned list, k = 1..length), ``random`` (exact expectation over
orderings of all C configs, k = 1..C), ``best_single`` (the config with the best mean select
value on the training tasks; more trials do not change it, k = 1..length), when asked,
``tpe`` (Optuna TPE snapped to the recorded configs, mean over seeds, k = 1..trials), and
one method per reference list (e.g. ``opt_list``: a published list tried in its own order,
k = 1..N; see :mod:`taskset_lab.hparam_list.references`).
Random search and TPE do not use the training tasks, so they are computed once per task and
averaged over each fold's held-out tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from taskset_lab.hparam_list.baselines import (
    order_curve,
    random_search_expectation,
    single_best_config,
    tpe_curves,
)
from taskset_lab.hparam_list.greedy import learn_greedy_list
from taskset_lab.hparam_list.normalize import REPORT, SELECT, loss_matrix, task_families

METHODS = ("list", "random", "best_single", "tpe")
EVAL_COLUMNS = ["scheme", "fold", "method", "k", "value", "n_tasks", "held_out_family"]


@dataclass
class Evaluation:
    """Tidy results: per-fold values, their summary over folds, and the speedup over random search."""

    evaluation: pd.DataFrame
    summary: pd.DataFrame
    speedup: pd.DataFrame
    lists: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    #: per reference list: its entries needed to match the learned list at k (``speedup_table``
    #: columns, ``random_*`` read as the reference's), with ``scheme`` and ``reference`` columns
    reference_speedup: pd.DataFrame = field(default_factory=pd.DataFrame)


def cv_folds(n_tasks: int, folds: int = 5, seed: int = 0) -> list[np.ndarray]:
    """Held-out task indices of each fold: a seeded shuffle cut into ``min(folds, n_tasks)`` parts."""
    if n_tasks < 2:
        raise ValueError(f"cross-validation needs at least 2 tasks, got {n_tasks}")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    perm = np.random.default_rng(seed).permutation(n_tasks)
    return [np.sort(part) for part in np.array_split(perm, min(int(folds), n_tasks))]


def lofo_folds(families: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """``(family, held-out task indices)`` per family, sorted by family; empty with fewer than 2 families."""
    fam = np.asarray([str(f) for f in families])
    names = sorted(set(fam.tolist()))
    if len(names) < 2:
        return []
    return [(name, np.flatnonzero(fam == name)) for name in names]


def speedup_table(list_curve: np.ndarray, random_curve: np.ndarray,
                  ks: Sequence[int] = (1, 3, 10, 30)) -> pd.DataFrame:
    """Random-search trials needed to match the list's value at each k, and the ratio to k.

    ``list_curve[k-1]`` and ``random_curve[k-1]`` are values after k trials. The trial count
    is the first crossing of the random curve below the list value, linearly interpolated
    between integer trial counts (at least 1). When random search never gets there,
    ``random_trials`` and ``speedup`` are NaN and the labels read ``>C`` / ``>C/k``.
    Ks beyond the list's length are left out.
    """
    lc, rc = np.asarray(list_curve, dtype=float), np.asarray(random_curve, dtype=float)
    n = rc.size
    rows = []
    for k in ks:
        k = int(k)
        if not 1 <= k <= lc.size:
            continue
        target = lc[k - 1]
        hit = np.flatnonzero(rc <= target + 1e-12)
        if hit.size == 0:
            trials, label = float("nan"), f">{n}"
            speed, speed_label = float("nan"), f">{n / k:.3g}"
        else:
            i = int(hit[0])
            if i == 0:
                trials = 1.0
            else:
                drop = rc[i - 1] - rc[i]
                trials = i + (float((rc[i - 1] - target) / drop) if drop > 0 else 1.0)
            speed = trials / k
            label, speed_label = f"{trials:.3g}", f"{speed:.3g}"
        rows.append({"k": k, "list_value": float(target), "random_trials": trials,
                     "random_trials_label": label, "speedup": speed, "speedup_label": speed_label})
    return pd.DataFrame(rows, columns=["k", "list_value", "random_trials", "random_trials_label",
                                       "speedup", "speedup_label"])


def _rows(scheme: str, fold: int, method: str, curve: np.ndarray, n_tasks: int,
          family: str | None) -> list[dict]:
    return [{"scheme": scheme, "fold": fold, "method": method, "k": k + 1, "value": float(v),
             "n_tasks": n_tasks, "held_out_family": family} for k, v in enumerate(curve)]


def evaluate_matrices(select: np.ndarray, report: np.ndarray, families: Sequence[str] | None = None,
                      length: int = 30, folds: int = 5, seed: int = 0, leave_one_family_out: bool = True,
                      hparams: pd.DataFrame | None = None, tpe_trials: int = 0,
                      tpe_seeds: int | Sequence[int] = 2, tpe_startup_trials: int = 10,
                      speedup_ks: Sequence[int] = (1, 3, 10, 30),
                      references: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Evaluation:
    """Cross-validated and leave-one-family-out evaluation on ``select``/``report`` ``[T, C]`` matrices.

    ``hparams`` (one row per column, same order) is needed only for TPE (``tpe_trials > 0``).
    ``references`` maps a list name to its ``(select, report)`` ``[T, N]`` matrices, columns
    in the list's order (same tasks as ``select``).
    """
    references = dict(references or {})
    for name, (r_sel, r_rep) in references.items():
        if np.shape(r_sel) != np.shape(r_rep) or np.ndim(r_sel) != 2 or np.shape(r_sel)[0] != np.shape(select)[0]:
            raise ValueError(f"reference {name}: select {np.shape(r_sel)} and report {np.shape(r_rep)} must be "
                             f"[{np.shape(select)[0]}, N]")
        if name in METHODS:
            raise ValueError(f"reference list name {name!r} clashes with a method name")
    sel = np.asarray(select, dtype=float)
    rep = np.asarray(report, dtype=float)
    if sel.shape != rep.shape or sel.ndim != 2:
        raise ValueError(f"select {sel.shape} and report {rep.shape} must be equal 2-D shapes")
    t, c = sel.shape
    length = min(int(length), c)
    random_all = random_search_expectation(sel, np.arange(1, c + 1), report=rep)  # [T, C]
    tpe_all = None
    if tpe_trials > 0:
        if hparams is None:
            raise ValueError("TPE needs the hparams table (one row per config)")
        seeds = list(range(tpe_seeds)) if isinstance(tpe_seeds, int) else list(tpe_seeds)
        tpe_all = tpe_curves(hparams, sel, rep, tpe_trials, seeds=[seed * 1000 + s for s in seeds],
                             n_startup_trials=tpe_startup_trials)

    splits: list[tuple[str, int, np.ndarray, str | None]] = [
        ("cv", i, held, None) for i, held in enumerate(cv_folds(t, folds, seed))]
    if leave_one_family_out and families is not None:
        splits += [("lofo", i, held, fam) for i, (fam, held) in enumerate(lofo_folds(families))]

    rows: list[dict] = []
    lists: dict[tuple[str, int], list[int]] = {}
    for scheme, fold, held, fam in splits:
        train = np.setdiff1d(np.arange(t), held)
        order = learn_greedy_list(sel[train], length).indices
        lists[(scheme, fold)] = order
        n = held.size
        rows += _rows(scheme, fold, "list", order_curve(sel[held], rep[held], order).mean(axis=0), n, fam)
        rows += _rows(scheme, fold, "random", random_all[held].mean(axis=0), n, fam)
        single = single_best_config(sel[train])
        rows += _rows(scheme, fold, "best_single", np.full(length, rep[held, single].mean()), n, fam)
        if tpe_all is not None:
            rows += _rows(scheme, fold, "tpe", tpe_all[held].mean(axis=0), n, fam)
        for name, (r_sel, r_rep) in references.items():
            r_sel, r_rep = np.asarray(r_sel, dtype=float), np.asarray(r_rep, dtype=float)
            curve = order_curve(r_sel[held], r_rep[held], list(range(r_sel.shape[1]))).mean(axis=0)
            rows += _rows(scheme, fold, name, curve, n, fam)
    evaluation = pd.DataFrame(rows, columns=EVAL_COLUMNS)
    summary = summarize(evaluation)
    speed = []
    for scheme in summary["scheme"].unique():
        part = summary[summary["scheme"] == scheme]
        lc = part[part["method"] == "list"].sort_values("k")["mean"].to_numpy()
        rc = part[part["method"] == "random"].sort_values("k")["mean"].to_numpy()
        table = speedup_table(lc, rc, speedup_ks)
        table.insert(0, "scheme", scheme)
        speed.append(table)
    speedup = pd.concat(speed, ignore_index=True) if speed else speedup_table([], [], ())
    ref_speed = []
    for scheme in summary["scheme"].unique():
        part = summary[summary["scheme"] == scheme]
        lc = part[part["method"] == "list"].sort_values("k")["mean"].to_numpy()
        for name in references:
            table = speedup_table(lc, part[part["method"] == name].sort_values("k")["mean"].to_numpy(), speedup_ks)
            table.insert(0, "reference", name)
            table.insert(0, "scheme", scheme)
            ref_speed.append(table)
    ref_speedup = pd.concat(ref_speed, ignore_index=True) if ref_speed else pd.DataFrame()
    return Evaluation(evaluation, summary, speedup, lists, ref_speedup)


def summarize(evaluation: pd.DataFrame) -> pd.DataFrame:
    """Mean, std, min and max over folds of each (scheme, method, k)."""
    g = evaluation.groupby(["scheme", "method", "k"], sort=True)["value"]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index()
    out = out.rename(columns={"count": "n_folds"})
    out["std"] = out["std"].fillna(0.0)
    return out


def evaluate_hparam_list(norm_df: pd.DataFrame, length: int = 30, folds: int = 5, seed: int = 0,
                         leave_one_family_out: bool = True, hparams: pd.DataFrame | None = None,
                         tpe_trials: int = 0, tpe_seeds: int | Sequence[int] = 2,
                         tpe_startup_trials: int = 10,
                         speedup_ks: Sequence[int] = (1, 3, 10, 30),
                         references: Mapping[str, pd.DataFrame] | None = None) -> Evaluation:
    """:func:`evaluate_matrices` on the output of :func:`normalized_losses`.

    ``hparams`` is indexed by config id (e.g. :func:`hparams_frame`); lists in the result are
    column indices into the sorted config ids. ``references`` maps a list name to its
    normalized losses (config id = rank in the list; see
    :func:`taskset_lab.hparam_list.references.normalize_with_references`).
    """
    tasks, config_ids, sel = loss_matrix(norm_df, SELECT)
    _, config_ids_r, rep = loss_matrix(norm_df, REPORT)
    if not np.array_equal(config_ids, config_ids_r):
        raise ValueError("select and report rows cover different configs")
    if hparams is not None:
        missing = sorted(set(config_ids.tolist()) - set(hparams.index.astype(int).tolist()))
        if missing:
            raise ValueError(f"hparams lack config ids {missing[:10]}")
        hparams = hparams.loc[config_ids]
    ref_matrices = {name: _reference_matrices(ref, tasks, name) for name, ref in (references or {}).items()}
    return evaluate_matrices(sel, rep, task_families(norm_df, tasks), length=length, folds=folds, seed=seed,
                             leave_one_family_out=leave_one_family_out, hparams=hparams,
                             tpe_trials=tpe_trials, tpe_seeds=tpe_seeds,
                             tpe_startup_trials=tpe_startup_trials, speedup_ks=speedup_ks,
                             references=ref_matrices)


def _reference_matrices(ref: pd.DataFrame, tasks: list[str], name: str) -> tuple[np.ndarray, np.ndarray]:
    """A reference list's select/report matrices on ``tasks`` (rows), its entries in order."""
    out = []
    for split in (SELECT, REPORT):
        ref_tasks, ids, matrix = loss_matrix(ref, split)
        if list(ids) != list(range(len(ids))):
            raise ValueError(f"reference {name}: entries must be ranks 0..N-1, got {list(ids)[:5]}...")
        missing = sorted(set(tasks) - set(ref_tasks))
        if missing:
            raise ValueError(f"reference {name} lacks tasks {missing[:5]}")
        index = {t: i for i, t in enumerate(ref_tasks)}
        out.append(matrix[[index[t] for t in tasks]])
    return out[0], out[1]
