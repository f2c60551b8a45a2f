"""The model registry: ``model.name`` in a train spec picks a builder here.

A builder returns (generator, discriminator) Keras models with a fixed calling convention, so
one training loop serves every model: ``generator([z, labels])`` → images in [-1, 1];
``discriminator([images, labels])`` → one logit per image.

``dcgan`` is the classic unconditional DCGAN (it ignores the labels).

The embedding cGAN (``cgan``): the label goes through an Embedding (a learned vector per
class); in the generator it is projected to one extra feature map beside the latent's, in the
discriminator to one extra image channel. The generator's starting size is derived from the
image size and the number of upsampling blocks, so G and D always agree on shapes.
"""
from __future__ import annotations

from typing import Callable

import keras
from keras import layers

from jobs.schema import ModelSpec


def _label_map(labels, num_classes: int, dim: int, side: int, name: str):
    """Embed labels and project them to a (side, side, 1) map."""
    x = layers.Embedding(num_classes, dim, name=f"{name}_embedding")(labels)
    x = layers.Dense(side * side, name=f"{name}_projection")(x)
    return layers.Reshape((side, side, 1), name=f"{name}_map")(x)


def build_cgan(spec: ModelSpec, num_classes: int, channels: int
               ) -> tuple[keras.Model, keras.Model]:
    blocks = len(spec.generator_filters)
    base = spec.image_size // 2 ** blocks
    alpha = spec.leaky_relu

    z = keras.Input((spec.latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    x = layers.Dense(base * base * spec.generator_filters[0], name="g_project")(z)
    x = layers.LeakyReLU(alpha)(x)
    x = layers.Reshape((base, base, spec.generator_filters[0]))(x)
    x = layers.Concatenate()([x, _label_map(label, num_classes, spec.embedding_dim, base, "g")])
    for i, filters in enumerate(spec.generator_filters):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", name=f"g_up{i}")(x)
        x = layers.LeakyReLU(alpha)(x)
    image = layers.Conv2D(channels, 3, padding="same", activation="tanh", dtype="float32",
                          name="g_image")(x)
    generator = keras.Model([z, label], image, name="generator")

    img = keras.Input((spec.image_size, spec.image_size, channels), name="image")
    dlabel = keras.Input((), dtype="int32", name="label")
    y = layers.Concatenate()([img, _label_map(dlabel, num_classes, spec.embedding_dim,
                                               spec.image_size, "d")])
    for i, filters in enumerate(spec.discriminator_filters):
        y = layers.Conv2D(filters, 3, strides=2, padding="same", name=f"d_down{i}")(y)
        y = layers.LeakyReLU(alpha)(y)
    y = layers.Flatten()(y)
    y = layers.Dropout(spec.dropout)(y)
    logit = layers.Dense(1, dtype="float32", name="d_logit")(y)
    discriminator = keras.Model([img, dlabel], logit, name="discriminator")
    return generator, discriminator


def build_dcgan(spec: ModelSpec, num_classes: int, channels: int
                ) -> tuple[keras.Model, keras.Model]:
    """The classic unconditional DCGAN (it takes the label input and ignores it): transposed
    convolutions with kernel 5 and BatchNorm (momentum 0.9), LeakyReLU, weights N(0, 0.02)."""
    blocks = len(spec.generator_filters)
    base = spec.image_size // 2 ** blocks
    init = keras.initializers.RandomNormal(0.0, 0.02)
    alpha = spec.leaky_relu

    z = keras.Input((spec.latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")  # unused: unconditional
    x = layers.Dense(base * base * spec.generator_filters[0], kernel_initializer=init,
                     name="g_project")(z)
    x = layers.Reshape((base, base, spec.generator_filters[0]))(x)
    x = layers.LeakyReLU(alpha)(layers.BatchNormalization(momentum=0.9)(x))
    for i, filters in enumerate(spec.generator_filters):
        x = layers.Conv2DTranspose(filters, 5, strides=2, padding="same",
                                   kernel_initializer=init, name=f"g_up{i}")(x)
        x = layers.LeakyReLU(alpha)(layers.BatchNormalization(momentum=0.9)(x))
    image = layers.Conv2D(channels, 5, padding="same", activation="tanh",
                          kernel_initializer=init, dtype="float32", name="g_image")(x)
    generator = keras.Model([z, label], image, name="generator")

    img = keras.Input((spec.image_size, spec.image_size, channels), name="image")
    dlabel = keras.Input((), dtype="int32", name="label")
    y = img
    for i, filters in enumerate(spec.discriminator_filters):
        y = layers.Conv2D(filters, 5, strides=2, padding="same", kernel_initializer=init,
                          name=f"d_down{i}")(y)
        if i:
            y = layers.BatchNormalization(momentum=0.9)(y)
        y = layers.LeakyReLU(alpha)(y)
    logit = layers.Dense(1, kernel_initializer=init, dtype="float32",
                         name="d_logit")(layers.Flatten()(y))
    discriminator = keras.Model([img, dlabel], logit, name="discriminator")
    return generator, discriminator


REGISTRY: dict[str, Callable[[ModelSpec, int, int], tuple[keras.Model, keras.Model]]] = {
    "cgan": build_cgan,
    "dcgan": build_dcgan,
}
CONDITIONAL = {"cgan": True, "dcgan": False}  # does the generator use its label input?


def build(spec: ModelSpec, num_classes: int, channels: int) -> tuple[keras.Model, keras.Model]:
    return REGISTRY[spec.name](spec, num_classes, channels)
