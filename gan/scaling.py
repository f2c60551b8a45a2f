"""Scaling on paper: how long Horovod's gradient averaging takes on N ranks, and what share of
N GPUs' speed a data-parallel GAN keeps. The one home of the formula: ``bench/scaling.py``
measures its inputs on this machine and checks it against 2-rank runs and Horovod's published
figure; ``python -m jobs plan`` warns with it before a job asks for GPUs it cannot use.

The formula (ring allreduce: Patarasuk & Yuan 2009, the algorithm Horovod uses, Sergeev & Del
Balso 2018). Each of n ranks sends and receives 2(n-1)/n of the gradient bytes B over its link
of bandwidth W, in 2(n-1) steps that each pay the link's latency a; Horovod adds a fixed
overhead c per collective (it launches them every HOROVOD_CYCLE_TIME, 1 ms by default)::

    T(n) = 2(n-1)/n * B/W + k * (2(n-1) * a + c)                (T(1) = 0)
    efficiency(n) = t_step / (t_step + T(n))

k is the number of collectives a step waits for one after the other: one per update (D, G,
and for the AE-AC-GAN the autoencoder) and one for the metrics; B sums the trainable
parameters of every update, 4 bytes each (2 with ``train.horovod.compression: fp16``).

No overlap of backpropagation and allreduce is assumed (conservative): Horovod can start
averaging a layer's gradient while earlier layers still backpropagate, but in a GAN step D's
update must finish before G's pass through D, so little would overlap. Not modelled either:
ranks waiting for the slowest one at every collective. On dedicated GPUs that is small; on a
shared, busy machine it dominates (bench/scaling.py measures both parts on 2 CPU ranks).

Parameter counts and FLOPs come from the layer shapes of ``gan/models/builders.py`` (no
TensorFlow, so ``plan`` stays instant); ``tests/gan/test_scaling.py`` checks them against the
built models.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

from gan.families import family
from gan.models.residual_shape import BLOCKS, EXPANSION, TRANSITION
from jobs.core.schema import LossSpec, ModelSpec

BYTES = {"none": 4, "fp16": 2}  # bytes per gradient value on the wire, by compression


@dataclass(frozen=True)
class Link:
    """What the ring's slowest hop offers: bandwidth, latency per hop, overhead per collective."""
    gbit_s: float
    latency_s: float
    overhead_s: float

    @property
    def bytes_s(self) -> float:
        return self.gbit_s * 1e9 / 8


def ring_allreduce_s(nbytes: float, ranks: int, link: Link, collectives: int = 1) -> float:
    """T(n) above: ``collectives`` allreduces, one after the other, of ``nbytes`` in all."""
    if ranks <= 1:
        return 0.0
    n = ranks
    return (2 * (n - 1) / n * nbytes / link.bytes_s
            + collectives * (2 * (n - 1) * link.latency_s + link.overhead_s))


def efficiency(step_s: float, comm_s: float) -> float:
    """Share of the ideal n-fold speed kept: compute time over compute plus averaging."""
    return step_s / (step_s + comm_s)


# ---------------------------------------------------------------------------------------------
# what a step of each family computes and sends (the shapes of gan/models/builders.py)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cost:
    """Trainable parameters of some layers and their forward FLOPs for one image."""
    params: int = 0
    flops: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.params + other.params, self.flops + other.flops)


def _dense(n_in: int, n_out: int) -> Cost:
    return Cost(n_in * n_out + n_out, 2 * n_in * n_out)


def _conv(side_out: int, k: int, c_in: int, c_out: int) -> Cost:
    return Cost(k * k * c_in * c_out + c_out, 2 * side_out ** 2 * k * k * c_in * c_out)


def _conv_t(side_in: int, k: int, c_in: int, c_out: int) -> Cost:
    """Stride-2 transposed convolution: every input pixel spreads over k x k outputs."""
    return Cost(k * k * c_in * c_out + c_out, 2 * side_in ** 2 * k * k * c_in * c_out)


