"""Run a validated job in this process: every route ends here — ``python -m jobs run``, the
``slurm/*.sbatch`` scripts and the submitit task — so a job behaves the same however it was
launched. What each kind runs is its entry in ``jobs/kinds.py``; a sweep's points and a
pipeline's stages come back here, each checked as if submitted alone.
"""
from __future__ import annotations

import faulthandler
import logging
import os
import sys

from jobs import kinds
from jobs.checks import ensure_checked
from jobs.core import chain, exitcodes
from jobs.core.loader import SpecError, check_paths
from jobs.core.schema import JobSpec
from jobs.core.signals import StopSignals

log = logging.getLogger(__name__)


def run(spec: JobSpec, index: int | None = None, fresh: bool = False,
        stop: StopSignals | None = None, link: chain.Link = chain.NO_CHAIN,
        judge=None) -> int:
    """Run ``spec`` (array task ``index`` if given) and return an exit code from
    :mod:`jobs.core.exitcodes`. ``stop`` holds stop signals caught before the job started;
    ``link``: the job's place in a resubmit chain (``resources.resubmit``); ``judge``: a
    sweep point's early-stopping rule (``jobs/early_stop.py``)."""
    # a crash in native code (TensorFlow, Horovod, MPI, HDF5) then leaves every thread's
    # Python stack in the job's log, not only "Segmentation fault" from srun
    if sys.__stderr__ is not None:  # the process's own (fd 2), whatever wraps sys.stderr
        faulthandler.enable(sys.__stderr__)
    try:
        ensure_checked(spec)  # nothing to do when this command has checked it already
    except SpecError as exc:
        for problem in exc.problems:
            log.error(problem)
        return exitcodes.INVALID_SPEC
    problems = [] if kinds.of(spec).checks_own_inputs else check_paths(spec)
    if problems:
        for problem in problems:
            log.error(problem)
        return exitcodes.NOT_RUNNABLE
    os.environ.update(spec.env)  # inside the job, never on a command line (secrets)
    launch = kinds.Launch(index=index, fresh=fresh, stop=stop or StopSignals(), run=run,
                          link=link, judge=judge)
    return kinds.of(spec).run(spec, launch)
