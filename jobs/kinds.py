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
import faulthandler
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gan import families
from gan import job as train_job  # light: it imports TensorFlow only when a training runs
from jobs import checks, report
from jobs.core import chain, events, exitcodes, pages
from jobs.core.files import wrong_checksum
from jobs.core.launch import Launch
from jobs.core.loader import (
    SpecError,
    check_paths,
    inception_sections,
    pipeline_problems,
)
from jobs.core.rundir import init_from_problems
from jobs.core.schema import JobSpec
from jobs.core.stages import stages
from jobs.early_stop import stopped_before, sweep_judge
from jobs.sweep import (
    StudyError,
    indexed_name,
    is_asked,
    overrides_spec,
    point_count,
    point_overrides,
    study_exit,
    tell_study,
    write_points,
)
from jobs.sweep_checks import check_sweep, sweep_points
from preprocess import job as preprocess_job

log = logging.getLogger(__name__)


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
    # checks its inputs itself on every rank and reports them together (``run`` does not:
    # a rank stopping alone would end the others before the report)
    checks_own_inputs: bool = False
    # its directory's report page (jobs/report.py), written as the job ends
    page: Callable[[JobSpec], Path | None] = lambda spec: None


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
    return int(train_job.run(spec, launch))


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
    return int(preprocess_job.run(spec, launch))


def _run_merge(spec: JobSpec, launch: Launch) -> int:
    return int(preprocess_job.run_merge(spec))


def _run_sweep(spec: JobSpec, launch: Launch) -> int:
    """Train point ``index`` (an array task), or every point in turn when run locally."""
    indices = [launch.index] if launch.index is not None else range(point_count(spec.work))
    worst = exitcodes.OK
    for k in indices:
        code = _run_point(spec, k, launch)
        if code == exitcodes.REQUEUE:
            return code  # stopped by a signal: the rest resumes after the requeue
        if len(indices) > 1 and code == exitcodes.EARLY_STOPPED:
            continue  # run in turn, a stopped point is the rule at work, not a failure
        worst = worst or code
    return worst


def _run_point(spec: JobSpec, k: int, launch: Launch) -> int:
    """Point ``k``. A TPE or CMA-ES trial is asked of the study by rank 0 (the other ranks
    wait for its answer) and checked here, where it runs; one the study holds finished is
    not trained again, nor is a point the early-stopping rule stopped before (a resubmitted
    sweep). Rank 0 tells the study how the point ended."""
    lead = events.env_rank() == 0
    try:
        overrides = point_overrides(spec, k, ask="ask" if lead else "wait")
        point = overrides_spec(spec, indexed_name(spec.work, k, overrides), overrides)
    except SpecError as exc:  # a study made for another spec, or a point the base refuses
        for problem in exc.problems:
            log.error("%s [sweep point %d]", problem, k)
        if lead:
            tell_study(spec, k, exitcodes.INVALID_SPEC, None)
        return exitcodes.INVALID_SPEC
    except StudyError as exc:
        log.error("sweep point %d: %s", k, exc)
        return exitcodes.FAILED
    if lead:  # which index is which point, for the sweep's page
        pages.write_quietly(lambda: write_points(spec), spec.work.run_root)
    told = study_exit(spec, k)
    if told is not None:
        log.info("%s: its trial of the study is finished: not trained again (exit %d)",
                 point.work.run_dir, told)
        return told
    if not is_asked(spec.work, k):  # a fixed point: checked with the sweep
        point = checked_like(spec, point)
    judge = sweep_judge(spec, point)
    stopped = judge is not None and stopped_before(judge, point)
    code = exitcodes.EARLY_STOPPED if stopped else run(point, launch.but(index=None,
                                                                          judge=judge))
    if lead:
        tell_study(spec, k, code, Path(point.work.run_dir))
    return code


def _run_pipeline(spec: JobSpec, launch: Launch) -> int:
    """The stages here, one after the other (``jobs/core/stages.py``): the preprocess run
    without an index writes every shard and merges them itself, so the merge stage is not
    run (the local executor makes three jobs of them). The last stage, the training, gets
    this launch: its stop signals, ``--fresh`` and resubmit link."""
    chain = [stage for stage in stages(spec) if stage.in_process]
    for stage in chain[:-1]:
        code = run(checked_like(spec, stage.spec), Launch())
        if code != exitcodes.OK:
            log.error("%s stage failed (exit %d): not training", stage.spec.kind, code)
            return code
    return run(checked_like(spec, chain[-1].spec), launch.but(index=None))


def _pipeline_stages_exist(spec: JobSpec) -> bool:
    return all(Path(p).exists() for p in (spec.work.preprocess, spec.work.train))


def _check_pipeline(spec: JobSpec, found: list[str], deep) -> list[str]:
    if not _pipeline_stages_exist(spec):
        return found
    return found or pipeline_problems(spec) or [f"{p} [pipeline stage]" for p in
                                       deep(stages(spec)[-1].spec)]


def _pipeline_training(spec: JobSpec) -> list[tuple[str, JobSpec]]:
    return [("", stages(spec)[-1].spec)] if _pipeline_stages_exist(spec) else []


