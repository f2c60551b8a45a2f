"""The residual networks (``model.architecture: residual``, gan/models/residual.py) for every
family: the calling convention every step and tool relies on, D's stages as freeze_d's
blocks, the fix-up start (each block the identity), no normalization layer, and a generator
that a plain Keras loads back."""
from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan.models import builders
from gan.models.residual_shape import BLOCKS
from jobs.core.train_schema import ModelSpec

SIZES = {16: ([32, 16], [16, 32]), 32: ([32, 16, 8], [8, 16, 32]),
         64: ([16, 16, 8, 8], [8, 8, 16, 16]), 128: ([16, 16, 8, 8, 8], [8, 8, 8, 16, 16])}


def residual(name: str, size: int) -> ModelSpec:
    g, d = SIZES[size]
    return ModelSpec(name=name, image_size=size, latent_dim=8, embedding_dim=4,
                     architecture="residual", generator_filters=g, discriminator_filters=d)


def condition(name: str, n: int):
    return tf.ones((n, 5)) if name == "aeacgan" else tf.constant([0, 2][:n], tf.int32)


def d_logit(nets, name, images, cond):
    out = nets.discriminator(images if name == "aeacgan" else [images, cond])
    return out[0] if name == "aeacgan" else out


@pytest.mark.parametrize("name", ["cgan", "dcgan", "aeacgan"])
@pytest.mark.parametrize("size", [16, 128])  # the ends of the range (32 and 64 below)
def test_every_family_builds_residual_networks_with_the_common_calling_convention(name, size):
    tf.keras.utils.set_random_seed(0)
    nets = builders.build(residual(name, size), num_classes=3, channels=3, num_attributes=5)
    images = nets.generator([tf.random.normal((2, 8)), condition(name, 2)])
    assert images.shape == (2, size, size, 3) and float(tf.reduce_max(tf.abs(images))) <= 1
    assert d_logit(nets, name, images, condition(name, 2)).shape == (2, 1)
    assert (nets.encoder is not None) == (name == "aeacgan")
    assert len(builders.discriminator_blocks(nets.discriminator)) == len(SIZES[size][1])
    every = [layer for m in (nets.generator, nets.discriminator, nets.encoder) if m
             for layer in m.layers]
    assert not [layer.name for layer in every
                if isinstance(layer, (keras.layers.BatchNormalization,
                                      keras.layers.LayerNormalization))]


def test_each_residual_block_starts_as_the_identity():
    """Fix-up: the branch's last convolution is zero, so every block's sum equals its input
    until training moves it."""
    nets = builders.build(residual("dcgan", 32), 3, 3)
    adds = [layer for m in (nets.generator, nets.discriminator) for layer in m.layers
            if layer.name.endswith("_add")]
    assert len(adds) == 2 * 3 * BLOCKS  # G's and D's 3 stages
    for add in adds:
        projects = add.name.replace("_add", "_project")
        model = nets.generator if projects.startswith("g_") else nets.discriminator
        assert not np.any(model.get_layer(projects).get_weights()[0])


def test_the_cgans_d_reads_the_label_through_its_projection():
    tf.keras.utils.set_random_seed(1)
    nets = builders.build(residual("cgan", 16), 3, 3)
    images = tf.random.normal((2, 16, 16, 3))
    same = [float(v) for v in d_logit(nets, "cgan", images, tf.constant([1, 1]))]
    other = [float(v) for v in d_logit(nets, "cgan", images, tf.constant([2, 2]))]
    assert same != other


def test_freezing_ds_first_stage_freezes_its_stem_block_and_transition():
    nets = builders.build(residual("aeacgan", 16), 3, 3, 5)
    frozen = builders.freeze_discriminator(nets.discriminator, 1)
    names = {v.path.split("/")[0] for v in frozen}
    blocks = {f"d_down0_block{j}_{layer}" for j in range(BLOCKS)
              for layer in ("expand", "depthwise", "project")}
    assert names == {"d_down0_stem", "d_down0"} | blocks
    assert not [v for v in nets.discriminator.trainable_variables if v.path.startswith("d_down0")]


def test_the_residual_generator_loads_back_in_plain_keras(tmp_path):
    """What export writes (generator.keras): no custom layer, so plain Keras loads it."""
    nets = builders.build(residual("cgan", 16), 3, 3)
    nets.generator.save(tmp_path / "generator.keras")
    loaded = keras.models.load_model(tmp_path / "generator.keras")
    z, labels = tf.random.normal((2, 8)), tf.constant([0, 2])
    np.testing.assert_allclose(loaded([z, labels]).numpy(), nets.generator([z, labels]).numpy(),
                               atol=1e-6)
