"""A trained generator and what it needs to draw: latents, conditions, grids, images.

Training holds one around its live networks; figures, scores and export load one from a run
directory alone (:meth:`Sampler.load`): the saved ``train_spec.yaml``, ``conditioning.npz``
and the generator's weights (the encoder's, and D's when a score asks) from a checkpoint — no
data file, no optimizers, no guard, and nothing is written into the run directory.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import tensorflow as tf
import yaml

from gan.families import family
from gan.models import builders, latents
from gan.models.conditioning import Conditioning, ConditioningError
from gan.training.checkpoint import SPEC_FILE, read_best, restore_newest
from gan.training.data import ImageSet
from gan.training.outputs import BEST_DIR, BEST_RECORD
from gan.training.state import configure_tensorflow
from jobs.core.images import to_uint8
from jobs.core.loader import parse_spec
from jobs.core.schema import TrainSpec

log = logging.getLogger(__name__)
GRID_PER_CLASS = 8


class NoCheckpoint(ValueError):
    """The run directory holds no checkpoint that restores."""


class Sampler:
    def __init__(self, spec: TrainSpec, conditioning: Conditioning, generator,
                 encoder=None, discriminator=None, checkpoint: str | None = None):
        self.spec, self.conditioning = spec, conditioning
        self.G, self.E, self.D = generator, encoder, discriminator
        self.checkpoint = checkpoint
        self.condition = conditioning.kind
        self.conditional = conditioning.conditional
        self.num_classes = conditioning.num_classes
        self.channels = conditioning.image_shape[-1]
        # sample grid rows: one per class, or unlabelled rows for an unconditional model
        self.grid_names = conditioning.class_names if self.conditional else ["sample"] * 4

    @classmethod
    def load(cls, run_dir: str | Path, checkpoint: int | str | None = None,
             with_discriminator: bool = False) -> Sampler:
        """The generator of ``run_dir`` at checkpoint number ``checkpoint`` (None: the newest
        that restores, an unreadable newest one skipped with a warning; "best": the
        ``checkpoint.keep_best`` snapshot)."""
        run_dir = Path(run_dir)
        spec = load_train_spec(run_dir)
        configure_tensorflow(spec)  # the run's precision and determinism, as in training
        cond = load_conditioning(run_dir, spec)
        nets = builders.build_for(spec.model, cond)
        # the moving average of G when the run kept one: it is the better generator
        wanted = {"generator_ema" if spec.ema.enabled else "generator": nets.generator}
        if nets.encoder is not None:
            wanted["encoder"] = nets.encoder
        if with_discriminator:
            wanted["discriminator"] = nets.discriminator
        path = restore_best(run_dir, wanted) if checkpoint == "best" \
            else restore_partial(run_dir / "checkpoints", wanted, checkpoint)
        return cls(spec, cond, nets.generator, nets.encoder,
                   nets.discriminator if with_discriminator else None, path)

    def untrained(self) -> Sampler:
        """The same generator as it was before its first step (the run's seed): the baseline
        every quality figure is read against."""
        tf.keras.utils.set_random_seed(self.spec.seed)
        return Sampler(self.spec, self.conditioning,
                       builders.build_for(self.spec.model, self.conditioning).generator)

    # ------------------------------------------------------------------- what G is fed
    def latent(self, n: int, seed: tf.Tensor) -> tf.Tensor:
        return latents.latent(self.spec.latent.distribution, n, self.spec.model.latent_dim,
                               seed)

    def figure_latent(self, n: int, seed: tf.Tensor) -> tf.Tensor:
        """Latents for figures and scores: the training distribution, except ``stratified``
        (a batch-coverage device that puts n points on a fixed grid — two points would be
        exact opposites at ±3) is drawn from its marginal, uniform over [-3, 3]."""
        if self.spec.latent.distribution == "stratified":
            return 3.0 * latents.latent("uniform", n, self.spec.model.latent_dim, seed)
        return self.latent(n, seed)

    def sample_conditions(self, n: int, seed: tf.Tensor) -> tf.Tensor:
        return self.conditioning.sample(n, seed)

    def random_inputs(self, n: int, seed: int, first: int = 0) -> tuple[tf.Tensor, tf.Tensor]:
        """n latents and conditions as the generator meets them (figures' latents, the
        training distribution of conditions), from draws ``first`` and ``first + 1`` of
        ``seed``: what samples, metrics, scores and arithmetic draw from."""
        return (self.figure_latent(n, latents.seed_for(seed, 0, first, "grid")),
                self.sample_conditions(n, latents.seed_for(seed, 0, first + 1, "grid")))

    def generate(self, z, labels) -> np.ndarray:
        """uint8 RGB images for latents and class labels."""
        return self.draw(z, self.conditioning.for_labels(labels))

    def draw(self, z, conditions) -> np.ndarray:
        """uint8 RGB images for latents and what G takes (labels or attribute rows)."""
        return to_uint8(self.raw(z, conditions))

    def raw(self, z, conditions, batch: int = 256) -> np.ndarray:
        """G's output in [-1, 1] with the data's channels, in batches."""
        z = tf.convert_to_tensor(z, tf.float32)
        conditions = tf.convert_to_tensor(conditions)
        return np.concatenate([np.asarray(self.G([z[i:i + batch], conditions[i:i + batch]],
                                                 training=False), np.float32)
                               for i in range(0, int(z.shape[0]), batch)])

    def grid_inputs(self, per_class: int, seed: int) -> tuple[tf.Tensor, tf.Tensor]:
        """One row per grid name. A conditional model gets the same latents in every row, so
        rows differ only by the label; an unconditional one gets fresh latents per row."""
        rows = len(self.grid_names)
        z = self.figure_latent(per_class * (1 if self.conditional else rows),
                               latents.seed_for(seed, 0, 0, "grid"))
        if self.conditional:
            z = tf.tile(z, [rows, 1])
        labels = tf.repeat(tf.range(rows, dtype=tf.int32) % self.num_classes, per_class)
        return z, labels

    def sample_images(self, per_class: int = GRID_PER_CLASS, seed: int | None = None
                      ) -> np.ndarray:
        """The sample grid's images (uint8, RGB), row by row."""
        return self.generate(*self.grid_inputs(per_class,
                                               self.spec.seed if seed is None else seed))


def load_conditioning(run_dir: Path, spec: TrainSpec) -> Conditioning:
    """The run's saved conditioning; for a run trained before it was saved, rebuilt from its
    training data (if that is still there)."""
    try:
        return Conditioning.load(run_dir)
    except ConditioningError:
        if not Path(spec.data).exists():
            raise
    log.warning("%s has no conditioning.npz (trained by an older version): rebuilding it from "
                "%s", run_dir, spec.data)
    data = ImageSet(spec.data, 0.0)
    try:
        return Conditioning.from_data(data, family(spec.model.name).condition,
                                      spec.model.num_classes, spec.latent.class_probabilities)
    finally:
        data.close()


def load_train_spec(run_dir: Path) -> TrainSpec:
    path = run_dir / SPEC_FILE
    if not path.exists():
        raise NoCheckpoint(f"{run_dir}: no {SPEC_FILE}: not a training run directory")
    saved = yaml.safe_load(path.read_text())
    return parse_spec({"kind": "train", "name": "sampler", "train": saved}, str(path),
                      resolved=True).work


def restore_best(run_dir: Path, objects: dict) -> str:
    """Restore ``objects`` from the run's best snapshot (``checkpoint.keep_best``)."""
    record = read_best(run_dir)
    if record is None:
        raise NoCheckpoint(f"generate.checkpoint: best, but {run_dir} has no "
                           f"{BEST_DIR}/{BEST_RECORD}: train it with train.checkpoint.keep_best")
    path = str(run_dir / BEST_DIR / record["checkpoint"])
    tf.train.Checkpoint(**objects).read(path).expect_partial().assert_existing_objects_matched()
    return path


def restore_partial(ckpt_dir: Path, objects: dict, number: int | None) -> str:
    """Restore only ``objects`` (e.g. the generator) from checkpoint ``number``, or from the
    newest that restores. Returns the checkpoint's path."""
    state = tf.train.get_checkpoint_state(str(ckpt_dir))
    paths = list(state.all_model_checkpoint_paths) if state else []
    if number is not None:
        paths = [str(ckpt_dir / f"ckpt-{number}")]
    path = restore_newest(paths, lambda p: tf.train.Checkpoint(**objects).restore(p)
                          .expect_partial().assert_existing_objects_matched())
    if path is None:
        raise NoCheckpoint(f"{ckpt_dir}: no checkpoint to generate from")
    return path
