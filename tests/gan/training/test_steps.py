"""A training step is built from explicit inputs (networks, optimizers, a World, a small config,
draws and a hook), not from a Trainer; the loss is one object that the step asks and never
branches on."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from gan.families import FAMILIES
from gan.models import builders, latents
from gan.parallel import distributed
from gan.training import steps
from gan.training.loss import Loss, accuracies, bce, hinge_d
from gan.training.state import POLICIES, loss_scale, make_optimizer
from jobs.core.train_schema import LossSpec, ModelSpec, TrainSpec

LOGITS = (tf.constant([2.0, -0.5, 0.3]), tf.constant([-1.5, 0.2, 0.9]))


def test_non_saturating_trains_on_what_it_reports():
    loss, d_real, d_fake = Loss().discriminator(*LOGITS, None, None, tf.constant(1))
    assert float(d_real) == pytest.approx(float(bce(0.9, LOGITS[0])))
    assert float(d_fake) == pytest.approx(float(bce(0.0, LOGITS[1])))
    assert float(loss) == pytest.approx(float(d_real + d_fake))
    g_train, g_bce = Loss().generator(LOGITS[1])
    assert float(g_train) == float(g_bce) == pytest.approx(float(bce(1.0, LOGITS[1])))


def test_hinge_trains_on_hinge_and_still_reports_cross_entropy():
    hinge = Loss.from_spec(LossSpec(name="hinge"), label_smoothing=1.0)
    loss, d_real, _ = hinge.discriminator(*LOGITS, None, None, tf.constant(1))
    assert float(loss) == pytest.approx(float(hinge_d(*LOGITS)))
    assert float(d_real) == pytest.approx(float(bce(1.0, LOGITS[0])))
    g_train, g_bce = hinge.generator(LOGITS[1])
    assert float(g_train) == pytest.approx(-float(tf.reduce_mean(LOGITS[1])))
    assert float(g_bce) == pytest.approx(float(bce(1.0, LOGITS[1])))


def test_lazy_r1_is_added_on_its_interval_only_and_scaled_by_it():
    """D(x) = 3·sum(x): |∇D|² = 9 per pixel, 9·4 over a 2x2x1 image; weight γ/2 · interval."""
    r1 = Loss(r1_gamma=2.0, r1_interval=4)
    d_call = lambda x: 3.0 * tf.reduce_sum(x, axis=[1, 2, 3])  # noqa: E731
    x = tf.ones((3, 2, 2, 1))
    plain, *_ = Loss().discriminator(*LOGITS, d_call, x, tf.constant(8))
    on, *_ = r1.discriminator(*LOGITS, d_call, x, tf.constant(8))
    off, *_ = r1.discriminator(*LOGITS, d_call, x, tf.constant(9))
    assert float(off) == pytest.approx(float(plain))
    assert float(on) == pytest.approx(float(plain) + 0.5 * 2.0 * 4 * 36.0)


def test_relativistic_trains_on_pairs_and_is_blind_to_a_common_shift():
    """D: mean softplus(fake_i - real_i); G: the reverse. Shifting every logit by one
    constant changes neither, nor what is reported (the centred cross-entropies, accuracies)."""
    rp = Loss.from_spec(LossSpec(name="relativistic"), label_smoothing=1.0)
    real, fake = LOGITS
    loss, d_real, d_fake = rp.discriminator(real, fake, None, None, tf.constant(1))
    expected = np.mean(np.log1p(np.exp(fake.numpy() - real.numpy())))
    assert float(loss) == pytest.approx(expected)
    g_train, g_bce = rp.generator(fake, real)
    assert float(g_train) == pytest.approx(np.mean(np.log1p(np.exp(real.numpy() - fake.numpy()))))
    middle = (np.mean(real.numpy()) + np.mean(fake.numpy())) / 2
    assert float(d_real) == pytest.approx(float(bce(1.0, real - middle)))
    shifted = rp.discriminator(real + 7.0, fake + 7.0, None, None, tf.constant(1))
    assert [float(v) for v in shifted] == pytest.approx([float(loss), float(d_real),
                                                          float(d_fake)])
    assert float(rp.generator(fake - 3.0, real - 3.0)[1]) == pytest.approx(float(g_bce))
    centred = accuracies(*rp.centred(real + 7.0, fake + 7.0))
    assert [float(a) for a in centred] == [float(a) for a in accuracies(*rp.centred(real, fake))]
    assert [float(a) for a in accuracies(real + 7.0, fake + 7.0)] != [
        float(a) for a in centred]  # uncentred, the shift would have fooled the reports
    assert rp.pairs and not Loss().pairs and not Loss(name="hinge").pairs


def test_r2_penalises_the_fakes_gradient_beside_r1_on_the_lazy_interval():
    """D(x) = 3·sum(x) on reals, 5·sum(x) on fakes, 2x2x1 images: |∇|² is 36 and 100 per
    image; each weighted γ/2, times the interval, on its steps only."""
    loss = Loss(name="relativistic", r1_gamma=2.0, r1_interval=4, r2_gamma=0.5)
    real_call = lambda x: 3.0 * tf.reduce_sum(x, axis=[1, 2, 3])  # noqa: E731
    fake_call = lambda x: 5.0 * tf.reduce_sum(x, axis=[1, 2, 3])  # noqa: E731
    x = tf.ones((3, 2, 2, 1))
    plain, *_ = Loss(name="relativistic").discriminator(*LOGITS, None, None, tf.constant(8))
    on, *_ = loss.discriminator(*LOGITS, real_call, x, tf.constant(8), fake_call, -x)
    off, *_ = loss.discriminator(*LOGITS, real_call, x, tf.constant(9), fake_call, -x)
    assert float(off) == pytest.approx(float(plain))
    assert float(on) == pytest.approx(float(plain) + 0.5 * 4 * (2.0 * 36.0 + 0.5 * 100.0))
    r2_only = Loss(r2_gamma=1.0, r1_interval=1)
    with_r2, *_ = r2_only.discriminator(*LOGITS, None, None, tf.constant(3), fake_call, x)
    assert float(with_r2) == pytest.approx(float(Loss().discriminator(
        *LOGITS, None, None, tf.constant(3))[0]) + 0.5 * 100.0)


class LabelDraws:
    """Latents and class labels straight from ``gan.models.latents`` (what the Sampler draws)."""

    def __init__(self, latent_dim: int, num_classes: int):
        self.dim, self.probabilities = latent_dim, tf.fill([num_classes], 1.0 / num_classes)

    def latent(self, n, seed):
        return latents.latent("normal", n, self.dim, seed)

    def sample_conditions(self, n, seed):
        self.sampled = getattr(self, "sampled", 0) + 1  # counted while tracing
        return latents.class_labels(self.probabilities, n, seed)


@pytest.mark.parametrize("loss, sampled", [
    (Loss(), 2),  # D's fakes and G's fakes draw their labels
    # pairs: every fake takes its real's label, and both penalties run on every step
    (Loss(name="relativistic", r1_gamma=1.0, r2_gamma=1.0, r1_interval=1), 0)])
def test_a_step_needs_no_trainer_and_calls_its_hook_once_per_step(loss, sampled):
    model = ModelSpec(name="cgan", image_size=8, latent_dim=4, embedding_dim=2,
                      generator_filters=[4], discriminator_filters=[4])
    tf.keras.utils.set_random_seed(0)
    nets = builders.build(model, num_classes=3, channels=1)
    opts = steps.Optimizers(tf.keras.optimizers.Adam(1e-3), tf.keras.optimizers.Adam(1e-3))
    opts.generator.build(nets.generator.trainable_variables)  # as gan.training.state builds them
    opts.discriminator.build(nets.discriminator.trainable_variables)
    seen, counted = [], tf.Variable(0)

    def after_step(step, metrics):
        seen.append(metrics.shape)
        counted.assign_add(1)

    config = steps.StepConfig("cgan", batch=4, seed=1, rank=0, loss=loss)
    draws = LabelDraws(4, 3)
    step = steps.make_step(config, nets, opts, distributed.World(0, 1, 0), draws, after_step)
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)), tf.uint8)
    before = [w.numpy().copy() for w in nets.generator.trainable_weights]
    for i in range(2):
        metrics, stop = step(images, tf.constant([0, 1, 2, 0]), tf.constant(i, tf.int64),
                             tf.constant(0.0))
    assert metrics.shape == (len(FAMILIES["cgan"].metrics),) and float(stop) == 0.0
    assert np.all(np.isfinite(metrics.numpy()))
    # traced once into the graph, then run by every call: no Python call per step
    assert seen == [metrics.shape] and int(counted) == 2
    assert any(not np.array_equal(b, w.numpy())
               for b, w in zip(before, nets.generator.trainable_weights))
    assert int(opts.generator.iterations) == int(opts.discriminator.iterations) == 2
    assert getattr(draws, "sampled", 0) == sampled


@pytest.fixture
def float16_policy():
    """Keras' policy is process-wide: set for one test, restored for the next."""
    tf.keras.mixed_precision.set_global_policy(POLICIES["float16"])
    yield
    tf.keras.mixed_precision.set_global_policy("float32")


