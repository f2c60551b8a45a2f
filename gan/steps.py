"""One training step per model family, each a single ``tf.function`` (see ``gan/models.py``).

``adversarial``  (cgan, dcgan): D on real and fake, then G through D.
``autoencoding`` (aeacgan): D on real and fake (real/fake head + attribute head), G through D
with sampled attributes, then the autoencoder (encoder → generator) on the real images with
MAE at ``optimizer.autoencoder_lr_ratio`` of the learning rate.

Every step takes ``(images uint8, condition, step, stop)`` — the condition being the batch's
labels or attribute rows — and returns the metrics (averaged over ranks, so every rank's guard
takes the same decision) and the summed stop flag, both in one allreduce. All random numbers
are stateless, seeded by (seed, rank, step, purpose): a resumed run draws exactly what it would
have drawn.

Everything that happens once per step happens inside it — the counters, the generator's
average (``train.ema``) and ADA's probability — so the loop around it pays one call per step
(``bench/bench_step.py`` measures the loop against the bare step). With ``train.jit_compile``
each network's forward and backward pass is compiled by XLA; the allreduce and the optimizers
stay outside, where Horovod's ops live.

The steps are traced without AutoGraph (``STEP_FUNCTION``): they have no Python control flow
that depends on a tensor (the lazy R1 penalty is an explicit ``tf.cond``), and AutoGraph's
rewriting of every function the step calls was a third of a short run's start-up: the time a
requeued job pays before its first step, and a test suite on every process.
"""
from __future__ import annotations

from typing import Callable

import tensorflow as tf

from gan import distributed, latents
from gan.augment import augment
from gan.families import family
from jobs.core.images import to_signed_unit

# how every step (and the moving average's own update) is traced: see the module's docstring
STEP_FUNCTION = {"autograph": False}



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


def networks(trainer) -> tuple:
    """(G, D, E) as the step calls them: compiled by XLA or plain."""
    nets = (trainer.state.G, trainer.state.D, trainer.state.E)
    if not trainer.spec.jit_compile:
        return nets
    return tuple(None if m is None else _Compiled(m) for m in nets)


class _Parts:
    """What both step families share: seeds, latents, D-input noise, updates, reductions, and
    the once-per-step bookkeeping that runs inside the step."""

    def __init__(self, trainer):
        spec, world = trainer.spec, trainer.world
        self.world = world
        self.state, self.ema, self.ada = trainer.state, trainer.ema, trainer.ada
        self.compression = spec.horovod.compression
        self.acc_real = trainer.metric_names.index("d_acc_real")
        self.batch, self.seed, self.rank = spec.batch_size, spec.seed, world.rank
        self.noise, self.smooth = spec.disc_input_noise, spec.label_smoothing
        self.policy = spec.augment.policy
        # ADA's variable is read at every call of the step; else a constant in the graph
        adaptive = trainer.state.augment_p
        self.probability = spec.augment.probability if adaptive is None else adaptive
        self.loss = spec.loss
        self.sampler = trainer.sampler

    def seed_for(self, step, purpose: str):
        return latents.seed_for(self.seed, self.rank, step, purpose)

    def latent(self, step, purpose: str):
        return self.sampler.latent(self.batch, self.seed_for(step, purpose))

    def noisy(self, x, step, purpose: str):
        """What D sees of x: augmented (``train.augment``), then with input noise. The
        augmentation's seeds derive from the noise's, so no existing draw changes."""
        seed = self.seed_for(step, purpose)
        x = augment(x, self.policy, self.probability,
                    tf.random.experimental.stateless_fold_in(seed, 1))
        if self.noise <= 0:
            return x
        return x + self.noise * tf.random.stateless_normal(tf.shape(x), seed)

    def augmented(self, x, step, purpose: str):
        """G's fakes as D sees them in G's update: augmented like every input of D (no input
        noise here, as before augmentation existed)."""
        return augment(x, self.policy, self.probability,
                       tf.random.experimental.stateless_fold_in(self.seed_for(step, purpose), 1))

    def d_loss(self, d_real, d_fake, real_logits, fake_logits, d_call, real_in, step):
        """D's training loss: the cross-entropy terms (always what is reported) or hinge, plus
        the lazy R1 penalty on the real images as D saw them."""
        loss = hinge_d(real_logits, fake_logits) if self.loss.name == "hinge" \
            else d_real + d_fake
        if self.loss.r1_gamma <= 0:
            return loss
        k = self.loss.r1_interval
        weight = 0.5 * self.loss.r1_gamma * k
        return loss + tf.cond(tf.equal(step % k, 0),
                              lambda: weight * r1_penalty(d_call, real_in),
                              lambda: tf.constant(0.0))

    def g_loss(self, g_bce, logits):
        """G's training loss: the cross-entropy (reported either way) or hinge's -D(fake)."""
        if self.loss.name == "hinge":
            return -tf.reduce_mean(tf.cast(logits, tf.float32))
        return g_bce

    def update(self, opt, variables: list, tape, loss) -> None:
        grads = distributed.gradient_tape(self.world, tape, self.compression).gradient(
            loss, distributed.tf_variables(variables))
        opt.apply_gradients(list(zip(grads, variables)))  # a list: some optimizers read twice

    def finish(self, values: list, stop, step):
        """Rank-average the metrics and sum the stop flags in one allreduce (the sum times
        1/size, as Horovod's Average scales it), then the step's bookkeeping: counters, G's
        average after ``step + 1`` steps, ADA's probability from the averaged D accuracy."""
        metrics = tf.stack(values)
        if self.world.size > 1:  # one process: nothing to average, nothing to add
            both = self.world.sum(tf.concat([metrics, tf.reshape(stop, [1])], 0),
                                  name="metrics_and_stop")
            metrics, stop = both[:-1] * (1.0 / self.world.size), both[-1]
        self.state.global_step.assign_add(1)
        self.state.step_in_epoch.assign_add(1)
        if self.ema is not None:
            self.ema.apply(step + 1)
        if self.ada is not None:
            self.ada.apply(metrics[self.acc_real])
        return metrics, stop


