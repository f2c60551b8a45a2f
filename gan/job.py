"""The ``train`` job kind: what ``python -m jobs run`` and ``slurm/train.sbatch`` call."""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Callable

from gan.parallel import devices, distributed
from jobs.core import (
    chain,
    events,
    exitcodes,
    files,
    runlock,
    runtime,
    stall,
    tracking,
    watchdog,
)
from jobs.core.launch import Judge, Launch
from jobs.core.schema import JobSpec
from jobs.core.signals import StopSignals

log = logging.getLogger(__name__)


def limit_threads_to_allocation() -> None:
    """TensorFlow sizes its thread pools by the node's cores, not by the job's allocation:
    on a shared node that oversubscribes the CPUs. Follow Slurm's --cpus-per-task."""
    cpus = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if cpus.isdigit() and "TF_NUM_INTRAOP_THREADS" not in os.environ:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(int(cpus))
        tf.config.threading.set_inter_op_parallelism_threads(min(2, int(cpus)))


def start_world(spec: JobSpec) -> tuple[distributed.World, str]:
    """Join the ranks and put each on its device: the world and this rank's device line.
    Raises WorldMismatch or NoDevice (one line each) where the job must not train: a launch
    mistake, or a GPU job without its GPU."""
    found = devices.probe()
    reason = devices.gpu_reason(spec.work.device, spec.resources.gpus_per_node,
                                devices.installed_flavour())
    use_gpu = devices.uses_gpu(spec.work.device, reason, found)
    world = distributed.init(use_gpu=use_gpu)
    if use_gpu and found.gpus:  # the one this rank pinned, named
        found = dataclasses.replace(found, gpus=devices.pinned_gpus() or found.gpus)
    nccl = devices.nccl_version(world.nccl_built)
    # every rank says where it runs: the first thing to read when a multi-node job misbehaves
    log.info("rank %d/%d on %s, pid %d, restart %s", world.rank, world.size,
             socket.gethostname(), os.getpid(), os.environ.get("SLURM_RESTART_COUNT", "0"))
    device = devices.describe(found, use_gpu, nccl, world.size)
    log.info("rank %d %s", world.rank, device)
    problem = devices.refusal(found, reason, world.size, nccl,
                              spec.work.horovod.host_allreduce)
    # one decision for all ranks, before anything else
    problem = devices.first_refusal(world.gather_object(problem, name="devices"))
    if problem:
        raise devices.NoDevice(problem)
    return world, device


def run(spec: JobSpec, launch: Launch) -> int:
    """Train ``spec``; an exit code of jobs.core.exitcodes (what the Slurm scripts act on).
    ``launch.link``: which link of a resubmit chain this job is (``resources.resubmit``);
    ``launch.judge``: a sweep's early-stopping rule, asked after every quality measurement."""
    if devices.gpu_reason(spec.work.device, spec.resources.gpus_per_node,
                          devices.installed_flavour()):
        # before TensorFlow's import below; the spec's env: and the user's own values win
        if "TF_CPP_MIN_LOG_LEVEL" not in spec.env:  # (the quiet default is lowered)
            runtime.show_tf_warnings()
        for name, value in devices.gpu_environment().items():
            os.environ.setdefault(name, value)
    if spec.work.watchdog.enabled:  # read by hvd.init: Horovod's stall check agrees with ours
        os.environ.update(spec.work.watchdog.horovod_environment())
    # from here on a stop signal means "checkpoint as soon as you can"
    stop = launch.stop.arm()
    limit_threads_to_allocation()
    try:
        try:
            world, device = start_world(spec)
        except (distributed.WorldMismatch, devices.NoDevice) as exc:  # never worth a requeue
            log.error("%s", exc)
            return exitcodes.NOT_RUNNABLE
        if not world.is_chief:  # only rank 0 logs progress; the others speak up on problems
            logging.getLogger().setLevel(logging.WARNING)
        lock, problem = take_run_dir(spec, world, launch.link)
        if problem:
            log.error("%s", problem)
            return exitcodes.NOT_RUNNABLE
        code, holding = exitcodes.FAILED, Holding(spec, world, launch.link, lock, device)
        try:
            code = train(spec, world, launch.fresh, stop, launch.judge, holding.started)
            return code
        finally:
            holding.ended(code)
    finally:
        stop.restore()


