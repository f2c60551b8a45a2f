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
and never asks again. Looking and asking are one step under ``run_root/.ask-<i>`` (an
``O_EXCL`` marker), so two jobs of one index starting together never both ask. A finished
trial is not trained again. Only rank 0 asks; the other ranks of a multi-rank point wait
until the journal names the point. Looking never writes to the journal. Each task seeds its
sampler with ``(sweep.seed, index)``: tasks starting together with one seed would otherwise
draw the same random start-up points. A study is bound to the objective and space it was
made for: a spec that changed either is refused (exit 2), since the trials' values would
mean something else.

**What it is told.** Only an end that is final (``FINAL``). A point that ends ``OK`` is told
``COMPLETE`` with the best value of the judged figure (``sweep.early_stop.metric``) it
measured. One stopped by the early-stopping rule or the mode-collapse guard is told
``PRUNED`` (both samplers rank it by its last measurement). One whose spec is refused
(exit 2), or that never measured the figure, is told ``FAIL``. Each measurement is first
reported at its epoch, and the exit code is kept with the trial (a resubmitted task exits
with it at once). A point that failed otherwise, was killed or waits for its requeue stays
``RUNNING``: it is told when a later job of its index ends it.

TPE and CMA-ES suggestions depend on which trials had finished when a task asked, so the
points are reproducible only given the same order of completions (one task at a time,
``resources.array_throttle: 1``, with no preemption, no requeue and no failure).
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator
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

from jobs.core import events, exitcodes, files
from jobs.core.figures import QUALITY, quality_summary
from jobs.core.loader import SpecError
from jobs.core.schema import JobSpec, SweepSpec
from jobs.core.sweep_schema import search_space

log = logging.getLogger(__name__)
optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created" per task

STUDY_FILE = "study.journal"
STUDY_NAME = "sweep"  # one study per run_root: views find it without the spec
INDEX, OVERRIDES, EXIT = "array_index", "overrides", "exit"  # the trial's user attributes
# the exits that end a point for good (told); any other (a failure, a kill, a requeue) leaves
# its trial running, told when a later job of its index ends it
FINAL = (exitcodes.OK, exitcodes.EARLY_STOPPED, exitcodes.GUARD_STOPPED,
         exitcodes.INVALID_SPEC)
RANK_WAIT_SECONDS = 900.0  # how long ranks > 0 wait for rank 0 to ask (a failure guard)
ASK_STALE_S = 120.0  # an asking marker this old was left by a killed job: taken over
PRIMITIVE = (type(None), bool, int, float, str)  # what Optuna keeps as a categorical choice


def _plain(choices: list[Any]) -> bool:
    """Whether Optuna keeps these choices as they are (else a choice is drawn by position)."""
    return all(isinstance(v, PRIMITIVE) for v in choices)


def distributions(space: dict[str, dict[str, list[Any]]]) -> dict[str, BaseDistribution]:
    """``search_space``'s space as Optuna's distributions. A choice among lists or mappings
    is drawn by its position (Optuna keeps only plain values as choices)."""
    out: dict[str, BaseDistribution] = {}
    for key, dist in space.items():
        (name, args), = dist.items()
        if name == "choice":
            out[key] = CategoricalDistribution(args if _plain(args) else list(range(len(args))))
        elif name == "int_uniform":
            out[key] = IntDistribution(int(args[0]), int(args[1]))
        else:
            out[key] = FloatDistribution(float(args[0]), float(args[1]),
                                         log=name == "log_uniform")
    return out


def point_values(space: dict[str, dict[str, list[Any]]],
                 params: dict[str, Any]) -> dict[str, Any]:
    """A trial's params as the point's overrides: a choice's value, and drawn floats at 4
    significant digits (readable specs and short run directory names; a TPE trial's own
    value differs from the trained one by under 0.01%)."""
    out = {}
    for key, dist in space.items():
        (name, args), = dist.items()
        value = params[key]
        if name == "choice" and not _plain(args):
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
    """The draws of one (seed, trials, space), made once per process: every command asks
    for the points several times (the array's size, each point, the summary)."""
    seed, trials, space = json.loads(key)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    dists = distributions(space)
    return tuple(point_values(space, study.ask(dists).params) for _ in range(trials))


def _storage(run_root: Path) -> JournalStorage:
    path = str(Path(run_root) / STUDY_FILE)
    return JournalStorage(JournalFileBackend(path, lock_obj=JournalFileSymlinkLock(path)))


