"""Differentiable augmentation and the generator's moving average: deterministic from their
seeds and steps (so resume stays exact), differentiable, and doing what they say."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

from gan.training.augment import OPS, Adaptive, augment
from gan.training.ema import Ema, copy_of
from gan.training.outputs import read_metrics
from jobs.core.schema import EmaSpec
from jobs.core.signals import StopSignals
from tests.gan.training.test_checkpoint import trainer

SEED = tf.constant([3, 4], tf.int64)


def images(n: int = 8, side: int = 16) -> tf.Tensor:
    return tf.random.stateless_uniform((n, side, side, 3), [1, 2], -1.0, 1.0)


@pytest.mark.parametrize("op", OPS)
def test_each_augmentation_is_seeded_shaped_and_differentiable(op):
    x = tf.Variable(images())
    with tf.GradientTape() as tape:
        y = augment(x, [op], 1.0, SEED)
        loss = tf.reduce_sum(y * y)
    assert y.shape == x.shape
    np.testing.assert_array_equal(y, augment(x, [op], 1.0, SEED))  # same seed, same images
    assert not np.array_equal(y, augment(x, [op], 1.0, SEED + 1))  # another seed, others
    grad = tape.gradient(loss, x)
    assert grad is not None and float(tf.reduce_sum(tf.abs(grad))) > 0  # G learns through it


def test_probability_zero_or_no_policy_is_the_identity_and_cutout_blanks_a_quarter():
    x = images()
    np.testing.assert_array_equal(augment(x, list(OPS), 0.0, SEED), x)
    np.testing.assert_array_equal(augment(x, [], 1.0, SEED), x)
    blanked = augment(tf.ones((8, 16, 16, 3)), ["cutout"], 1.0, SEED)
    zeros = tf.reduce_mean(tf.cast(blanked == 0, tf.float32), axis=[1, 2, 3]).numpy()
    # an 8x8 square: whole (1/4 of the image), or clipped at a corner down to 4x4 (1/16)
    assert np.all((zeros >= 1 / 16) & (zeros <= 1 / 4)) and zeros.max() == 1 / 4, zeros
    some = augment(x, ["translation"], 0.5, SEED)
    kept = [np.array_equal(a, b) for a, b in zip(some.numpy(), x.numpy())]
    assert 0 < sum(kept) < len(kept)  # with p = 0.5 some images are left alone


def test_ema_follows_the_half_life_with_its_rampup():
    g = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    avg = copy_of(g)
    spec = EmaSpec(enabled=True, half_life_kimg=0.064, rampup=None)  # 64 images
    ema = Ema(spec, g, avg, images_per_step=64)
    assert float(ema.beta(tf.constant(10_000.0, tf.float64))) == pytest.approx(0.5)
    start = avg.get_weights()[0].copy()
    g.set_weights([start + 1.0])
    ema.update(tf.constant(1, tf.int64))  # one half-life: halfway to G
    np.testing.assert_allclose(avg.get_weights()[0], start + 0.5, rtol=1e-6)
    ramped = Ema(EmaSpec(enabled=True, half_life_kimg=10.0, rampup=0.05), g, avg, 64)
    # after 1,280 images the half-life is 64 images (5%), not 10,000: beta 0.5 again
    assert float(ramped.beta(tf.constant(1280.0, tf.float64))) == pytest.approx(0.5)
    assert float(ramped.beta(tf.constant(1e9, tf.float64))) == pytest.approx(
        0.5 ** (64 / 10_000))


def test_hinge_and_r1_on_a_linear_discriminator():
    """For D(x) = w·x the R1 penalty is |w|² whatever x is; hinge is 0 once real > 1 and fake
    < -1 and grows linearly inside the margin."""
    from gan.training.loss import hinge_d, r1_penalty

    w = tf.constant(np.arange(1, 13, dtype=np.float32).reshape(2, 2, 3))
    d_call = lambda x: tf.reduce_sum(x * w, axis=[1, 2, 3])  # noqa: E731
    x = tf.random.stateless_normal((5, 2, 2, 3), [0, 1])
    assert float(r1_penalty(d_call, x)) == pytest.approx(float(tf.reduce_sum(w * w)))
    assert float(hinge_d(tf.constant([2.0, 3.0]), tf.constant([-2.0, -5.0]))) == 0.0
    assert float(hinge_d(tf.constant([0.0]), tf.constant([0.5]))) == pytest.approx(2.5)


def test_ada_moves_p_towards_its_target_within_0_and_1():
    p = tf.Variable(0.0)
    ada = Adaptive(p, target=0.6, speed_kimg=1.0, images_per_step=100)  # 0.1 per step

    def step(d_acc_real: float) -> float:
        ada.apply(tf.constant(d_acc_real))
        return float(p)

    assert step(0.9) == pytest.approx(0.1)   # r = 0.8 > 0.6: D memorises, raise p
    for _ in range(20):
        step(1.0)
    assert float(p) == 1.0                    # clipped
    assert step(0.75) == pytest.approx(0.9)  # r = 0.5 < 0.6: lower p
    for _ in range(20):
        step(0.0)
    assert float(p) == 0.0


def test_ada_steps_p_exactly_as_host_arithmetic_would():
    """The in-step update keeps the float64 arithmetic of the host-side one it replaced."""
    p = tf.Variable(0.3)
    ada = Adaptive(p, target=0.6, speed_kimg=0.7, images_per_step=96)
    host = float(p.numpy())
    for acc in (0.9, 0.81, 0.79, 0.95, 0.2, 0.8000001):
        ada.apply(tf.constant(acc, tf.float32))
        r = 2.0 * float(np.float32(acc)) - 1.0
        host = float(np.float32(min(1.0, max(0.0, host + (ada.delta if r > 0.6 else -ada.delta)))))
        assert float(p.numpy()) == host


def test_ada_in_training_is_checkpointed_and_logged(tmp_path):
    t = trainer(tmp_path, "train.epochs=1", "train.augment.policy=[translation, cutout]",
                "train.augment.adaptive=true", "train.augment.probability=0.0",
                "train.augment.speed_kimg=1.0")
    assert t.run(StopSignals()) == 0
    p = float(t.state.augment_p.numpy())
    assert 0.0 < p <= 1.0  # D calls the first reals real at once: p rises from 0
    resumed = trainer(tmp_path, "train.epochs=1", "train.augment.policy=[translation, cutout]",
                      "train.augment.adaptive=true", "train.augment.probability=0.0",
                      "train.augment.speed_kimg=1.0")
    assert float(resumed.state.augment_p.numpy()) == p
    (row,) = read_metrics(tmp_path / "run", "epoch")
    assert float(row["augment_p"]) == pytest.approx(p, rel=1e-5)
