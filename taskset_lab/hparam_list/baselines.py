"""Search baselines over the recorded configs: random search, the single best config, TPE.

All baselines choose among the same C recorded configs as the list and use the same rule:
after k trials, the config with the lowest *select* value among those tried is the one
kept (ties: the earliest tried), and its *report* value is what counts.

Random search is evaluated exactly, as the expectation over all orderings of the C configs
(k draws without replacement). With per-task values sorted ascending by select value,
``v_(1) <= ... <= v_(n)``, the chance that the kept config is the i-th is
``C(n-i, k-1) / C(n, k)``; these weights are built by a running product of ratios (no large
binomials). Configs that tie on the select value are equally likely to be the kept one, so
their report values are replaced by the tie group's mean before weighting (exact).
"""

from __future__ import annotations

import math
import warnings
from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
import pandas as pd


# ----------------------------------------------------------------------------- random search

def random_search_weights(n: int, ks: Sequence[int]) -> np.ndarray:
    """``W[i, j]``: probability that the i-th smallest of ``n`` values is the minimum of
    ``ks[j]`` draws without replacement (columns sum to 1)."""
    n = int(n)
    ks = np.asarray(ks, dtype=int)
    if n < 1:
        raise ValueError("need at least one config")
    if ks.size and (ks.min() < 1 or ks.max() > n):
        raise ValueError(f"trial counts must be in [1, {n}], got {ks.tolist()}")
    w = np.zeros((n, ks.size))
    i = np.arange(1, n)  # ratio w_{i+1} / w_i = (n - i - k + 1) / (n - i), i = 1..n-1
    for col, k in enumerate(ks):
        ratios = np.clip((n - i - k + 1) / (n - i), 0.0, None)
        w[:, col] = (k / n) * np.concatenate(([1.0], np.cumprod(ratios)))
    return w


def _sorted_report(select: np.ndarray, report: np.ndarray) -> np.ndarray:
    """Report values ordered by ascending select value per row, tie groups averaged."""
    order = np.argsort(select, axis=1, kind="stable")
    sel = np.take_along_axis(select, order, axis=1)
    rep = np.take_along_axis(report, order, axis=1)
    t, c = sel.shape
    new_group = np.ones((t, c), dtype=bool)
    new_group[:, 1:] = sel[:, 1:] != sel[:, :-1]
    if new_group.all():
        return rep
    gid = np.cumsum(new_group, axis=1) - 1 + (np.arange(t) * c)[:, None]
    flat = gid.ravel()
    sums = np.bincount(flat, weights=rep.ravel(), minlength=t * c)
    counts = np.bincount(flat, minlength=t * c)
    return (sums[flat] / counts[flat]).reshape(t, c)


def random_search_expectation(matrix: np.ndarray, ks: Sequence[int],
                              report: np.ndarray | None = None) -> np.ndarray:
    """Exact expected result of random search after each of ``ks`` trials, per task: ``[T, len(ks)]``.

    With ``report=None`` this is E[min of k values drawn without replacement] of each row of
    ``matrix``. With a ``report`` matrix of the same shape, ``matrix`` selects and the value
    is E[report value of the select-argmin among the k drawn].
    """
    sel = np.asarray(matrix, dtype=np.float64)
    if sel.ndim != 2:
        raise ValueError(f"matrix must be 2-D [tasks, configs], got shape {sel.shape}")
    if np.isnan(sel).any():
        raise ValueError("matrix holds NaN")
    rep = sel if report is None else np.asarray(report, dtype=np.float64)
    if rep.shape != sel.shape:
        raise ValueError(f"report shape {rep.shape} differs from matrix shape {sel.shape}")
    w = random_search_weights(sel.shape[1], ks)
    if report is None:
        return np.sort(sel, axis=1) @ w
    return _sorted_report(sel, rep) @ w


# ----------------------------------------------------------------------------- list / fixed orders

