"""The training loop: one ``tf.function`` step per batch (``gan/steps.py``), Horovod
data-parallel, checkpoints that resume exactly, the mode-collapse guard, and a clean stop on
signals.

Resuming is automatic: if ``run_dir/checkpoints`` holds a checkpoint, training continues
from it — every network's weights and optimizer, the guard's snapshots, the epoch and the
position inside the epoch (the data order and every random draw are functions of the seed and
the step, so nothing else is needed). A checkpoint is written every epoch (and every
``checkpoint.every_steps``); TensorFlow writes it under temporary names and only then points
``checkpoints/checkpoint`` at it, so a kill at any instant leaves the previous one in force.

On SIGUSR1 (Slurm's early walltime signal, see ``slurm/train.sbatch``), SIGTERM (preemption,
``scancel``) or SIGINT, every rank finishes the current step, rank 0 writes a checkpoint, and
all exit with code 75: "requeue me".
"""
from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from gan import distributed, models, sampling, steps
from gan.data import ImageSet, Split
from gan.guard import Guard
from gan.outputs import RunOutputs
from jobs.core import exitcodes, runtime
from jobs.core.signals import StopSignals
from jobs.core.schema import TrainSpec, to_plain

log = logging.getLogger(__name__)
GRID_PER_CLASS = 8


class SpecMismatch(Exception):
    """The run directory was made by a spec with another model or data."""


def to_uint8(images: tf.Tensor) -> np.ndarray:
    """Generator output in [-1, 1] to uint8 RGB (grey images get three equal channels)."""
    out = tf.cast(tf.clip_by_value((tf.cast(images, tf.float32) + 1) * 127.5, 0, 255),
                  tf.uint8).numpy()
    return np.repeat(out, 3, axis=-1) if out.shape[-1] == 1 else out


def _weights_digest(*model_list) -> int:
    h = hashlib.blake2b(digest_size=8)
    for model in model_list:
        for v in model.weights:
            h.update(np.ascontiguousarray(v.numpy()).tobytes())
    return int.from_bytes(h.digest(), "little", signed=True)


def _make_optimizer(spec: TrainSpec, world_size: int, variables: list, lr_ratio: float = 1.0
                    ) -> tf.keras.optimizers.Optimizer:
    o = spec.optimizer
    lr = o.learning_rate * lr_ratio * (world_size if o.scale_lr_by_ranks else 1)
    cls = {"adam": tf.keras.optimizers.Adam, "adamax": tf.keras.optimizers.Adamax}[o.name]
    opt = cls(learning_rate=lr, beta_1=o.beta_1, beta_2=o.beta_2)
    opt.build(variables)
    return opt


