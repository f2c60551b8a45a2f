"""Everything a training run is, as TensorFlow variables: the networks, one optimizer per
update, the counters (epoch, step in it, global step, checkpoints saved) and Keras' layer RNG
states. All of it goes into every checkpoint, so a resumed run is the run it was."""
from __future__ import annotations

import tensorflow as tf

from gan.models import builders
from gan.models.conditioning import Conditioning
from gan.parallel import distributed
from gan.training import ema, schedules
from jobs.core.schema import TrainSpec

# train.precision -> Keras' policy: float32 weights always, the compute in the named type
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def configure_tensorflow(spec: TrainSpec) -> None:
    """Process-wide TensorFlow settings a run asks for (training and sampling alike)."""
    if not tf.config.list_physical_devices("GPU"):
        # On the CPU, grappler's remapper fails on the GAN step's graph ("Mutation::Apply
        # error", still so with TensorFlow 2.18) and logs a C++ error every run, having
        # rewritten nothing. On a GPU it fuses Conv+BiasAdd+activation and BatchNorm: keep it.
        tf.config.optimizer.set_experimental_options({"remapping": False})
    if spec.deterministic:
        tf.config.experimental.enable_op_determinism()
    # process-wide: set every time, so a run in a process that ran another gets its own
    tf.keras.mixed_precision.set_global_policy(POLICIES[spec.precision])


def make_optimizer(spec: TrainSpec, world_size: int, variables: list, lr_ratio: float = 1.0
                   ) -> tf.keras.optimizers.Optimizer:
    o = spec.optimizer
    lr = schedules.learning_rate(spec.schedule, o.learning_rate,
                                 lr_ratio * (world_size if o.scale_lr_by_ranks else 1),
                                 spec.batch_size * world_size)
    cls = {"adam": tf.keras.optimizers.Adam, "adamax": tf.keras.optimizers.Adamax}[o.name]
    opt = cls(learning_rate=lr, beta_1=o.beta_1, beta_2=schedules.beta_2(spec.schedule, o.beta_2))
    if spec.precision == "float16":
        # float16's gradients underflow: Keras scales the loss up, unscales the (rank-averaged)
        # gradients, skips a step whose gradients overflowed and halves the scale; every rank
        # sees the same averaged gradients, so every rank decides alike. The steps scale
        # through ``loss_scale`` below.
        opt = tf.keras.mixed_precision.LossScaleOptimizer(opt)
    opt.build(variables)
    return opt


def loss_scale(opt: tf.keras.optimizers.Optimizer) -> tf.Tensor | None:
    """The factor a float16 run's backward pass starts from (None: no loss scaling)."""
    if isinstance(opt, tf.keras.mixed_precision.LossScaleOptimizer):
        return tf.convert_to_tensor(opt.dynamic_scale)
    return None


class TrainState:
    def __init__(self, spec: TrainSpec, world_size: int, conditioning: Conditioning):
        tf.keras.utils.set_random_seed(spec.seed)  # same initial weights on every start
        nets = builders.build_for(spec.model, conditioning)
        self.G, self.D, self.E = nets.generator, nets.discriminator, nets.encoder
        self.networks = [m for m in (self.G, self.D, self.E) if m is not None]
        # before the optimizers: they and the steps take D's trainable variables alone
        self.frozen = builders.freeze_discriminator(self.D, spec.freeze_d)
        self.g_opt = make_optimizer(spec, world_size, self.G.trainable_variables)
        self.d_opt = make_optimizer(spec, world_size, self.D.trainable_variables)
        self.optimizers = [self.g_opt, self.d_opt]
        self.ae_opt = None
        if self.E is not None:  # the autoencoder update trains E and G together
            self.ae_opt = make_optimizer(spec, world_size, self.E.trainable_variables
                                         + self.G.trainable_variables,
                                         spec.optimizer.autoencoder_lr_ratio)
            self.optimizers.append(self.ae_opt)
        # the average of G (gan/training/ema.py): what grids, figures and export use when enabled
        self.G_ema = ema.copy_of(self.G) if spec.ema.enabled else None
        if self.G_ema is not None:
            self.networks.append(self.G_ema)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step_in_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.saves = tf.Variable(0, dtype=tf.int64, trainable=False)
        # the augmentation probability when it moves: ADA's (gan/training/augment.py:
        # Adaptive), tuned as training goes, or scheduled (train.schedule)
        moves = spec.augment.adaptive or spec.schedule.augment_probability
        self.augment_p = tf.Variable(spec.augment.probability, dtype=tf.float32,
                                     trainable=False) if moves else None
        # the penalties' gamma when scheduled (the loss reads it)
        self.gamma = tf.Variable(spec.schedule.gamma[0], dtype=tf.float32, trainable=False,
                                 name="gamma") if spec.schedule.gamma else None

    def scheduled(self, spec: TrainSpec) -> list[tuple[tf.Variable, list[float]]]:
        """The variables train.schedule moves, each with its [start, end]: every optimizer's
        beta_2, gamma, and the augmentation probability (unless ADA tunes it)."""
        sched = spec.schedule
        betas = [getattr(o, "inner_optimizer", o).beta_2 for o in self.optimizers]
        targets = [(b, sched.beta_2) for b in betas if isinstance(b, tf.Variable)]
        targets.append((self.gamma, sched.gamma))
        if not spec.augment.adaptive:
            targets.append((self.augment_p, sched.augment_probability))
        return targets

    def checkpoint_objects(self) -> dict:
        """What a checkpoint holds of the state (the guard adds its snapshots)."""
        objects = dict(generator=self.G, discriminator=self.D, g_optimizer=self.g_opt,
                       d_optimizer=self.d_opt, epoch=self.epoch,
                       step_in_epoch=self.step_in_epoch, global_step=self.global_step,
                       saves=self.saves, layer_rng=self._layer_rng_states())
        if self.E is not None:
            objects.update(encoder=self.E, ae_optimizer=self.ae_opt)
        if self.G_ema is not None:
            objects.update(generator_ema=self.G_ema)
        if self.augment_p is not None:
            objects.update(augment_p=self.augment_p)
        return objects

    def _layer_rng_states(self) -> list:
        """Keras 3 keeps Dropout's RNG in seed-generator variables that are neither weights
        nor saved by tf.train.Checkpoint through the model: save them explicitly, or a
        resumed run would draw other dropout masks."""
        return [distributed.tf_variables([v])[0] for m in self.networks
                for v in m.variables if not any(v is w for w in m.weights)]

    def variables(self) -> list:
        """Every variable rank 0 broadcasts at the start."""
        return ([v for m in self.networks + self.optimizers for v in m.variables]
                + [self.epoch, self.step_in_epoch, self.global_step, self.saves]
                + ([self.augment_p] if self.augment_p is not None else []))
