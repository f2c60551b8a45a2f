"""Schedules by images seen (``train.schedule``), as R3GAN trains: the learning rate, Adam's
beta_2, the penalties' gamma, the EMA half-life and the augmentation probability each move
from a start to an end value along a half cosine over ``schedule.kimg`` thousand images (all
ranks together), then stay at the end.

Every scheduled value is a function of the global step alone, never of wall time, so a
resumed run trains exactly as the uninterrupted one: the learning rate is a Keras schedule of
the optimizer's own update count (in the checkpoint); the others are variables the steps read,
set from the step before the first step and after every step (``Schedules.apply``, traced into
the step like G's average), and the EMA's half-life is computed from the images seen.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from jobs.core.schema import ScheduleSpec


def cosine(start: float, end: float, progress) -> tf.Tensor:
    """start at progress 0, end at 1 and beyond, a half cosine between (float64)."""
    progress = tf.clip_by_value(tf.cast(progress, tf.float64), 0.0, 1.0)
    return end + (start - end) * 0.5 * (1.0 + tf.cos(math.pi * progress))


class CosineRate(keras.optimizers.schedules.LearningRateSchedule):
    """The learning rate by the optimizer's update count: ``steps`` updates from start to end
    (``scale``: the autoencoder's share, the ranks' factor)."""

    def __init__(self, start: float, end: float, steps: float, scale: float = 1.0):
        self.start, self.end, self.steps, self.scale = start, end, steps, scale

    def __call__(self, step):
        return tf.cast(self.scale * cosine(self.start, self.end, tf.cast(step, tf.float64)
                                           / self.steps), tf.float32)

    def get_config(self) -> dict:
        return {"start": self.start, "end": self.end, "steps": self.steps, "scale": self.scale}


def learning_rate(spec: ScheduleSpec, fixed: float, scale: float, images_per_step: int):
    """What an optimizer is given: ``fixed`` x ``scale``, or the scheduled rate."""
    if not spec.learning_rate:
        return fixed * scale
    start, end = spec.learning_rate
    return CosineRate(start, end, spec.kimg * 1000.0 / images_per_step, scale)


def beta_2(spec: ScheduleSpec, fixed: float) -> float | tf.Variable:
    """Adam's beta_2: ``fixed``, or a variable that ``Schedules.apply`` moves."""
    if not spec.beta_2:
        return fixed
    return tf.Variable(spec.beta_2[0], dtype=tf.float32, trainable=False, name="beta_2")


def half_life_kimg(spec: ScheduleSpec, fixed: float, images_seen) -> tf.Tensor:
    """The EMA's half-life after ``images_seen`` images (float64, thousands of images)."""
    if not spec.ema_half_life_kimg:
        return tf.constant(fixed, tf.float64)
    start, end = spec.ema_half_life_kimg
    return cosine(start, end, tf.cast(images_seen, tf.float64) / (spec.kimg * 1000.0))


class Schedules:
    """The scheduled variables of a run: (variable, [start, end]) pairs, set for a step."""

    def __init__(self, spec: ScheduleSpec, images_per_step: int,
                 targets: list[tuple[tf.Variable, list[float]]]):
        self.images_per_step = float(images_per_step)
        self.kimg = spec.kimg
        self.targets = [(v, ends) for v, ends in targets if v is not None and ends]

    def apply(self, global_step) -> None:
        """Each variable at its value for step ``global_step`` (counted from 0)."""
        if not self.targets:
            return
        progress = (tf.cast(global_step, tf.float64) * self.images_per_step
                    / (self.kimg * 1000.0))
        for variable, (start, end) in self.targets:
            variable.assign(tf.cast(cosine(start, end, progress), variable.dtype))
