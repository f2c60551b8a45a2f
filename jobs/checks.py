"""Rules beyond the schema, checked before anything runs or is submitted: each kind's own
(``jobs/kinds.py``: the model family's for a train spec, the same for every spec a sweep or a
pipeline refers to) and no Horovod ranks inside Docker. ``validate``, ``plan``, ``run`` (every
route: CLI, sbatch, submitit) and ``submit`` call this, so a spec the family cannot train
never reaches a node (exit 2, field named).

A spec is checked once per command: ``ensure_checked`` marks it (``JobSpec.checked``), and the
specs a checked sweep or pipeline makes for its points and stages inherit the mark, as the
deep check covered them. A spec loaded afresh (the sbatch script's ``python -m jobs run`` on
the node) is checked again, where it will run."""
from __future__ import annotations

from jobs import kinds
from jobs.core.loader import SpecError
from jobs.core.schema import JobSpec


def docker_ranks_problem(spec: JobSpec) -> list[str]:
    """Horovod ranks that srun starts inside Docker cannot join one world: srun's PMIx server,
    its socket and the process IDs it checks stay outside each container, so every rank would
    train alone into the same run directory. Apptainer shares the host's namespaces."""
    res = spec.resources
    ranks = res.nodes * res.tasks_per_node
    if res.container.runtime != "docker" or ranks <= 1 or not kinds.of(spec).horovod:
        return []
    return [f"{spec.source}: resources.container.runtime is docker with {ranks} Horovod ranks: "
            "ranks srun starts inside Docker cannot join one world (srun's PMIx server stays "
            "outside each container) and would each train alone; use "
            "resources.container.runtime: apptainer, or one rank (resources.nodes=1, "
            "resources.tasks_per_node=1)"]


def resubmit_problem(spec: JobSpec) -> list[str]:
    """A resubmit chain resumes a training; other kinds have nothing to resume."""
    if not spec.resources.resubmit or kinds.of(spec).requeues:
        return []
    return [f"{spec.source}: resources.resubmit: only train and sweep jobs resume, not a "
            f"{spec.kind} job" + (" (set it in the pipeline's train stage spec)"
                                  if kinds.is_(spec, "pipeline") else "")]


def deep_problems(spec: JobSpec) -> list[str]:
    """Inception checksums, the Docker and resubmit rules, then the kind's own rules; a
    sweep's points and a pipeline's train stage are checked through this too."""
    found = kinds.checksum_problems(spec) + docker_ranks_problem(spec) + resubmit_problem(spec)
    return kinds.of(spec).checks(spec, found, deep_problems)


def ensure_checked(spec: JobSpec) -> None:
    """Raise the problems of a spec not yet checked in this command; mark it checked."""
    if spec.checked:
        return
    problems = deep_problems(spec)
    if problems:
        raise SpecError(problems)
    spec.checked = True