def _batchnorm(channels: int) -> Cost:
    return Cost(2 * channels)  # gamma and beta; the moving statistics are not trained


def _up(spec: ModelSpec, c_in: int, k: int, norm: bool, channels: int, out_k: int) -> Cost:
    """G's upsampling blocks from the base map with ``c_in`` channels, then the image layer."""
    side, cost = spec.image_size // 2 ** len(spec.generator_filters), Cost()
    for filters in spec.generator_filters:
        cost += _conv_t(side, k, c_in, filters) + (_batchnorm(filters) if norm else Cost())
        side, c_in = side * 2, filters
    return cost + _conv(side, out_k, c_in, channels)


def _down(spec: ModelSpec, c_in: int, k: int, norm: bool) -> tuple[Cost, int]:
    """Stride-2 blocks of D (and E); the cost and the flattened size after them."""
    side, cost = spec.image_size, Cost()
    for i, filters in enumerate(spec.discriminator_filters):
        side = math.ceil(side / 2)
        cost += _conv(side, k, c_in, filters) + (_batchnorm(filters) if norm and i else Cost())
        c_in = filters
    return cost, side * side * c_in


def _conv1(side: int, c_in: int, c_out: int) -> Cost:
    """A 1x1 convolution with its bias adds: in the residual networks' thin layers those are
    a few percent of the work (a wide 3x3 or 5x5 dwarfs them), so they are counted there."""
    return _conv(side, 1, c_in, c_out) + Cost(0, side ** 2 * c_out)


def _residual_blocks(side: int, width: int) -> Cost:
    """A stage's BLOCKS inverted bottlenecks (gan/models/residual.py): 1x1 widen, depthwise
    3x3, 1x1 back, the sum (each with its bias adds)."""
    wide = EXPANSION * width
    depthwise = Cost(9 * wide + wide, 2 * side ** 2 * 9 * wide + side ** 2 * wide)
    one = (_conv1(side, width, wide) + depthwise + _conv1(side, wide, width)
           + Cost(0, side ** 2 * width))
    return Cost(BLOCKS * one.params, BLOCKS * one.flops)


def _residual_up(spec: ModelSpec, c_in: int, channels: int) -> Cost:
    """The residual G from its Dense (joined input of ``c_in`` values) to the image."""
    filters = spec.generator_filters
    side = spec.image_size // 2 ** len(filters)
    cost = _dense(c_in, side * side * filters[0])
    c_in = filters[0]
    for width in filters:
        side *= 2
        cost += _conv(side, TRANSITION, c_in, width) + _residual_blocks(side, width)
        c_in = width
    return cost + _conv(side, TRANSITION, c_in, channels)


def _residual_trunk(spec: ModelSpec, channels: int) -> tuple[Cost, int]:
    """The residual D's (and encoder's) stages; the cost and the flattened size after them."""
    filters = spec.discriminator_filters
    side, cost = spec.image_size, _conv(spec.image_size, TRANSITION, channels, filters[0])
    for i, width in enumerate(filters):
        cost += _residual_blocks(side, width)
        side = math.ceil(side / 2)
        cost += _conv(side, TRANSITION, width, filters[min(i + 1, len(filters) - 1)])
    return cost, side * side * filters[-1]


def residual_networks(spec: ModelSpec, channels: int, num_classes: int,
                      num_attributes: int) -> dict[str, Cost]:
    """As :func:`networks`, for ``model.architecture: residual``."""
    trunk, flat = _residual_trunk(spec, channels)
    builder = family(spec.name).residual_builder
    if builder == "build_cgan":
        embedding = Cost(num_classes * spec.embedding_dim)
        return {"generator": embedding + _residual_up(spec, spec.latent_dim
                                                      + spec.embedding_dim, channels),
                "discriminator": trunk + _dense(flat, 1) + _dense(flat, spec.embedding_dim)
                + embedding}
    if builder == "build_dcgan":
        return {"generator": _residual_up(spec, spec.latent_dim, channels),
                "discriminator": trunk + _dense(flat, 1)}
    return {"generator": _residual_up(spec, spec.latent_dim + num_attributes, channels),
            "discriminator": trunk + _dense(flat, 1) + _dense(flat, num_attributes),
            "encoder": trunk + _dense(flat, num_attributes) + _dense(flat, spec.latent_dim)}


