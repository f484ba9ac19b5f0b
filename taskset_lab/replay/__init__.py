"""The curve store as a tabular HPO benchmark: search strategies replayed on recorded curves.

* :mod:`~taskset_lab.replay.arrays`: a store as ``losses[task, config, replica, step, split]``;
* :mod:`~taskset_lab.replay.syne_export`: export to Syne Tune's blackbox format;
* :mod:`~taskset_lab.replay.mfpbench_export`: export to mf-prior-bench's ``taskset_tabular`` tables;
* :mod:`~taskset_lab.replay.fidelity`: normalized values a strategy sees after ``s`` steps;
* :mod:`~taskset_lab.replay.simulate`: one replay through Syne Tune's simulator backend on a
  virtual clock, and the anytime curve;
* :mod:`~taskset_lab.replay.strategies`: the strategies (Syne Tune schedulers) by name;
* :mod:`~taskset_lab.replay.benchmark`: every strategy on held-out tasks, HPARAM_LIST's folds.

Syne Tune is imported inside the functions that use it.
"""

from taskset_lab.replay.arrays import StoreArrays, store_arrays
from taskset_lab.replay.benchmark import ReplayResult, ReplaySettings, budget_table, format_table, replay_benchmark
from taskset_lab.replay.fidelity import FidelityValues, fidelity_values
from taskset_lab.replay.mfpbench_export import export_mf_prior_bench, read_mf_prior_bench_table
from taskset_lab.replay.simulate import anytime, recorded_configs, run_replay
from taskset_lab.replay.strategies import STRATEGIES, MultiFidelity, scheduler_factory
from taskset_lab.replay.syne_export import export_syne_tune, to_blackboxes

__all__ = ["FidelityValues", "MultiFidelity", "ReplayResult", "ReplaySettings", "STRATEGIES", "StoreArrays",
           "anytime", "budget_table", "export_mf_prior_bench", "export_syne_tune", "fidelity_values", "format_table",
           "read_mf_prior_bench_table", "recorded_configs", "replay_benchmark", "run_replay", "scheduler_factory",
           "store_arrays", "to_blackboxes"]
