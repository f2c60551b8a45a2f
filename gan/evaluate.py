"""Judge a conditional generator with a classifier trained on real data.

Conditional accuracy = the share of generated images that the real-data classifier assigns to
the class they were generated for (10% is chance for 10 classes).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from gan import sampling


def generate(generator, num_classes: int, per_class: int, latent_dim: int, seed: int = 123,
             distribution: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N×S×S×C, labels) with ``per_class`` images of every class."""
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    z = sampling.latent(distribution, len(labels), latent_dim,
                        sampling.seed_for(seed, 0, 0, "grid"))
    images = generator([z, tf.constant(labels)], training=False)
    images = tf.clip_by_value((tf.cast(images, tf.float32) + 1) * 127.5, 0, 255)
    return tf.cast(tf.round(images), tf.uint8).numpy(), labels


def conditional_accuracy(generator, judge, num_classes: int, per_class: int,
                         latent_dim: int) -> float:
    images, labels = generate(generator, num_classes, per_class, latent_dim)
    return judge.accuracy(images, labels)
