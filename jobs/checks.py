"""Rules beyond the schema, checked before anything runs or is submitted: the model family's
(``gan.families``) for a train spec, and the same for every spec a sweep or a pipeline refers
to; and no Horovod ranks inside Docker. ``validate``, ``plan``, ``run`` (every route: CLI,
sbatch, submitit) and ``submit`` call this, so a spec the family cannot train never reaches a
node (exit 2, field named)."""
from __future__ import annotations

from pathlib import Path

from gan import families
from jobs.core.files import wrong_checksum
from jobs.core.loader import SpecError, inception_sections, pipeline_problems, pipeline_stages
from jobs.core.schema import JobSpec
from jobs.sweep import expand_points, point_spec, validate_points


def docker_ranks_problem(spec: JobSpec) -> list[str]:
    """Horovod ranks that srun starts inside Docker cannot join one world: srun's PMIx server,
    its socket and the process IDs it checks stay outside each container, so every rank would
    train alone into the same run directory. Apptainer shares the host's namespaces."""
    res = spec.resources
    ranks = res.nodes * res.tasks_per_node
    if res.container.runtime != "docker" or ranks <= 1 or spec.kind not in ("train", "sweep"):
        return []
    return [f"{spec.source}: resources.container.runtime is docker with {ranks} Horovod ranks: "
            "ranks srun starts inside Docker cannot join one world (srun's PMIx server stays "
            "outside each container) and would each train alone; use "
            "resources.container.runtime: apptainer, or one rank (resources.nodes=1, "
            "resources.tasks_per_node=1)"]


def deep_problems(spec: JobSpec) -> list[str]:
    """Beyond the schema: the model family's rules (``gan.families``) for a train spec, and
    for the specs a sweep or pipeline refers to (when those files exist)."""
    own = [f"{spec.source}: {p}" for where, inc in inception_sections(spec.kind, spec.work)
           if inc.weights and (p := wrong_checksum(inc.weights, inc.sha256, where))]
    own += docker_ranks_problem(spec)
    if spec.kind == "train":
        return own + [f"{spec.source}: {p}" for p in families.problems(
            spec.work.model.name, spec.work.latent.distribution)]
    if spec.kind == "generate":
        return own
    if spec.kind == "sweep" and Path(spec.work.base).exists():
        # the sweep's own resources apply to every point: said once, naming the sweep
        points = range(len(expand_points(spec.work)))
        return own or validate_points(spec) or [f"{p} [sweep point {i}]" for i in points
                                                for p in deep_problems(point_spec(spec, i))]
    if spec.kind == "pipeline" and all(Path(p).exists() for p in (spec.work.preprocess,
                                                                   spec.work.train)):
        return pipeline_problems(spec) or [f"{p} [pipeline stage]" for p in
                                           deep_problems(pipeline_stages(spec)[1])]
    return []


def raise_problems(spec: JobSpec) -> None:
    problems = deep_problems(spec)
    if problems:
        raise SpecError(problems)
