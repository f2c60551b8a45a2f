"""The model registry: ``model.name`` in a train spec picks a builder here.

A builder returns ``Networks`` with a fixed calling convention, so one training loop (and one
step per family, ``gan/training/steps.py``) serves every model: ``generator([z, condition])``
→ images in [-1, 1], where the condition is what the family's ``condition`` says (``gan.families``):

* ``label``: an int class label (the embedding cGAN); ``discriminator([images, labels])`` →
  one logit per image.
* ``none``: the label input is taken and ignored (``dcgan``, the classic unconditional DCGAN).
* ``attributes``: a float 0/1 vector, one entry per data attribute (``aeacgan``); its
  discriminator has two heads, ``discriminator(images)`` → [real/fake logit, attribute
  logits], and an encoder maps ``images`` → [attribute logits, latent in [0, 1]].

The embedding cGAN (``cgan``): the label goes through an Embedding (a learned vector per
class); in the generator it is projected to one extra feature map beside the latent's, in the
discriminator to one extra image channel. The generator's starting size is derived from the
image size and the number of upsampling blocks, so G and D always agree on shapes.
"""
from __future__ import annotations

import re
from collections.abc import Callable

import keras
from keras import layers

from gan.families import family
from gan.models import residual
from gan.models.networks import Networks
from jobs.core.schema import ModelSpec

# D's blocks (``train.freeze_d`` counts them from the input): block i is the layer named
# ``d_down{i}``, a stride-2 convolution (residual: the stage's transition), with any layer
# named ``d_down{i}_...`` (dcgan's BatchNorm; the residual stage's block, pooling and stem).
# Every family's D has one per ``model.discriminator_filters`` entry; the label map or
# projection (cgan) and the heads are in none.
D_BLOCK = re.compile(r"d_down(\d+)(?:_\w+)?")


def _label_map(labels, num_classes: int, dim: int, side: int, name: str):
    """Embed labels and project them to a (side, side, 1) map."""
    x = layers.Embedding(num_classes, dim, name=f"{name}_embedding")(labels)
    x = layers.Dense(side * side, name=f"{name}_projection")(x)
    return layers.Reshape((side, side, 1), name=f"{name}_map")(x)


def build_cgan(spec: ModelSpec, num_classes: int, channels: int, num_attributes: int
               ) -> Networks:
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
    return Networks(generator, discriminator)


def build_dcgan(spec: ModelSpec, num_classes: int, channels: int, num_attributes: int
                ) -> Networks:
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
            y = layers.BatchNormalization(momentum=0.9, name=f"d_down{i}_norm")(y)
        y = layers.LeakyReLU(alpha)(y)
    logit = layers.Dense(1, kernel_initializer=init, dtype="float32",
                         name="d_logit")(layers.Flatten()(y))
    discriminator = keras.Model([img, dlabel], logit, name="discriminator")
    return Networks(generator, discriminator)


def _down_blocks(x, spec: ModelSpec, prefix: str):
    """Stride-2 convolutions with LeakyReLU and Dropout (no BatchNorm): D and the encoder."""
    for i, filters in enumerate(spec.discriminator_filters):
        x = layers.Conv2D(filters, 4, strides=2, padding="same", name=f"{prefix}_down{i}")(x)
        x = layers.LeakyReLU(spec.leaky_relu)(x)
        x = layers.Dropout(spec.dropout)(x)
    return layers.Flatten()(x)