class Holding:
    """This job's hold on the run directory: rank 0 records ``job_started`` once the trainer
    is built (every check passed: a job refused on the way, ``--fresh`` or another model,
    leaves the last real run's record alone), and the lock's fate at the end: kept for a
    requeue, released otherwise. The ``outcome`` event is the runner's (``jobs/kinds.py``),
    written as the job returns its exit code."""

    def __init__(self, spec: JobSpec, world: distributed.World, link: chain.Link,
                 lock: runlock.RunLock | None, device: str):
        self.spec, self.world, self.link, self.lock = spec, world, link, lock
        self.device = device
        self.tracking: tracking.Tracking | None = None

    def started(self, trainer) -> None:
        """Once the trainer is built: the record's ``job_started``, and the tracker (if the
        spec asks for one) following the trainer's events from here."""
        if self.lock is None:
            return
        events.emit(self.spec.work.run_dir, "job_started", rank=self.world.rank,
                    kind=self.spec.kind, ranks=self.world.size, device=self.device,
                    link=str(self.link), restart=self.lock.me.restart,
                    spec=self.spec.to_dict(env_values=False))
        self.tracking = tracking.open_tracking(self.spec, self.world.size, self.device)
        if self.tracking is not None:
            trainer.on_event = self.tracking.record

    def ended(self, code: int) -> None:
        if self.lock is None:
            return
        self._hand_on_lock(code)
        if self.tracking is not None:  # after the lock: a slow tracker never holds it
            self.tracking.end(code, exitcodes.DESCRIPTIONS.get(code, "unknown"))

    def _hand_on_lock(self, code: int) -> None:
        try:
            self.lock.keep() if code == exitcodes.REQUEUE else self.lock.release()
        except OSError as exc:  # the next job judges the lock as stale instead
            log.warning("%s: the run lock could not be handed on: %s", self.spec.work.run_dir,
                        files.why(exc))


def take_run_dir(spec: JobSpec, world: distributed.World,
                 link: chain.Link) -> tuple[runlock.RunLock | None, str | None]:
    """Rank 0 locks the run directory (one job per run directory); every rank learns whether
    it may train. The lock, on rank 0, and the refusal, if any, on every rank."""
    lock, problem = None, None
    if world.is_chief:
        lock = runlock.RunLock(spec.work.run_dir, runlock.this_process(link))
        try:
            lock.acquire()
        except (runlock.RunDirInUse, OSError) as exc:
            lock, problem = None, str(exc)
    problem = devices.first_refusal(world.gather_object(problem, name="run_lock"))
    if problem and lock is not None:  # (only if another rank refused)
        lock.release()
    return lock, problem


def train(spec: JobSpec, world: distributed.World, fresh: bool, stop: StopSignals,
          judge: Judge | None = None, started: Callable[..., None] = lambda trainer: None
          ) -> int:
    """The training itself, in a run directory this job holds; ``started`` is called once
    the trainer is built (every check passed)."""
    from gan.training.guard import GuardStop
    from gan.training.loop import SpecMismatch, Trainer

    try:
        trainer = Trainer(spec.work, world, fresh=fresh)
    except (SpecMismatch, OSError, ValueError) as exc:
        log.error("%s", exc)
        return exitcodes.NOT_RUNNABLE
    started(trainer)
    watch = watch_for_stalls(spec, world, trainer.progress)
    try:
        return trainer.run(stop, judge)
    except GuardStop as exc:
        log.error("%s", exc)
        return exitcodes.GUARD_STOPPED
    except Exception as exc:
        if watch is not None and watch.peer_stalled():  # its collective failed with the peer
            log.error("a peer's stall watchdog ended the job (%s): exit %d, to be retried",
                      type(exc).__name__, exitcodes.STALLED)
            return exitcodes.STALLED
        if not files.is_disk_full(exc):
            raise
        trainer.checkpoints.discard_partial()
        kept = trainer.checkpoints.manager.latest_checkpoint
        log.error("%s", files.disk_full_message(
            spec.work.run_dir, exc, f"The last complete checkpoint, {kept}, is kept and a "
            "resubmitted job resumes from it." if kept else "No checkpoint was completed yet."))
        return exitcodes.NOT_RUNNABLE
    finally:
        if watch is not None:
            watch.stop()


def watch_for_stalls(spec: JobSpec, world: distributed.World,
                     progress: watchdog.Progress) -> watchdog.Watchdog | None:
    """This rank's stall watchdog (``jobs/core/watchdog.py``), started once the trainer is
    built: startup has its own bounds (Horovod's, the launcher's)."""
    settings = spec.work.watchdog
    if not settings.enabled:
        return None
    import tensorflow as tf

    on_gpu = bool(tf.config.list_logical_devices("GPU"))
    dog = watchdog.Watchdog(settings, progress, world.rank, world.size, spec.work.run_dir,
                            on_gpu)
    dog.after_stall = lambda _: stall.retry_from_watchdog(
        spec.work.run_dir, settings, dog.attempt, spec.resources.max_requeues)
    return dog.start()
