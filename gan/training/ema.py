"""An exponential moving average of the generator's weights (StyleGAN2-ADA's ``G_ema``).

After every training step ``G_ema ← G + β (G_ema − G)`` with β = 0.5 ** (images per step /
half-life in images): an average over the last ``half_life_kimg`` thousand images, which smooths
out the step-to-step wobble of adversarial training and usually gives visibly better samples.
Early in training the half-life is capped at ``rampup`` × the images seen so far, so the average
does not drag the random initial weights along. Non-trainable weights (BatchNorm's statistics)
are copied. ``train.schedule.ema_half_life_kimg`` moves the half-life with the images seen
(R3GAN grows it). β depends only on the global step, so a resumed run averages exactly as the
uninterrupted one; ``G_ema`` is in every checkpoint and identical on every rank (G is).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from gan.training import schedules
from jobs.core.schema import EmaSpec, ScheduleSpec


def copy_of(generator: keras.Model) -> keras.Model:
    """A second generator with the same architecture and (for now) the same weights."""
    clone = keras.models.clone_model(generator)
    clone.set_weights(generator.get_weights())
    return clone


class Ema:
    def __init__(self, spec: EmaSpec, generator: keras.Model, average: keras.Model,
                 images_per_step: int, schedule: ScheduleSpec | None = None):
        self.spec, self.schedule = spec, schedule or ScheduleSpec()
        self.pairs = list(zip(average.trainable_weights, generator.trainable_weights))
        self.copies = list(zip(average.non_trainable_weights, generator.non_trainable_weights))
        self.images_per_step = float(images_per_step)
        # on its own, outside a training step; no AutoGraph, like the steps (gan/training/steps.py)
        self.update = tf.function(self.apply, autograph=False)

    def beta(self, images_seen: tf.Tensor) -> tf.Tensor:
        half_life = 1000.0 * schedules.half_life_kimg(self.schedule, self.spec.half_life_kimg,
                                                      images_seen)
        if self.spec.rampup is not None:
            half_life = tf.minimum(half_life, images_seen * self.spec.rampup)
        return tf.pow(tf.constant(0.5, tf.float64),
                      self.images_per_step / tf.maximum(half_life, 1e-8))

    def apply(self, global_step: tf.Tensor) -> None:
        """After step ``global_step`` (counted from 1) has trained G; runs inside the training
        step (``gan/training/steps.py``), so it costs no call of its own."""
        images_seen = tf.cast(global_step, tf.float64) * self.images_per_step
        beta = self.beta(images_seen)
        for avg, live in self.pairs:
            b = tf.cast(beta, avg.dtype)
            avg.assign(live + (avg - live) * b)
        for avg, live in self.copies:
            avg.assign(live)