def networks(spec: ModelSpec, channels: int = 3, num_classes: int = 10,
             num_attributes: int = 40) -> dict[str, Cost]:
    """Trainable parameters and forward FLOPs per image of each network of the family."""
    if spec.architecture == "residual":
        return residual_networks(spec, channels, num_classes, num_attributes)
    base = spec.image_size // 2 ** len(spec.generator_filters)
    project = base * base * spec.generator_filters[0]
    builder = family(spec.name).builder
    if builder == "build_cgan":
        label_g = Cost(num_classes * spec.embedding_dim) + _dense(spec.embedding_dim, base ** 2)
        label_d = Cost(num_classes * spec.embedding_dim) + _dense(spec.embedding_dim,
                                                                   spec.image_size ** 2)
        down, flat = _down(spec, channels + 1, 3, norm=False)
        return {"generator": _dense(spec.latent_dim, project) + label_g
                + _up(spec, spec.generator_filters[0] + 1, 4, False, channels, 3),
                "discriminator": label_d + down + _dense(flat, 1)}
    if builder == "build_dcgan":
        down, flat = _down(spec, channels, 5, norm=True)
        return {"generator": _dense(spec.latent_dim, project)
                + _batchnorm(spec.generator_filters[0])
                + _up(spec, spec.generator_filters[0], 5, True, channels, 5),
                "discriminator": down + _dense(flat, 1)}
    down, flat = _down(spec, channels, 4, norm=False)  # aeacgan: D and E share the shape
    return {"generator": _dense(spec.latent_dim + num_attributes, project)
            + _up(spec, spec.generator_filters[0], 4, False, channels, 3),
            "discriminator": down + _dense(flat, 1) + _dense(flat, num_attributes),
            "encoder": down + _dense(flat, num_attributes) + _dense(flat, spec.latent_dim)}


# Per step family (gan/training/steps.py): the networks each update averages, one collective
# each, and the forward passes per image in forward-equivalents (a backward pass costs about two).
UPDATES = {"adversarial": (("discriminator",), ("generator",)),
           "autoencoding": (("discriminator",), ("generator",), ("encoder", "generator"))}
PASSES = {  # adversarial: G for D's fakes 1, D on real and fake 2 x 3, G 3 + D's input grads 2
    "adversarial": {"generator": 4, "discriminator": 8},
    "autoencoding": {"generator": 7, "discriminator": 8, "encoder": 3},
}


@dataclass(frozen=True)
class StepProfile:
    """What one training step of a model computes per image and sends, whatever the ranks."""
    params: dict[str, int]           # trainable parameters per network
    gradient_values: int             # values averaged per step (a network per update it is in)
    collectives: int                 # allreduces a step waits for one after the other
    flops_per_image: int             # forward + backward FLOPs of one step, per image

    def gradient_bytes(self, compression: str = "none") -> int:
        return self.gradient_values * BYTES[compression]


# What the loss adds to D's passes per image (train.loss): the relativistic loss reads D on
# the reals in G's update too (a forward pass: no gradient flows back through the reals), and
# each zero-centred penalty (R1, R2) is a double backprop, about 9 forward-equivalents (D's
# pass and its input gradient, then the gradient of that), on one step in r1_interval.
PAIRED_PASSES = 1
PENALTY_PASSES = 9


def loss_passes(loss: LossSpec | None) -> float:
    """D's forward-equivalents per image that ``loss`` adds to a step (an average over the
    lazy interval)."""
    if loss is None:
        return 0.0
    penalties = (loss.r1_gamma > 0) + (loss.r2_gamma > 0)
    return (PAIRED_PASSES * (loss.name == "relativistic")
            + PENALTY_PASSES * penalties / loss.r1_interval)


