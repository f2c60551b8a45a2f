"""The ``pipeline`` kind: preprocess (array of shards) → merge → train, as one submission.

On Slurm the three stages are separate jobs chained by dependencies — the merge waits for
``afterok:<array>``, training for ``afterok:<merge>`` — with ``--kill-on-invalid-dep=yes``, so
a failed stage cancels the rest of the chain instead of leaving it pending forever. With the
local executor (or ``python -m jobs run``, see ``jobs.kinds.run``) the stages run one after the
other. The stage specs themselves come from ``jobs.core.loader.pipeline_stages``.
"""
from __future__ import annotations

import shlex

from jobs.core.schema import JobSpec
from jobs.core.stages import stages
from jobs.scheduler import chain_loop, dependency_options, log_dir, sbatch_argv


def render_plan(job: JobSpec) -> str:
    """The chain as plain sbatch commands a user can paste into a shell."""
    chain = stages(job)
    lines = ["# sbatch (plain Slurm), a chain of dependent jobs:",
             "mkdir -p " + " ".join(dict.fromkeys(shlex.quote(str(log_dir(s.spec)))
                                                  for s in chain))]
    for stage in chain:
        argv = sbatch_argv(stage.spec, stage.sets)
        after = "" if stage.after is None else " ".join(
            f"--{k}={v}" for k, v in dependency_options(f"${stage.after}").items()) + " "
        lines.append(f"{stage.name}=$(sbatch --parsable {after}{shlex.join(argv[1:])})")
    return "\n".join([*lines, *chain_loop(chain[-1].spec, argv)])