def sampler(sweep: SweepSpec, index: int) -> optuna.samplers.BaseSampler:
    """The task's sampler, seeded by (seed, index); Optuna 5's defaults otherwise (TPE:
    multivariate, with the constant liar, which keeps concurrent tasks apart). CMA-ES
    counts pruned trials too: with early stopping on, most trials are pruned, and a
    generation that waited for complete ones would never move."""
    seed = int(np.random.SeedSequence([sweep.seed, index]).generate_state(1)[0])
    startup = {} if sweep.startup_trials is None else {"n_startup_trials": sweep.startup_trials}
    if sweep.search == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **startup)
    with warnings.catch_warnings():  # consider_pruned_trials is "experimental"
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.CmaEsSampler(seed=seed, consider_pruned_trials=True, **startup)


def _made_for(sweep: SweepSpec) -> dict[str, str]:
    """What a study is bound to: its objective and its space (as the study's user
    attributes; a study cannot change either)."""
    return {"metric": sweep.early_stop.metric,
            "space": json.dumps(search_space(sweep), sort_keys=True)}


def load(run_root: Path, storage: JournalStorage | None = None) -> optuna.Study | None:
    """The sweep's study, read only (None before the first task made it): looking never
    writes to the journal."""
    if not (Path(run_root) / STUDY_FILE).exists():
        return None
    try:
        return optuna.load_study(study_name=STUDY_NAME,
                                 storage=storage or _storage(Path(run_root)))
    except KeyError:  # the journal holds no study yet
        return None


def study_problems(sweep_job: JobSpec) -> list[str]:
    """Why the study in run_root cannot serve this spec: it was made for another objective
    or space (its trials' values would mean something else). Exit 2 at ``validate``."""
    study = load(Path(sweep_job.work.run_root))
    if study is None:
        return []
    made, now = study.user_attrs, _made_for(sweep_job.work)
    where = f"{sweep_job.source}: sweep.%s: {sweep_job.work.run_root}/{STUDY_FILE}"
    out = []
    if made.get("metric", now["metric"]) != now["metric"]:
        out.append((where % "early_stop.metric") + f" was made judging {made['metric']}; a "
                   "study keeps its objective: use a new sweep.run_root")
    if made.get("space", now["space"]) != now["space"]:
        out.append((where % "space") + " was made for another space (or grid); a study "
                   f"keeps its space ({made['space']}): use a new sweep.run_root")
    return out


def _made(sweep_job: JobSpec, index: int) -> optuna.Study:
    """The sweep's study with task ``index``'s sampler, made by the first task to ask (two
    at once: Optuna loads the one made first) and bound to its objective and space."""
    problems = study_problems(sweep_job)
    if problems:
        raise SpecError(problems)
    root = Path(sweep_job.work.run_root)
    root.mkdir(parents=True, exist_ok=True)
    lower = QUALITY[sweep_job.work.early_stop.metric]
    study = optuna.create_study(study_name=STUDY_NAME, storage=_storage(root),
                                sampler=sampler(sweep_job.work, index), load_if_exists=True,
                                direction="minimize" if lower else "maximize")
    for key, value in _made_for(sweep_job.work).items():
        if key not in study.user_attrs:
            study.set_user_attr(key, value)
    return study


def indexed_trial(study: optuna.Study | None, index: int) -> FrozenTrial | None:
    """The trial array task ``index`` asked for (the latest, should there be two)."""
    if study is None:
        return None
    mine = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(INDEX) == index]
    return mine[-1] if mine else None


def trial_point(sweep_job: JobSpec, index: int, ask: str) -> dict[str, Any] | None:
    """Task ``index``'s point (its overrides): asked for if it has none and ``ask`` is "ask"
    (rank 0), waited for if "wait" (the other ranks), else None ("look")."""
    root = Path(sweep_job.work.run_root)
    if ask == "ask":
        with _asking(root, index):  # one asker per index: a duplicate job waits, then finds
            study = _made(sweep_job, index)
            trial = indexed_trial(study, index)
            return dict(trial.user_attrs[OVERRIDES]) if trial else _ask(study, sweep_job.work,
                                                                        index)
    problems = study_problems(sweep_job) if ask == "wait" else []
    if problems:  # rank 0 refuses it too: do not wait for its answer
        raise SpecError(problems)
    deadline = time.monotonic() + RANK_WAIT_SECONDS
    while (trial := indexed_trial(load(root), index)) is None:
        if ask != "wait":
            return None
        if time.monotonic() > deadline:
            raise RuntimeError(f"{root}/{STUDY_FILE}: rank 0 asked for no point for array "
                             f"index {index} within {RANK_WAIT_SECONDS:.0f} s")
        time.sleep(1.0)
    return dict(trial.user_attrs[OVERRIDES])