def test_float16_scales_the_loss_skips_an_overflowing_step_and_halves_the_scale(
        float16_policy, tmp_path):
    model = ModelSpec(name="cgan", image_size=8, latent_dim=4, embedding_dim=2,
                      generator_filters=[4], discriminator_filters=[4])
    tf.keras.utils.set_random_seed(0)
    nets = builders.build(model, num_classes=3, channels=1)
    spec = TrainSpec(data="x", run_dir="y", precision="float16")
    opts = steps.Optimizers(
        make_optimizer(spec, 1, nets.generator.trainable_variables),
        make_optimizer(spec, 1, nets.discriminator.trainable_variables))
    assert float(loss_scale(opts.generator)) == 2.0 ** 15
    config = steps.StepConfig("cgan", batch=4, seed=1, rank=0, loss=Loss())
    step = steps.make_step(config, nets, opts, distributed.World(0, 1, 0), LabelDraws(4, 3),
                           lambda s, m: None)
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)), tf.uint8)
    labels = tf.constant([0, 1, 2, 0])

    def g_weights():
        return [w.numpy().copy() for w in nets.generator.trainable_weights]

    before = g_weights()
    step(images, labels, tf.constant(0, tf.int64), tf.constant(0.0))
    assert any(not np.array_equal(b, a) for b, a in zip(before, g_weights()))  # applied
    assert float(loss_scale(opts.generator)) == 2.0 ** 15
    opts.generator.dynamic_scale.assign(3e38)  # scale x gradient overflows float32: inf
    before = g_weights()
    step(images, labels, tf.constant(1, tf.int64), tf.constant(0.0))
    assert all(np.array_equal(b, a) for b, a in zip(before, g_weights()))  # skipped
    assert float(loss_scale(opts.generator)) == pytest.approx(1.5e38)  # halved
    assert int(opts.generator.inner_optimizer.iterations) == 1
    # the scale and its growth counter are in the checkpoint with the optimizer
    path = tf.train.Checkpoint(g=opts.generator).write(str(tmp_path / "ckpt"))
    fresh = make_optimizer(spec, 1, nets.generator.trainable_variables)
    tf.train.Checkpoint(g=fresh).read(path).assert_consumed()
    assert float(loss_scale(fresh)) == pytest.approx(1.5e38)


