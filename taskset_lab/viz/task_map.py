"""The map of the tasks (TaskSet's appendix figure S1): each task of a curve store embedded
in 2-D from its vector of normalized losses over the store's shared configs.

Two tasks land together when the same configs are good and bad on both. The vector of a task
is its row of :func:`taskset_lab.hparam_list.normalize.loss_matrix` (the report split by
default, normalized as HPARAM_LIST does); the embedding is scikit-learn's t-SNE (``tsne``,
PCA-initialised, so deterministic for a seed) or UMAP (``umap``, when ``umap-learn`` is
installed). Outputs: a table (task, family, x, y, best config and its value), a PNG coloured
by family, and a self-contained HTML page whose points name the task and its best config on
hover.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from taskset_lab.errors import DataError, TasklabError
from taskset_lab.files import write_text_atomic

METHODS = ("tsne", "umap")


def embed(matrix: np.ndarray, method: str = "tsne", seed: int = 0) -> np.ndarray:
    """``[T, 2]`` coordinates of the rows of ``matrix`` ``[T, C]``."""
    if method not in METHODS:
        raise TasklabError(f"unknown embedding method {method!r}; known: {', '.join(METHODS)}")
    n = int(matrix.shape[0])
    if n < 3:
        raise DataError(f"a map of the tasks needs at least 3 tasks, the store has {n}")
    if method == "umap":
        try:
            import umap  # type: ignore[import-not-found]
        except ImportError:
            raise TasklabError("method=umap needs umap-learn (pip install umap-learn); method=tsne needs "
                               "nothing more") from None
        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=int(seed))
        return np.asarray(reducer.fit_transform(matrix), dtype=float)
    from sklearn.manifold import TSNE

    perplexity = float(min(30.0, max(1.0, (n - 1) / 3.0)))  # must stay below the number of tasks
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=int(seed))
    return np.asarray(tsne.fit_transform(np.asarray(matrix, dtype=np.float64)), dtype=float)


def task_map(store: str | os.PathLike, method: str = "tsne", seed: int = 0, split: str = "report") -> pd.DataFrame:
    """One row per task of ``store``: ``task, task_family, x, y, best_config, best_value,
    best_hparams`` (the config with the lowest normalized loss on ``split`` and its hparams)."""
    from taskset_lab.curves.store import list_parts, read_curves, read_runs
    from taskset_lab.hparam_list.normalize import hparams_frame, loss_matrix, normalized_losses, task_families

    if not list_parts(store):
        raise DataError(f"curve store {store} holds no finished parts (run CURVES first)")
    curves, runs = read_curves(store), read_runs(store)
    norm = normalized_losses(curves, runs)
    tasks, config_ids, matrix = loss_matrix(norm, split)
    xy = embed(matrix, method, seed)
    hparams = hparams_frame(runs)
    best = matrix.argmin(axis=1)
    return pd.DataFrame({
        "task": tasks, "task_family": task_families(norm, tasks), "x": xy[:, 0], "y": xy[:, 1],
        "best_config": config_ids[best].astype(int), "best_value": matrix[np.arange(len(tasks)), best],
        "best_hparams": [json.dumps({k: _plain(v) for k, v in hparams.loc[int(c)].items()}, sort_keys=True)
                         for c in config_ids[best]],
    })


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value


def _colours(families: list[str]) -> dict[str, str]:
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["tab20"]
    return {f: to_hex(cmap(i % 20)) for i, f in enumerate(sorted(set(families)))}


def _atomic_text(path: Path, text: str) -> None:
    write_text_atomic(path, text)


def write_task_map(frame: pd.DataFrame, out_dir: str | os.PathLike, title: str = "TaskSet tasks") -> list[Path]:
    """``task_map.csv``, ``task_map.png`` and ``task_map.html`` in ``out_dir`` (atomically)."""
    from taskset_lab.viz.plots import pyplot, save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "task_map.csv"
    _atomic_text(csv_path, frame.to_csv(index=False))
    colours = _colours(list(frame["task_family"]))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 6))
    for family, part in frame.groupby("task_family"):
        ax.scatter(part["x"], part["y"], s=28, color=colours[str(family)], label=str(family), alpha=0.85)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"{title}: {len(frame)} tasks embedded by their normalized losses")
    ax.legend(fontsize=7, loc="best", frameon=False)
    png = save_figure(fig, out / "task_map.png", dpi=120)
    html_path = out / "task_map.html"
    _atomic_text(html_path, _html(frame, colours, title))
    return [csv_path, png, html_path]


def _html(frame: pd.DataFrame, colours: dict[str, str], title: str) -> str:
    """An SVG scatter in one HTML file: no scripts, no network; hover shows a point's <title>."""
    width, height, pad = 760, 560, 30
    x, y = frame["x"].to_numpy(), frame["y"].to_numpy()

    def scale(v: np.ndarray, size: int) -> np.ndarray:
        span = float(v.max() - v.min()) or 1.0
        return pad + (v - v.min()) / span * (size - 2 * pad)

    px, py = scale(x, width), height - scale(y, height)
    points = []
    for i, row in enumerate(frame.itertuples(index=False)):
        tip = (f"{row.task} ({row.task_family})\nbest config {row.best_config} "
               f"(normalized loss {row.best_value:.3f}): {row.best_hparams}")
        points.append(f'<circle cx="{px[i]:.1f}" cy="{py[i]:.1f}" r="5" fill="{colours[row.task_family]}" '
                      f'fill-opacity="0.85"><title>{html.escape(tip)}</title></circle>')
    legend = "".join(f'<li><span style="color:{c}">&#9679;</span> {html.escape(f)}</li>' for f, c in colours.items())
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body style='font-family:sans-serif'><h3>{html.escape(title)}: {len(frame)} tasks</h3>"
            f"<p>Each point is a task, placed by its normalized losses over the shared configs; hover for the "
            f"task and its best config.</p><svg width='{width}' height='{height}' "
            f"style='border:1px solid #ccc'>{''.join(points)}</svg><ul style='list-style:none'>{legend}</ul>"
            f"</body></html>\n")
