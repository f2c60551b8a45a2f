"""The ``preflight`` kind: prove an allocation in a minute or two, before a 24-hour run.

``python -m jobs preflight SPEC`` runs this on the train spec's own resources (every rank,
every node). Each rank checks and measures, in order, and every rank takes part in every
collective, so one broken rank is named instead of hanging the others:

1. **build**: its host, its device and Horovod's build (NCCL, MPI, Gloo) — a GPU job without
   its GPU has stopped before this, as training would (``gan/job.py``);
2. **allreduce**: a 16 MB sum whose result every rank verifies, and its bus bandwidth (NCCL's
   measure: the algorithm bandwidth × 2(n − 1)/n);
3. **data**: the spec's file opened and up to 4,096 of this rank's images read, as training
   reads them, in images/s;
4. **step**: the spec's own training step on random images (speed does not depend on their
   content), timed with the ranks averaging and with each rank alone: the measured scaling
   efficiency, beside what ``gan/scaling.py``'s formula (``plan``'s) predicts for that step
   time; and the MFU, the step's FLOPs against the device's measured matmul peak.

The data must keep up with the step: a rank whose reader is slower than its step consumes
fails (unless the spec stages: the node's copy reads at memory speed, and the shared file's
rate is only shown). Nothing is written into the run directory (the job's logs go beside
it). The step is skipped when a rank could not read the data or build the step: the report
names that rank. (A rank that fails inside a step, after building it, still leaves the
others waiting in its allreduce until the job's limit.)
"""
from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from gan import scaling
from gan.families import family
from gan.job import limit_threads_to_allocation, start_world
from gan.models.builders import Networks
from gan.models.conditioning import Conditioning
from gan.models.sampler import Sampler
from gan.parallel import devices, distributed
from gan.training import steps
from gan.training.data import ImageSet, Split
from gan.training.state import TrainState, configure_tensorflow
from jobs.core import events, exitcodes
from jobs.core.files import why
from jobs.core.schema import JobSpec

log = logging.getLogger(__name__)
ALLREDUCE_MB = 16
DATA_IMAGES = 4096  # four of the reader's blocks when streamed
STEPS = 5          # timed steps (after WARMUP), for each of: the ranks together, each alone
WARMUP = 2


@dataclass
class RankReport:
    rank: int
    host: str
    device: str = ""
    build: str = ""
    failed: dict[str, str] = field(default_factory=dict)   # check -> why
    figures: dict[str, float] = field(default_factory=dict)


def check_allreduce(world: distributed.World, report: RankReport) -> None:
    n = ALLREDUCE_MB * 2**20 // 4
    mine = tf.fill([n], float(world.rank + 1))
    expected = world.size * (world.size + 1) / 2
    total = world.sum(mine, name="preflight_check").numpy()
    if not np.all(total == expected):
        wrong = int(np.sum(total != expected))
        report.failed["allreduce"] = f"{wrong} of {n} values differ from {expected:g}"
        return
    if world.size == 1:
        return
    best = float("inf")
    for i in range(3):
        t = time.perf_counter()
        world.sum(mine, name=f"preflight_time_{i}").numpy()
        best = min(best, time.perf_counter() - t)
    algbw = n * 4 / best / 1e9
    report.figures["allreduce_busbw_gb_s"] = algbw * 2 * (world.size - 1) / world.size


