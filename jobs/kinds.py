"""Job kinds: one table, shaped like ``gan/families.py``.

Each kind says everything the orchestration needs to know about it: the code that runs it,
its sbatch script, its Slurm array size, whether it requeues itself at the walltime, whether
it starts Horovod ranks, the rules it is checked against before anything runs (beyond the
schema), and the trainings it runs (what ``plan`` warns about). Its spec section and its
cross-field rules are the base's (``jobs/core/schema.py``, ``WORK_SECTIONS``); its work
directory is the spec's first output path (``JobSpec.work_dir``).

Adding a kind touches two files: its section in ``jobs/core/schema.py`` (or
``train_schema.py``) and its entry here, plus its ``slurm/<kind>.sbatch``. No other module
compares ``spec.kind`` (``tests/test_layers.py`` checks).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gan import families
from gan import job as train_job  # light: it imports TensorFlow only when a training runs
from jobs.core import chain, exitcodes
from jobs.core.files import wrong_checksum
from jobs.core.loader import inception_sections, pipeline_problems, pipeline_stages
from jobs.core.rundir import init_from_problems
from jobs.core.schema import JobSpec
from jobs.core.signals import StopSignals
from jobs.early_stop import BOARD, Judge
from jobs.sweep import expand_points, point_spec, validate_points
from preprocess import job as preprocess_job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Launch:
    """What one run of a job is given: its array task (or None), whether to start afresh,
    the stop signals caught so far, the runner itself, for the specs a sweep or a pipeline
    runs in turn (each through every check, as if submitted alone), and its place in a
    resubmit chain."""
    index: int | None
    fresh: bool
    stop: StopSignals
    run: Callable[..., int]
    link: chain.Link = chain.NO_CHAIN
    judge: Callable[[int, float, dict], str | None] | None = None  # a sweep's early stopping


@dataclass(frozen=True)
class Kind:
    name: str
    run: Callable[[JobSpec, Launch], int]
    sbatch: str  # in slurm/ ('' for a pipeline: it is submitted as its stages)
    # beyond the schema, before anything runs or is submitted: (spec, the problems every kind
    # has found in it, ``deep`` to check another spec) -> all its problems
    checks: Callable[[JobSpec, list[str], Callable[[JobSpec], list[str]]], list[str]]
    array_size: Callable[[JobSpec], int | None] = lambda spec: None
    requeues: bool = False  # checkpoints at the walltime signal and requeues itself
    horovod: bool = False  # starts Horovod ranks: one per Slurm task
    # the train specs it runs, each with a label for messages ('' for the only one): plan's
    # warnings read them
    trainings: Callable[[JobSpec], list[tuple[str, JobSpec]]] = lambda spec: []
    # checks its inputs itself on every rank and reports them together (the runner does not:
    # a rank stopping alone would end the others before the report)
    checks_own_inputs: bool = False


def checksum_problems(spec: JobSpec) -> list[str]:
    """Inception weights a spec names, against their checksum (train and generate)."""
    return [f"{spec.source}: {p}" for where, inc in inception_sections(spec.kind, spec.work)
            if inc.weights and (p := wrong_checksum(inc.weights, inc.sha256, where))]


def checked_like(parent: JobSpec, child: JobSpec) -> JobSpec:
    """A sweep's point or a pipeline's stage: checked when its parent was, since the parent's
    check covered it (``jobs/checks.py``)."""
    child.checked = parent.checked
    return child


# ------------------------------------------------------------------------------ the kinds
def _run_train(spec: JobSpec, launch: Launch) -> int:
    code = chain.link_exit(spec.work.run_dir, launch.link)  # a link after the run ended
    if code is not None:
        return code
    return int(train_job.run(spec, fresh=launch.fresh, stop=launch.stop, link=launch.link,
                       judge=launch.judge))


def _check_train(spec: JobSpec, found: list[str], deep) -> list[str]:
    return found + [f"{spec.source}: {p}" for p in families.problems(
        spec.work.model.name, spec.work.latent.distribution)
        + init_from_problems(spec.work)]


def _run_preflight(spec: JobSpec, launch: Launch) -> int:
    from gan import preflight  # TensorFlow: only where the checks run

    return int(preflight.run(spec))


PREFLIGHT_TIME = "00:15:00"  # a minute or two of checks, queued as a short job


def preflight_spec(train: JobSpec) -> JobSpec:
    """A train spec's preflight, as a job of its own on the same resources (a short time
    limit); its logs go beside the run directory, never into it."""
    work = dataclasses.replace(train.work, run_dir=f"{train.work.run_dir}.preflight")
    return dataclasses.replace(
        train, kind="preflight", name=f"{train.name}-preflight", work=work,
        resources=dataclasses.replace(train.resources, time=PREFLIGHT_TIME, max_requeues=0))


def _run_generate(spec: JobSpec, launch: Launch) -> int:
    from gan import generate

    return int(generate.run(spec))


def _run_preprocess(spec: JobSpec, launch: Launch) -> int:
    return int(preprocess_job.run(spec, index=launch.index, fresh=launch.fresh))


def _run_merge(spec: JobSpec, launch: Launch) -> int:
    return int(preprocess_job.run_merge(spec))


def merge_spec(preprocess: JobSpec) -> JobSpec:
    """A preprocess spec's merge, as a job of its own (a pipeline's second stage)."""
    return dataclasses.replace(preprocess, kind="merge", name=f"{preprocess.name}-merge")


def _run_sweep(spec: JobSpec, launch: Launch) -> int:
    """Train point ``index`` (an array task), or every point in turn when run locally. A
    point its early-stopping rule stopped before is not run again (a resubmitted sweep)."""
    indices = [launch.index] if launch.index is not None else \
        range(len(expand_points(spec.work)))
    worst = exitcodes.OK
    for k in indices:
        point = checked_like(spec, point_spec(spec, k))
        judge = sweep_judge(spec, point)
        if judge is not None and stopped_before(judge, point):
            code = exitcodes.EARLY_STOPPED
        else:
            code = launch.run(point, fresh=launch.fresh, stop=launch.stop, link=launch.link,
                              judge=judge)
        if code == exitcodes.REQUEUE:
            return code  # stopped by a signal: the rest resumes after the requeue
        if len(indices) > 1 and code == exitcodes.EARLY_STOPPED:
            continue  # run in turn, a stopped point is the rule at work, not a failure
        worst = worst or code
    return worst


def stopped_before(judge: Judge, point: JobSpec) -> bool:
    """Whether the sweep's rule stopped this point before (its exit, or its record if the
    job died before it could exit): not run again while the rule is on."""
    outcome = chain.read_outcome(point.work.run_dir) or {}
    reason = judge.recorded_stop()
    if outcome.get("exit") == exitcodes.EARLY_STOPPED or reason:
        log.info("%s: stopped early before: not run again (%s)", point.work.run_dir,
                 reason or f"job {outcome.get('job')}")
        return True
    return False


def sweep_judge(spec: JobSpec, point: JobSpec) -> Judge | None:
    """The point's early-stopping judge; None without a rule."""
    rule = spec.work.early_stop
    if rule.rule == "none":
        return None
    return Judge(rule, Path(spec.work.run_root) / BOARD, Path(point.work.run_dir).name)