def _accuracies(real_logits, fake_logits) -> list:
    return [tf.reduce_mean(tf.cast(tf.cast(real_logits, tf.float32) > 0, tf.float32)),
            tf.reduce_mean(tf.cast(tf.cast(fake_logits, tf.float32) < 0, tf.float32))]


def adversarial(trainer) -> Callable:
    p = _Parts(trainer)
    (G, D, _), state = networks(trainer), trainer.state
    sample_conditions = trainer.sampler.sample_conditions

    @tf.function(**STEP_FUNCTION)
    def train_step(images, labels, step, stop):
        step = tf.convert_to_tensor(step)  # the step's number, read before it is counted
        real = to_signed_unit(tf.cast(images, tf.float32))
        fake_labels = sample_conditions(p.batch, p.seed_for(step, "d_labels"))
        fake = G([p.latent(step, "d_latent"), fake_labels], training=True)
        real_in = p.noisy(real, step, "noise_real")
        with tf.GradientTape() as tape:  # separate calls: BatchNorm must not mix them
            real_logits = D([real_in, labels], training=True)
            fake_logits = D([p.noisy(fake, step, "noise_fake"), fake_labels], training=True)
            d_real, d_fake = bce(p.smooth, real_logits), bce(0.0, fake_logits)
            d_loss = p.d_loss(d_real, d_fake, real_logits, fake_logits,
                              lambda x: D([x, labels], training=True), real_in, step)
        p.update(state.d_opt, D.trainable_variables, tape, d_loss)
        g_labels = sample_conditions(p.batch, p.seed_for(step, "g_labels"))
        with tf.GradientTape() as tape:
            fake = G([p.latent(step, "g_latent"), g_labels], training=True)
            logits = D([p.augmented(fake, step, "g_latent"), g_labels], training=True)
            g_loss = bce(1.0, logits)
            g_train = p.g_loss(g_loss, logits)
        p.update(state.g_opt, G.trainable_variables, tape, g_train)
        return p.finish([d_real, d_fake, g_loss, *_accuracies(real_logits, fake_logits)],
                        stop, step)

    return train_step


def autoencoding(trainer) -> Callable:
    p = _Parts(trainer)
    (G, D, E), state = networks(trainer), trainer.state
    sample_conditions = trainer.sampler.sample_conditions
    ae_variables = E.trainable_variables + G.trainable_variables

    @tf.function(**STEP_FUNCTION)
    def train_step(images, attributes, step, stop):
        step = tf.convert_to_tensor(step)  # the step's number, read before it is counted
        real = to_signed_unit(tf.cast(images, tf.float32))
        attributes = tf.cast(attributes, tf.float32)
        fake_attrs = sample_conditions(p.batch, p.seed_for(step, "d_labels"))
        fake = G([p.latent(step, "d_latent"), fake_attrs], training=True)
        real_in = p.noisy(real, step, "noise_real")
        with tf.GradientTape() as tape:  # D: real/fake on both, attributes on real photos
            real_logits, real_attr_logits = D(real_in, training=True)
            fake_logits, _ = D(p.noisy(fake, step, "noise_fake"), training=True)
            d_real, d_fake = bce(p.smooth, real_logits), bce(0.0, fake_logits)
            d_attr = attribute_bce(attributes, real_attr_logits)
            d_loss = p.d_loss(d_real, d_fake, real_logits, fake_logits,
                              lambda x: D(x, training=True)[0], real_in, step) + d_attr
        p.update(state.d_opt, D.trainable_variables, tape, d_loss)
        g_attrs = sample_conditions(p.batch, p.seed_for(step, "g_labels"))
        with tf.GradientTape() as tape:  # G through D (this tape trains only G)
            fake = G([p.latent(step, "g_latent"), g_attrs], training=True)
            logits, attr_logits = D(p.augmented(fake, step, "g_latent"), training=True)
            g_loss, g_attr = bce(1.0, logits), attribute_bce(g_attrs, attr_logits)
            g_total = p.g_loss(g_loss, logits) + g_attr
        p.update(state.g_opt, G.trainable_variables, tape, g_total)
        with tf.GradientTape() as tape:  # the autoencoder: photo -> (attributes, z) -> photo
            e_attr_logits, z = E(real, training=True)
            recon = G([z, tf.sigmoid(e_attr_logits)], training=True)
            ae_mae = tf.reduce_mean(tf.abs(tf.cast(recon, tf.float32) - real))
            ae_loss = ae_mae + attribute_bce(attributes, e_attr_logits)
        p.update(state.ae_opt, ae_variables, tape, ae_loss)
        return p.finish([d_real, d_fake, g_loss, *_accuracies(real_logits, fake_logits),
                         d_attr, g_attr, ae_mae], stop, step)

    return train_step


def make_step(trainer) -> Callable:
    """The family's step (``gan.families``: its ``step`` names one of the functions above)."""
    return globals()[family(trainer.spec.model.name).step](trainer)
