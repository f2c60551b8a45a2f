"""Submit jobs through submitit (Slurm, or its local executor) and report their state.

The submitted callable is :class:`SpecTask`, a submitit ``Checkpointable``: when Slurm signals
a timeout or preemption, submitit calls ``checkpoint()``, which resubmits the *same* spec — the
run directory is unchanged, so the job resumes from its own last checkpoint.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Any

import submitit

from jobs import exitcodes, runtime
from jobs.schema import JobSpec
from jobs.submission import (array_size, log_dir, submitit_executor_args,
                             submitit_parameters)

log = logging.getLogger(__name__)
RECORDS = "submissions.jsonl"


class JobFailed(RuntimeError):
    """Raised inside a submitit job so its result shows the exit code and its meaning."""

    def __init__(self, code: int):
        super().__init__(f"exit code {code}: {exitcodes.DESCRIPTIONS.get(code, 'unknown')}")
        self.code = code


class SpecTask(submitit.helpers.Checkpointable):
    """What submitit pickles and runs on the node: one spec, optionally one array index."""

    def __init__(self, spec: JobSpec):
        self.spec = spec

    def __call__(self, index: int | None = None) -> int:
        from jobs import runner

        runtime.configure()
        code = runner.run(self.spec, index=index)
        if code != exitcodes.OK:
            raise JobFailed(code)
        return code


def make_executor(spec: JobSpec, executor: str) -> submitit.AutoExecutor:
    args = submitit_executor_args(spec)
    Path(args["folder"]).parent.mkdir(parents=True, exist_ok=True)
    ex = submitit.AutoExecutor(cluster=executor, **args)
    ex.update_parameters(**submitit_parameters(spec))
    return ex


def submit(spec: JobSpec, executor: str = "slurm", wait: bool = False) -> int:
    """Submit ``spec``; arrays (preprocess shards, sweep points) become one Slurm array."""
    ex = make_executor(spec, executor)
    task = SpecTask(spec)
    size = array_size(spec)
    jobs = ex.map_array(task, range(size)) if size is not None else [ex.submit(task)]
    ids = [job.job_id for job in jobs]
    _record(spec, executor, ids)
    print(f"submitted {spec.kind} '{spec.name}' with the {executor} executor: {', '.join(ids)}")
    print(f"logs: {Path(submitit_executor_args(spec)['folder']).parent}")
    if not (wait or executor == "local"):  # local jobs are children of this process: wait
        return exitcodes.OK
    worst = exitcodes.OK
    for job in jobs:
        try:
            job.result()
            log.info("job %s finished", job.job_id)
        except Exception as exc:  # submitit re-raises the job's error with its traceback
            code = _exit_code(exc)
            log.error("job %s failed: %s", job.job_id, str(exc).strip().splitlines()[-1])
            worst = worst or code
    return worst


def _exit_code(exc: BaseException) -> int:
    text = str(exc)
    for code, description in exitcodes.DESCRIPTIONS.items():
        if code and f"exit code {code}: {description}" in text:
            return code
    return exitcodes.FAILED


def _record(spec: JobSpec, executor: str, ids: list[str]) -> None:
    folder = log_dir(spec)
    folder.mkdir(parents=True, exist_ok=True)
    entry = {"time": dt.datetime.now().isoformat(timespec="seconds"), "executor": executor,
             "kind": spec.kind, "name": spec.name, "spec": spec.source, "job_ids": ids}
    with open(folder / RECORDS, "a") as f:
        f.write(json.dumps(entry) + "\n")


def status(work_dir: Path) -> str:
    """A short report: every submission recorded under ``work_dir`` and what Slurm says."""
    records_file = work_dir / "logs" / RECORDS
    if not records_file.exists():
        return f"{work_dir}: no submissions recorded"
    lines = []
    records = [json.loads(line) for line in records_file.read_text().splitlines() if line]
    for rec in records:
        lines.append(f"{rec['time']}  {rec['executor']:<5} {rec['kind']:<10} {rec['name']}  "
                     f"jobs {', '.join(rec['job_ids'])}")
    slurm_ids = [i for rec in records if rec["executor"] == "slurm" for i in rec["job_ids"]]
    if slurm_ids:
        lines += ["", _sacct(slurm_ids)]
    return "\n".join(lines)


def _sacct(ids: list[str]) -> str:
    if shutil.which("sacct") is None:
        return "(sacct not found: Slurm state unavailable on this machine)"
    base_ids = sorted({i.split("_")[0] for i in ids})
    cmd = ["sacct", "-X", "-n", "-P", "-j", ",".join(base_ids),
           "-o", "JobID,JobName,State,Elapsed,ExitCode"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        return f"(sacct failed: {proc.stderr.strip()})"
    rows: list[Any] = [line.split("|") for line in proc.stdout.splitlines() if line]
    return "\n".join(f"{r[0]:<16} {r[1]:<20} {r[2]:<12} {r[3]:>10} {r[4]}" for r in rows)