def _check_sweep(spec: JobSpec, found: list[str], deep) -> list[str]:
    if not Path(spec.work.base).exists():
        return found
    # the sweep's own resources apply to every point: said once, naming the sweep
    problems = found or validate_points(spec)
    if problems:
        return problems
    points = _sweep_points(spec)  # every point loads: validate_points found none broken
    return _early_stop_problems(spec, points) or [
        f"{p} [{label}]" for label, point in points for p in deep(point)]


def _early_stop_problems(spec: JobSpec, points: list[tuple[str, JobSpec]]) -> list[str]:
    """The rule judges a figure every point measures (``train.metrics`` of the base): the
    first point that does not, named."""
    rule = spec.work.early_stop
    if rule.rule == "none":
        return []
    for label, point in points:
        m = point.work.metrics
        switch, on = _metric_switch(rule.metric, m)
        if not ((m.every_epochs or m.every_kimg) and on):
            return [f"{spec.source}: sweep.early_stop.metric: {label} never measures "
                    f"{rule.metric}: set train.metrics.every_epochs (or every_kimg)"
                    + ("" if on else f" and train.metrics.{switch}") + " in the base spec"]
    return []


def _metric_switch(metric: str, m) -> tuple[str, bool]:
    """The train.metrics field that turns ``metric`` on (beside every_epochs/kimg), and
    whether it is on."""
    if metric == "face_rate":
        return "face_rate", bool(m.face_rate)
    if metric.startswith("inception_"):
        return "inception.weights", bool(m.inception.weights)
    if metric in ("precision", "recall", "coverage"):
        return "precision_recall", bool(m.precision_recall)
    return "", True