def test_float16_trains_the_residual_networks_with_r1_and_r2_under_the_loss_scale(
        float16_policy):
    """The modern networks and loss in float16, which the system tests run only on the classic
    networks (a CPU emulates float16; the residual ones took 2 s a step there): the double
    backprop of R1 + R2 under the loss scale gives finite gradients that move both networks,
    in float16 inside and float32 weights, and no step is skipped as an overflow."""
    model = ModelSpec(name="cgan", image_size=16, latent_dim=4, embedding_dim=2,
                      architecture="residual", generator_filters=[8, 4],
                      discriminator_filters=[4, 8])
    tf.keras.utils.set_random_seed(0)
    nets = builders.build(model, num_classes=3, channels=1)
    assert nets.generator.compute_dtype == "float16"
    assert {w.dtype for w in nets.generator.trainable_weights} == {"float32"}
    spec = TrainSpec(data="x", run_dir="y", precision="float16")
    opts = steps.Optimizers(
        make_optimizer(spec, 1, nets.generator.trainable_variables),
        make_optimizer(spec, 1, nets.discriminator.trainable_variables))
    loss = Loss(name="relativistic", r1_gamma=1.0, r2_gamma=1.0, r1_interval=1)
    config = steps.StepConfig("cgan", batch=4, seed=1, rank=0, loss=loss)
    step = steps.make_step(config, nets, opts, distributed.World(0, 1, 0), LabelDraws(4, 3),
                           lambda s, m: None)
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 16, 16, 1)), tf.uint8)
    before = [[w.numpy().copy() for w in m.trainable_weights]
              for m in (nets.generator, nets.discriminator)]
    for k in range(2):
        metrics, _ = step(images, tf.constant([0, 1, 2, 0]), tf.constant(k, tf.int64),
                          tf.constant(0.0))
        assert np.isfinite(metrics.numpy()).all(), metrics
    for net, old in zip((nets.generator, nets.discriminator), before):
        assert any(not np.array_equal(b, w.numpy()) for b, w in zip(old, net.trainable_weights))
        assert all(np.isfinite(w.numpy()).all() for w in net.trainable_weights)
    for opt in (opts.generator, opts.discriminator):  # no overflow skipped a step
        assert int(opt.inner_optimizer.iterations) == 2
        assert float(loss_scale(opt)) == 2.0 ** 15