def order_curve(select: np.ndarray, report: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Per task, the report value of the select-argmin among the first k of ``order`` (ties: earliest):
    ``[T, len(order)]``."""
    sel = np.asarray(select, dtype=np.float64)[:, list(order)]
    rep = np.asarray(report, dtype=np.float64)[:, list(order)]
    t, k = sel.shape
    out = np.empty((t, k))
    best_sel = np.full(t, np.inf)
    best_rep = np.full(t, np.nan)
    for j in range(k):
        better = sel[:, j] < best_sel
        best_sel = np.where(better, sel[:, j], best_sel)
        best_rep = np.where(better, rep[:, j], best_rep)
        out[:, j] = best_rep
    return out


def single_best_config(select: np.ndarray) -> int:
    """The column with the lowest mean select value over the (training) tasks (ties: lowest index)."""
    mean = np.asarray(select, dtype=np.float64).mean(axis=0)
    return int(np.flatnonzero(mean <= mean.min())[0])


# ----------------------------------------------------------------------------- TPE

@contextmanager
def _quiet_optuna() -> Iterator[None]:
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _transform(x: np.ndarray) -> tuple[np.ndarray, str]:
    """Infer the scale of a numeric hparam column from its recorded values; return it applied.

    * ``"log"``: non-negative values whose positive part spans more than 10x and whose
      median sits in the lowest quarter of the linear range (log-distributed draws pile up
      near the bottom; a uniform column spanning 0.001..1 does not, and stays linear).
      Zeros are kept by an offset: ``log(x + m/10)``, ``m`` the smallest positive value.
    * ``"log1m"``: values in ``[0, 1)`` piled up near 1 whose ``1 - x`` spans more than 10x
      (momentum-like ``1 - loguniform``): ``log(1 - x)``.
    * ``"linear"`` otherwise.
    """
    lo, hi = x.min(), x.max()
    rel_median = (np.median(x) - lo) / (hi - lo)
    pos = x[x > 0]
    if lo >= 0 and pos.size >= 2 and pos.max() / pos.min() > 10 and rel_median < 0.25:
        offset = 0.0 if lo > 0 else pos.min() / 10
        return np.log(x + offset), "log"
    gap = 1.0 - x
    if lo >= 0 and hi < 1 and gap.max() / gap.min() > 10 and rel_median > 0.75:
        return np.log(gap), "log1m"
    return x, "linear"


class ConfigSpace:
    """The recorded configs embedded in a search space that TPE can propose in.

    Built from a hparams table (one row per config, one column per hparam):

    * bool and non-numeric columns are categorical;
    * numeric columns are continuous, on the scale :func:`_transform` infers (log for
      log-distributed ones), then rescaled to ``[0, 1]``;
    * constant columns are dropped.

    TPE proposes points in this ``[0, 1]`` space (one float per continuous hparam, one
    category per categorical one); a proposal is snapped to the nearest recorded config
    (Euclidean distance, a categorical mismatch counting 1).
    """

    def __init__(self, hparams: pd.DataFrame):
        if hparams.empty:
            raise ValueError("hparams table is empty")
        self.config_ids = np.asarray(hparams.index)
        self.continuous: list[str] = []
        self.categorical: dict[str, list] = {}
        self.log_columns: list[str] = []
        self.scales: dict[str, str] = {}
        unit: list[np.ndarray] = []
        for name in hparams.columns:
            col = hparams[name]
            if col.nunique(dropna=False) <= 1:
                continue
            if pd.api.types.is_bool_dtype(col) or not pd.api.types.is_numeric_dtype(col):
                cats = sorted(col.astype(str).unique())
                self.categorical[str(name)] = cats
                continue
            x = col.to_numpy(dtype=float)
            if np.isnan(x).any():
                x = np.where(np.isnan(x), np.nanmin(x), x)
            x, scale = _transform(x)
            if scale != "linear":
                self.log_columns.append(str(name))
            self.scales[str(name)] = scale
            lo, hi = x.min(), x.max()
            self.continuous.append(str(name))
            unit.append((x - lo) / (hi - lo))
        self._cat_values = {n: hparams[n].astype(str).to_numpy() for n in self.categorical}
        self.unit = np.stack(unit, axis=1) if unit else np.zeros((len(hparams), 0))
        onehots = [(self._cat_values[n][:, None] == np.asarray(c)[None, :]) / math.sqrt(2)
                   for n, c in self.categorical.items()]
        self.embedding = np.concatenate([self.unit, *onehots], axis=1) if onehots else self.unit
        columns = self.continuous + list(self.categorical)
        if not columns:
            raise ValueError("every hparam column is constant: nothing to search")

    def distributions(self) -> dict:
        """Optuna distributions of the search space."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution

        dists: dict = {n: FloatDistribution(0.0, 1.0) for n in self.continuous}
        dists.update({n: CategoricalDistribution(tuple(c)) for n, c in self.categorical.items()})
        return dists

    def params_of(self, row: int) -> dict:
        """The point of recorded config ``row`` (position, not id) in the search space."""
        params: dict = {n: float(self.unit[row, i]) for i, n in enumerate(self.continuous)}
        params.update({n: str(self._cat_values[n][row]) for n in self.categorical})
        return params

    def embed(self, params: dict) -> np.ndarray:
        """A proposal as a point comparable with :attr:`embedding`."""
        cont = [float(params[n]) for n in self.continuous]
        cats = [(np.asarray(c) == str(params[n])) / math.sqrt(2) for n, c in self.categorical.items()]
        return np.concatenate([np.asarray(cont, dtype=float), *cats]) if cats else np.asarray(cont, dtype=float)

    def nearest(self, params: dict, exclude: np.ndarray) -> int:
        """Position of the recorded config nearest to ``params`` among those not excluded."""
        d = ((self.embedding - self.embed(params)[None, :]) ** 2).sum(axis=1)
        d[exclude] = np.inf
        return int(np.argmin(d))


def tpe_search(space: ConfigSpace, select: np.ndarray, report: np.ndarray, n_trials: int,
               seed: int = 0, n_startup_trials: int = 10) -> tuple[np.ndarray, list[int]]:
    """TPE over the recorded configs of one task.

    ``select``/``report`` are the task's normalized values per config (in ``space`` row
    order). Each TPE proposal is snapped to the nearest untried recorded config; the asked
    trial is closed as failed and the snapped config is added as a completed trial with its
    select value, so TPE learns from what was really tried. Returns the best-so-far report
    value per trial (select-argmin, ties: earliest) and the tried positions.
    """
    import optuna

    c = len(space.config_ids)
    n_trials = min(int(n_trials), c)
    sel = np.asarray(select, dtype=float)
    rep = np.asarray(report, dtype=float)
    dists = space.distributions()
    with _quiet_optuna():
        sampler = optuna.samplers.TPESampler(seed=int(seed), n_startup_trials=int(n_startup_trials))
        study = optuna.create_study(direction="minimize", sampler=sampler)
        tried = np.zeros(c, dtype=bool)
        order: list[int] = []
        for _ in range(n_trials):
            trial = study.ask(dists)
            row = space.nearest(trial.params, tried)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            study.add_trial(optuna.trial.create_trial(params=space.params_of(row), distributions=dists,
                                                      value=float(sel[row])))
            tried[row] = True
            order.append(row)
    curve = order_curve(sel[None, :], rep[None, :], order)[0]
    return curve, order


def tpe_curves(hparams: pd.DataFrame, select: np.ndarray, report: np.ndarray, n_trials: int,
               seeds: Sequence[int] = (0, 1), n_startup_trials: int = 10) -> np.ndarray:
    """Best-so-far report value per trial of TPE on each task, mean over ``seeds``: ``[T, n_trials]``.

    ``hparams`` has one row per column of ``select``/``report`` (same order).
    """
    sel = np.asarray(select, dtype=float)
    rep = np.asarray(report, dtype=float)
    if len(hparams) != sel.shape[1]:
        raise ValueError(f"hparams has {len(hparams)} rows but the matrices have {sel.shape[1]} configs")
    space = ConfigSpace(hparams)
    n = min(int(n_trials), sel.shape[1])
    out = np.zeros((sel.shape[0], n))
    for t in range(sel.shape[0]):
        for s in seeds:
            curve, _ = tpe_search(space, sel[t], rep[t], n, seed=int(s) * 100_003 + t,
                                  n_startup_trials=n_startup_trials)
            out[t] += curve
    return out / max(1, len(seeds))


