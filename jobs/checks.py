"""Rules beyond the schema that hold for every kind, given what the kind is (its entry in
``jobs/kinds.py``, which applies them with the kind's own rules before anything runs or is
submitted)."""
from __future__ import annotations

from jobs.core.schema import JobSpec


def docker_ranks_problem(spec: JobSpec, horovod: bool) -> list[str]:
    """Horovod ranks that srun starts inside Docker cannot join one world: srun's PMIx server,
    its socket and the process IDs it checks stay outside each container, so every rank would
    train alone into the same run directory. Apptainer shares the host's namespaces."""
    res = spec.resources
    ranks = res.nodes * res.tasks_per_node
    if res.container.runtime != "docker" or ranks <= 1 or not horovod:
        return []
    return [f"{spec.source}: resources.container.runtime is docker with {ranks} Horovod ranks: "
            "ranks srun starts inside Docker cannot join one world (srun's PMIx server stays "
            "outside each container) and would each train alone; use "
            "resources.container.runtime: apptainer, or one rank (resources.nodes=1, "
            "resources.tasks_per_node=1)"]


def resubmit_problem(spec: JobSpec, requeues: bool, sbatch: str) -> list[str]:
    """A resubmit chain resumes a training; other kinds have nothing to resume (a kind
    without a script of its own is submitted as its stages: a pipeline)."""
    if not spec.resources.resubmit or requeues:
        return []
    return [f"{spec.source}: resources.resubmit: only train and sweep jobs resume, not a "
            f"{spec.kind} job" + ("" if sbatch else " (set it in the pipeline's train stage "
                                                    "spec)")]
