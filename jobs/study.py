"""Sweeps searched by Optuna: random search's fixed draws, and the TPE and CMA-ES studies that
choose each array task's point as it starts.

**Why a journal file.** A TPE or CMA-ES sweep keeps its study in ``run_root/study.journal``,
Optuna's ``JournalFileBackend``: an append-only log of operations, each appended whole (one
``write`` of complete lines, then ``fsync``) under a lock. The lock is
``JournalFileSymlinkLock``: it is taken by creating a symbolic link, which is atomic on every
NFS version (``O_EXCL`` needs NFSv3), and one left by a killed task is taken over after 30 s.
SQLite, Optuna's other file store, relies on ``fcntl`` locks that many NFS servers break, and
needs no less care. Readers only replay the log, so a view never takes the lock.

**How a task finds its point.** Every trial of the study carries the array index that asked
for it (user attributes ``array_index`` and ``overrides``). Array task ``i`` first looks for
its trial: a requeued or resubmitted task gets the same point and the same run directory,
and never asks again. A finished trial (complete, or pruned by the early-stopping rule) is
not trained again. Only rank 0 asks; the other ranks of a multi-rank point wait until the
journal names the point. Each task seeds its sampler with ``(sweep.seed, index)``: tasks
starting together with one seed would otherwise draw the same random start-up points.

**What it is told.** A point that ends ``OK`` is told ``COMPLETE`` with the best value of the
judged figure (``sweep.early_stop.metric``) it measured; one stopped by the rule,
``PRUNED``. Before that, each measurement is reported at its epoch, so a pruned trial ranks
by its last value and optuna-dashboard draws the curves. A point that failed, was killed or
is waiting for its requeue stays ``RUNNING``: it is told when a later job finishes it.

TPE and CMA-ES suggestions depend on which trials had finished when a task asked, so the
points are reproducible only given the same order of completions (one task at a time,
``resources.array_throttle: 1``, with no preemption).
"""
from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from jobs.core import events, exitcodes
from jobs.core.figures import QUALITY, quality_summary
from jobs.core.schema import JobSpec, SweepSpec
from jobs.core.sweep_schema import search_space

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created" per task

STUDY_FILE = "study.journal"
STUDY_NAME = "sweep"  # one study per run_root: views find it without the spec
INDEX, OVERRIDES = "array_index", "overrides"  # the trial's user attributes
TOLD = {TrialState.COMPLETE: exitcodes.OK, TrialState.PRUNED: exitcodes.EARLY_STOPPED}
RANK_WAIT_SECONDS = 900.0  # how long ranks > 0 wait for rank 0 to ask (a failure guard)
PRIMITIVE = (type(None), bool, int, float, str)  # what Optuna keeps as a categorical choice


def distributions(sweep: SweepSpec) -> dict[str, BaseDistribution]:
    """The space as Optuna's distributions. A choice among lists or mappings is drawn by its
    position (Optuna keeps only plain values as choices)."""
    out: dict[str, BaseDistribution] = {}
    for key, dist in search_space(sweep).items():
        (name, args), = dist.items()
        if name == "choice":
            plain = all(isinstance(v, PRIMITIVE) for v in args)
            out[key] = CategoricalDistribution(args if plain else list(range(len(args))))
        elif name == "int_uniform":
            out[key] = IntDistribution(int(args[0]), int(args[1]))
        else:
            out[key] = FloatDistribution(float(args[0]), float(args[1]),
                                         log=name == "log_uniform")
    return out


