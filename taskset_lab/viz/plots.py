"""Plots of a hparam-list evaluation: held-out normalized loss vs number of trials.

The ``*_series`` functions prepare exactly the numbers a figure draws (so they can be
checked without looking at pixels); the ``plot_*`` functions draw them with matplotlib's
Agg backend and return the PNG paths.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from taskset_lab.files import atomic_path

STYLE = {"list": ("learned list", "C0", "-"), "random": ("random search (expected)", "C1", "--"),
         "best_single": ("best single config", "C2", ":"), "tpe": ("TPE", "C3", "-."),
         "opt_list": ("opt_list (published)", "C4", "-")}


def trials_series(evaluation: pd.DataFrame, scheme: str = "cv") -> dict[str, dict[str, np.ndarray]]:
    """Per method: ``k`` and the mean, min and max over the folds of ``scheme`` (sorted by k)."""
    part = evaluation[evaluation["scheme"] == scheme]
    out: dict[str, dict[str, np.ndarray]] = {}
    for method in [m for m in STYLE if m in set(part["method"])]:
        g = part[part["method"] == method].groupby("k")["value"]
        stats = g.agg(["mean", "min", "max"]).sort_index()
        out[method] = {"k": stats.index.to_numpy(dtype=int), "mean": stats["mean"].to_numpy(),
                       "low": stats["min"].to_numpy(), "high": stats["max"].to_numpy()}
    return out


def family_series(evaluation: pd.DataFrame) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Leave-one-family-out curves: ``{family: {method: {"k", "value"}}}`` (families sorted)."""
    part = evaluation[evaluation["scheme"] == "lofo"]
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for family in sorted(part["held_out_family"].dropna().astype(str).unique()):
        rows = part[part["held_out_family"].astype(str) == family]
        out[family] = {}
        for method in [m for m in STYLE if m in set(rows["method"])]:
            r = rows[rows["method"] == method].sort_values("k")
            out[family][method] = {"k": r["k"].to_numpy(dtype=int), "value": r["value"].to_numpy(dtype=float)}
    return out


def pyplot():
    """matplotlib's pyplot on the Agg backend (no screen needed) unless one is already chosen."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _draw(ax, series: dict[str, dict[str, np.ndarray]], value_key: str = "mean") -> None:
    for method, s in series.items():
        label, color, style = STYLE[method]
        ax.plot(s["k"], s[value_key], style, color=color, label=label, lw=1.8)
        if "low" in s and len(s["k"]) > 1 and np.any(s["high"] > s["low"]):
            ax.fill_between(s["k"], s["low"], s["high"], color=color, alpha=0.15, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("trials")
    ax.grid(True, which="both", alpha=0.3)


def save_figure(fig, path: str | Path, dpi: int, tight_layout: bool = True, bbox_inches: str | None = None) -> Path:
    """Lay out (``tight_layout``), write atomically (creating its folder; the format follows the
    suffix) and close a figure."""
    if tight_layout:
        fig.tight_layout()
    path = Path(path)
    try:
        with atomic_path(path, keep_suffix=True) as tmp:  # savefig reads the format from the suffix
            fig.savefig(tmp, dpi=dpi, bbox_inches=bbox_inches)
    finally:
        pyplot().close(fig)
    return path


def plot_trials(evaluation: pd.DataFrame, path: str | Path, scheme: str = "cv") -> Path:
    """Held-out normalized loss vs trials for each method (mean over folds, band = min..max)."""
    series = trials_series(evaluation, scheme)
    if not series:
        raise ValueError(f"no rows of scheme {scheme!r} to plot")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    _draw(ax, series)
    n_folds = int(evaluation.loc[evaluation["scheme"] == scheme, "fold"].nunique())
    ax.set_ylabel("normalized loss (held-out tasks)")
    ax.set_title(f"best normalized loss after k trials ({scheme}, {n_folds} folds)")
    ax.legend()
    return save_figure(fig, path, dpi=110)


def plot_families(evaluation: pd.DataFrame, path: str | Path) -> Path | None:
    """One panel per held-out family (leave-one-family-out); None when there are no lofo rows."""
    series = family_series(evaluation)
    if not series:
        return None
    plt = pyplot()
    n = len(series)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (family, methods) in zip(axes.ravel(), series.items()):
        _draw(ax, methods, value_key="value")
        ax.set_title(f"held out: {family}")
        ax.set_ylabel("normalized loss")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes.ravel()[0].legend(fontsize="small")
    return save_figure(fig, path, dpi=100)


def plot_hparam_list_results(evaluation: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """All figures of an evaluation into ``out_dir``: ``trials_<scheme>.png`` and ``families.png``."""
    out = Path(out_dir)
    paths = [plot_trials(evaluation, out / f"trials_{scheme}.png", scheme)
             for scheme in sorted(evaluation["scheme"].unique())]
    fam = plot_families(evaluation, out / "families.png")
    if fam is not None:
        paths.append(fam)
    return paths
