"""Replay one search strategy on one task's recorded curves through Syne Tune's simulator.

The task's configs are a Syne Tune :class:`Blackbox` (:func:`recorded_configs`) whose
objectives at fidelity ``step`` are the normalized values a strategy may see after paying
for ``step`` steps (:mod:`taskset_lab.replay.fidelity`) plus the elapsed cost. Syne Tune's
``Tuner`` drives the strategy (its schedulers: ``RandomSearch``, ``TPE``, ``ASHA``,
``BOHB``) against its ``SimulatorBackend`` (``UserBlackboxBackend``): a trial's results are
events on a virtual clock at ``start + elapsed``; a trial the scheduler stops has its later
events removed, so nothing it did not pay for is ever reported.

Three changes make the clock exact and independent of this machine:

* the backend does not add the real time spent in the scheduler (:class:`VirtualClockBackend`);
* when every worker is busy the tuner's "sleep" jumps the clock to the next event
  (:class:`NextEventCallback`) instead of advancing by a fixed quantum;
* every simulator delay (start, stop, report) is 0, and a stop does not nudge the clock by
  1e-3 as Syne Tune's backend does.

Time is in *step units*: a result at step ``s`` of a trial started at ``t0`` arrives at
``t0 + s`` (``clock="steps"``), or at ``t0 + seconds_c * s / T * (T / mean full-run seconds)``
with ``clock="seconds"`` (each config's measured seconds per step, rescaled so an average
full run costs ``T`` units, like the step clock). With one worker the clock is the
cumulative training paid for; with ``n_workers`` it is the simulated wall clock of that many
workers running trials side by side (up to ``n_workers`` times the training). Budgets are
given in full-trial units (``T`` step units).

What a replay returns is every observation (trial, step, select, report, time); the
*anytime* value at time ``t`` is the report value of the trial whose latest observation
at or before ``t`` has the lowest select value (ties: the trial started first) -- HPARAM_LIST's
rule, so a run to full fidelity gives its numbers. A trial that diverges later is judged by
its latest observation (the cap), as HPARAM_LIST caps a diverged run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from taskset_lab.hparam_list.baselines import ConfigSpace

FIDELITY = "step"
SELECT, REPORT, ELAPSED, CONFIG = "select", "report", "elapsed_time", "config_index"
OBS_COLUMNS = ["trial", "config", "step", "select", "report", "time"]


def recorded_configs(space: ConfigSpace, select: np.ndarray, report: np.ndarray, steps: np.ndarray,
                     cost: np.ndarray) -> Any:
    """A Syne Tune ``Blackbox`` over one task's recorded configs.

    ``select``/``report``: ``[C, F]`` normalized values at ``steps`` (F fidelities, steps > 0);
    ``cost``: ``[C, F]`` elapsed time units since the start of a trial at each step. The
    configuration space is ``space``'s (HPARAM_LIST's TPE space: continuous hparams on their
    inferred scale mapped to ``[0, 1]``, categorical ones as choices); a proposed
    configuration is snapped to the nearest recorded config (:meth:`ConfigSpace.nearest`).
    """
    from syne_tune.blackbox_repository.blackbox import Blackbox
    from syne_tune.config_space import choice, randint, uniform

    class _Recorded(Blackbox):
        def __init__(self) -> None:
            conf = {n: uniform(0.0, 1.0) for n in space.continuous}
            conf.update({n: choice(list(c)) for n, c in space.categorical.items()})
            super().__init__(configuration_space=conf,
                             fidelity_space={FIDELITY: randint(int(steps.min()), int(steps.max()))},
                             objectives_names=[SELECT, REPORT, ELAPSED, CONFIG])
            c = select.shape[0]
            self.table = np.stack([select, report, cost, np.broadcast_to(np.arange(c)[:, None], select.shape)],
                                  axis=-1).astype(np.float64)  # [C, F, 4]
            self._steps = np.asarray(steps)
            self._none = np.zeros(c, dtype=bool)

        @property
        def fidelity_values(self) -> np.ndarray:
            return self._steps

        def row_of(self, configuration: dict) -> int:
            return space.nearest(configuration, self._none)

        def _objective_function(self, configuration: dict, fidelity: dict | None = None,
                                seed: int | None = None) -> Any:
            row = self.row_of(configuration)
            if fidelity is None:
                return self.table[row]
            f = int(np.flatnonzero(self._steps == list(fidelity.values())[0])[0])
            return dict(zip(self.objectives_names, self.table[row, f]))

    return _Recorded()


@dataclass
class Replay:
    """One replay's observations (:data:`OBS_COLUMNS`, in arrival order) and the trials started."""

    observations: pd.DataFrame
    trials_started: int
    budget: float


def _virtual_backend(blackbox: Any):
    from syne_tune.backend.simulator_backend.simulator_backend import SimulatorConfig
    from syne_tune.blackbox_repository.simulated_tabular_backend import UserBlackboxBackend

    class VirtualClockBackend(UserBlackboxBackend):
        """Time passes only by events: the scheduler's real compute time is not added."""

        def _advance_by_outside_time(self) -> None:
            return None

        def _stop_or_pause_trial(self, trial_id: int, status: str) -> None:
            # Syne Tune's version, less its 1e-3 nudges of the clock (two per stop): the stop
            # and the completion happen at the decision's time, so the clock stays exact
            from syne_tune.backend.simulator_backend.events import CompleteEvent, StopEvent

            now = self._time_keeper.time()
            self._simulator_state.push(StopEvent(trial_id=trial_id), event_time=now)
            self._process_events_until_now()
            self._simulator_state.push(CompleteEvent(trial_id=trial_id, status=status), event_time=now)
            self._process_events_until_now()
            self._time_keeper.mark_exit()

    zero = SimulatorConfig(delay_on_trial_result=0.0, delay_complete_after_final_report=0.0,
                           delay_complete_after_stop=0.0, delay_start=0.0, delay_stop=0.0)
    return VirtualClockBackend(blackbox=blackbox, elapsed_time_attr=ELAPSED, seed=0, simulator_config=zero,
                               tuner_sleep_time=0.0)