def profile(spec: ModelSpec, channels: int = 3, num_classes: int = 10,
            num_attributes: int = 40, loss: LossSpec | None = None) -> StepProfile:
    """The step of ``spec``'s family for data of ``channels`` (the class and attribute counts
    change only the embedding and the attribute layers: a fraction of a percent), trained
    with ``loss`` (None: what the plain loss costs)."""
    nets = networks(spec, channels, num_classes, num_attributes)
    step = family(spec.name).step
    values = sum(nets[name].params for update in UPDATES[step] for name in update)
    flops = sum(nets[name].flops * times for name, times in PASSES[step].items())
    flops += round(nets["discriminator"].flops * loss_passes(loss))
    return StepProfile({name: cost.params for name, cost in nets.items()}, values,
                       len(UPDATES[step]) + 1, flops)


def comm_s(prof: StepProfile, ranks: int, link: Link, compression: str = "none") -> float:
    """Seconds a step spends averaging over ``ranks`` (the metrics' few bytes neglected)."""
    return ring_allreduce_s(prof.gradient_bytes(compression), ranks, link, prof.collectives)


# ---------------------------------------------------------------------------------------------
# defaults when nothing was measured (plan), each overridable by an environment variable
# ---------------------------------------------------------------------------------------------
GPU_TFLOPS = 10.0         # useful FP32 TFLOP/s of one data-centre GPU on these small convs
NETWORK_GBIT_S = 25.0     # between nodes: Horovod's benchmark network (25 GbE RoCE)
NODE_GBIT_S = 80.0        # within a node: NCCL's ring over PCIe 3.0 x16 (NVLink is faster)
LATENCY_US = 10.0         # per ring hop
CYCLE_MS = 1.0            # Horovod's HOROVOD_CYCLE_TIME default: the overhead per collective


def _env(name: str, default: float) -> float:
    """A positive number from the environment (a bandwidth or a speed of 0 would divide by
    zero), else ``default``."""
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name}={value!r} is not a positive number")
    return number


def default_link(nodes: int) -> Link:
    """The link a job's ring is limited by: the network once it spans nodes, else the node's
    own bus. FACEGAN_LINK_GBPS, FACEGAN_NODE_GBPS, FACEGAN_LINK_LATENCY_US and Horovod's
    HOROVOD_CYCLE_TIME (ms) override the defaults above."""
    gbit = _env("FACEGAN_LINK_GBPS", NETWORK_GBIT_S) if nodes > 1 else \
        _env("FACEGAN_NODE_GBPS", NODE_GBIT_S)
    return Link(gbit, _env("FACEGAN_LINK_LATENCY_US", LATENCY_US) * 1e-6,
                _env("HOROVOD_CYCLE_TIME", CYCLE_MS) * 1e-3)


def gpu_tflops() -> float:
    """The GPU throughput assumed: FACEGAN_GPU_TFLOPS, else GPU_TFLOPS."""
    return _env("FACEGAN_GPU_TFLOPS", GPU_TFLOPS)


def gpu_step_s(prof: StepProfile, batch: int) -> float:
    """A GPU's step time estimated from the FLOPs at :func:`gpu_tflops`. Small models are
    launch-bound and slower than this, so the estimate errs towards warning."""
    return prof.flops_per_image * batch / (gpu_tflops() * 1e12)


# What one H100 consumes, for judging a data loader against the GPU's demand (not the CPU's):
# ~300 useful TFLOP/s of bfloat16 on these convolutions (30% of its 989 dense peak), and, for
# small models, a step no shorter than ~5 ms, since kernel launches bound it.
H100_TFLOPS = 300.0
LAUNCH_BOUND_STEP_S = 0.005


def gpu_images_per_s(prof: StepProfile, batch: int, tflops: float = H100_TFLOPS) -> float:
    """Images a second one GPU trains at ``tflops``, capped where launches bound the step."""
    return min(tflops * 1e12 / prof.flops_per_image, batch / LAUNCH_BOUND_STEP_S)