def point_values(sweep: SweepSpec, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's params as the point's overrides: a choice's value, and drawn floats at 4
    significant digits (readable specs and short run directory names; a TPE trial's own
    value differs from the trained one by under 0.01%)."""
    out = {}
    for key, dist in search_space(sweep).items():
        (name, args), = dist.items()
        value = params[key]
        if name == "choice" and not all(isinstance(v, PRIMITIVE) for v in args):
            value = args[value]
        elif name in ("uniform", "log_uniform"):
            value = float(f"{value:.4g}")
        out[key] = value
    return out


def random_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    """``sweep.trials`` points drawn by Optuna's RandomSampler from ``sweep.seed``, in order:
    trial k depends on the seed and k only, so more trials only add new ones."""
    return [dict(p) for p in _random_points(
        json.dumps([sweep.seed, sweep.trials, search_space(sweep)], sort_keys=True))]


@functools.lru_cache(maxsize=8)
def _random_points(key: str) -> tuple[dict[str, Any], ...]:
    seed, trials, space = json.loads(key)
    sweep = SweepSpec(base="", run_root="", search="random", space=space, trials=trials,
                      seed=seed)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = distributions(sweep)
    return tuple(point_values(sweep, study.ask(dists).params) for _ in range(trials))


def _storage(run_root: Path) -> JournalStorage:
    path = str(Path(run_root) / STUDY_FILE)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileSymlinkLock(path)))


def sampler(sweep: SweepSpec, index: int) -> optuna.samplers.BaseSampler:
    """The task's sampler, seeded by (seed, index); Optuna 5's defaults otherwise (TPE:
    multivariate, with the constant liar, which keeps concurrent tasks apart)."""
    seed = int(np.random.SeedSequence([sweep.seed, index]).generate_state(1)[0])
    startup = {} if sweep.startup_trials is None else {"n_startup_trials": sweep.startup_trials}
    if sweep.search == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **startup)
    return optuna.samplers.CmaEsSampler(seed=seed, **startup)


def open_study(sweep_job: JobSpec, index: int,
               storage: JournalStorage | None = None) -> optuna.Study:
    """The sweep's study (created by the first task), with task ``index``'s sampler."""
    root = Path(sweep_job.work.run_root)
    root.mkdir(parents=True, exist_ok=True)
    lower = QUALITY[sweep_job.work.early_stop.metric]
    return optuna.create_study(study_name=STUDY_NAME, storage=storage or _storage(root),
                               sampler=sampler(sweep_job.work, index), load_if_exists=True,
                               direction="minimize" if lower else "maximize")


def indexed_trial(study: optuna.Study, index: int) -> FrozenTrial | None:
    """The trial array task ``index`` asked for (the latest, should there be two)."""
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(INDEX) == index]
    return mine[-1] if mine else None


def trial_point(sweep_job: JobSpec, index: int, ask: str) -> dict[str, Any] | None:
    """Task ``index``'s point (its overrides): asked for if it has none and ``ask`` is "ask"
    (rank 0), waited for if "wait" (the other ranks), else None ("look")."""
    study = open_study(sweep_job, index)
    deadline = time.monotonic() + RANK_WAIT_SECONDS
    while (trial := indexed_trial(study, index)) is None:
        if ask == "ask":
            return _ask(study, sweep_job.work, index)
        if ask != "wait":
            return None
        if time.monotonic() > deadline:
            raise RuntimeError(f"{STUDY_FILE}: rank 0 asked for no point for array index "
                               f"{index} within {RANK_WAIT_SECONDS:.0f} s")
        time.sleep(1.0)
    return dict(trial.user_attrs[OVERRIDES])


def _ask(study: optuna.Study, sweep: SweepSpec, index: int) -> dict[str, Any]:
    """A new trial for task ``index``. Its overrides are set before its index, so a trial
    found by index always has them (a task killed between the two leaves one unnamed
    running trial, which the constant liar counts as a poor point)."""
    trial = study.ask(distributions(sweep))
    overrides = point_values(sweep, trial.params)
    trial.set_user_attr(OVERRIDES, overrides)
    trial.set_user_attr(INDEX, index)
    log.info("sweep study: trial %d for array index %d: %s", trial.number, index, overrides)
    return overrides


def told_exit(sweep_job: JobSpec, index: int) -> int | None:
    """The exit code of task ``index``'s finished trial (not trained again), or None."""
    trial = indexed_trial(open_study(sweep_job, index), index)
    return TOLD.get(trial.state) if trial is not None else None


def tell(sweep_job: JobSpec, index: int, code: int, run_dir: Path) -> None:
    """Tell the study how task ``index``'s point ended, if that is final (see the module's
    docstring); its measurements of the judged figure first, by epoch."""
    if code not in (exitcodes.OK, exitcodes.EARLY_STOPPED):
        return
    storage = _storage(Path(sweep_job.work.run_root))
    study = open_study(sweep_job, index, storage)
    trial = indexed_trial(study, index)
    if trial is None or trial.state != TrialState.RUNNING:
        return
    metric = sweep_job.work.early_stop.metric
    quality = [{"epoch": e["epoch"], **e["figures"]} for e in events.read(run_dir, "quality")]
    _report(storage, trial, [(q["epoch"], q[metric]) for q in quality if metric in q])
    best = quality_summary(quality).get(f"best_{metric}")
    if code == exitcodes.EARLY_STOPPED:
        study.tell(trial.number, state=TrialState.PRUNED)
    elif best is None or not math.isfinite(float(best)):
        log.warning("sweep study: trial %d measured no %s: told it failed", trial.number,
                    metric)
        study.tell(trial.number, state=TrialState.FAIL)
    else:
        study.tell(trial.number, float(best))
    log.info("sweep study: trial %d told %s", trial.number,
             study.trials[trial.number].state.name)


def _report(storage: JournalStorage, trial: FrozenTrial,
            measured: list[tuple[int, Any]]) -> None:
    """Each finite measurement not reported before, at its epoch (through the storage: the
    trial object of the job that asked is gone after a requeue)."""
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(STUDY_NAME), trial.number)
    for epoch, value in measured:  # (a NaN is recorded as null)
        if int(epoch) not in trial.intermediate_values and value is not None \
                and math.isfinite(float(value)):
            storage.set_trial_intermediate_value(trial_id, int(epoch), float(value))


def asked_points(run_root: Path) -> dict[int, dict[str, Any]]:
    """Array index -> {overrides, trial number, state} of every trial the study holds (none
    before the first task asked). Read-only: views call it."""
    if not (Path(run_root) / STUDY_FILE).exists():
        return {}
    try:
        study = optuna.load_study(study_name=STUDY_NAME, storage=_storage(Path(run_root)))
    except KeyError:  # the journal holds no study yet
        return {}
    return {t.user_attrs[INDEX]: {"overrides": dict(t.user_attrs[OVERRIDES]),
                                  "trial": t.number, "state": t.state.name}
            for t in study.get_trials(deepcopy=False) if INDEX in t.user_attrs}
