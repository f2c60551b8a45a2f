"""The ``pipeline`` kind: preprocess (array of shards) → merge → train, as one submission.

On Slurm the three stages are separate jobs chained by dependencies — the merge waits for
``afterok:<array>``, training for ``afterok:<merge>`` — with ``--kill-on-invalid-dep=yes``, so
a failed stage cancels the rest of the chain instead of leaving it pending forever. With the
local executor (or ``python -m jobs run``, see ``jobs.kinds.run``) the stages run one after the
other. The stage specs themselves come from ``jobs.core.loader.pipeline_stages``.
"""
from __future__ import annotations

import shlex

from jobs.core.loader import pipeline_stages
from jobs.core.schema import JobSpec
from jobs.scheduler import chain_loop, dependency_options, log_dir, sbatch_argv


def render_plan(job: JobSpec) -> str:
    """The chain as plain sbatch commands a user can paste into a shell."""
    pre, train = pipeline_stages(job)
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
        "# sbatch (plain Slurm), a chain of dependent jobs:",
        f"mkdir -p {shlex.quote(str(log_dir(pre)))} {shlex.quote(str(log_dir(train)))}",
        f"pre=$(sbatch --parsable {shlex.join(pre_argv[1:])})",
        f"merge=$(sbatch --parsable {after('pre')} {shlex.join(merge_argv[1:])})",
        f"first=$(sbatch --parsable {after('merge')} {shlex.join(train_argv[1:])})",
        *chain_loop(train, train_argv)])
