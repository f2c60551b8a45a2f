"""The ``pipeline`` kind: preprocess (array of shards) → merge → train, as one submission.

On Slurm the three stages are separate jobs chained by dependencies — the merge waits for
``afterok:<array>``, training for ``afterok:<merge>`` — with ``--kill-on-invalid-dep=yes``, so
a failed stage cancels the rest of the chain instead of leaving it pending forever. With the
local executor (or ``python -m jobs run``) the stages run one after the other.
"""
from __future__ import annotations

import logging
import shlex
from pathlib import Path

from jobs import exitcodes
from jobs.loader import SpecError, load_spec, parse_set_args
from jobs.schema import JobSpec

log = logging.getLogger(__name__)


def stages(job: JobSpec) -> tuple[JobSpec, JobSpec]:
    """(preprocess spec, train spec), overrides applied, train.data wired to the merge."""
    pre = load_spec(job.work.preprocess, parse_set_args(job.work.preprocess_set))
    if pre.kind != "preprocess":
        raise SpecError([f"{job.source}: pipeline.preprocess: {job.work.preprocess} is a "
                         f"'{pre.kind}' spec"])
    from preprocess.merge import MERGED_NAME

    merged = str(Path(pre.work.output_dir) / MERGED_NAME)
    train = load_spec(job.work.train, parse_set_args(job.work.train_set)
                      + [("train.data", merged)])
    if train.kind != "train":
        raise SpecError([f"{job.source}: pipeline.train: {job.work.train} is a "
                         f"'{train.kind}' spec"])
    return pre, train


def validate(job: JobSpec) -> list[str]:
    try:
        stages(job)
    except SpecError as exc:
        return [f"{p} [pipeline stage]" for p in exc.problems]
    return []


def run(spec: JobSpec, index: int | None = None, fresh: bool = False) -> int:
    """Both stages here, one after the other (what the local executor does too)."""
    from jobs import runner

    pre, train = stages(spec)
    code = runner.run(pre)
    if code != exitcodes.OK:
        log.error("preprocess stage failed (exit %d): not training", code)
        return code
    return runner.run(train, fresh=fresh)


def render_plan(job: JobSpec) -> str:
    """The chain as plain sbatch commands a user can paste into a shell."""
    from jobs.submission import dependency_options, log_dir, sbatch_argv

    pre, train = stages(job)
    pre_set, train_set = job.work.preprocess_set, job.work.train_set + [
        f"train.data={train.work.data}"]
    pre_argv = sbatch_argv(pre, pre_set)
    merge_argv = sbatch_argv(pre, pre_set, script="merge.sbatch", options={
        "array": False, "job-name": f"{pre.name}-merge",
        "output": str(log_dir(pre) / "%x-%j.out")})
    train_argv = sbatch_argv(train, train_set)

    def after(var: str) -> str:
        return " ".join(f"--{k}={v}" for k, v in dependency_options(f"${var}").items())

    return "\n".join([
        f"mkdir -p {shlex.quote(str(log_dir(pre)))} {shlex.quote(str(log_dir(train)))}",
        f"pre=$(sbatch --parsable {shlex.join(pre_argv[1:])})",
        f"merge=$(sbatch --parsable {after('pre')} {shlex.join(merge_argv[1:])})",
        f"sbatch {after('merge')} {shlex.join(train_argv[1:])}"])