def _callbacks(records: list):
    from syne_tune.backend.simulator_backend.simulator_callback import SimulatorCallback
    from syne_tune.constants import ST_TUNER_TIME

    class NextEventCallback(SimulatorCallback):
        """The tuner's sleep jumps the virtual clock to the next pending event; results are recorded."""

        def on_tuning_sleep(self, sleep_time: float) -> None:
            heap = self._tuner.trial_backend._simulator_state.event_heap
            if heap:
                self._time_keeper.advance_to(min(e[0] for e in heap))

        def on_trial_result(self, trial: Any, status: str, result: dict, decision: str) -> None:
            records.append((int(trial.trial_id), int(result[CONFIG]), int(result[FIDELITY]), float(result[SELECT]),
                            float(result[REPORT]), float(result[ST_TUNER_TIME])))

        def store_results(self) -> None:  # results are returned, not written
            return None

    return [NextEventCallback()]


@contextlib.contextmanager
def _quiet_syne_tune(folder: str):
    """Syne Tune's tuner writes a little metadata and prints a banner: a scratch folder, no output."""
    old = os.environ.get("SYNETUNE_FOLDER")
    os.environ["SYNETUNE_FOLDER"] = folder
    loggers = [logging.getLogger(n) for n in ("syne_tune",)]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    state = np.random.get_state()
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # statsmodels' KDE (Syne Tune's TPE/BOHB searcher) announces a future change of its
            # default random generator at every fit; the searcher seeds it itself
            warnings.filterwarnings("ignore", message=r"After 0\.17 or January 2028", category=FutureWarning)
            yield
    finally:
        np.random.set_state(state)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
        if old is None:
            os.environ.pop("SYNETUNE_FOLDER", None)
        else:
            os.environ["SYNETUNE_FOLDER"] = old


def run_replay(blackbox: Any, make_scheduler: Callable[[], Any], budget: float, n_workers: int = 1,
               seed: int = 0) -> Replay:
    """Run the scheduler ``make_scheduler()`` builds on ``blackbox`` until the virtual clock
    reaches ``budget`` (time units); observations arriving after it are kept (and cut by
    :func:`anytime`). ``seed`` seeds numpy's global generator for the run (ASHA draws a
    bracket from it); the generator's state is restored afterwards."""
    from syne_tune import StoppingCriterion, Tuner

    records: list = []
    with tempfile.TemporaryDirectory(prefix="tasklab-replay-") as folder, _quiet_syne_tune(folder):
        np.random.seed(int(seed) % (2 ** 32))
        backend = _virtual_backend(blackbox)
        tuner = Tuner(trial_backend=backend, scheduler=make_scheduler(),
                      stop_criterion=StoppingCriterion(max_wallclock_time=float(budget)),
                      n_workers=int(n_workers), sleep_time=0.0, callbacks=_callbacks(records),
                      results_update_interval=1e9, print_update_interval=1e9, save_tuner=False,
                      tuner_name="tasklab-replay", suffix_tuner_name=True, trial_backend_path=folder)
        tuner.run()
        started = len(backend._trial_dict)
    obs = pd.DataFrame(records, columns=OBS_COLUMNS)
    return Replay(observations=obs, trials_started=started, budget=float(budget))


def anytime(observations: pd.DataFrame, times: Sequence[float]) -> np.ndarray:
    """The anytime report value at each of ``times`` (NaN before the first observation).

    At time ``t``: among the trials observed at or before ``t``, each judged by its latest
    observation, the one with the lowest select value (ties: lowest trial id, the one started
    first) gives its report value.
    """
    times = np.asarray(times, dtype=float)
    out = np.full(times.shape, np.nan)
    if observations.empty:
        return out
    obs = observations.sort_values("time", kind="stable")
    t_obs = obs["time"].to_numpy(dtype=float)
    trials = obs["trial"].to_numpy()
    sel = obs["select"].to_numpy(dtype=float)
    rep = obs["report"].to_numpy(dtype=float)
    latest: dict[int, tuple[float, float]] = {}
    value_after = np.empty(len(obs))
    for i in range(len(obs)):
        latest[int(trials[i])] = (sel[i], rep[i])
        best = min(latest.items(), key=lambda kv: (kv[1][0], kv[0]))
        value_after[i] = best[1][1]
    # value at t: after the last observation with time <= t (ties in time all count)
    idx = np.searchsorted(t_obs, times + 1e-9 * np.maximum(1.0, np.abs(times)), side="right") - 1
    ok = idx >= 0
    out[ok] = value_after[idx[ok]]
    return out


def point_of(space: ConfigSpace, row: int) -> dict:
    """The recorded config ``row`` as a point of the replay's configuration space."""
    return space.params_of(int(row))
