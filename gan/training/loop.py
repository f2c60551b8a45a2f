"""The training loop: one ``tf.function`` step per batch (``gan/training/steps.py``), Horovod
data-parallel, checkpoints that resume exactly, the mode-collapse guard, and a clean stop on
signals.

Resuming is automatic: if ``run_dir/checkpoints`` holds a checkpoint, training continues
from it — every network's weights and optimizer, the guard's snapshots, the epoch and the
position inside the epoch (the data order and every random draw are functions of the seed and
the step, so nothing else is needed). A checkpoint is written every epoch (and every
``checkpoint.every_steps``); TensorFlow writes it under temporary names and only then points
``checkpoints/checkpoint`` at it, so a kill at any instant leaves the previous one in force.

On SIGUSR1 (Slurm's early walltime signal, see ``slurm/train.sbatch``), SIGUSR2 (submitit's),
SIGTERM (preemption, ``scancel``) or SIGINT, every rank finishes the current step, rank 0
writes a checkpoint, and all exit with code 75: "requeue me" (``jobs.core.signals``).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from gan.families import READS, family
from gan.models.builders import Networks
from gan.models.conditioning import Conditioning
from gan.models.sampler import GRID_PER_CLASS, Sampler
from gan.parallel import distributed
from gan.quality import meter
from gan.training import staging, steps, warmstart
from gan.training.augment import Adaptive
from gan.training.checkpoint import BestSnapshot, RunCheckpoints, SpecMismatch
from gan.training.data import ImageSet, Split
from gan.training.ema import Ema
from gan.training.guard import Guard
from gan.training.outputs import RunOutputs
from gan.training.pending import PendingSteps, read_due
from gan.training.schedules import Schedules
from gan.training.state import TrainState, configure_tensorflow
from jobs.core import events, exitcodes, faults, pages, runtime, watchdog
from jobs.core.figures import QUALITY
from jobs.core.run_page import write_run_page
from jobs.core.schema import TrainSpec
from jobs.core.signals import StopSignals

log = logging.getLogger(__name__)


def _weights_digest(*model_list) -> int:
    h = hashlib.blake2b(digest_size=8)
    for model in model_list:
        for v in model.weights:
            h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


class Trainer:
    """The data, the state (``gan.training.state``), its checkpoints
    (``gan.training.checkpoint``), the guard, the sampler for grids (``gan.models.sampler``)
    and the loop that drives them."""

    def __init__(self, spec: TrainSpec, world: distributed.World, fresh: bool = False):
        self.spec = spec
        self.world = world
        self.run_dir = Path(spec.run_dir)
        self.on_event: Callable[[str, dict], None] = lambda event_type, fields: None
        if fresh and tf.train.latest_checkpoint(str(self.run_dir / "checkpoints")):
            raise SpecMismatch(f"--fresh: {self.run_dir} already holds checkpoints; remove "
                               "it or drop --fresh to resume")
        configure_tensorflow(spec)
        staged = staging.stage_for_node(Path(spec.data), spec.stage_dir, world) \
            if spec.stage == "local" else None
        self.data = ImageSet(spec.data, spec.in_memory_max_gb, staged)
        self.split = Split(world.rank, world.size, spec.batch_size)
        self.steps_per_epoch = self.data.steps_per_epoch(self.split)
        self._check_data()
        self.conditioning = Conditioning.from_data(
            self.data, family(spec.model.name).condition, spec.model.num_classes,
            spec.latent.class_probabilities)
        self.state = TrainState(spec, world.size, self.conditioning)
        st = self.state
        self.G, self.D, self.E = st.G, st.D, st.E
        # grids come from the average of G when there is one (the generator users get)
        self.sampler = Sampler(spec, self.conditioning,
                               st.G if st.G_ema is None else st.G_ema, st.E, st.D)
        self.ema = Ema(spec.ema, st.G, st.G_ema, spec.batch_size * world.size,
                       spec.schedule) if st.G_ema is not None else None
        self.ada = Adaptive(st.augment_p, spec.augment.target, spec.augment.speed_kimg,
                            spec.batch_size * world.size) if spec.augment.adaptive else None
        self.schedules = Schedules(spec.schedule, spec.batch_size * world.size,
                                   st.scheduled(spec))
        self.guard = Guard(spec.guard, st.G, st.D, *[m for m in [st.E] if m is not None])
        self.checkpoints = RunCheckpoints(spec, {**st.checkpoint_objects(), "guard": self.guard},
                                          world)
        self.resumed_from = self.checkpoints.restore()
        self.started_from = warmstart.start(spec, st, world, self.resumed_from)
        self.quality = meter.QualityMeter(spec.metrics, spec.seed, world, self.data,
                                            self.sampler) if meter.enabled(spec.metrics) else None
        keep = spec.checkpoint.keep_best
        self.best = None if keep == "none" else BestSnapshot(
            self.run_dir, self.checkpoints.ckpt, keep, QUALITY[keep], world.is_chief,
            resumed=self.resumed_from is not None)
        if world.is_chief:
            self.conditioning.save(self.run_dir)
        distributed.broadcast(world, st.variables() + list(self.guard.variables))
        self.schedules.apply(st.global_step)  # what the next step reads
        self.metric_names = family(spec.model.name).metrics
        self.progress = watchdog.Progress()  # what the stall watchdog watches (gan/job.py)
        # built last only because it reads what is above, and nothing of the Trainer itself
        self.step_fn = steps.make_step(
            steps.StepConfig.from_spec(spec, world.rank, st.augment_p, st.gamma),
            Networks(st.G, st.D, st.E), steps.Optimizers(st.g_opt, st.d_opt, st.ae_opt),
            world, self.sampler, self._after_step)

    def _after_step(self, step: tf.Tensor, metrics: tf.Tensor) -> None:
        """The once-per-step bookkeeping, traced into the step: the counters, G's average
        after ``step + 1`` steps, ADA's probability from the rank-averaged D accuracy."""
        self.state.global_step.assign_add(1)
        self.state.step_in_epoch.assign_add(1)
        if self.ema is not None:
            self.ema.apply(step + 1)
        self.schedules.apply(step + 1)
        if self.ada is not None:
            (reads,) = READS["ada"]
            self.ada.apply(metrics[self.metric_names.index(reads)])

    def _check_data(self) -> None:
        s, size = self.spec, self.data.shape
        if size[0] != s.model.image_size or size[1] != s.model.image_size:
            raise SpecMismatch(f"{self.data.path} holds {size[0]}x{size[1]} images but "
                               f"train.model.image_size is {s.model.image_size}")
        if self.steps_per_epoch == 0:
            raise SpecMismatch(f"{self.data.num} images are fewer than one step needs "
                               f"(batch_size {s.batch_size} x {self.world.size} ranks)")
        if s.metrics.count < self.world.size and meter.enabled(s.metrics):
            raise SpecMismatch(f"train.metrics.count {s.metrics.count} is fewer than the "
                               f"{self.world.size} ranks that share the measurement")
        if s.model.num_classes and self.data.labels.max() >= s.model.num_classes:
            raise SpecMismatch(f"labels go up to {self.data.labels.max()} but "
                               f"train.model.num_classes is {s.model.num_classes}")

    def _average_statistics(self) -> None:
        """BatchNorm's moving statistics are not trained, so Horovod never averages them:
        average them across ranks every epoch so every rank holds the same model."""
        if self.world.size == 1:
            return  # nothing to average
        frozen = {id(v) for v in self.state.frozen}  # train.freeze_d: the same everywhere
        for model in self.state.networks:
            for i, v in enumerate(model.non_trainable_weights):
                if id(v) not in frozen:
                    v.assign(self.world.mean(v.value, name=f"{model.name}_stat_{i}"))

    def _rank_check(self, seen: list[np.ndarray]) -> tuple[bool, list]:
        """All ranks: same weights? Which images did each see? (rank 0 gets every rank's)"""
        idx = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        mine = tf.constant([[_weights_digest(*self.state.networks), len(idx), int(idx.sum()),
                             int((idx.astype(np.int64) ** 2).sum())]], tf.int64)
        rows = self.world.gather(mine, name="rank_check").numpy().tolist()
        return len({r[0] for r in rows}) == 1, rows

    def save(self, reason: str, counted: bool = False) -> None:
        if not counted:
            self.state.saves.assign_add(1)
        step = int(self.state.global_step)
        with self.progress.pause("checkpoint"):
            name = self.checkpoints.save(step, reason)
        self.event("checkpoint", epoch=int(self.state.epoch), step=step, reason=reason,
                   name=name)

    def event(self, event_type: str, **fields) -> None:
        """A run event (``jobs/core/events.py``) from rank 0: what every view reads."""
        if self.world.is_chief:
            events.emit(self.run_dir, event_type, rank=self.world.rank, **fields)
            self.on_event(event_type, fields)  # train.tracking mirrors it (gan/job.py)

    def barrier(self) -> None:
        """Ranks wait here for rank 0 (e.g. to finish a checkpoint before anyone exits)."""
        self.world.barrier()

    def run(self, stop: StopSignals, judge=None) -> int:
        """Train to ``spec.epochs``, checkpointing and returning REQUEUE once ``stop`` holds a
        signal. The caller owns ``stop`` (``gan/job.py`` arms it before the trainer is built,
        as startup takes seconds and a preemption may land in them, and restores it); an
        unarmed one, as benchmarks pass, leaves the signals alone."""
        spec = self.spec
        start_epoch, start_step = int(self.state.epoch), int(self.state.step_in_epoch)
        if self.resumed_from:
            log.info("resumed from %s: epoch %d, step %d of %d in it (global step %d)",
                     Path(self.resumed_from).name, start_epoch + 1, start_step,
                     self.steps_per_epoch, int(self.state.global_step))
        columns = (self.quality.columns() if self.quality else ()) + \
            (("augment_p",) if self.ada else ())
        outputs = RunOutputs(self.run_dir, self.sampler.grid_names, int(self.state.global_step),
                             self.metric_names, more=columns) if self.world.is_chief else None
        if start_epoch >= spec.epochs:
            log.info("all %d epochs already done in %s", spec.epochs, self.run_dir)
            return exitcodes.OK
        t0 = time.monotonic()
        for epoch in range(start_epoch, spec.epochs):
            seen = self._train_epoch(epoch, start_step, stop, outputs, t0)
            if seen is None:
                return exitcodes.REQUEUE
            start_step = 0
            with self.progress.pause("the epoch's end (statistics, quality, figures)"):
                figures = self._end_epoch(epoch, seen, outputs, t0, stop)
                if figures and self.world.is_chief:  # the page stays current as it runs
                    pages.write_quietly(lambda: write_run_page(self.run_dir), self.run_dir)
            reason = self._judged(judge, epoch, figures)
            if reason:
                self.event("early_stop", epoch=epoch + 1, reason=reason)
                log.warning("stopped early after epoch %d: %s (exit %d, not requeued)",
                            epoch + 1, reason, exitcodes.EARLY_STOPPED)
                return exitcodes.EARLY_STOPPED
        self.barrier()
        log.info("training finished: %d epochs, %d steps, %d checkpoints, %d rollbacks -> %s",
                 spec.epochs, int(self.state.global_step), int(self.state.saves),
                 int(self.guard.rollbacks), self.run_dir)
        return exitcodes.OK

    def _train_epoch(self, epoch: int, start_step: int, stop: StopSignals,
                     outputs: RunOutputs | None, t0: float) -> list[np.ndarray] | None:
        """One epoch from ``start_step``: the indices each step read, or None when a stop
        signal ended it (after a checkpoint every rank waited for). The host reads the
        steps' results only every ``train.read_every_steps`` (``gan/training/pending.py``)."""
        spec, st, seen = self.spec, self.state, []
        bar = self._progress(epoch, start_step)
        attributes = self.conditioning.kind == "attributes"
        pending = PendingSteps(self.metric_names)
        before = int(st.global_step) - start_step  # the global step this epoch started at
        every = spec.checkpoint.every_steps
        # closed on every way out (a stop, the guard, an error): the reader thread ends now
        with contextlib.closing(self.data.batches(spec.seed, epoch, self.split,
                                                  start_step)) as batches:
            for s, (images, labels, idx) in enumerate(batches, start=start_step):
                condition = self.data.attributes[idx] if attributes else labels
                faults.before_step(self.world.rank, before + s)
                self.progress.entering(before + s)
                # the step counts itself (global_step, step_in_epoch), averages G, moves ADA;
                # its first call compiles it, within the progress's start-up pause
                pending.add(*self.step_fn(images, condition, st.global_step.read_value(),
                                          tf.constant(float(stop.requested))))
                done, step = s + 1, before + s + 1
                self.progress.finished(step)
                seen.append(idx)
                if not read_due(done, self.steps_per_epoch, spec.read_every_steps, step, every):
                    continue
                if self._read(pending, epoch, done, step, bar, outputs, t0):
                    self.event("stop_signal", signal=stop.signum, epoch=epoch + 1, step=step)
                    self.save("stop signal")
                    self.barrier()
                    log.warning("stopped at epoch %d step %d/%d: exit %d to be requeued",
                                epoch + 1, done, self.steps_per_epoch, exitcodes.REQUEUE)
                    return None
                if every and step % every == 0 and done < self.steps_per_epoch:
                    self.save(f"every {every} steps")
        if bar is not None:
            bar.close()
        return seen

    def _read(self, pending: PendingSteps, epoch: int, done: int, step: int, bar,
              outputs: RunOutputs | None, t0: float) -> bool:
        """Read the pending steps up to the epoch's ``done``-th (global ``step``): the guard
        judges them, the bar and the logs show them. Whether any rank asked to stop."""
        rows, stopped = pending.read()
        self.guard.observe_window(step, [tuple(r[k] for k in READS["guard"]) for r in rows])
        if bar is not None:
            bar.update(len(rows))
            bar.set_postfix({k: f"{rows[-1][k]:.3f}" for k in READS["progress"]})
        if outputs is not None:
            for i, values in enumerate(rows, start=done - len(rows) + 1):
                outputs.add_step(values)
                if i % self.spec.log_every_steps == 0:
                    self._log_interval(outputs, epoch, i, step - done + i, t0)
        return stopped

    def _end_epoch(self, epoch: int, seen: list[np.ndarray], outputs: RunOutputs | None,
                   t0: float, stop: StopSignals) -> dict[str, float]:
        self.state.epoch.assign(epoch + 1)
        self.state.step_in_epoch.assign(0)
        self._average_statistics()
        in_sync, ranks = self._rank_check(seen)
        if not in_sync:
            raise RuntimeError(f"ranks diverged after epoch {epoch + 1}: {ranks}")
        figures = self._measure(epoch, stop)
        # outputs first: if a kill lands between the two, the epoch is redone and its
        # outputs rewritten; the other way round they would be lost
        self.state.saves.assign_add(1)
        if outputs is not None:
            self._epoch_outputs(outputs, epoch, ranks, t0, {**figures, **(
                {"augment_p": float(self.state.augment_p.numpy())} if self.ada else {})})
        if figures and self.best is not None \
                and self.best.offer(figures, epoch + 1, int(self.state.global_step)):
            record = self.best.record
            self.event("best", figure=record["figure"], value=record["value"],
                       epoch=record["epoch"], step=record["step"], name=record["checkpoint"])
        self.save(f"epoch {epoch + 1}", counted=True)
        return figures

    def _judged(self, judge, epoch: int, figures: dict[str, float]) -> str | None:
        """A sweep's early-stopping rule (``jobs/early_stop.py``) on this epoch's figures:
        rank 0 asks it (it reads and writes the sweep's records), every rank gets the answer.
        After the epoch's checkpoint: a stopped trial keeps its last state."""
        if judge is None or not figures:
            return None
        kimg = int(self.state.global_step) * self.spec.batch_size * self.world.size / 1000
        with self.progress.pause("the sweep's early-stopping rule"):
            mine = judge(epoch + 1, kimg, figures) if self.world.is_chief else None
            return self.world.gather_object(mine, name="early_stop")[0]

    def _measure(self, epoch: int, stop: StopSignals) -> dict[str, float]:
        """The quality figures when ``train.metrics`` says this epoch end is due, else {}.
        Not when a stop signal is pending on any rank: the walltime is near, and the next
        step checkpoints and exits (a measurement can take minutes)."""
        per_epoch = self.steps_per_epoch * self.spec.batch_size * self.world.size
        after = int(self.state.global_step) * self.spec.batch_size * self.world.size
        if self.quality is None or not meter.is_due(self.spec.metrics, epoch + 1,
                                                      after - per_epoch, after):
            return {}
        # every rank is here: is_due is the same on all
        pending = self.world.sum(tf.constant(float(stop.requested)), name="quality_stop")
        if float(pending) > 0:
            log.warning("epoch %d: stop requested, quality not measured", epoch + 1)
            return {}
        t = time.perf_counter()
        faults.in_quality(self.world.rank)
        figures = self.quality.measure()
        seconds = time.perf_counter() - t
        log.info("epoch %d quality: %s (%.1f s)", epoch + 1, " ".join(
            f"{k}={v:.4g}" for k, v in figures.items()), seconds)
        self.event("quality", epoch=epoch + 1, kimg=round(after / 1000, 3), figures=figures,
                   seconds=round(seconds, 3))
        return figures

    def _progress(self, epoch: int, start_step: int):
        if not (self.world.is_chief and runtime.show_progress()):
            return None
        return tqdm(total=self.steps_per_epoch, initial=start_step, unit="step",
                    desc=f"epoch {epoch + 1}/{self.spec.epochs}")

    def _extra(self, t0: float, in_sync: bool | str = "") -> dict:
        return {"secs": f"{time.monotonic() - t0:.1f}", "rollbacks": int(self.guard.rollbacks),
                "saves": int(self.state.saves), "ranks_in_sync": in_sync}

    def _log_interval(self, outputs: RunOutputs, epoch: int, it: int, step: int,
                      t0: float) -> None:
        extra = self._extra(t0)
        m = outputs.interval(epoch + 1, step, extra)
        log.info("epoch %d/%d it %d/%d d_real=%.2f d_fake=%.2f g=%.2f secs=%s rollbacks=%d "
                 "saves=%d", epoch + 1, self.spec.epochs, it, self.steps_per_epoch,
                 m["d_real"], m["d_fake"], m["g"], extra["secs"], extra["rollbacks"],
                 extra["saves"])

    def _epoch_outputs(self, outputs: RunOutputs, epoch: int, ranks: list, t0: float,
                       figures: dict[str, float]) -> None:
        extra = self._extra(t0, in_sync=True)
        m = outputs.epoch_end(epoch + 1, int(self.state.global_step), extra,
                              self.sampler.sample_images(), GRID_PER_CLASS, figures)
        outputs.write_ranks(epoch + 1, ranks)
        self.event("epoch_done", epoch=epoch + 1, epochs=self.spec.epochs,
                   step=int(self.state.global_step), metrics={
                       **m, "secs": float(extra["secs"]), "rollbacks": extra["rollbacks"],
                       "saves": extra["saves"]})
        more = "".join(f" {k}={m[k]:.3f}" for k in family(self.spec.model.name).own_metrics)
        log.info("epoch %d/%d done: d_real=%.3f d_fake=%.3f g=%.3f acc_real=%.2f "
                 "acc_fake=%.2f%s secs=%s rollbacks=%d saves=%d", epoch + 1, self.spec.epochs,
                 m["d_real"], m["d_fake"], m["g"], m["d_acc_real"], m["d_acc_fake"], more,
                 extra["secs"], extra["rollbacks"], extra["saves"])
