"""Run a validated job in this process: the one place that maps a job kind to its code.

Every route ends here — ``python -m jobs run``, the ``slurm/*.sbatch`` scripts and the submitit
task — so a job behaves the same however it was launched. A sweep runs its points' train
specs, a pipeline its stages, one after the other.
"""
from __future__ import annotations

import logging
import os

from jobs.checks import deep_problems
from jobs.core import exitcodes
from jobs.core.loader import check_paths, pipeline_stages
from jobs.core.schema import JobSpec
from jobs.core.signals import StopSignals
from jobs.sweep import expand_points, point_spec

log = logging.getLogger(__name__)


def run(spec: JobSpec, index: int | None = None, fresh: bool = False,
        stop: StopSignals | None = None) -> int:
    """Run ``spec`` (array task ``index`` if given) and return an exit code from
    :mod:`jobs.core.exitcodes`. ``stop`` holds stop signals caught before the job started."""
    invalid = deep_problems(spec)
    for problem in invalid:
        log.error(problem)
    if invalid:
        return exitcodes.INVALID_SPEC
    problems = check_paths(spec)
    if problems:
        for problem in problems:
            log.error(problem)
        return exitcodes.NOT_RUNNABLE
    os.environ.update(spec.env)  # inside the job, never on a command line (secrets)
    stop = stop or StopSignals()
    if spec.kind == "sweep":
        return _run_sweep(spec, index, fresh, stop)
    if spec.kind == "pipeline":
        return _run_pipeline(spec, fresh, stop)
    if spec.kind == "train":
        from gan import job

        return int(job.run(spec, fresh=fresh, stop=stop))
    if spec.kind == "generate":
        from gan import generate

        return int(generate.run(spec))
    from preprocess import job as preprocess_job

    return int(preprocess_job.run(spec, index=index, fresh=fresh))


def _run_sweep(spec: JobSpec, index: int | None, fresh: bool, stop: StopSignals) -> int:
    """Train point ``index`` (an array task), or every point in turn when run locally."""
    indices = [index] if index is not None else range(len(expand_points(spec.work)))
    worst = exitcodes.OK
    for k in indices:
        code = run(point_spec(spec, k), fresh=fresh, stop=stop)
        if code == exitcodes.REQUEUE:
            return code  # stopped by a signal: the rest resumes after the requeue
        worst = worst or code
    return worst


def _run_pipeline(spec: JobSpec, fresh: bool, stop: StopSignals) -> int:
    """Both stages here, one after the other (what the local executor does too)."""
    pre, train = pipeline_stages(spec)
    code = run(pre)
    if code != exitcodes.OK:
        log.error("preprocess stage failed (exit %d): not training", code)
        return code
    return run(train, fresh=fresh, stop=stop)