@contextlib.contextmanager
def _asking(root: Path, index: int) -> Iterator[None]:
    """Hold ``run_root/.ask-<index>`` (an ``O_EXCL`` marker, taken over once stale): finding
    a task's trial and asking for one must be one step, or two jobs of one index starting
    together (a duplicate submission) would each ask."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f".ask-{index}"
    deadline = time.monotonic() + 2 * ASK_STALE_S
    while not (files.create_first(marker) or files.take_stale(marker, ASK_STALE_S)):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{marker}: held by another job for {2 * ASK_STALE_S:.0f} s")
        time.sleep(0.2)
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def _ask(study: optuna.Study, sweep: SweepSpec, index: int) -> dict[str, Any]:
    """A new trial for task ``index``. Its overrides are set before its index, so a trial
    found by index always has them (a task killed between the two leaves one unnamed
    running trial, which the constant liar counts as a poor point)."""
    space = search_space(sweep)
    trial = study.ask(distributions(space))
    overrides = point_values(space, trial.params)
    trial.set_user_attr(OVERRIDES, overrides)
    trial.set_user_attr(INDEX, index)
    log.info("sweep study: trial %d for array index %d: %s", trial.number, index, overrides)
    return overrides


def told_exit(sweep_job: JobSpec, index: int) -> int | None:
    """The exit code task ``index``'s trial was told with (not trained again), or None
    while it runs."""
    trial = indexed_trial(load(Path(sweep_job.work.run_root)), index)
    if trial is None or trial.state == TrialState.RUNNING:
        return None
    return int(trial.user_attrs.get(EXIT, exitcodes.FAILED))


def tell(sweep_job: JobSpec, index: int, code: int, run_dir: Path | None) -> None:
    """Tell the study how task ``index``'s point ended, if that is final (``FINAL``); its
    measurements of the judged figure first, by epoch, and the exit code (``told_exit``)."""
    root = Path(sweep_job.work.run_root)
    if not (root / STUDY_FILE).exists():  # (opening the storage would make the file)
        return
    storage = _storage(root)
    study = load(root, storage)
    trial = indexed_trial(study, index)
    if code not in FINAL or trial is None or trial.state != TrialState.RUNNING:
        return
    metric = sweep_job.work.early_stop.metric
    quality = [{"epoch": e["epoch"], **e["figures"]}
               for e in (events.read(run_dir, "quality") if run_dir else [])]
    trial_id = storage.get_trial_id_from_study_id_trial_number(
        storage.get_study_id_from_name(STUDY_NAME), trial.number)
    _report(storage, trial_id, trial, [(q["epoch"], q[metric]) for q in quality
                                       if metric in q])
    storage.set_trial_user_attr(trial_id, EXIT, code)
    best = quality_summary(quality).get(f"best_{metric}")
    measured = best is not None and math.isfinite(float(best))
    if code == exitcodes.OK and measured:
        study.tell(trial.number, float(best))
    elif code in (exitcodes.EARLY_STOPPED, exitcodes.GUARD_STOPPED) and measured:
        study.tell(trial.number, state=TrialState.PRUNED)  # ranked by its last measurement
    else:  # refused (exit 2), or never measured the figure
        study.tell(trial.number, state=TrialState.FAIL)
    log.info("sweep study: trial %d (exit %d) told %s", trial.number, code,
             study.trials[trial.number].state.name)


def _report(storage: JournalStorage, trial_id: int, trial: FrozenTrial,
            measured: list[tuple[int, Any]]) -> None:
    """Each finite measurement not reported before, at its epoch (through the storage: the
    trial object of the job that asked is gone after a requeue)."""
    for epoch, value in measured:  # (a NaN is recorded as null)
        if int(epoch) not in trial.intermediate_values and value is not None \
                and math.isfinite(float(value)):
            storage.set_trial_intermediate_value(trial_id, int(epoch), float(value))


def asked_points(run_root: Path) -> dict[int, dict[str, Any]]:
    """Array index -> {overrides, trial number, state} of every trial the study holds (none
    before the first task asked). Read-only: views call it; an unreadable journal is a
    warning and shows none."""
    try:
        study = load(Path(run_root))
        trials = study.get_trials(deepcopy=False) if study else []
    except (OSError, ValueError) as exc:
        log.warning("%s/%s: not read (%s: %s)", run_root, STUDY_FILE, type(exc).__name__, exc)
        return {}
    return {t.user_attrs[INDEX]: {"overrides": dict(t.user_attrs[OVERRIDES]),
                                  "trial": t.number, "state": t.state.name}
            for t in trials if INDEX in t.user_attrs}