def _sweep_points(spec: JobSpec) -> list[tuple[str, JobSpec]]:
    if not Path(spec.work.base).exists():
        return []
    return [(f"sweep point {i}", point_spec(spec, i))
            for i in range(len(expand_points(spec.work)))]


def _run_pipeline(spec: JobSpec, launch: Launch) -> int:
    """Both stages here, one after the other: the preprocess run without an index writes
    every shard and merges them itself (what the local executor does in three jobs)."""
    pre, train = (checked_like(spec, stage) for stage in pipeline_stages(spec))
    code = launch.run(pre)
    if code != exitcodes.OK:
        log.error("preprocess stage failed (exit %d): not training", code)
        return code
    return launch.run(train, fresh=launch.fresh, stop=launch.stop, link=launch.link)


def _pipeline_stages_exist(spec: JobSpec) -> bool:
    return all(Path(p).exists() for p in (spec.work.preprocess, spec.work.train))


def _check_pipeline(spec: JobSpec, found: list[str], deep) -> list[str]:
    if not _pipeline_stages_exist(spec):
        return found
    return found or pipeline_problems(spec) or [f"{p} [pipeline stage]" for p in
                                       deep(pipeline_stages(spec)[1])]


def _pipeline_training(spec: JobSpec) -> list[tuple[str, JobSpec]]:
    return [("", pipeline_stages(spec)[1])] if _pipeline_stages_exist(spec) else []


def _found(spec: JobSpec, found: list[str], deep) -> list[str]:
    return found


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("train", _run_train, "train.sbatch", _check_train, requeues=True, horovod=True,
         trainings=lambda spec: [("", spec)]),
    Kind("sweep", _run_sweep, "sweep.sbatch", _check_sweep, requeues=True, horovod=True,
         array_size=lambda spec: len(expand_points(spec.work)), trainings=_sweep_points),
    Kind("preprocess", _run_preprocess, "preprocess.sbatch", _found,
         array_size=lambda spec: spec.work.num_shards),
    Kind("merge", _run_merge, "merge.sbatch", _found),
    Kind("preflight", _run_preflight, "", _check_train, horovod=True, checks_own_inputs=True),
    Kind("generate", _run_generate, "generate.sbatch", _found),
    Kind("pipeline", _run_pipeline, "", _check_pipeline,
         trainings=_pipeline_training),
)}


def of(spec: JobSpec) -> Kind:
    return KINDS[spec.kind]


def is_(spec: JobSpec, name: str) -> bool:
    """Whether ``spec`` is of kind ``name`` (for the few places that treat one kind apart:
    they name it through the table, so a misspelt kind fails here, loudly)."""
    if name not in KINDS:
        raise KeyError(f"no job kind {name!r}: {', '.join(KINDS)}")
    return spec.kind == name
