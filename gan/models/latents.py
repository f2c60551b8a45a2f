"""Latent vectors and class labels for the generator, from counter-based random numbers.

Every random draw is ``stateless``: its seed is (run seed, rank, step, purpose). So the RNG's
whole state is the step counter saved in the checkpoint, a resumed run draws exactly the
numbers it would have drawn, and each rank draws different ones.
"""
from __future__ import annotations

import tensorflow as tf

PURPOSES = {"d_latent": 0, "d_labels": 1, "g_latent": 2, "g_labels": 3, "noise_real": 4,
            "noise_fake": 5, "grid": 6}


def seed_for(seed: int, rank: int, step, purpose: str) -> tf.Tensor:
    """A stateless-op seed; ``step`` may be a tensor (inside tf.function)."""
    step = tf.cast(step, tf.int64)
    return tf.stack([tf.constant(seed * 1_000_003 + rank, tf.int64),
                     step * len(PURPOSES) + PURPOSES[purpose]])


def latent(distribution: str, batch: int, dim: int, seed: tf.Tensor) -> tf.Tensor:
    """z of shape (batch, dim): normal, uniform in [-1, 1] or [0, 1], or stratified — every
    dimension takes ``batch`` evenly spaced values over [-3, 3], in its own shuffled order, so a
    batch covers the latent range evenly instead of clustering near 0."""
    if distribution == "normal":
        return tf.random.stateless_normal((batch, dim), seed)
    if distribution == "uniform":
        return tf.random.stateless_uniform((batch, dim), seed, minval=-1.0, maxval=1.0)
    if distribution == "unit_uniform":  # the AE-AC-GAN's: its encoder's latent is a sigmoid
        return tf.random.stateless_uniform((batch, dim), seed)
    if distribution == "stratified":
        grid = tf.linspace(-3.0, 3.0, batch)
        keys = tf.random.stateless_uniform((batch, dim), seed)
        order = tf.argsort(keys, axis=0)                  # an independent shuffle per dimension
        return tf.gather(grid, order)
    raise ValueError(f"unknown latent distribution {distribution!r}")


def class_labels(probabilities: tf.Tensor, batch: int, seed: tf.Tensor) -> tf.Tensor:
    """Labels drawn from the class probabilities (the data's frequencies by default)."""
    logits = tf.math.log(tf.maximum(probabilities, 1e-12))[None, :]
    return tf.cast(tf.random.stateless_categorical(logits, batch, seed)[0], tf.int32)
