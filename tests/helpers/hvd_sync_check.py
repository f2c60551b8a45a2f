"""Run under ``horovodrun -np 2``: train a small Keras model for a few steps with
``DistributedGradientTape`` and write this rank's final weights to OUT_DIR/rank<k>.npz.

Each rank starts from *different* random weights and sees *different* data, so identical final
weights prove both the broadcast and the allreduce happened. The test compares the result with
a single process that trains on both ranks' data at once (what an allreduce-mean must equal).
"""
from __future__ import annotations

import sys

import numpy as np

from jobs.core import runtime

runtime.configure()

import tensorflow as tf  # noqa: E402

from gan.parallel import distributed  # noqa: E402

STEPS, BATCH, FEATURES = 5, 16, 8


def make_model(seed: int) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([tf.keras.Input((FEATURES,)),
                                 tf.keras.layers.Dense(16, activation="tanh"),
                                 tf.keras.layers.Dense(1)])
    return model


def rank_batch(rank: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1000 * rank + step)
    x = rng.normal(size=(BATCH, FEATURES)).astype("float32")
    return x, (x.sum(axis=1, keepdims=True) > 0).astype("float32")


def snapshot(model: tf.keras.Model) -> np.ndarray:
    return np.concatenate([v.numpy().ravel() for v in model.weights])


def train(world: distributed.World, batches) -> tuple[tf.keras.Model, dict]:
    model = make_model(seed=world.rank + 1)  # deliberately different on each rank
    optimizer = tf.keras.optimizers.SGD(0.1)
    optimizer.build(model.trainable_variables)
    before = snapshot(model)
    distributed.broadcast(world, model.variables)
    after = snapshot(model)
    loss_fn = tf.keras.losses.BinaryCrossentropy(from_logits=True)
    for x, y in batches:
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        tape = distributed.gradient_tape(world, tape)
        grads = tape.gradient(loss, distributed.tf_variables(model.trainable_variables))
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return model, {"init_local": before, "init": after}


def main(out_dir: str, mode: str) -> None:
    if mode == "reference":  # one process, both ranks' batches concatenated
        world = distributed.World(rank=0, size=1, local_rank=0)
        batches = [tuple(np.concatenate(parts) for parts in zip(rank_batch(0, s),
                                                                 rank_batch(1, s)))
                   for s in range(STEPS)]
    else:
        world = distributed.init(use_horovod=True)
        batches = [rank_batch(world.rank, s) for s in range(STEPS)]
    model, inits = train(world, batches)
    np.savez(f"{out_dir}/{mode}{world.rank}.npz", *[v.numpy() for v in model.weights],
             size=world.size, **inits)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "rank")