def build_aeacgan(spec: ModelSpec, num_classes: int, channels: int, num_attributes: int
                  ) -> Networks:
    """The autoencoding auxiliary-classifier GAN: the condition is a multi-label attribute
    vector (CelebA's 40); an encoder maps a photo to (attribute logits, latent in [0, 1]) so
    G(E(x)) reconstructs it; D judges real/fake and predicts the attributes."""
    blocks = len(spec.generator_filters)
    base = spec.image_size // 2 ** blocks
    shape = (spec.image_size, spec.image_size, channels)

    z = keras.Input((spec.latent_dim,), name="z")
    attrs = keras.Input((num_attributes,), name="attributes")
    x = layers.Concatenate()([z, attrs])
    x = layers.Dense(base * base * spec.generator_filters[0], name="g_project")(x)
    x = layers.LeakyReLU(spec.leaky_relu)(x)
    x = layers.Reshape((base, base, spec.generator_filters[0]))(x)
    for i, filters in enumerate(spec.generator_filters):
        x = layers.Conv2DTranspose(filters, 4, strides=2, padding="same", name=f"g_up{i}")(x)
        x = layers.LeakyReLU(spec.leaky_relu)(x)
    image = layers.Conv2D(channels, 3, padding="same", activation="tanh", dtype="float32",
                          name="g_image")(x)
    generator = keras.Model([z, attrs], image, name="generator")

    img = keras.Input(shape, name="image")
    y = _down_blocks(img, spec, "d")
    logit = layers.Dense(1, dtype="float32", name="d_logit")(y)
    d_attrs = layers.Dense(num_attributes, dtype="float32", name="d_attributes")(y)
    discriminator = keras.Model(img, [logit, d_attrs], name="discriminator")

    eimg = keras.Input(shape, name="image")
    e = _down_blocks(eimg, spec, "e")
    e_attrs = layers.Dense(num_attributes, dtype="float32", name="e_attributes")(e)
    e_latent = layers.Dense(spec.latent_dim, activation="sigmoid", dtype="float32",
                            name="e_latent")(e)
    encoder = keras.Model(eimg, [e_attrs, e_latent], name="encoder")
    return Networks(generator, discriminator, encoder)


def build_for(spec: ModelSpec, conditioning) -> Networks:
    """The networks for data described by a ``gan.models.conditioning.Conditioning`` (its classes,
    channels and attributes): what training, sampling and the untrained baseline all build."""
    return build(spec, conditioning.num_classes, conditioning.image_shape[-1],
                 conditioning.num_attributes)


def build(spec: ModelSpec, num_classes: int, channels: int, num_attributes: int = 0
          ) -> Networks:
    """The networks of ``spec.name``'s family in ``spec.architecture`` (its builders, named
    in ``gan.families``: the classic one here, the residual one in ``gan.models.residual``)."""
    entry = family(spec.name)
    builder: Callable[[ModelSpec, int, int, int], Networks] = (
        getattr(residual, entry.residual_builder) if spec.architecture == "residual"
        else globals()[entry.builder])
    return builder(spec, num_classes, channels, num_attributes)


def discriminator_blocks(discriminator: keras.Model) -> list[list]:
    """D's blocks from the input, each a list of its layers (see ``D_BLOCK``)."""
    blocks: dict[int, list] = {}
    for layer in discriminator.layers:
        match = D_BLOCK.fullmatch(layer.name)
        if match:
            blocks.setdefault(int(match.group(1)), []).append(layer)
    return [blocks[i] for i in sorted(blocks)]


def freeze_discriminator(discriminator: keras.Model, count: int) -> list:
    """Freeze D's first ``count`` blocks (``train.freeze_d``): their weights leave D's
    trainable variables, so its optimizer and its gradients skip them, and a frozen BatchNorm
    normalises with its moving statistics and keeps them. The frozen layers' variables."""
    blocks = discriminator_blocks(discriminator)
    if count > len(blocks):  # the spec's rule counts one per filters entry: a family whose
        raise RuntimeError(  # D names its blocks otherwise is a bug, not a user's mistake
            f"D names {len(blocks)} blocks (d_down<i>), fewer than train.freeze_d {count} "
            "that the spec's rule allowed: the family's D must name one per "
            "discriminator_filters entry")
    frozen = [layer for block in blocks[:count] for layer in block]
    for layer in frozen:
        layer.trainable = False
    return [v for layer in frozen for v in layer.weights]
