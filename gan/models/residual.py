"""Residual networks without normalization layers (``model.architecture: residual``), for
every family: R3GAN's design (Huang et al., NeurIPS 2024), sized for a CPU.

Why: the classic networks (plain strided and transposed convolutions, BatchNorm in the DCGAN)
are 2015 designs; R3GAN's ablation credits its architecture with most of its quality over
StyleGAN2, and it trains stably without any normalization when paired with the relativistic
loss and R1 + R2 (``gan/training/loss.py``).

* **G**: z (and the condition) → Dense → a base x base map → per ``generator_filters`` entry a
  stage: bilinear x2 upsampling, a 3x3 convolution to the stage's width, ``BLOCKS`` (two)
  residual blocks → a 3x3 convolution to the image (tanh, as every family's G).
* **D** (and the AE-AC-GAN's encoder): the image → a 3x3 stem → per ``discriminator_filters``
  entry a stage: ``BLOCKS`` residual blocks, 2x2 average pooling (a box low-pass before subsampling,
  where the classic D strides), a 3x3 convolution to the next width → flattened → the heads.
* **Full 3x3 convolutions between the stages** (R3GAN's transitions are 1x1): with one block
  per stage, a depthwise 3x3 was these small networks' only spatial layer, and they learned
  far slower than the classic ones. On the demo's spec (800 steps, one seed) the 3x3
  transitions took KID x 1000 from 25.2 to 9.2 and the face rate from 2% to 25%, for 9% more
  time per step (docs/training.md).
  Stage i's layers are named ``d_down{i}...``: ``train.freeze_d`` counts these stages.
* **The residual block** is an inverted bottleneck: 1x1 convolution widening x2, LeakyReLU,
  3x3 depthwise convolution, LeakyReLU, 1x1 convolution back, added to the block's input.
  Depthwise, not R3GAN's grouped convolutions: ``Conv2D(groups=4)`` forward and backward
  measured 25x slower than an ungrouped one on these CPUs, a depthwise one faster.
* **Fix-up initialization** stands in for normalization: each branch's last convolution
  starts at zero (every block starts as the identity), the others are He-initialised with
  their variance scaled by L^-1/2 for L blocks in the network (R3GAN's L^(-2/(2m-2)), m = 3
  layers per branch), so the sum of branches keeps its scale however deep the network.
* **Conditioning**: the cGAN's label is embedded and joined to z in G, and projected in D
  (Miyato and Koyama's projection: D's logit plus <embed(label), W features>), as R3GAN
  conditions; the AE-AC-GAN's attributes join z; the DCGAN family ignores its label input.

Left out (R3GAN has them; each costs more than a CPU-sized model gains): more than two blocks
per stage, grouped convolutions (above), its learned 4x4 constant input, its separate class
embedding layer per stage, and its depthwise 4x4 "basis" layer at D's end (a Dense reads the
flattened map instead).
"""
from __future__ import annotations

import keras
from keras import layers

from gan.models.networks import Networks
from gan.models.residual_shape import BLOCKS, EXPANSION, TRANSITION
from jobs.core.schema import ModelSpec


def _he(blocks: int) -> keras.initializers.Initializer:
    """He initialization with the variance scaled by blocks^-1/2 (fix-up)."""
    return keras.initializers.VarianceScaling(2.0 * max(blocks, 1) ** -0.5, "fan_in",
                                              "truncated_normal")


def residual_block(x, width: int, alpha: float, blocks: int, name: str):
    """x + 1x1(act(depthwise3x3(act(1x1 widen(x))))), its last layer zero at the start."""
    h = layers.Conv2D(EXPANSION * width, 1, kernel_initializer=_he(blocks),
                      name=f"{name}_expand")(x)
    h = layers.LeakyReLU(alpha)(h)
    h = layers.DepthwiseConv2D(3, padding="same", depthwise_initializer=_he(blocks),
                               name=f"{name}_depthwise")(h)
    h = layers.LeakyReLU(alpha)(h)
    h = layers.Conv2D(width, 1, kernel_initializer="zeros", name=f"{name}_project")(h)
    return layers.Add(name=f"{name}_add")([x, h])