def _pipeline_page(spec: JobSpec) -> Path | None:
    return report.run_page(stages(spec)[-1].spec) if _pipeline_stages_exist(spec) else None


def _found(spec: JobSpec, found: list[str], deep) -> list[str]:
    return found


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("train", _run_train, "train.sbatch", _check_train, requeues=True, horovod=True,
         trainings=lambda spec: [("", spec)], page=report.run_page),
    Kind("sweep", _run_sweep, "sweep.sbatch", check_sweep, requeues=True, horovod=True,
         array_size=lambda spec: point_count(spec.work), trainings=sweep_points,
         page=report.sweep_page),
    Kind("preprocess", _run_preprocess, "preprocess.sbatch", _found,
         array_size=lambda spec: spec.work.num_shards),
    Kind("merge", _run_merge, "merge.sbatch", _found),
    Kind("preflight", _run_preflight, "", _check_train, horovod=True, checks_own_inputs=True),
    Kind("generate", _run_generate, "generate.sbatch", _found),
    Kind("pipeline", _run_pipeline, "", _check_pipeline,
         trainings=_pipeline_training, page=_pipeline_page),
)}


def of(spec: JobSpec) -> Kind:
    return KINDS[spec.kind]


def is_(spec: JobSpec, name: str) -> bool:
    """Whether ``spec`` is of kind ``name`` (for the few places that treat one kind apart:
    they name it through the table, so a misspelt kind fails here, loudly)."""
    if name not in KINDS:
        raise KeyError(f"no job kind {name!r}: {', '.join(KINDS)}")
    return spec.kind == name


# ------------------------------------------------------------------- checked, then run
def deep_problems(spec: JobSpec) -> list[str]:
    """Rules beyond the schema: Inception checksums, the Docker and resubmit rules, then the
    kind's own; a sweep's points and a pipeline's train stage are checked through this too.
    ``validate``, ``plan``, ``run`` (every route: CLI, sbatch, submitit) and ``submit`` call
    it, so a spec the family cannot train never reaches a node (exit 2, field named)."""
    kind = of(spec)
    found = checksum_problems(spec) + checks.docker_ranks_problem(spec, kind.horovod) \
        + checks.resubmit_problem(spec, kind.requeues, kind.sbatch)
    return kind.checks(spec, found, deep_problems)


def ensure_checked(spec: JobSpec) -> None:
    """Raise the problems of a spec not yet checked in this command; mark it checked. The
    specs a checked sweep or pipeline makes for its points and stages inherit the mark
    (``checked_like``), as the deep check covered them; a spec loaded afresh (the sbatch
    script's ``python -m jobs run`` on the node) is checked again, where it will run."""
    if spec.checked:
        return
    problems = deep_problems(spec)
    if problems:
        raise SpecError(problems)
    spec.checked = True


def run(spec: JobSpec, launch: Launch | None = None) -> int:
    """Run ``spec`` in this process and return an exit code of :mod:`jobs.core.exitcodes`.
    Every route ends here (``python -m jobs run``, the ``slurm/*.sbatch`` scripts, the
    submitit task), and a sweep's points and a pipeline's stages come back here, each
    checked as if submitted alone: a job behaves the same however it was launched."""
    # a crash in native code (TensorFlow, Horovod, MPI, HDF5) then leaves every thread's
    # Python stack in the job's log, not only "Segmentation fault" from srun
    if sys.__stderr__ is not None:  # the process's own (fd 2), whatever wraps sys.stderr
        faulthandler.enable(sys.__stderr__)
    code = exitcodes.FAILED  # until the job says otherwise (an exception propagates)
    try:
        code = _checked_run(spec, launch or Launch())
        return code
    finally:
        _record_outcome(spec, code)
        # the page as the job ends; not on a requeue, whose walltime lead is the checkpoint's
        # (the page is as of its last quality measurement, and the next run rewrites it)
        if events.env_rank() == 0 and code != exitcodes.REQUEUE:
            pages.write_quietly(lambda: of(spec).page(spec), spec.name)


def _checked_run(spec: JobSpec, launch: Launch) -> int:
    try:
        ensure_checked(spec)  # nothing to do when this command has checked it already
    except SpecError as exc:
        for problem in exc.problems:
            log.error(problem)
        return exitcodes.INVALID_SPEC
    problems = [] if of(spec).checks_own_inputs else check_paths(spec)
    if problems:
        for problem in problems:
            log.error(problem)
        return exitcodes.NOT_RUNNABLE
    os.environ.update(spec.env)  # inside the job, never on a command line (secrets)
    return of(spec).run(spec, launch)


def _record_outcome(spec: JobSpec, code: int) -> None:
    """Rank 0's ``outcome`` event, in the job's directory if it has one (a job refused
    before one was made creates none): what ``submit``, ``status``, a resubmit chain's next
    link and the sweep's summary read of how the job ended."""
    if events.env_rank() != 0:
        return
    try:
        directory = spec.work_dir
    except SpecError:  # a pipeline whose stages do not load: it wrote nothing
        return
    events.emit(directory, "outcome", kind=spec.kind, exit=code,
                meaning=exitcodes.DESCRIPTIONS.get(code, "unknown"))
