"""The map of the tasks: a store's tasks embedded by their normalized losses (deterministic
for a seed; tasks whose curves are identical land together), and the TASKS CLI around it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import run_tasklab
from taskset_lab.curves import part_name, write_part
from taskset_lab.errors import TasklabError
from taskset_lab.tasks import SPLITS
from taskset_lab.viz.task_map import embed, task_map, write_task_map

CONFIGS = list(range(12))


def _part(store, task: str, family: str, finals: np.ndarray) -> None:
    """One part: every config starts at 1.0 and ends (step 10) at its value in ``finals``."""
    steps = np.array([0, 10], dtype=np.int32)
    values = np.stack([np.ones_like(finals), finals], axis=1).reshape(-1).astype(np.float32)
    curves = pd.DataFrame({
        "task": task, "task_family": family, "optimizer": "adam1p",
        "config_id": np.repeat(np.asarray(CONFIGS, dtype=np.int32), 2), "replica": np.int16(0),
        "step": np.tile(steps, len(CONFIGS)), **{s: values for s in SPLITS},
    })
    runs = pd.DataFrame({
        "task": task, "task_family": family, "task_config": "{}", "optimizer": "adam1p",
        "config_id": np.asarray(CONFIGS, dtype=np.int32), "replica": np.int16(0),
        "hparams": [json.dumps({"lr": 10.0 ** -(c % 5)}) for c in CONFIGS], "config_seed": np.int64(0),
        "status": "ok", "diverged_step": np.int32(-1), "total_steps": np.int32(10), "eval_every": np.int32(10),
        "seconds": 0.1, "device": "cpu",
    })
    write_part(store, part_name(task, "adam1p", 0, 0), curves, runs)


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "store"
    twin = rng.uniform(0.0, 0.9, len(CONFIGS))
    _part(root, "twin_a", "twins", twin)
    _part(root, "twin_b", "twins", twin.copy())  # the same curves: must land together
    for i in range(10):
        _part(root, f"other_{i}", f"fam{i % 3}", rng.uniform(0.0, 0.9, len(CONFIGS)))
    return root


def test_identical_tasks_land_together_and_the_map_is_deterministic(store, tmp_path):
    first = task_map(store, seed=3)
    again = task_map(store, seed=3)
    pd.testing.assert_frame_equal(first, again)
    xy = first.set_index("task")[["x", "y"]]
    twins = float(np.linalg.norm(xy.loc["twin_a"] - xy.loc["twin_b"]))
    others = xy.drop(["twin_a", "twin_b"]).to_numpy()
    typical = float(np.median([np.linalg.norm(a - b) for i, a in enumerate(others) for b in others[i + 1:]]))
    assert twins < 0.25 * typical, (twins, typical)
    row = first.set_index("task").loc["twin_a"]
    assert row["best_value"] == pytest.approx(0.0) and json.loads(row["best_hparams"]) == {"lr": 10.0 ** -(row["best_config"] % 5)}
    paths = write_task_map(first, tmp_path / "out")
    assert [p.name for p in paths] == ["task_map.csv", "task_map.png", "task_map.html"]
    page = paths[2].read_text()
    assert page.count("<circle") == 12 and "twin_a (twins)" in page and "best config" in page
    assert len(pd.read_csv(paths[0])) == 12


def test_too_few_tasks_and_an_unknown_method_are_clear_errors():
    with pytest.raises(TasklabError, match="at least 3 tasks"):
        embed(np.zeros((2, 4)))
    with pytest.raises(TasklabError, match="unknown embedding method"):
        embed(np.zeros((5, 4)), method="pca3d")


def test_tasks_cli_draws_the_map_and_refuses_a_missing_store(store, tmp_path):
    out = run_tasklab(["pipeline=TASKS", "plot=embedding", f"curves_dir={store}", f"output_dir={tmp_path / 'map'}"],
                      cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "map of 12 tasks (4 families)" in out.stdout and (tmp_path / "map" / "task_map.html").is_file()
    for args, says in ((["plot=embedding"], "needs curves_dir"),
                       (["plot=embedding", f"curves_dir={tmp_path / 'nope'}"], "is not a folder"),
                       (["plot=embedding", f"curves_dir={store}", "method=pca3d"], "method"),
                       (["plot=heatmap"], "plot")):
        bad = run_tasklab(["pipeline=TASKS", *args], cwd=tmp_path)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr, bad.stderr


def test_catalogue_plot_states_the_spread_of_parameter_counts(tmp_path):
    out = run_tasklab(["pipeline=TASKS", "plot=catalogue", "pattern=Copy_*", f"output_dir={tmp_path / 'cat'}"],
                      cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    counts = [int(line.split()[2].replace(",", "")) for line in out.stdout.splitlines() if line.startswith("Copy_")]
    assert len(counts) == 9
    from PIL import Image

    image = Image.open(tmp_path / "cat" / "catalogue_parameters.png")
    assert image.size[0] > 100 and image.size[1] > 50  # a drawn figure, not an empty file
    assert f"{len(counts)} tasks: parameter counts span {np.log10(max(counts) / min(counts)):.1f} decades" in out.stdout


def test_cost_plot_measures_each_task_and_a_bad_seed_list_is_one_line(tmp_path):
    """plot=cost: one row per task with its parameters and finite measured costs (the population
    probe's per-config cost of a small quadratic is below its single-model step), the listed
    seeds only, the probe's size by the documented rule, and the per-family figure."""
    import pandas as pd

    out = run_tasklab(["pipeline=TASKS", "plot=cost", "pattern=quadratic_family_seed*", "seeds=[3,8]",
                       "probe_max_ms=10000", f"output_dir={tmp_path / 'cost'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    frame = pd.read_csv(tmp_path / "cost" / "task_costs.csv")
    assert sorted(frame["name"]) == ["quadratic_family_seed3", "quadratic_family_seed8"]
    assert (frame["family"] == "quadratic_family").all() and (frame["parameters"] > 0).all()
    assert np.isfinite(frame["seconds_per_step"]).all() and (frame["seconds_per_step"] > 0).all()
    assert np.isfinite(frame["initial_loss"]).all()
    assert (frame["seconds_per_config_step"] < frame["seconds_per_step"]).all()
    from taskset_lab.curves.budget import probe_configs

    assert [probe_configs(t) for t in frame["seconds_per_step"]] == frame["probe_configs"].tolist()
    from PIL import Image

    assert Image.open(tmp_path / "cost" / "task_costs.png").size[0] > 100
    spread = np.log10(frame["parameters"].max() / frame["parameters"].min())
    assert f"spread over 2 tasks: parameters {spread:.1f} decades" in out.stdout
    # over the probe's limit: measured per step, not probed (NaN), and the figure still drawn
    out = run_tasklab(["pipeline=TASKS", "plot=cost", "pattern=quadratic_family_seed*", "seeds=[3]",
                       "probe_max_ms=0.0001", f"output_dir={tmp_path / 'dear'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    dear = pd.read_csv(tmp_path / "dear" / "task_costs.csv")
    assert dear["seconds_per_config_step"].isna().all() and (dear["seconds_per_step"] > 0).all()
    assert (tmp_path / "dear" / "task_costs.png").stat().st_size > 1000
    for args, says in ((["seeds=three"], "seeds"), (["probe_max_ms=-1"], "probe_max_ms")):
        bad = run_tasklab(["pipeline=TASKS", "plot=cost", *args], cwd=tmp_path)
        assert bad.returncode == 2 and says in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
