"""One training step per model family, each a single ``tf.function`` (the networks:
``gan/models/builders.py``).

``adversarial``  (cgan, dcgan): D on real and fake, then G through D.
``autoencoding`` (aeacgan): D on real and fake (real/fake head + attribute head), G through D
with sampled attributes, then the autoencoder (encoder → generator) on the real images with
MAE at ``optimizer.autoencoder_lr_ratio`` of the learning rate.

Every step takes ``(images uint8, condition, step, stop)`` — the condition being the batch's
labels or attribute rows — and returns the metrics (averaged over ranks, so every rank's guard
takes the same decision) and the summed stop flag, both in one allreduce. All random numbers
are stateless, seeded by (seed, rank, step, purpose): a resumed run draws exactly what it would
have drawn.

A step is built from explicit inputs (``make_step``): the networks, one optimizer per update,
the ``World`` it averages over, a ``StepConfig`` of the spec's few numbers, where its latents
and conditions come from, and an ``after_step`` hook. The losses live in ``gan/training/loss.py``.

Everything that happens once per step happens inside it — the hook counts the step, moves the
generator's average (``train.ema``) and ADA's probability — so the loop pays one call per step
(``bench/bench_step.py`` measures the loop against the bare step). With ``train.jit_compile``
each network's forward and backward pass is compiled by XLA; the allreduce and the optimizers
stay outside, where Horovod's ops live.

The steps are traced without AutoGraph (``STEP_FUNCTION``): they have no Python control flow
that depends on a tensor (the lazy R1 penalty is an explicit ``tf.cond``), and AutoGraph's
rewriting of every function the step calls was a third of a short run's start-up: the time a
requeued job pays before its first step, and a test suite on every process.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import tensorflow as tf

from gan.families import family
from gan.models import latents
from gan.models.builders import Networks
from gan.parallel import distributed
from gan.training.augment import augment
from gan.training.loss import Loss, accuracies, attribute_bce
from gan.training.state import loss_scale
from jobs.core.images import to_signed_unit
from jobs.core.schema import TrainSpec

# how every step (and the moving average's own update) is traced: see the module's docstring
STEP_FUNCTION = {"autograph": False}


@dataclass(frozen=True)
class StepConfig:
    """The few numbers a step reads from the spec, besides its networks and optimizers."""
    family: str
    batch: int
    seed: int
    rank: int
    loss: Loss
    input_noise: float = 0.0         # train.disc_input_noise
    augment_policy: tuple[str, ...] = ()
    # ADA's variable is read at every call of the step; else a constant in the graph
    augment_probability: float | tf.Variable = 0.0
    compression: str = "none"        # train.horovod.compression
    jit_compile: bool = False

    @classmethod
    def from_spec(cls, spec: TrainSpec, rank: int, augment_p: tf.Variable | None,
                  gamma: tf.Variable | None = None) -> StepConfig:
        return cls(spec.model.name, spec.batch_size, spec.seed, rank,
                   Loss.from_spec(spec.loss, spec.label_smoothing, gamma),
                   spec.disc_input_noise,
                   tuple(spec.augment.policy),
                   spec.augment.probability if augment_p is None else augment_p,
                   spec.horovod.compression, spec.jit_compile)


class Optimizers(NamedTuple):
    """One optimizer per update of the step."""
    generator: tf.keras.optimizers.Optimizer
    discriminator: tf.keras.optimizers.Optimizer
    autoencoder: tf.keras.optimizers.Optimizer | None = None


class Draws(Protocol):
    """Where a step's latents and conditions come from (``gan.models.sampler.Sampler``)."""

    def latent(self, n: int, seed) -> tf.Tensor: ...

    def sample_conditions(self, n: int, seed) -> tf.Tensor: ...


# called inside the step, once traced: (the step's number, the rank-averaged metrics)
AfterStep = Callable[[tf.Tensor, tf.Tensor], None]


class _Compiled:
    """A network whose calls XLA compiles (``train.jit_compile``): its gradient is compiled
    too, and the tape outside still sees its trainable variables."""

    def __init__(self, model):
        self.model = model
        self.trainable_variables = model.trainable_variables
        self._call = tf.function(lambda x, training: model(x, training=training),
                                 jit_compile=True, **STEP_FUNCTION)

    def __call__(self, x, training: bool = False):
        return self._call(x, training)