def check_data(spec: JobSpec, world: distributed.World, report: RankReport
               ) -> ImageSet | None:
    """The data read as training reads it; the open set (the step is built from it), or
    None when this rank cannot read it."""
    work, data = spec.work, None
    try:
        data = ImageSet(work.data, work.in_memory_max_gb)
        split = Split(world.rank, world.size, work.batch_size)
        steps = min(data.steps_per_epoch(split), max(1, DATA_IMAGES // work.batch_size))
        t, count = time.perf_counter(), 0
        for images, _, _ in data.batches(work.seed, 0, split):
            count += len(images)
            if count >= steps * work.batch_size:
                break
        report.figures["data_img_s"] = count / (time.perf_counter() - t)
        return data
    except Exception as exc:  # any way the file fails this rank: named, never a hang
        report.failed["data"] = f"{work.data}: {why(exc)}"
        if data is not None:
            data.close()
        return None


def device_peak_flops(dtype: str = "float32", n: int = 2048, repeats: int = 5) -> float:
    """The device's matmul FLOP/s in the compute type: the best of ``repeats`` n² products
    (``bench/bench_step.py`` measures its MFU baseline with this too)."""
    a = tf.cast(tf.random.stateless_normal((n, n), [1, 2]), dtype)
    b = tf.cast(tf.random.stateless_normal((n, n), [3, 4]), dtype)
    tf.matmul(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        tf.matmul(a, b).numpy()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best


def timed_steps(step, images, condition) -> float:
    """Seconds per step, the last read back so that the device has finished."""
    stop = tf.constant(0.0)
    for i in range(WARMUP):
        step(images, condition, tf.constant(i, tf.int64), stop)[0].numpy()
    t = time.perf_counter()
    for i in range(STEPS):
        metrics, _ = step(images, condition, tf.constant(WARMUP + i, tf.int64), stop)
    metrics.numpy()
    return (time.perf_counter() - t) / STEPS


@dataclass
class StepRig:
    """The spec's step built twice (with the ranks, and alone) and a batch to feed it."""
    together: object
    alone: object
    images: tf.Tensor
    condition: tf.Tensor
    channels: int
    num_classes: int


def build_step(spec: JobSpec, world: distributed.World, data: ImageSet) -> StepRig:
    """Networks, optimizers and the two steps; no collective yet, so a rank that fails here
    is told apart before any rank waits in the step's allreduce."""
    work = spec.work
    configure_tensorflow(work)
    conditioning = Conditioning.from_data(data, family(work.model.name).condition,
                                          work.model.num_classes,
                                          work.latent.class_probabilities)
    state = TrainState(work, world.size, conditioning)
    nets = Networks(state.G, state.D, state.E)
    opts = steps.Optimizers(state.g_opt, state.d_opt, state.ae_opt)
    sampler = Sampler(work, conditioning, state.G, state.E, state.D)
    config = steps.StepConfig.from_spec(work, world.rank, state.augment_p)
    rng = np.random.default_rng(world.rank)
    return StepRig(
        steps.make_step(config, nets, opts, world, sampler, _no_hook),
        steps.make_step(config, nets, opts, distributed.World(0, 1, 0), sampler, _no_hook),
        tf.constant(rng.integers(0, 256, (work.batch_size, *data.shape), np.uint8)),
        sampler.sample_conditions(work.batch_size, tf.constant([7, world.rank], tf.int64)),
        data.shape[-1], conditioning.num_classes or 10)


def check_step(spec: JobSpec, world: distributed.World, rig: StepRig,
               report: RankReport) -> None:
    """The step timed with the ranks and alone; MFU against the device's peak."""
    work = spec.work
    together = timed_steps(rig.together, rig.images, rig.condition)
    world.barrier(name="preflight_alone")  # every rank alone at the same time
    alone = timed_steps(rig.alone, rig.images, rig.condition)
    prof = scaling.profile(work.model, rig.channels, rig.num_classes, loss=work.loss)
    link = scaling.default_link(spec.resources.nodes)
    comm = scaling.comm_s(prof, world.size, link, work.horovod.compression)
    peak = device_peak_flops(work.precision)
    report.figures.update(
        step_ms=together * 1e3, alone_ms=alone * 1e3, step_img_s=work.batch_size / together,
        efficiency=alone / together, predicted=scaling.efficiency(alone, comm),
        mfu=prof.flops_per_image * work.batch_size / alone / peak)


def step_checks(spec: JobSpec, world: distributed.World, data: ImageSet | None,
                report: RankReport) -> None:
    """Build on every rank, agree that all built, then time; a rank that could not read the
    data or build the step is named, and no rank is left waiting in an allreduce."""
    unread = [r for r in world.gather_object(report, name="preflight_data") if r.failed]
    if unread:  # the step's allreduce needs every rank: skip it, named below
        report.failed["step"] = "skipped: " + ", ".join(
            f"rank {r.rank} failed {', '.join(r.failed)}" for r in unread)
        return
    rig, problem = None, None
    try:
        rig = build_step(spec, world, data)
    except Exception as exc:  # before any collective of the step
        problem = why(exc)
    failed = [(r, p) for r, p in enumerate(world.gather_object(problem, name="preflight_built"))
              if p]
    if failed:
        report.failed["step"] = problem or f"skipped: rank {failed[0][0]} could not build it"
        return
    try:
        check_step(spec, world, rig, report)
    except Exception as exc:  # inside the step: this rank fails, named (the others may wait)
        report.failed["step"] = why(exc)


def _no_hook(step, metrics) -> None:
    """The preflight's steps count nothing: it keeps no state."""


def checks(spec: JobSpec, world: distributed.World) -> list[RankReport]:
    """Every check on this rank, every rank's report gathered (in rank order)."""
    report = RankReport(world.rank, socket.gethostname(), build=world.build)
    gpus = tf.config.list_logical_devices("GPU")
    report.device = gpus[0].name if gpus else "CPU"
    check_allreduce(world, report)
    data = check_data(spec, world, report)
    try:
        step_checks(spec, world, data, report)
    finally:
        if data is not None:
            data.close()
    # staged, training reads the node's copy at memory speed: the shared file's rate is shown
    if spec.work.stage != "local" and "step_img_s" in report.figures \
            and "data_img_s" in report.figures \
            and report.figures["data_img_s"] < report.figures["step_img_s"]:
        report.failed["data rate"] = (f"{report.figures['data_img_s']:,.0f} img/s read, the "
                                      f"step takes {report.figures['step_img_s']:,.0f}: "
                                      "stage the data (train.stage: local)")
    return world.gather_object(report, name="preflight_reports")


def describe(reports: list[RankReport]) -> list[str]:
    """The report's lines: one per rank, then the verdict."""
    lines = []
    for r in reports:
        f = r.figures
        lines.append(
            f"preflight rank {r.rank} on {r.host}: {r.device}, {r.build}; allreduce "
            + (f"ok {f['allreduce_busbw_gb_s']:.2f} GB/s bus" if "allreduce_busbw_gb_s" in f
               else "ok" if "allreduce" not in r.failed else "FAILED")
            + (f"; data {f['data_img_s']:,.0f} img/s" if "data_img_s" in f else "")
            + (f"; step {f['step_ms']:.1f} ms ({f['step_img_s']:,.0f} img/s), alone "
               f"{f['alone_ms']:.1f} ms; MFU {f['mfu']:.1%}" if "step_ms" in f else ""))
    chief = reports[0].figures
    if "efficiency" in chief:
        lines.append(f"preflight scaling: {chief['efficiency']:.0%} measured on "
                     f"{len(reports)} ranks, {chief['predicted']:.0%} predicted for this step "
                     "time (gan/scaling.py, plan's formula)")
    return lines


def verdict(reports: list[RankReport]) -> tuple[int, str]:
    """(exit code, its line): 0, or 3 naming the first failed check and its rank."""
    for r in reports:
        for check, reason in r.failed.items():
            if not reason.startswith("skipped"):
                return exitcodes.NOT_RUNNABLE, (f"preflight failed: {check} on rank {r.rank} "
                                                f"({r.host}): {reason}")
    return exitcodes.OK, f"preflight passed on {len(reports)} ranks"


def run(spec: JobSpec) -> int:
    """The preflight job on this rank (every rank of the allocation runs it)."""
    limit_threads_to_allocation()
    try:
        world, _ = start_world(spec)
    except (distributed.WorldMismatch, devices.NoDevice) as exc:
        log.error("preflight failed: build on %s: %s", socket.gethostname(), exc)
        return exitcodes.NOT_RUNNABLE
    reports = checks(spec, world)
    code, line = verdict(reports)
    if not world.is_chief:
        # the verdict is the chief's to give (every rank holds the same one): a rank ending
        # non-zero first would make srun (--kill-on-bad-exit) end the chief mid-report
        return exitcodes.OK
    lines = describe(reports)
    for text in lines:
        log.info("%s", text)
    (log.info if code == exitcodes.OK else log.error)("%s", line)
    # what ``submit --preflight`` prints, beside the job's logs (never in the run directory)
    events.emit(spec.work.run_dir, "preflight", rank=world.rank, lines=[*lines, line],
                exit=code)
    return code
