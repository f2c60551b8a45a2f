"""Differentiable augmentation of everything D sees (DiffAugment, Zhao et al. 2020).

With a few hundred training images D memorises the real set and G's gradients stop meaning
anything; augmenting real *and* fake images the same way, with operations G's gradients pass
through, keeps D honest without teaching G the augmentations. Each operation is applied to an
image with ``probability`` (1.0 = always, as DiffAugment; lower values are ADA's knob).

Every random number is stateless, seeded by (seed, rank, step, purpose) like the rest of the
step, so a resumed run augments exactly as the uninterrupted one would have. Images are in
[-1, 1], NHWC.
"""
from __future__ import annotations

import tensorflow as tf

OPS = ("color", "translation", "cutout", "flip")


def _seed(seed: tf.Tensor, k: int) -> tf.Tensor:
    """A distinct stateless seed per operation and draw, derived from the step's seed."""
    return tf.random.experimental.stateless_fold_in(seed, k)


def _apply(x: tf.Tensor, out: tf.Tensor, probability, seed: tf.Tensor) -> tf.Tensor:
    """``out`` for the images chosen with ``probability`` (a number, or ADA's variable),
    ``x`` for the others."""
    if isinstance(probability, (int, float)) and probability >= 1.0:
        return out
    n = tf.shape(x)[0]
    chosen = tf.random.stateless_uniform([n, 1, 1, 1], seed) < probability
    return tf.where(chosen, out, x)


def color(x, probability, seed):
    """Brightness ±0.5, saturation ×[0, 2], contrast ×[0.5, 1.5] (DiffAugment's ranges)."""
    n = tf.shape(x)[0]
    shape = [n, 1, 1, 1]
    y = x + (tf.random.stateless_uniform(shape, _seed(seed, 0)) - 0.5)
    mean = tf.reduce_mean(y, axis=3, keepdims=True)
    y = (y - mean) * (tf.random.stateless_uniform(shape, _seed(seed, 1)) * 2.0) + mean
    mean = tf.reduce_mean(y, axis=[1, 2, 3], keepdims=True)
    y = (y - mean) * (tf.random.stateless_uniform(shape, _seed(seed, 2)) + 0.5) + mean
    return _apply(x, y, probability, _seed(seed, 3))


def translation(x, probability, seed, ratio: float = 0.125):
    """Shift by up to ``ratio`` of the side, filling with zeros (mid-grey)."""
    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    pad_h = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    pad_w = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    dy = tf.random.stateless_uniform([n], _seed(seed, 0), -pad_h, pad_h + 1, tf.int32)
    dx = tf.random.stateless_uniform([n], _seed(seed, 1), -pad_w, pad_w + 1, tf.int32)
    padded = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
    rows = tf.range(h)[None, :] + pad_h - dy[:, None]           # (n, h)
    cols = tf.range(w)[None, :] + pad_w - dx[:, None]           # (n, w)
    y = tf.gather(padded, rows, axis=1, batch_dims=1)
    y = tf.gather(y, cols, axis=2, batch_dims=1)
    return _apply(x, y, probability, _seed(seed, 2))


def cutout(x, probability, seed, ratio: float = 0.5):
    """Blank a square of ``ratio`` of the side at a random place."""
    n, h, w = tf.shape(x)[0], tf.shape(x)[1], tf.shape(x)[2]
    size_h = tf.cast(tf.cast(h, tf.float32) * ratio + 0.5, tf.int32)
    size_w = tf.cast(tf.cast(w, tf.float32) * ratio + 0.5, tf.int32)
    cy = tf.random.stateless_uniform([n, 1, 1], _seed(seed, 0), 0, h + (1 - size_h % 2),
                                     tf.int32)
    cx = tf.random.stateless_uniform([n, 1, 1], _seed(seed, 1), 0, w + (1 - size_w % 2),
                                     tf.int32)
    ys = tf.range(h)[None, :, None]
    xs = tf.range(w)[None, None, :]
    inside = ((ys >= cy - size_h // 2) & (ys < cy - size_h // 2 + size_h)
              & (xs >= cx - size_w // 2) & (xs < cx - size_w // 2 + size_w))
    y = x * tf.cast(~inside, x.dtype)[..., None]
    return _apply(x, y, probability, _seed(seed, 2))


def flip(x, probability, seed):
    """Mirror left-right (faces are roughly symmetric; digits are not: leave it out there)."""
    return _apply(x, tf.reverse(x, axis=[2]), 0.5 * probability, seed)


def augment(x: tf.Tensor, policy: list[str], probability, seed: tf.Tensor) -> tf.Tensor:
    """``x`` through every operation of ``policy`` in DiffAugment's order."""
    if not policy or (isinstance(probability, (int, float)) and probability <= 0):
        return x
    dtype = x.dtype
    x = tf.cast(x, tf.float32)
    for k, name in enumerate(op for op in OPS if op in policy):
        x = globals()[name](x, probability, _seed(seed, 100 + k))
    return tf.cast(x, dtype)


class Adaptive:
    """ADA's controller (Karras et al. 2020): D's sign on the reals, r = E[sign D(real)]
    (= 2 x d_acc_real - 1, already averaged over the ranks by the step), above ``target``
    means D is memorising them: raise p; below, lower it. Each step moves p by its images
    over ``speed_kimg`` thousand, so it can cross [0, 1] in that many images. Stepping on
    every step's own value (not an interval's average) leaves nothing outside the
    checkpointed p, so a resumed run moves p exactly as the uninterrupted one.

    Under the relativistic loss D's logits have no zero (a common shift changes nothing), so
    d_acc_real is the share of reals above the batch's real/fake midpoint
    (``Loss.centred``): r then reads how far D separates the reals from the fakes, the
    signal ADA needs, rather than the arbitrary level of the logits."""

    def __init__(self, p: tf.Variable, target: float, speed_kimg: float,
                 images_per_step: int):
        self.p, self.target = p, target
        self.delta = images_per_step / (speed_kimg * 1000.0)

    def apply(self, d_acc_real: tf.Tensor) -> None:
        """One step of p, inside the training step. In float64 like the host-side arithmetic
        it replaced (``p ± delta``, clipped to [0, 1], stored as float32), so p moves
        bit for bit as it did."""
        r = 2.0 * tf.cast(d_acc_real, tf.float64) - 1.0
        delta = tf.constant(self.delta, tf.float64)
        p = tf.cast(self.p, tf.float64) + tf.where(r > self.target, delta, -delta)
        self.p.assign(tf.cast(tf.clip_by_value(p, 0.0, 1.0), tf.float32))