class Trainer:
    def __init__(self, spec: TrainSpec, world: distributed.World, fresh: bool = False):
        self.spec = spec
        self.world = world
        self.run_dir = Path(spec.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        if fresh and tf.train.latest_checkpoint(str(self.ckpt_dir)):
            raise SpecMismatch(f"--fresh: {self.run_dir} already holds checkpoints; remove "
                               "it or drop --fresh to resume")
        # Grappler's remapper fails on the GAN step's graph ("Mutation::Apply error") and
        # logs a C++ error every run; it rewrites nothing here, so skip it.
        tf.config.optimizer.set_experimental_options({"remapping": False})
        if spec.deterministic:
            tf.config.experimental.enable_op_determinism()
        if spec.mixed_precision:
            # bfloat16 keeps float32's range: no loss scaling needed (A100/H100, recent CPUs)
            tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
        self.data = ImageSet(spec.data, spec.in_memory_max_gb)
        self.split = Split(world.rank, world.size, spec.batch_size)
        self.steps_per_epoch = self.data.steps_per_epoch(self.split)
        self._check_data()
        self.num_classes = spec.model.num_classes or self.data.num_classes
        self.class_names = (self.data.class_names if self.num_classes == self.data.num_classes
                            else [str(i) for i in range(self.num_classes)])
        self.condition = models.CONDITION[spec.model.name]
        self.conditional = self.condition != "none"
        self._check_attributes()
        # sample grid rows: one per class, or unlabelled rows for an unconditional model
        self.grid_names = self.class_names if self.conditional else ["sample"] * 4
        extra = self._build_networks()
        self.guard = Guard(spec.guard, self.G, self.D,
                           *[m for m in [self.E] if m is not None])
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.saves = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.ckpt = tf.train.Checkpoint(
            generator=self.G, discriminator=self.D, g_optimizer=self.g_opt,
            d_optimizer=self.d_opt, guard=self.guard, epoch=self.epoch,
            step_in_epoch=self.step_in_epoch, global_step=self.global_step, saves=self.saves,
            layer_rng=self._layer_rng_states(), **extra)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.ckpt_dir),
                                                  max_to_keep=spec.checkpoint.keep)
        self.resumed_from = self._restore()
        distributed.broadcast(world, self._all_variables())
        probs = spec.latent.class_probabilities or self.data.class_frequencies()
        if len(probs) != self.num_classes:
            raise SpecMismatch(f"train.latent.class_probabilities has {len(probs)} entries "
                               f"for {self.num_classes} classes")
        self.class_probs = tf.constant(probs, tf.float32)
        self.metric_names = steps.metric_names(spec.model.name)
        self.step_fn = steps.make_step(self)

    # ----------------------------------------------------------------------------- setup
    def _check_data(self) -> None:
        s, size = self.spec, self.data.shape
        if size[0] != s.model.image_size or size[1] != s.model.image_size:
            raise SpecMismatch(f"{self.data.path} holds {size[0]}x{size[1]} images but "
                               f"train.model.image_size is {s.model.image_size}")
        if self.steps_per_epoch == 0:
            raise SpecMismatch(f"{self.data.num} images are fewer than one step needs "
                               f"(batch_size {s.batch_size} x {self.world.size} ranks)")
        if s.model.num_classes and self.data.labels.max() >= s.model.num_classes:
            raise SpecMismatch(f"labels go up to {self.data.labels.max()} but "
                               f"train.model.num_classes is {s.model.num_classes}")

    def _build_networks(self) -> dict:
        """The registry's networks and one optimizer per update; returns what a checkpoint
        holds beyond G, D and their optimizers (the AE-AC-GAN's encoder and third one)."""
        spec, size = self.spec, self.world.size
        tf.keras.utils.set_random_seed(spec.seed)  # same initial weights on every start
        nets = models.build(spec.model, self.num_classes, self.data.shape[-1],
                            self.num_attributes)
        self.G, self.D, self.E = nets.generator, nets.discriminator, nets.encoder
        self.networks = [m for m in (self.G, self.D, self.E) if m is not None]
        self.g_opt = _make_optimizer(spec, size, self.G.trainable_variables)
        self.d_opt = _make_optimizer(spec, size, self.D.trainable_variables)
        self.optimizers = [self.g_opt, self.d_opt]
        if self.E is None:
            return {}
        # the autoencoder update trains E and G together, at its own learning rate
        self.ae_opt = _make_optimizer(spec, size, self.E.trainable_variables
                                      + self.G.trainable_variables,
                                      spec.optimizer.autoencoder_lr_ratio)
        self.optimizers.append(self.ae_opt)
        return {"encoder": self.E, "ae_optimizer": self.ae_opt}

    def _check_attributes(self) -> None:
        """An attribute-conditioned model needs the data's attribute table: its rows are the
        conditions sampled in training, and each class's typical row labels the grids."""
        attrs = self.data.attributes
        self.num_attributes = 0 if attrs is None else attrs.shape[1]
        if self.condition != "attributes":
            return
        if attrs is None:
            raise SpecMismatch(f"train.model.name {self.spec.model.name} is conditioned on "
                               f"attributes, but {self.data.path} has no 'attributes' dataset")
        self.attribute_table = tf.constant(attrs, tf.float32)
        self.prototypes = tf.constant(self.data.class_prototypes(self.num_classes), tf.float32)

    def _layer_rng_states(self) -> list:
        """Keras 3 keeps Dropout's RNG in seed-generator variables that are neither weights
        nor saved by tf.train.Checkpoint through the model: save them explicitly, or a
        resumed run would draw other dropout masks."""
        return [distributed.tf_variables([v])[0] for m in self.networks
                for v in m.variables if not any(v is w for w in m.weights)]

    def _all_variables(self) -> list:
        return ([v for m in self.networks + self.optimizers for v in m.variables]
                + list(self.guard.variables)
                + [self.epoch, self.step_in_epoch, self.global_step, self.saves])

    def _restore(self) -> str | None:
        """Newest checkpoint that restores cleanly; older ones if it does not."""
        self._check_spec_file()
        for path in reversed(self.manager.checkpoints):
            try:
                self.ckpt.restore(path).assert_existing_objects_matched()
            except (tf.errors.OpError, AssertionError, ValueError) as exc:
                log.warning("checkpoint %s does not restore (%s); trying an older one", path,
                            str(exc).splitlines()[0])
                continue
            return path
        return None

    def _check_spec_file(self) -> None:
        """Keep the spec with the run; refuse to resume a run made for another model."""
        path = self.run_dir / "train_spec.yaml"
        current = to_plain(self.spec)
        if path.exists() and self.manager.checkpoints:
            saved = yaml.safe_load(path.read_text())
            if saved.get("model") != current["model"]:
                raise SpecMismatch(f"{self.run_dir} was trained with another train.model "
                                   f"({saved.get('model')}); use a new run_dir")
        if self.world.is_chief:
            from jobs.core.files import atomic_write_text

            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, yaml.safe_dump(current, sort_keys=False))

    # ------------------------------------------------------------------- what G is fed
    def latent(self, n: int, seed: tf.Tensor) -> tf.Tensor:
        return sampling.latent(self.spec.latent.distribution, n, self.spec.model.latent_dim,
                               seed)

    def figure_latent(self, n: int, seed: tf.Tensor) -> tf.Tensor:
        """Latents for figures and scores: the training distribution, except ``stratified``
        (a batch-coverage device that puts n points on a fixed grid — two points would be
        exact opposites at ±3) is drawn from its marginal, uniform over [-3, 3]."""
        if self.spec.latent.distribution == "stratified":
            return 3.0 * sampling.latent("uniform", n, self.spec.model.latent_dim, seed)
        return self.latent(n, seed)

    def sample_conditions(self, n: int, seed: tf.Tensor) -> tf.Tensor:
        """Conditions for fakes: class labels by ``latent.class_probabilities`` (ignored by an
        unconditional model), or attribute rows of random real images."""
        if self.condition == "attributes":
            rows = tf.random.stateless_uniform((n,), seed, 0, self.data.num, dtype=tf.int32)
            return tf.gather(self.attribute_table, rows)
        return sampling.class_labels(self.class_probs, n, seed)

    def conditions_for(self, labels) -> tf.Tensor:
        """What G takes for these class labels (an attribute model: each class's typical
        attribute row)."""
        labels = tf.convert_to_tensor(labels, tf.int32)
        return tf.gather(self.prototypes, labels) if self.condition == "attributes" else labels

    def generate(self, z, labels) -> np.ndarray:
        """uint8 RGB images for latents and class labels."""
        return self.draw(z, self.conditions_for(labels))

    def draw(self, z, conditions) -> np.ndarray:
        """uint8 RGB images for latents and what G takes (labels or attribute rows)."""
        return to_uint8(self.G([tf.convert_to_tensor(z, tf.float32),
                                tf.convert_to_tensor(conditions)], training=False))

    # ------------------------------------------------------------------------------ loop
    def grid_inputs(self, per_class: int, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
        """One row per grid name. A conditional model gets the same latents in every row, so
        rows differ only by the label; an unconditional one gets fresh latents per row."""
        rows = len(self.grid_names)
        z = self.figure_latent(per_class * (1 if self.conditional else rows),
                        sampling.seed_for(seed, 0, 0, "grid"))
        if self.conditional:
            z = tf.tile(z, [rows, 1])
        labels = tf.repeat(tf.range(rows, dtype=tf.int32) % self.num_classes, per_class)
        return z, labels

    def sample_images(self, per_class: int = GRID_PER_CLASS, seed: int | None = None
                      ) -> np.ndarray:
        """The sample grid's images (uint8, RGB), row by row."""
        return self.generate(*self.grid_inputs(per_class,
                                               self.spec.seed if seed is None else seed))

    def _average_statistics(self) -> None:
        """BatchNorm's moving statistics are updated per rank from its own data: average them
        at every epoch end so every rank (and the checkpoint) holds the same model."""
        if self.world.hvd is None:
            return
        for model in self.networks:
            for i, v in enumerate(model.non_trainable_weights):
                v.assign(self.world.hvd.allreduce(v.value, op=self.world.hvd.Average,
                                                  name=f"{model.name}_stat_{i}"))

    def _rank_check(self, seen: list[np.ndarray]) -> tuple[bool, list]:
        """All ranks: same weights? Which images did each see? (rank 0 gets every rank's)"""
        idx = np.concatenate(seen) if seen else np.zeros(0, np.int64)
        mine = tf.constant([[_weights_digest(*self.networks), len(idx), int(idx.sum()),
                             int((idx.astype(np.int64) ** 2).sum())]], tf.int64)
        rows = mine if self.world.hvd is None else self.world.hvd.allgather(
            mine, name="rank_check")
        rows = rows.numpy().tolist()
        return len({r[0] for r in rows}) == 1, rows

    def save(self, reason: str, counted: bool = False) -> None:
        if not counted:
            self.saves.assign_add(1)
        if self.world.is_chief:
            t = time.perf_counter()
            path = self.manager.save(checkpoint_number=int(self.global_step))
            log.info("checkpoint %s (%s, %.2f s)", Path(path).name, reason,
                     time.perf_counter() - t)

    def barrier(self) -> None:
        """Ranks wait here for rank 0 (e.g. to finish a checkpoint before anyone exits)."""
        if self.world.hvd is not None:
            self.world.hvd.allreduce(tf.constant(0.0), name="barrier")

    def run(self, stop: StopSignals | None = None) -> int:
        """Train to ``spec.epochs``. ``stop`` lets the caller catch signals from before the
        trainer was built (startup takes seconds; a preemption may land in them)."""
        spec, chief = self.spec, self.world.is_chief
        start_epoch, start_step = int(self.epoch), int(self.step_in_epoch)
        if self.resumed_from:
            log.info("resumed from %s: epoch %d, step %d of %d in it (global step %d)",
                     Path(self.resumed_from).name, start_epoch + 1, start_step,
                     self.steps_per_epoch, int(self.global_step))
        outputs = RunOutputs(self.run_dir, self.grid_names, int(self.global_step),
                             self.metric_names) if chief else None
        if start_epoch >= spec.epochs:
            log.info("all %d epochs already done in %s", spec.epochs, self.run_dir)
            return exitcodes.OK
        stop = stop or StopSignals().arm()
        t0 = time.monotonic()
        try:
            for epoch in range(start_epoch, spec.epochs):
                seen: list[np.ndarray] = []
                bar = self._progress(epoch, start_step)
                for s, (images, labels, idx) in enumerate(
                        self.data.batches(spec.seed, epoch, self.split, start_step),
                        start=start_step):
                    condition = (self.data.attributes[idx] if self.condition == "attributes"
                                 else labels)
                    metrics, stops = self.step_fn(images, condition, self.global_step,
                                                  tf.constant(float(stop.requested)))
                    values = dict(zip(self.metric_names, metrics.numpy().tolist()))
                    self.global_step.assign_add(1)
                    self.step_in_epoch.assign(s + 1)
                    seen.append(idx)
                    self.guard.observe(int(self.global_step), values["d_real"],
                                       values["d_fake"], values["g"])
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix({k: f"{values[k]:.3f}" for k in ("d_real", "d_fake",
                                                                         "g")})
                    if outputs is not None:
                        outputs.add_step(values)
                        if (s + 1) % spec.log_every_steps == 0:
                            self._log_interval(outputs, epoch, s + 1, t0)
                    if float(stops) > 0:
                        self.save("stop signal")
                        self.barrier()
                        log.warning("stopped at epoch %d step %d/%d: exit %d to be requeued",
                                    epoch + 1, s + 1, self.steps_per_epoch, exitcodes.REQUEUE)
                        return exitcodes.REQUEUE
                    every = spec.checkpoint.every_steps
                    if every and int(self.global_step) % every == 0 \
                            and s + 1 < self.steps_per_epoch:
                        self.save(f"every {every} steps")
                if bar is not None:
                    bar.close()
                start_step = 0
                self.epoch.assign(epoch + 1)
                self.step_in_epoch.assign(0)
                self._average_statistics()
                in_sync, ranks = self._rank_check(seen)
                if not in_sync:
                    raise RuntimeError(f"ranks diverged after epoch {epoch + 1}: {ranks}")
                # outputs first: if a kill lands between the two, the epoch is redone and
                # its outputs rewritten; the other way round they would be lost
                self.saves.assign_add(1)
                if outputs is not None:
                    self._epoch_outputs(outputs, epoch, ranks, t0)
                self.save(f"epoch {epoch + 1}", counted=True)
        finally:
            stop.restore()
        self.barrier()
        log.info("training finished: %d epochs, %d steps, %d checkpoints, %d rollbacks -> %s",
                 spec.epochs, int(self.global_step), int(self.saves),
                 int(self.guard.rollbacks), self.run_dir)
        return exitcodes.OK

    def _progress(self, epoch: int, start_step: int):
        if not (self.world.is_chief and runtime.show_progress()):
            return None
        from tqdm import tqdm

        return tqdm(total=self.steps_per_epoch, initial=start_step, unit="step",
                    desc=f"epoch {epoch + 1}/{self.spec.epochs}")

    def _extra(self, t0: float, in_sync: bool | str = "") -> dict:
        return {"secs": f"{time.monotonic() - t0:.1f}", "rollbacks": int(self.guard.rollbacks),
                "saves": int(self.saves), "ranks_in_sync": in_sync}

    def _log_interval(self, outputs: RunOutputs, epoch: int, it: int, t0: float) -> None:
        extra = self._extra(t0)
        m = outputs.interval(epoch + 1, int(self.global_step), extra)
        log.info("epoch %d/%d it %d/%d d_real=%.2f d_fake=%.2f g=%.2f secs=%s rollbacks=%d "
                 "saves=%d", epoch + 1, self.spec.epochs, it, self.steps_per_epoch,
                 m["d_real"], m["d_fake"], m["g"], extra["secs"], extra["rollbacks"],
                 extra["saves"])

    def _epoch_outputs(self, outputs: RunOutputs, epoch: int, ranks: list, t0: float) -> None:
        extra = self._extra(t0, in_sync=True)
        m = outputs.epoch_end(epoch + 1, int(self.global_step), extra, self.sample_images(),
                              GRID_PER_CLASS)
        outputs.write_ranks(epoch + 1, ranks)
        more = "".join(f" {k}={m[k]:.3f}" for k in self.metric_names[5:])  # model-specific
        log.info("epoch %d/%d done: d_real=%.3f d_fake=%.3f g=%.3f acc_real=%.2f "
                 "acc_fake=%.2f%s secs=%s rollbacks=%d saves=%d", epoch + 1, self.spec.epochs,
                 m["d_real"], m["d_fake"], m["g"], m["d_acc_real"], m["d_acc_fake"], more,
                 extra["secs"], extra["rollbacks"], extra["saves"])
