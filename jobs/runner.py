"""Run a validated job in this process: the one place that maps a job kind to its code.

Every route ends here — ``python -m jobs run``, the ``slurm/*.sbatch`` scripts and the submitit
task — so a job behaves the same however it was launched.
"""
from __future__ import annotations

import importlib
import logging
import os

from jobs import exitcodes
from jobs.loader import check_paths
from jobs.schema import JobSpec
from jobs.submission import apply_env

log = logging.getLogger(__name__)

# kind -> module with ``run(spec, index, fresh) -> exit code``. A kind missing here is declared
# in the schema (so specs validate and plan) but its implementation has not landed yet.
ENTRY_POINTS: dict[str, str] = {"preprocess": "preprocess.job", "train": "gan.job",
                                "sweep": "jobs.sweep", "pipeline": "jobs.pipeline",
                                "generate": "gan.generate"}
PLANNED: dict[str, str] = {}  # kind -> where its implementation is tracked


def array_index_from_env() -> int | None:
    value = os.environ.get("SLURM_ARRAY_TASK_ID")
    return int(value) if value and value.isdigit() else None


def run(spec: JobSpec, index: int | None = None, fresh: bool = False) -> int:
    """Run ``spec`` (array task ``index`` if given) and return an exit code from
    :mod:`jobs.exitcodes`."""
    problems = check_paths(spec)
    if problems:
        for problem in problems:
            log.error(problem)
        return exitcodes.NOT_RUNNABLE
    module_name = ENTRY_POINTS.get(spec.kind)
    if module_name is None:
        log.error("job kind '%s' validates and plans, but running it is not implemented in "
                  "this version (planned: %s)", spec.kind, PLANNED.get(spec.kind, "later"))
        return exitcodes.NOT_AVAILABLE
    apply_env(spec)
    module = importlib.import_module(module_name)
    return int(module.run(spec, index=index, fresh=fresh))
