"""The adversarial loss of every family, one object built from ``train.loss`` (StyleGAN2-ADA
keeps a ``Loss`` object the same way): the step asks it for D's and G's training losses and
never branches on the loss's name itself.

* ``non_saturating``: binary cross-entropy, D's real target smoothed to
  ``train.label_smoothing``, G maximising log D(fake);
* ``hinge``: D minimises relu(1 - real) + relu(1 + fake), G maximises D(fake);
* either with the lazy R1 penalty (``r1_gamma`` > 0): every ``r1_interval`` steps, scaled by
  the interval, on the real images as D saw them.

Whatever trains, the cross-entropy terms are what the step reports (``metrics.csv``, the guard),
so runs with different losses stay comparable.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import tensorflow as tf

from jobs.core.train_schema import LossSpec


def bce(target: float, logits) -> tf.Tensor:
    """Mean binary cross-entropy of logits against one constant target."""
    logits = tf.cast(logits, tf.float32)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.fill(tf.shape(logits), target), logits=logits))


def hinge_d(real_logits, fake_logits) -> tf.Tensor:
    """D's hinge loss: real logits pushed above 1, fake ones below -1."""
    return (tf.reduce_mean(tf.nn.relu(1.0 - tf.cast(real_logits, tf.float32)))
            + tf.reduce_mean(tf.nn.relu(1.0 + tf.cast(fake_logits, tf.float32))))


def r1_penalty(d_call: Callable, x: tf.Tensor) -> tf.Tensor:
    """Mean over images of |∇ₓ D(x)|² (Mescheder et al. 2018): keeps D flat on the real data,
    which stops it from overfitting small sets. Its gradients flow into D's update."""
    with tf.GradientTape() as tape:
        tape.watch(x)
        total = tf.reduce_sum(tf.cast(d_call(x), tf.float32))  # inside: the tape must see it
    grads = tape.gradient(total, x)
    return tf.reduce_mean(tf.reduce_sum(tf.square(tf.cast(grads, tf.float32)), axis=[1, 2, 3]))


def attribute_bce(attributes, logits) -> tf.Tensor:
    """Multi-label binary cross-entropy, averaged over attributes and images."""
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
        labels=tf.cast(attributes, tf.float32), logits=tf.cast(logits, tf.float32)))


def accuracies(real_logits, fake_logits) -> list[tf.Tensor]:
    """D's share of real images it calls real and of fakes it calls fake."""
    return [tf.reduce_mean(tf.cast(tf.cast(real_logits, tf.float32) > 0, tf.float32)),
            tf.reduce_mean(tf.cast(tf.cast(fake_logits, tf.float32) < 0, tf.float32))]


@dataclass(frozen=True)
class Loss:
    name: str = "non_saturating"      # or hinge
    real_target: float = 0.9          # train.label_smoothing
    r1_gamma: float = 0.0
    r1_interval: int = 16

    @classmethod
    def from_spec(cls, spec: LossSpec, label_smoothing: float) -> Loss:
        return cls(spec.name, label_smoothing, spec.r1_gamma, spec.r1_interval)

    def discriminator(self, real_logits, fake_logits, d_call: Callable, real_in, step
                      ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(D's training loss, the reported cross-entropy on reals, on fakes). ``d_call`` is
        D's real/fake head on an image batch, for R1's gradient; ``real_in`` the reals as D
        saw them (augmented, noised)."""
        d_real, d_fake = bce(self.real_target, real_logits), bce(0.0, fake_logits)
        loss = hinge_d(real_logits, fake_logits) if self.name == "hinge" else d_real + d_fake
        if self.r1_gamma <= 0:
            return loss, d_real, d_fake
        k = self.r1_interval
        weight = 0.5 * self.r1_gamma * k
        return loss + tf.cond(tf.equal(step % k, 0),
                              lambda: weight * r1_penalty(d_call, real_in),
                              lambda: tf.constant(0.0)), d_real, d_fake

    def generator(self, logits) -> tuple[tf.Tensor, tf.Tensor]:
        """(G's training loss, the reported cross-entropy) from D's logits on G's fakes."""
        g_bce = bce(1.0, logits)
        if self.name == "hinge":
            return -tf.reduce_mean(tf.cast(logits, tf.float32)), g_bce
        return g_bce, g_bce
