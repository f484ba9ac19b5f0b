"""Plots. The submodule loads matplotlib only when used: ``taskset_lab.viz.plots``
(hparam-list evaluation figures). (Reading offline W&B runs back is a test helper:
``tests/wandb_offline.py``.)"""

from __future__ import annotations

_PLOTS = ("family_series", "plot_families", "plot_hparam_list_results", "plot_trials", "trials_series")

__all__ = list(_PLOTS)


def __getattr__(name: str):
    if name in _PLOTS:
        from taskset_lab.viz import plots

        return getattr(plots, name)
    raise AttributeError(name)