def callable_networks(nets: Networks, jit_compile: bool) -> tuple:
    """(G, D, E) as the step calls them: compiled by XLA or plain."""
    plain = (nets.generator, nets.discriminator, nets.encoder)
    if not jit_compile:
        return plain
    return tuple(None if m is None else _Compiled(m) for m in plain)


class _Parts:
    """What both step families share: seeds, latents, D-input noise and augmentation, the
    updates, and the one allreduce of the metrics and the stop flag."""

    def __init__(self, config: StepConfig, world: distributed.World, draws: Draws,
                 after_step: AfterStep):
        self.config, self.world, self.draws, self.after_step = config, world, draws, after_step
        self.loss = config.loss

    def seed_for(self, step, purpose: str):
        return latents.seed_for(self.config.seed, self.config.rank, step, purpose)

    def latent(self, step, purpose: str):
        return self.draws.latent(self.config.batch, self.seed_for(step, purpose))

    def conditions(self, step, purpose: str):
        return self.draws.sample_conditions(self.config.batch, self.seed_for(step, purpose))

    def paired(self, conditions, step, purpose: str):
        """The conditions fakes are drawn with: the batch's own under a loss that compares
        pairs (each fake shares its real's class or attributes), else sampled ones."""
        return conditions if self.loss.pairs else self.conditions(step, purpose)

    def augmented(self, x, step, purpose: str, stream: int = 1):
        """x as D sees it, augmented like every input of D (``train.augment``); G's fakes in
        G's update get no input noise, as before augmentation existed. ``stream`` folds a
        further stream out of the purpose's seed (the reals G's loss reads use stream 2 of
        ``noise_real``): a new draw that changes no existing one."""
        c = self.config
        return augment(x, list(c.augment_policy), c.augment_probability,
                       tf.random.experimental.stateless_fold_in(self.seed_for(step, purpose),
                                                                stream))

    def noisy(self, x, step, purpose: str):
        """What D sees of x in D's update: augmented, then with input noise. The
        augmentation's seeds derive from the noise's, so no existing draw changes."""
        x = self.augmented(x, step, purpose)
        if self.config.input_noise <= 0:
            return x
        return x + self.config.input_noise * tf.random.stateless_normal(
            tf.shape(x), self.seed_for(step, purpose))

    def update(self, opt, variables: list, tape, loss) -> None:
        """Rank-averaged gradients of ``loss``, applied. With float16's loss scaling the
        backward pass starts from the scale instead of 1 (the gradient of scale x loss), and
        the optimizer unscales what the ranks averaged."""
        scale = loss_scale(opt)
        grads = distributed.gradient_tape(self.world, tape, self.config.compression).gradient(
            loss, distributed.tf_variables(variables),
            output_gradients=None if scale is None else tf.cast(scale, loss.dtype))
        opt.apply_gradients(list(zip(grads, variables)))  # a list: some optimizers read twice

    def finish(self, values: list, stop, step):
        """Rank-average the metrics and sum the stop flags in one allreduce (the sum times
        1/size, as Horovod's Average scales it), then the caller's once-per-step bookkeeping
        (``after_step``: counters, G's average, ADA's probability)."""
        metrics = tf.stack(values)
        if self.world.size > 1:  # one process: nothing to average, nothing to add
            both = self.world.sum(tf.concat([metrics, tf.reshape(stop, [1])], 0),
                                  name="metrics_and_stop")
            metrics, stop = both[:-1] * (1.0 / self.world.size), both[-1]
        self.after_step(step, metrics)
        return metrics, stop


# the step builders by the name a family gives (gan.families: ``step``), each registered
# below by @builds; gan.families names them as strings so that it never imports TensorFlow
STEP_BUILDERS: dict[str, Callable[[_Parts, tuple, Optimizers], Callable]] = {}


def builds(name: str):
    """Register the decorated function as the step builder ``name``."""
    def register(builder):
        STEP_BUILDERS[name] = builder
        return builder
    return register


