"""Plots of an optimizer evaluation (EVALUATE): performance profiles, per-family speedups and
the learning curves of a few tasks against tuned Adam's envelope. Each returns its PNG path."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from taskset_lab.viz.plots import pyplot, save_figure


def plot_profiles(taus: np.ndarray, rho: np.ndarray, names: Sequence[str], path: str | Path,
                  scores: Sequence[float] | None = None) -> Path:
    """AlgoPerf's performance profiles: ρ(τ), the fraction of tasks each optimizer reaches within
    τ times the fastest one's steps to target."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, name in enumerate(names):
        label = name if scores is None else f"{name} ({scores[i]:.3f})"
        ax.plot(taus, rho[i], label=label, lw=2.0 if name == "tuned_adam" else 1.4,
                ls="--" if name == "tuned_adam" else "-")
    ax.set_xlabel("τ (steps to target / fastest)")
    ax.set_ylabel("fraction of tasks")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("performance profiles (score in brackets)")
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path, dpi=120)


def plot_families(families: pd.DataFrame, path: str | Path) -> Path:
    """Median speedup over tuned Adam per task family, one bar per optimizer."""
    plt = pyplot()
    table = families.pivot(index="task_family", columns="optimizer", values="speedup_median")
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(table)), 4.2))
    width = 0.8 / max(1, table.shape[1])
    x = np.arange(len(table))
    for j, name in enumerate(table.columns):
        ax.bar(x + j * width - 0.4 + width / 2, table[name].to_numpy(dtype=float), width, label=name)
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(x, table.index, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("median speedup over tuned Adam")
    ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120)


def plot_task_curves(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                     envelopes: Mapping[str, tuple[np.ndarray, np.ndarray]], path: str | Path) -> Path:
    """For each task (at most a few): each optimizer's seed-mean training loss (``curves[task]
    [optimizer] = (steps, losses)``) and tuned Adam's envelope (``envelopes[task]``)."""
    plt = pyplot()
    tasks = list(curves)
    cols = min(2, len(tasks))
    rows = int(np.ceil(len(tasks) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.4 * rows), squeeze=False)
    for ax, task in zip(axes.ravel(), tasks):
        steps, env = envelopes[task]
        ax.plot(steps, env, "k--", lw=1.6, label="tuned Adam (envelope over learning rates)")
        for name, (s, loss) in curves[task].items():
            ax.plot(s, loss, lw=1.2, label=name)
        ax.set_title(task, fontsize=8)
        ax.set_xlabel("step")
        ax.set_ylabel("train loss (EMA, as scored)")
        finite = np.concatenate([env[np.isfinite(env)]] + [v[1][np.isfinite(v[1])] for v in curves[task].values()])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 30:
            ax.set_yscale("log")
    for ax in axes.ravel()[len(tasks):]:
        ax.axis("off")
    axes.ravel()[0].legend(fontsize=6)
    return save_figure(fig, path, dpi=110)