def generator(spec: ModelSpec, z, condition, inputs: list, channels: int) -> keras.Model:
    """G from z, joined by ``condition`` (a vector per image, or None), to the image."""
    filters = spec.generator_filters
    base = spec.image_size // 2 ** len(filters)
    x = z if condition is None else layers.Concatenate(name="g_condition")([z, condition])
    x = layers.Dense(base * base * filters[0], name="g_project")(x)
    x = layers.LeakyReLU(spec.leaky_relu)(x)
    x = layers.Reshape((base, base, filters[0]))(x)
    for i, width in enumerate(filters):
        x = layers.UpSampling2D(2, interpolation="bilinear", name=f"g_up{i}_resample")(x)
        x = layers.Conv2D(width, TRANSITION, padding="same", name=f"g_up{i}")(x)
        for j in range(BLOCKS):
            x = residual_block(x, width, spec.leaky_relu, BLOCKS * len(filters),
                               f"g_up{i}_block{j}")
    x = layers.LeakyReLU(spec.leaky_relu)(x)
    image = layers.Conv2D(channels, TRANSITION, padding="same", activation="tanh",
                          dtype="float32", name="g_image")(x)
    return keras.Model(inputs, image, name="generator")


def trunk(image, spec: ModelSpec, prefix: str):
    """D's (or the encoder's) stages from the image to its flattened features."""
    filters = spec.discriminator_filters
    y = layers.Conv2D(filters[0], TRANSITION, padding="same", name=f"{prefix}_down0_stem")(image)
    for i, width in enumerate(filters):
        for j in range(BLOCKS):
            y = residual_block(y, width, spec.leaky_relu, BLOCKS * len(filters),
                               f"{prefix}_down{i}_block{j}")
        y = layers.AveragePooling2D(2, padding="same", name=f"{prefix}_down{i}_resample")(y)
        y = layers.Conv2D(filters[min(i + 1, len(filters) - 1)], TRANSITION, padding="same",
                          name=f"{prefix}_down{i}")(y)
    y = layers.LeakyReLU(spec.leaky_relu)(y)
    return layers.Dropout(spec.dropout)(layers.Flatten()(y))


def projection_logit(features, label, num_classes: int, dim: int):
    """D's logit with the label projected in: Dense(features) + <embed(label), W features>."""
    logit = layers.Dense(1, dtype="float32", name="d_logit")(features)
    projected = layers.Dense(dim, dtype="float32", name="d_projection")(features)
    embedded = layers.Embedding(num_classes, dim, dtype="float32", name="d_embedding")(label)
    return layers.Add(dtype="float32", name="d_conditional_logit")(
        [logit, layers.Dot(axes=1, dtype="float32")([projected, embedded])])


# ---- the families (gan/families.py names these as each family's residual builder) ----------
def build_cgan(spec: ModelSpec, num_classes: int, channels: int, num_attributes: int
               ) -> Networks:
    z = keras.Input((spec.latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    embedded = layers.Embedding(num_classes, spec.embedding_dim, name="g_embedding")(label)
    G = generator(spec, z, embedded, [z, label], channels)
    img = keras.Input((spec.image_size, spec.image_size, channels), name="image")
    dlabel = keras.Input((), dtype="int32", name="label")
    logit = projection_logit(trunk(img, spec, "d"), dlabel, num_classes, spec.embedding_dim)
    return Networks(G, keras.Model([img, dlabel], logit, name="discriminator"))


def build_dcgan(spec: ModelSpec, num_classes: int, channels: int, num_attributes: int
                ) -> Networks:
    """Unconditional: the label inputs are taken and ignored, as the classic DCGAN's."""
    z = keras.Input((spec.latent_dim,), name="z")
    label = keras.Input((), dtype="int32", name="label")
    G = generator(spec, z, None, [z, label], channels)
    img = keras.Input((spec.image_size, spec.image_size, channels), name="image")
    dlabel = keras.Input((), dtype="int32", name="label")
    logit = layers.Dense(1, dtype="float32", name="d_logit")(trunk(img, spec, "d"))
    return Networks(G, keras.Model([img, dlabel], logit, name="discriminator"))


def build_aeacgan(spec: ModelSpec, num_classes: int, channels: int, num_attributes: int
                  ) -> Networks:
    """The attribute vector joins z in G; D and the encoder share the trunk's shape, each
    with its two heads (as the classic AE-AC-GAN)."""
    shape = (spec.image_size, spec.image_size, channels)
    z = keras.Input((spec.latent_dim,), name="z")
    attrs = keras.Input((num_attributes,), name="attributes")
    G = generator(spec, z, attrs, [z, attrs], channels)
    img = keras.Input(shape, name="image")
    y = trunk(img, spec, "d")
    D = keras.Model(img, [layers.Dense(1, dtype="float32", name="d_logit")(y),
                          layers.Dense(num_attributes, dtype="float32", name="d_attributes")(y)],
                    name="discriminator")
    eimg = keras.Input(shape, name="image")
    e = trunk(eimg, spec, "e")
    E = keras.Model(eimg, [layers.Dense(num_attributes, dtype="float32", name="e_attributes")(e),
                           layers.Dense(spec.latent_dim, activation="sigmoid", dtype="float32",
                                        name="e_latent")(e)], name="encoder")
    return Networks(G, D, E)