@builds("adversarial")
def adversarial(p: _Parts, nets: tuple, opts: Optimizers) -> Callable:
    G, D, _ = nets

    @tf.function(**STEP_FUNCTION)
    def train_step(images, labels, step, stop):
        step = tf.convert_to_tensor(step)  # the step's number, read before it is counted
        real = to_signed_unit(tf.cast(images, tf.float32))
        fake_labels = p.paired(labels, step, "d_labels")
        fake = G([p.latent(step, "d_latent"), fake_labels], training=True)
        real_in, fake_in = p.noisy(real, step, "noise_real"), p.noisy(fake, step, "noise_fake")
        with tf.GradientTape() as tape:  # separate calls: BatchNorm must not mix them
            real_logits = D([real_in, labels], training=True)
            fake_logits = D([fake_in, fake_labels], training=True)
            d_loss, d_real, d_fake = p.loss.discriminator(
                real_logits, fake_logits, lambda x: D([x, labels], training=True), real_in,
                step, lambda x: D([x, fake_labels], training=True), fake_in)
        p.update(opts.discriminator, D.trainable_variables, tape, d_loss)
        g_labels = p.paired(labels, step, "g_labels")
        with tf.GradientTape() as tape:
            fake = G([p.latent(step, "g_latent"), g_labels], training=True)
            logits = D([p.augmented(fake, step, "g_latent"), g_labels], training=True)
            real_logits_g = (D([p.augmented(real, step, "noise_real", 2), labels], training=True)
                             if p.loss.pairs else None)
            g_train, g_loss = p.loss.generator(logits, real_logits_g)
        p.update(opts.generator, G.trainable_variables, tape, g_train)
        return p.finish([d_real, d_fake, g_loss,
                         *accuracies(*p.loss.centred(real_logits, fake_logits))], stop, step)

    return train_step


@builds("autoencoding")
def autoencoding(p: _Parts, nets: tuple, opts: Optimizers) -> Callable:
    G, D, E = nets
    ae_variables = E.trainable_variables + G.trainable_variables

    @tf.function(**STEP_FUNCTION)
    def train_step(images, attributes, step, stop):
        step = tf.convert_to_tensor(step)  # the step's number, read before it is counted
        real = to_signed_unit(tf.cast(images, tf.float32))
        attributes = tf.cast(attributes, tf.float32)
        fake_attrs = p.paired(attributes, step, "d_labels")
        fake = G([p.latent(step, "d_latent"), fake_attrs], training=True)
        real_in, fake_in = p.noisy(real, step, "noise_real"), p.noisy(fake, step, "noise_fake")
        with tf.GradientTape() as tape:  # D: real/fake on both, attributes on real photos
            real_logits, real_attr_logits = D(real_in, training=True)
            fake_logits, _ = D(fake_in, training=True)
            real_fake_head = lambda x: D(x, training=True)[0]  # noqa: E731
            adversarial_loss, d_real, d_fake = p.loss.discriminator(
                real_logits, fake_logits, real_fake_head, real_in, step, real_fake_head,
                fake_in)
            d_attr = attribute_bce(attributes, real_attr_logits)
            d_loss = adversarial_loss + d_attr
        p.update(opts.discriminator, D.trainable_variables, tape, d_loss)
        g_attrs = p.paired(attributes, step, "g_labels")
        with tf.GradientTape() as tape:  # G through D (this tape trains only G)
            fake = G([p.latent(step, "g_latent"), g_attrs], training=True)
            logits, attr_logits = D(p.augmented(fake, step, "g_latent"), training=True)
            real_logits_g = (D(p.augmented(real, step, "noise_real", 2), training=True)[0]
                             if p.loss.pairs else None)
            g_train, g_loss = p.loss.generator(logits, real_logits_g)
            g_attr = attribute_bce(g_attrs, attr_logits)
            g_total = g_train + g_attr
        p.update(opts.generator, G.trainable_variables, tape, g_total)
        with tf.GradientTape() as tape:  # the autoencoder: photo -> (attributes, z) -> photo
            e_attr_logits, z = E(real, training=True)
            recon = G([z, tf.sigmoid(e_attr_logits)], training=True)
            ae_mae = tf.reduce_mean(tf.abs(tf.cast(recon, tf.float32) - real))
            ae_loss = ae_mae + attribute_bce(attributes, e_attr_logits)
        p.update(opts.autoencoder, ae_variables, tape, ae_loss)
        return p.finish([d_real, d_fake, g_loss,
                         *accuracies(*p.loss.centred(real_logits, fake_logits)),
                         d_attr, g_attr, ae_mae], stop, step)

    return train_step


def make_step(config: StepConfig, nets: Networks, opts: Optimizers, world: distributed.World,
              draws: Draws, after_step: AfterStep) -> Callable:
    """The family's step (``gan.families``: its ``step`` names a builder in STEP_BUILDERS):
    ``(images uint8, condition, step, stop) -> (metrics, summed stop)``, the metrics in the
    order of the family's ``metrics``."""
    build = STEP_BUILDERS[family(config.family).step]
    return build(_Parts(config, world, draws, after_step),
                 callable_networks(nets, config.jit_compile), opts)
