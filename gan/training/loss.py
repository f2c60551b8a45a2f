"""The adversarial loss of every family, one object built from ``train.loss`` (StyleGAN2-ADA
keeps a ``Loss`` object the same way): the step asks it for D's and G's training losses, and
what to show D, and never branches on the loss's name itself.

* ``non_saturating``: binary cross-entropy, D's real target smoothed to
  ``train.label_smoothing``, G maximising log D(fake);
* ``hinge``: D minimises relu(1 - real) + relu(1 + fake), G maximises D(fake);
* ``relativistic`` (the pairing loss of RpGAN, R3GAN's loss): D minimises
  softplus(D(fake) - D(real)) over pairs (real i, fake i), G the reverse. In a conditional
  family the pair shares its condition: the fake is drawn with the real's label or attribute
  row, so D answers "which of these two is the real one of this class" rather than comparing
  two classes' scores (``pairs``);
* with any of them the zero-centred penalties, each weighted gamma/2: R1 (``r1_gamma``) on the
  real images as D saw them, R2 (``r2_gamma``) on the fakes as D saw them. R3GAN needs both
  for its convergence guarantee; they are lazy every ``r1_interval`` steps, scaled by it.

Whatever trains, the cross-entropy terms are what the step reports (``metrics.csv``, the
guard), so runs with different losses stay comparable. The relativistic loss does not change
when all of D's logits shift by one constant, so its absolute logits drift and a cross-entropy
of them would read nothing: under it the reported cross-entropies, D's accuracies and ADA's
E[sign D(real)] read the logits centred on the batch's midpoint, (mean real + mean fake) / 2
(``centred``), i.e. the real-minus-fake gap, which is what the loss trains.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def lazy_penalties(interval: int, *gammas_and_terms) -> tf.Tensor:
    """The penalties due at a lazy step: gamma/2 x each term (a function: it is computed only
    on that branch of the ``tf.cond``), times the interval, so their mean weight is gamma/2."""
    return 0.5 * interval * tf.add_n([g * t() for g, t in gammas_and_terms])


@dataclass(frozen=True)
class Loss:
    name: str = "non_saturating"      # or hinge, relativistic
    real_target: float = 0.9          # train.label_smoothing
    r1_gamma: float = 0.0
    r1_interval: int = 16
    r2_gamma: float = 0.0
    gamma: Any = None   # train.schedule.gamma's variable: replaces the gammas that are on

    @classmethod
    def from_spec(cls, spec: LossSpec, label_smoothing: float, gamma=None) -> Loss:
        return cls(spec.name, label_smoothing, spec.r1_gamma, spec.r1_interval, spec.r2_gamma,
                   gamma)

    @property
    def pairs(self) -> bool:
        """The step draws each fake with its real's condition, and G's loss reads D on the
        reals too (the relativistic loss compares pairs)."""
        return self.name == "relativistic"

    def centred(self, real_logits, fake_logits) -> tuple[tf.Tensor, tf.Tensor]:
        """The logits the reports read: as they are, or under the relativistic loss, which is
        blind to a common shift, centred on the batch's midpoint (the module says why)."""
        real, fake = tf.cast(real_logits, tf.float32), tf.cast(fake_logits, tf.float32)
        if not self.pairs:
            return real, fake
        middle = 0.5 * (tf.reduce_mean(real) + tf.reduce_mean(fake))
        return real - middle, fake - middle

    def discriminator(self, real_logits, fake_logits, d_call: Callable, real_in, step,
                      fake_call: Callable | None = None, fake_in=None
                      ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """(D's training loss, the reported cross-entropy on reals, on fakes). ``d_call`` is
        D's real/fake head on an image batch, for R1's gradient; ``real_in`` the reals as D
        saw them (augmented, noised); ``fake_call`` and ``fake_in`` the same for R2."""
        shown_real, shown_fake = self.centred(real_logits, fake_logits)
        d_real, d_fake = bce(self.real_target, shown_real), bce(0.0, shown_fake)
        if self.name == "hinge":
            loss = hinge_d(real_logits, fake_logits)
        elif self.pairs:
            loss = tf.reduce_mean(tf.nn.softplus(tf.cast(fake_logits, tf.float32)
                                                 - tf.cast(real_logits, tf.float32)))
        else:
            loss = d_real + d_fake
        terms = [(g if self.gamma is None else tf.cast(self.gamma, tf.float32), t)
                 for g, t in ((self.r1_gamma, lambda: r1_penalty(d_call, real_in)),
                              (self.r2_gamma, lambda: r1_penalty(fake_call, fake_in)))
                 if g > 0]
        if not terms:
            return loss, d_real, d_fake
        k = self.r1_interval
        return loss + tf.cond(tf.equal(step % k, 0), lambda: lazy_penalties(k, *terms),
                              lambda: tf.constant(0.0)), d_real, d_fake

    def generator(self, logits, real_logits=None) -> tuple[tf.Tensor, tf.Tensor]:
        """(G's training loss, the reported cross-entropy) from D's logits on G's fakes, and
        (``pairs``) on the reals they are paired with."""
        if self.pairs:
            real, fake = tf.cast(real_logits, tf.float32), tf.cast(logits, tf.float32)
            return (tf.reduce_mean(tf.nn.softplus(real - fake)),
                    bce(1.0, self.centred(real, fake)[1]))
        g_bce = bce(1.0, logits)
        if self.name == "hinge":
            return -tf.reduce_mean(tf.cast(logits, tf.float32)), g_bce
        return g_bce, g_bce
