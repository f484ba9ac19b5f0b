"""Plots of an MTL run: the layer x task rAU heatmap, and per-task test metrics over steps."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from taskset_lab.viz.plots import pyplot, save_figure


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=120, tight_layout=False, bbox_inches="tight")


def rau_heatmap(rau: dict[str, Sequence[float]], task_names: Sequence[str], path: Path, title: str = "") -> Path:
    """One row per shared layer, one column per task, cell = rAU (0…1; 1/T is balanced)."""
    plt = pyplot()
    import numpy as np

    layers = list(rau)
    data = np.array([list(rau[layer]) for layer in layers], dtype=float)
    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(task_names), 0.9 + 0.45 * len(layers)))
    im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(task_names)), labels=list(task_names), rotation=30, ha="right")
    ax.set_yticks(range(len(layers)), labels=layers)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", color="w" if data[i, j] < 0.6 else "k",
                    fontsize=8)
    fig.colorbar(im, ax=ax, label="rAU")
    ax.set_title(title or "relative accumulated update (rAU)")
    return _save(fig, path)


def metric_curves(metrics: pd.DataFrame, path: Path, split: str = "test") -> Path:
    """One panel per task: its metrics on ``split`` against the step."""
    plt = pyplot()

    rows = metrics[(metrics["split"] == split) & (metrics["metric"] != "loss")]
    tasks = list(dict.fromkeys(rows["task_name"]))
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(3.2 * max(len(tasks), 1), 2.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for name, part in rows[rows["task_name"] == task].groupby("metric"):
            ax.plot(part["step"], part["value"], marker=".", label=name)
        ax.set_title(task)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    return _save(fig, path)
