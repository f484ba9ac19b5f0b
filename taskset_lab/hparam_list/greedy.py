"""Greedy learning of an ordered hparam list.

Given normalized losses ``matrix[T, C]`` (tasks x configs), the list is built one entry at a
time: entry ``k`` is the column that minimizes the mean over tasks of
``min(best_so_far, column)``, where ``best_so_far`` is the per-task minimum over the
entries chosen before it. The objective after ``k`` entries is the mean best normalized loss
over the training tasks when trying the first ``k`` entries.

Rules:

* Ties (objectives within ``1e-12`` relative of the minimum) go to the lowest column index.
* A chosen column is never chosen again. Once no unchosen column improves the objective,
  the remaining entries are filled with the unchosen columns of lowest mean loss (ties to the
  lowest index): the list stays made of distinct configs and the objective stays flat.
* ``length`` may not exceed the number of columns.

The search is vectorized: every candidate column is scored at once with numpy, and
after the first entry only the rows of tasks the new entry improved are revisited.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import pandas as pd

from taskset_lab.hparam_list.normalize import SELECT, loss_matrix

_BLOCK_ELEMENTS = 1 << 22  # elements of the temporary [T, block] array per step


class GreedyList(NamedTuple):
    """The learned list (column indices, in order) and the objective after each entry."""

    indices: list[int]
    objective: list[float]


def _check_matrix(matrix: np.ndarray) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(f"matrix must be a non-empty 2-D [tasks, configs] array, got shape {m.shape}")
    if np.isnan(m).any():
        raise ValueError("matrix holds NaN; normalize (cap) the losses first")
    return m


def _pick_max(score: np.ndarray, scale: float) -> int:
    """Lowest index whose score is within tolerance of the maximum (-inf = excluded)."""
    top = score.max()
    return int(np.flatnonzero(score >= top - 1e-12 * max(1.0, abs(scale)))[0])


def candidate_gains(matrix: np.ndarray, best_so_far: np.ndarray) -> np.ndarray:
    """Mean over tasks of ``max(best_so_far - column, 0)`` for every column.

    The objective after adding column ``j`` is ``mean(best_so_far) - gain[j]``; a column
    that improves no task has a gain of exactly 0.
    """
    m = _check_matrix(matrix)
    t, c = m.shape
    out = np.empty(c)
    block = max(1, _BLOCK_ELEMENTS // t)
    buf = np.empty((t, min(block, c)))
    col = np.asarray(best_so_far, dtype=np.float64)[:, None]
    for start in range(0, c, block):
        stop = min(c, start + block)
        view = buf[:, : stop - start]
        np.subtract(col, m[:, start:stop], out=view)
        np.maximum(view, 0.0, out=view)
        out[start:stop] = view.sum(axis=0)
    return out / t


def learn_greedy_list(matrix: np.ndarray, length: int) -> GreedyList:
    """Greedy ordered list of ``length`` distinct column indices and its training objective.

    ``objective[k-1]`` is the mean over tasks (rows) of the best value among the first ``k``
    entries. See the module docstring for tie and fill rules.

    The gains of all candidates are kept up to date incrementally: adding an entry changes
    ``best_so_far`` only on the tasks it improves, so only those rows are revisited. When the
    top gain is near zero or near-tied, the gains are recomputed exactly before deciding, so
    the result equals the plain "score every column from scratch" greedy.
    """
    m = _check_matrix(matrix)
    t, c = m.shape
    length = int(length)
    if not 1 <= length <= c:
        raise ValueError(f"length must be in [1, {c}] (the number of configs), got {length}")
    mean_loss = m.mean(axis=0)
    chosen = np.zeros(c, dtype=bool)
    j = _pick_max(-mean_loss, mean_loss.min())
    indices, best = [j], m[:, j].copy()
    chosen[j] = True
    objective = [float(best.mean())]
    gains = candidate_gains(m, best) if length > 1 else np.zeros(c)
    for _ in range(length - 1):
        scale = objective[-1]
        tol = 1e-12 * max(1.0, abs(scale))
        masked = np.where(chosen, -np.inf, gains)
        j = _pick_max(masked, scale)
        if masked[j] <= 8 * tol or np.count_nonzero(masked >= masked[j] - 8 * tol) > 1:
            gains = candidate_gains(m, best)  # exact scores for a close call
            masked = np.where(chosen, -np.inf, gains)
            j = _pick_max(masked, scale)
        if not masked[j] > 0:
            # nothing improves any more: fill with the best-on-average unchosen columns
            j = _pick_max(np.where(chosen, -np.inf, -mean_loss), mean_loss.min())
        chosen[j] = True
        indices.append(j)
        rows = np.flatnonzero(m[:, j] < best)
        if rows.size:
            old, new = best[rows], m[rows, j]
            # each improved task's contribution to a column's gain shrinks from
            # max(old - v, 0) to max(new - v, 0): the difference is clip(old - v, 0, old - new)
            drop = np.clip(old[:, None] - m[rows], 0.0, (old - new)[:, None])
            gains -= drop.sum(axis=0) / t
            best[rows] = new
        objective.append(float(best.mean()))
    return GreedyList(indices, objective)


def list_objective(matrix: np.ndarray, indices: list[int] | np.ndarray) -> np.ndarray:
    """Mean over tasks of the best value among the first k entries of ``indices``, for each k."""
    m = _check_matrix(matrix)
    idx = np.asarray(indices, dtype=int)
    if idx.size == 0:
        return np.empty(0)
    return np.minimum.accumulate(m[:, idx], axis=1).mean(axis=0)


def learn_hparam_list(norm_df: pd.DataFrame, length: int) -> tuple[list[int], list[float]]:
    """Greedy list learned on all tasks of :func:`normalized_losses` output (select split).

    Returns ``(config_ids, objective_by_k)``; ``length`` is clamped to the number of configs.
    """
    _tasks, config_ids, select = loss_matrix(norm_df, SELECT)
    result = learn_greedy_list(select, min(int(length), select.shape[1]))
    return [int(config_ids[j]) for j in result.indices], result.objective
