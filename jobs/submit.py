"""Submit jobs through submitit (Slurm, or its local executor) and report their state.

The submitted callable is :class:`SpecTask`, a submitit ``Checkpointable``: when Slurm signals
a timeout or preemption, submitit calls ``checkpoint()``, which resubmits the *same* spec — the
run directory is unchanged, so the job resumes from its own last checkpoint.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import submitit

from jobs import kinds, progress
from jobs.core import chain, events, exitcodes, runtime, signals
from jobs.core.launch import Launch
from jobs.core.loader import SpecError
from jobs.core.schema import JobSpec
from jobs.core.signals import StopSignals
from jobs.core.stages import stages
from jobs.scheduler import (
    array_size,
    dependency_options,
    log_dir,
    submitit_executor_args,
    submitit_parameters,
)
from jobs.sweep import point_spec

log = logging.getLogger(__name__)
RECORDS = "submissions.jsonl"


class Submitted(NamedTuple):
    """A submitit job and the directories whose events say how it ended, in the order they
    are asked: a sweep's array task, its point's run directory (its only writer; found
    when asked, since a TPE trial's is known only once its task asked for it), then the
    spec's own."""
    job: Any
    directory: Path
    more: Callable[[], tuple[Path, ...]] = tuple


class JobFailed(RuntimeError):
    """Raised inside a submitit job so that Slurm and submitit count it failed; its message
    is for people (the exit code ``submit`` reports comes from the job's ``outcome`` event)."""

    def __init__(self, code: int):
        super().__init__(f"exit code {code}: {exitcodes.DESCRIPTIONS.get(code, 'unknown')}")
        self.code = code


class SpecTask(submitit.helpers.Checkpointable):
    """What submitit pickles and runs on the node: one spec (any kind, a pipeline's merge
    too), optionally one array index, through ``kinds.run`` like every other route."""

    def __init__(self, spec: JobSpec, link: chain.Link = chain.NO_CHAIN):
        self.spec, self.link = spec, link

    def __call__(self, index: int | None = None) -> int:
        runtime.configure()
        runtime.skip_keras_extras()  # submitit's own entry point: TensorFlow comes later
        stop = StopSignals()
        code = kinds.run(self.spec, Launch(index=index, stop=stop, link=self.link))
        if code == exitcodes.REQUEUE:
            self._hand_over_stop(stop.signum, self.spec.work_dir)
        if code != exitcodes.OK:
            raise JobFailed(code)
        return code

    @staticmethod
    def _hand_over_stop(signum: int | None, directory: str) -> None:
        """The trainer caught a stop signal and checkpointed. submitit's own signal is USR2:
        raise it again now that submitit's handler is back, so submitit requeues the job (and
        counts timeouts against slurm_max_num_timeout) and resubmits this same spec, which
        resumes from the run directory. After TERM/USR1, Slurm or the batch script decides:
        leave without a result so submitit does not record a failure."""
        if signum == signals.SUBMITIT_TIMEOUT:
            if events.env_rank() == 0:
                events.emit(directory, "requeue", by="submitit")
            os.kill(os.getpid(), signals.SUBMITIT_TIMEOUT)
            time.sleep(60)  # submitit's handler requeues and exits the process
        sys.exit(exitcodes.REQUEUE)


def make_executor(spec: JobSpec, executor: str, after: str | None = None,
                  name: str | None = None, condition: str = "afterok") -> submitit.AutoExecutor:
    args = submitit_executor_args(spec)
    Path(args["folder"]).parent.mkdir(parents=True, exist_ok=True)
    ex = submitit.AutoExecutor(cluster=executor, **args)
    params = submitit_parameters(spec)
    if name:
        params["name"] = name
    if after and executor == "slurm":
        params["slurm_additional_parameters"] = {  # the spec's own extra options kept
            **params.get("slurm_additional_parameters", {}),
            **dependency_options(after, condition)}
    ex.update_parameters(**params)
    return ex


def submit(spec: JobSpec, executor: str = "slurm", wait: bool = False) -> int:
    """Submit ``spec``; arrays (preprocess shards, sweep points) become one Slurm array, a
    pipeline becomes three dependent jobs."""
    kinds.ensure_checked(spec)
    if kinds.is_(spec, "pipeline"):
        return submit_pipeline(spec, executor, wait)
    _refuse_local_ranks(spec, executor)
    jobs, tail = _submit_chained(spec, executor)
    if not (wait or executor == "local"):  # local jobs are children of this process: wait
        return exitcodes.OK
    if kinds.is_(spec, "train"):  # minutes to wait: show its epochs meanwhile
        progress.follow(jobs[0].job, jobs[0].directory)
    return wait_all(tail or jobs)  # a chain: its last link says how the run ended


def preflight(train: JobSpec, executor: str) -> int:
    """A train spec's preflight (``gan/preflight.py``) on its own resources, waited for: its
    report printed, its exit code returned. ``here``: in this process (or allocation)."""
    spec = kinds.checked_like(train, kinds.preflight_spec(train))
    if executor == "here":
        return kinds.run(spec)
    _refuse_local_ranks(spec, executor)
    jobs = _submit_one(spec, executor, SpecTask(spec))
    code = wait_all(jobs)
    report = next((e for e in reversed(events.read(spec.work_dir, "preflight"))
                   if e["job"] == jobs[0].job.job_id), None)
    for line in report["lines"] if report else []:  # rank 0's report
        print(line)
    return code


def _refuse_local_ranks(spec: JobSpec, executor: str) -> None:
    """submitit's local executor starts tasks without MPI: each would train alone."""
    res = spec.resources
    if executor == "local" and kinds.of(spec).horovod \
            and res.nodes * res.tasks_per_node > 1:
        raise SpecError([f"{spec.source}: resources.tasks_per_node={res.tasks_per_node}: the "
                         "local executor cannot start Horovod ranks; use --set "
                         "resources.tasks_per_node=1, or horovodrun -np N python -m jobs run"])


def _submit_one(spec: JobSpec, executor: str, task: SpecTask, after: str | None = None,
                name: str | None = None, condition: str = "afterok") -> list[Submitted]:
    ex = make_executor(spec, executor, after, name, condition)
    size = array_size(spec)
    jobs = ex.map_array(task, range(size)) if size is not None else [ex.submit(task)]
    ids = [job.job_id for job in jobs]
    _record(spec, executor, ids, name or spec.name)
    print(f"submitted {spec.kind} '{name or spec.name}' ({executor}): {', '.join(ids)}"
          + (f" {condition} {after}" if after else ""), flush=True)
    return [Submitted(job, Path(spec.work_dir), _task_dirs(spec, job, k))
            for k, job in enumerate(jobs)]


def _task_dirs(spec: JobSpec, job: Any, k: int) -> Callable[[], tuple[Path, ...]]:
    """Where array task ``k`` records its outcome before the spec's own directory does: a
    sweep point's run directory, written by that task alone (on NFS, appends from several
    nodes to one file can be lost)."""
    if not kinds.is_(spec, "sweep"):
        return tuple

    def point_dir() -> tuple[Path, ...]:
        point = point_spec(spec, k)  # None: a trial its task never asked for
        return () if point is None else (Path(point.work.run_dir),)
    return point_dir


def _submit_chained(spec: JobSpec, executor: str, after: str | None = None,
                    name: str | None = None) -> tuple[list, list]:
    """The job, then its ``resources.resubmit`` successors, each ``afterany`` of the one
    before: where preemption cancels, each resumes the run (or exits at once once it ended:
    ``jobs/core/chain.py``). The first link's jobs and the last link's ([] without one)."""
    jobs = _submit_one(spec, executor, SpecTask(spec), after, name)
    if not (kinds.of(spec).requeues and spec.resources.resubmit):
        return jobs, []
    if executor != "slurm":
        log.info("resources.resubmit: a chain needs Slurm; the local executor runs the job "
                 "once")
        return jobs, []
    first = previous = _base_id(jobs)
    for k in range(1, spec.resources.resubmit + 1):
        tail = _submit_one(spec, executor, SpecTask(spec, chain.Link(first, k)), previous,
                           name, condition="afterany")
        previous = _base_id(tail)
    return jobs, tail


def submit_pipeline(job: JobSpec, executor: str, wait: bool) -> int:
    """The stages of ``jobs/core/stages.py`` as dependent jobs, each ``afterok`` of the one
    it waits for; the training last, with its resubmit chain. Locally, stage by stage,
    stopping at the first failure."""
    local, submitted = executor == "local", {}
    *before, last = stages(job)
    for stage in before:
        spec = kinds.checked_like(job, stage.spec)
        after = None if local or stage.after is None else _base_id(submitted[stage.after])
        submitted[stage.name] = _submit_one(spec, executor, SpecTask(spec), after)
        if local and wait_all(submitted[stage.name]):
            return exitcodes.FAILED
    train = kinds.checked_like(job, last.spec)
    _refuse_local_ranks(train, executor)
    training, tail = _submit_chained(
        train, executor, None if local else _base_id(submitted[last.after]), name=train.name)
    if not (wait or local):
        return exitcodes.OK
    progress.follow(training[0].job, training[0].directory)
    return wait_all([j for jobs in submitted.values() for j in jobs] + (tail or training))


def _base_id(submitted: list[Submitted]) -> str:
    """The Slurm job id a dependency names (an array's, without its task)."""
    return submitted[0].job.job_id.split("_")[0]


def wait_all(submitted: list[Submitted]) -> int:
    """Wait for every job; the first failure's exit code (0 if all succeeded), as the job's
    ``outcome`` event recorded it (1 if it recorded none: killed outright, or it failed
    before it could)."""
    worst = exitcodes.OK
    for job, directory, more in submitted:
        try:
            job.results()  # every task: a multi-rank job has one per rank
            log.info("job %s finished", job.job_id)
        except Exception:  # submitit re-raises the job's error, its traceback as text
            code = _recorded_exit(job.job_id, [*more(), directory])
            if code == exitcodes.EARLY_STOPPED:  # the sweep's rule at work, not a failure
                log.info("job %s stopped early by the sweep's rule", job.job_id)
                continue
            log.error("job %s failed: exit %d (%s); its log: %s", job.job_id, code,
                      exitcodes.DESCRIPTIONS.get(code, "unknown"), job.paths.stderr)
            worst = worst or code
    return worst


def _recorded_exit(job_id: str, directories: list[Path]) -> int:
    """The exit code a failed job recorded (the first directory that has one); 1 if none
    did (killed outright) or it says 0, which a failed job cannot have meant."""
    for directory in directories:
        outcome = events.outcome_of(events.read(directory), job_id)
        if outcome is not None:
            return outcome["exit"] or exitcodes.FAILED
    return exitcodes.FAILED


def _record(spec: JobSpec, executor: str, ids: list[str], name: str) -> None:
    folder = log_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"time": dt.datetime.now().isoformat(timespec="seconds"), "executor": executor,
             "kind": spec.kind, "name": name, "spec": spec.source, "job_ids": ids}
    with open(folder / RECORDS, "a") as f:
        f.write(json.dumps(entry) + "\n")
