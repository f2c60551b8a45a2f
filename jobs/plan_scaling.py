"""``python -m jobs plan``'s scaling check: before a training job asks for GPUs, predict with
``gan.scaling`` (the ring-allreduce formula) what share of their speed its ranks keep, and warn
below 70%, naming the knob that fixes it: a larger ``train.batch_size`` per rank (more compute
per byte sent), ``train.horovod.compression: fp16`` (half the bytes), or fewer ranks.

Nothing is measured here: the step time is estimated from the model's FLOPs at a GPU's
throughput and the link is a default (``gan.scaling.default_link``; environment variables
override both). Only GPU jobs are checked: a CPU rank computes so slowly that averaging hides
in its step (bench/scaling.py measures 2 CPU ranks), and the knobs matter where GPUs idle.

It also warns when a spec asks for GPUs and this environment's TensorFlow is the CPU build:
every rank would stop before training (``gan.parallel.devices``) on nodes that share it.
"""
from __future__ import annotations

from dataclasses import dataclass

from gan import scaling
from gan.parallel import devices
from jobs import kinds
from jobs.core.schema import JobSpec

THRESHOLD = 0.70  # below this share of the ideal speed-up, plan warns


@dataclass(frozen=True)
class Layout:
    """Where the ranks run: ``nodes`` x ``per_node``."""
    nodes: int
    per_node: int

    @property
    def ranks(self) -> int:
        return self.nodes * self.per_node


def _profile(job: JobSpec) -> scaling.StepProfile:
    """The model's step for faces (3 channels), with its loss; classes the data decides
    count as 10."""
    return scaling.profile(job.work.model, num_classes=job.work.model.num_classes or 10,
                           loss=job.work.loss)


def predict(job: JobSpec, layout: Layout, batch: int, compression: str
            ) -> tuple[float, float, float]:
    """(efficiency, step seconds, averaging seconds) of ``job``'s model on ``layout``."""
    prof = _profile(job)
    step = scaling.gpu_step_s(prof, batch)
    comm = scaling.comm_s(prof, layout.ranks, scaling.default_link(layout.nodes), compression)
    return scaling.efficiency(step, comm), step, comm


def _fewer_ranks(job: JobSpec, layout: Layout, batch: int, compression: str) -> str:
    """The largest halving of the rank count that scales, packed on as few nodes as fit."""
    ranks = layout.ranks // 2
    while ranks >= 2:
        nodes = -(-ranks // layout.per_node)
        eff = predict(job, Layout(nodes, -(-ranks // nodes)), batch, compression)[0]
        if eff >= THRESHOLD:
            return f"or ask for fewer ranks ({ranks}: {eff:.0%})"
        ranks //= 2
    return "or ask for fewer ranks (here only one GPU, with nothing to average, would)"


def _knobs(job: JobSpec, layout: Layout) -> str:
    batch, compression = job.work.batch_size, job.work.horovod.compression
    knobs = []
    for factor in (2, 4, 8, 16, 32, 64):
        eff = predict(job, layout, batch * factor, compression)[0]
        if eff >= THRESHOLD:
            knobs.append(f"raise train.batch_size ({batch * factor} per rank: {eff:.0%})")
            break
    if compression == "none":
        eff = predict(job, layout, batch, "fp16")[0]
        knobs.append(f"set train.horovod.compression: fp16 ({eff:.0%})")
    knobs.append(_fewer_ranks(job, layout, batch, compression))
    return ", ".join(knobs)


def train_warning(job: JobSpec) -> str | None:
    """The warning for one train spec, or None when it scales (or is not a multi-GPU job)."""
    res = job.resources
    layout = Layout(res.nodes, res.tasks_per_node)
    if not res.gpus_per_node or layout.ranks <= 1:
        return None
    batch, compression = job.work.batch_size, job.work.horovod.compression
    eff, step, comm = predict(job, layout, batch, compression)
    if eff >= THRESHOLD:
        return None
    link = scaling.default_link(layout.nodes)
    prof = _profile(job)
    where = "between nodes" if layout.nodes > 1 else "within the node"
    return (f"# warning: {layout.ranks} GPU ranks at train.batch_size {batch} would keep "
            f"~{eff:.0%} of their speed (< {THRESHOLD:.0%}): a step computes ~"
            f"{step * 1e3:.1f} ms (its FLOPs at {scaling.gpu_tflops():g} TFLOP/s, "
            f"FACEGAN_GPU_TFLOPS) but averaging {prof.gradient_bytes(compression) / 1e6:.1f} MB "
            f"of gradients takes ~{comm * 1e3:.1f} ms (ring allreduce at {link.gbit_s:g} Gb/s "
            f"{where}; gan/scaling.py). To scale: {_knobs(job, layout)}")


def device_warning(job: JobSpec) -> str | None:
    """A spec that asks for GPUs (a field says so) where TensorFlow is the CPU build (not for
    a containerised job: its image has its own)."""
    reason = devices.gpu_reason(job.work.device, job.resources.gpus_per_node)
    if reason is None or job.resources.container.runtime != "none" or \
            devices.tensorflow_cuda_version():  # a container brings its own TensorFlow
        return None
    return (f"# warning: {reason}, but this environment's TensorFlow is the CPU build: on "
            "nodes that share it every rank stops before training (exit 3). Set it up with "
            "./run setup --gpu, or set train.device: cpu")


def device_warnings(job: JobSpec) -> list[str]:
    """:func:`device_warning` for the first training the job runs: a train spec, a
    pipeline's train stage, a sweep's first point (the points share the resources)."""
    trainings = kinds.of(job).trainings(job)
    found = device_warning(trainings[0][1]) if trainings else None
    return [found] if found else []


def plan_warnings(job: JobSpec) -> list[str]:
    """Scaling warnings for a train spec, a pipeline's train stage or every sweep point (one
    line naming the variable when an override in the environment is not a positive number)."""
    try:
        return _warnings(job)
    except ValueError as error:
        return [f"# warning: scaling not predicted: {error}"]


def _warnings(job: JobSpec) -> list[str]:
    found = [(train_warning(spec), label) for label, spec in kinds.of(job).trainings(job)]
    return [f"{w} [{label}]" if label else w for w, label in found if w]