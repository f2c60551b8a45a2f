"""The ``train:`` section of a job spec: model, optimizer, latent, checkpoints, loss, EMA,
augmentation, metrics during training and the guard (re-exported by ``jobs.core.schema``, the
one schema). Defaults and ranges are declared here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from jobs.core.fields import (
    AUGMENTATIONS,
    opt,
    parse_augment_policy,
    parse_band,
    parse_ends,
    parse_filters,
    parse_sha256,
    section,
)
from jobs.core.rundir import parse_init_from
from jobs.core.tracking_spec import TrackingSpec
from jobs.core.watchdog_spec import WatchdogSpec


# ---------------------------------------------------------------------------------------------
# train: HDF5 -> checkpoints, samples, curves
# ---------------------------------------------------------------------------------------------
@dataclass
class ModelSpec:
    name: str = opt("cgan", "Model family, an entry of gan/families.py (checked by validate, "
                            "plan, run and submit)")
    image_size: int = opt(64, "Generated image side; must equal the data's", ge=8, le=1024)
    latent_dim: int = opt(100, "Size of the latent vector z", ge=1)
    num_classes: int | None = opt(None, "Number of classes; none = read from the data", ge=1)
    embedding_dim: int = opt(50, "Size of the learned per-class embedding", ge=1, advanced=True)
    generator_filters: list[int] = opt([256, 128, 64], "Filters of the generator's upsampling "
                                                       "blocks (each doubles the size)",
                                       parse=parse_filters)
    discriminator_filters: list[int] = opt([64, 128, 256], "Filters of the discriminator's "
                                                           "stride-2 blocks", parse=parse_filters)
    architecture: Literal["classic", "residual"] = opt(
        "classic", "classic: strided and transposed convolutions (BatchNorm in dcgan); "
                   "residual: R3GAN-style residual G and D without normalization (inverted "
                   "bottlenecks, depthwise 3x3, fix-up initialization, bilinear resampling), "
                   "one block per filters entry (gan/models/residual.py)")
    leaky_relu: float = opt(0.2, "LeakyReLU negative slope", ge=0, lt=1, advanced=True)
    dropout: float = opt(0.4, "Dropout before the discriminator's output", ge=0, lt=1,
                         advanced=True)

    def problems(self) -> list[tuple[str, str]]:
        n_up = len(self.generator_filters)
        if self.image_size % (2 ** n_up) or self.image_size // (2 ** n_up) < 2:
            return [("image_size", f"{self.image_size} must be a multiple of 2**{n_up} (one "
                                   f"doubling per generator block) and at least "
                                   f"{2 ** (n_up + 1)}")]
        return []


@dataclass
class OptimizerSpec:
    name: Literal["adamax", "adam"] = opt("adamax", "Optimizer for both networks")
    learning_rate: float = opt(7e-5, "Learning rate (per rank, before scaling)", gt=0, le=1)
    beta_1: float = opt(0.08, "First-moment decay", ge=0, lt=1)
    beta_2: float = opt(0.999, "Second-moment decay", ge=0, lt=1, advanced=True)
    scale_lr_by_ranks: bool = opt(False, "Multiply the learning rate by the number of ranks",
                                  advanced=True)
    autoencoder_lr_ratio: float = opt(0.25, "aeacgan: the autoencoder update's learning rate "
                                            "as a share of learning_rate", gt=0, le=10,
                                      advanced=True)


@dataclass
class LatentSpec:
    distribution: Literal["normal", "uniform", "unit_uniform", "stratified"] = opt(
        "normal", "How z is drawn; uniform: in [-1, 1]; unit_uniform: in [0, 1] (aeacgan "
                  "needs it); stratified: evenly spaced over [-3, 3], shuffled")
    class_probabilities: list[float] | None = opt(
        None, "Probabilities of the sampled class labels; none = the data's frequencies",
        advanced=True)

    def problems(self) -> list[tuple[str, str]]:
        probs = self.class_probabilities
        if probs is not None and (any(p < 0 for p in probs) or abs(sum(probs) - 1) > 1e-6):
            return [("class_probabilities", "must be non-negative and sum to 1")]
        return []


@dataclass
class CheckpointSpec:
    every_steps: int = opt(0, "Also checkpoint every K steps (0 = only at epoch ends)", ge=0)
    keep: int = opt(3, "Checkpoints kept", ge=1, advanced=True)
    keep_best: Literal["none", "kid", "fid", "face_rate"] = opt(
        "none", "Also keep the snapshot with the best value of this train.metrics figure in "
                "run_dir/best (apart from the rolling ones: a later collapse cannot lose it); "
                "generate.checkpoint: best uses it")


@dataclass
class LossSpec:
    name: Literal["non_saturating", "hinge", "relativistic"] = opt(
        "non_saturating", "non_saturating: binary cross-entropy, G maximises log D(fake); hinge: "
                          "D minimises relu(1 - real) + relu(1 + fake), G maximises D(fake); "
                          "relativistic: R3GAN's pairing loss, D minimises softplus(D(fake) - "
                          "D(real)) over pairs sharing a condition, G the reverse (use with "
                          "r1_gamma and r2_gamma). metrics.csv, the guard and ADA always read "
                          "cross-entropy values (relativistic: of the logits centred on the "
                          "batch's real/fake midpoint)")
    r1_gamma: float = opt(0.0, "Weight of the R1 penalty: gamma/2 x |grad D(real)|^2 (0 = off)",
                          ge=0)
    r1_interval: int = opt(16, "Lazy R1 and R2: every N steps, scaled by N (StyleGAN2); 1 = "
                               "every step", ge=1, advanced=True)
    r2_gamma: float = opt(0.0, "Weight of the R2 penalty: gamma/2 x |grad D(fake)|^2 on the "
                               "fakes as D saw them (0 = off; R3GAN sets it equal to r1_gamma)",
                          ge=0)


@dataclass
class ScheduleSpec:
    kimg: float = opt(0.0, "Length of the schedules below in thousands of images (all ranks "
                           "together): each moves from its start to its end along a half "
                           "cosine, then stays at its end. A function of the step, so a "
                           "resumed run is exact", ge=0)
    learning_rate: list[float] | None = opt(
        None, "[start, end] of optimizer.learning_rate (both networks; the autoencoder keeps "
              "its ratio); none: fixed", parse=parse_ends)
    beta_2: list[float] | None = opt(None, "[start, end] of Adam's beta_2 (R3GAN: 0.9 to "
                                           "0.99); none: optimizer.beta_2", parse=parse_ends)
    gamma: list[float] | None = opt(
        None, "[start, end] of gamma for the penalties that are on (loss.r1_gamma, "
              "loss.r2_gamma > 0), R3GAN decays it; none: their own values", parse=parse_ends)
    ema_half_life_kimg: list[float] | None = opt(
        None, "[start, end] of ema.half_life_kimg (needs ema.enabled)", parse=parse_ends)
    augment_probability: list[float] | None = opt(
        None, "[start, end] of augment.probability (needs augment.policy, not adaptive)",
        parse=parse_ends)


@dataclass
class EmaSpec:
    enabled: bool = opt(False, "Keep an exponential moving average of G's weights (StyleGAN2's "
                               "G_ema), updated after every step and used for sample grids, "
                               "figures, scores and export")
    half_life_kimg: float = opt(10.0, "Half-life of the average in thousands of images seen "
                                      "(all ranks together)", gt=0)
    rampup: float | None = opt(0.05, "Early on, the half-life is at most this share of the "
                                     "images seen so far (none: no ramp-up)", gt=0, advanced=True)


@dataclass
class AugmentSpec:
    policy: list[str] = opt([], "Differentiable augmentations of every image D sees, real and "
                                "fake alike (DiffAugment): " + ", ".join(AUGMENTATIONS)
                            + "; [] = none", parse=parse_augment_policy)
    probability: float = opt(1.0, "Chance that each augmentation is applied to an image "
                                  "(1 = always, as DiffAugment); with adaptive, where it "
                                  "starts (StyleGAN2-ADA starts at 0)", ge=0, le=1)
    adaptive: bool = opt(False, "ADA: after every step, raise the probability when D's sign "
                                "on the reals is above target (it is memorising them; 0.6 = "
                                "it calls 80% of them real), lower it otherwise; "
                                "checkpointed, the same on every rank")
    target: float = opt(0.6, "ADA's target for E[sign D(real)] = 2 x d_acc_real - 1", gt=0,
                        lt=1, advanced=True)
    speed_kimg: float = opt(100.0, "ADA: thousands of images (all ranks) over which the "
                                   "probability can move from 0 to 1", gt=0, advanced=True)

    def problems(self) -> list[tuple[str, str]]:
        if self.adaptive and not self.policy:
            return [("adaptive", "needs train.augment.policy: the augmentations whose "
                                 "probability it tunes")]
        return []


# shared by train.metrics and generate (task metrics)
PRECISION_RECALL_HELP = (
    "Also precision, recall, density and coverage of the same features (k-nearest-neighbour "
    "balls): fidelity and diversity apart; recall near 0 is mode collapse. Costs distances "
    "between every pair of count images, per feature set")
NEAREST_K_HELP = ("precision_recall: each ball's radius is the distance to the k-th nearest "
                  "neighbour; count must exceed 2k (the real-vs-real yardstick uses halves)")


@dataclass
class InceptionSpec:
    weights: str | None = opt(None, "Keras's InceptionV3 ImageNet weights without the top "
                                    "(inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
                                    "), fetched once by you: adds Inception KID and FID. Never "
                                    "downloaded", path="exists")
    sha256: str | None = opt(None, "The weights file's SHA-256, checked before anything runs",
                             parse=parse_sha256)

    def problems(self) -> list[tuple[str, str]]:
        if bool(self.weights) != bool(self.sha256):
            return [("", "give both weights and sha256 (the file is checked before anything "
                         "runs)")]
        return []


def nearest_k_problems(owner: Any, where: str) -> list[tuple[str, str]]:
    """train.metrics and generate (``where``): precision and recall's yardstick needs
    samples."""
    if owner.precision_recall and owner.count <= 2 * owner.nearest_k:
        return [("nearest_k", f"{owner.nearest_k} needs {where}.count above "
                              f"{2 * owner.nearest_k} "
                              f"(it is {owner.count}): the real-vs-real yardstick compares "
                              "two halves, each with more than k samples")]
    return []


@dataclass
class MetricsSpec:
    every_epochs: int = opt(0, "Measure KID, FID and the face rate of G (its average with "
                               "train.ema) every N epochs, into metrics.csv and TensorBoard "
                               "(0 = not by epochs)", ge=0)
    every_kimg: float = opt(0.0, "... or at the first epoch end after every K thousand images "
                                 "seen by all ranks (0 = not by images)", ge=0)
    count: int = opt(500, "Generated images per measurement; as many real images (at most "
                          "the data's), fixed for the run", ge=20)
    face_rate: bool = opt(True, "Also the share of samples in which MTCNN finds a face")
    precision_recall: bool = opt(False, PRECISION_RECALL_HELP)
    nearest_k: int = opt(5, NEAREST_K_HELP, ge=1, advanced=True)
    inception: InceptionSpec = section(InceptionSpec, "Optional Inception-v3 features")

    def problems(self) -> list[tuple[str, str]]:
        return nearest_k_problems(self, "train.metrics")


@dataclass
class GuardSpec:
    enabled: bool = opt(True, "Roll back a network whose loss leaves its hard bounds")
    d_real_band: list[float] = opt([0.30, 0.95], "Healthy band of the D loss on real images",
                                   parse=parse_band, advanced=True)
    d_fake_band: list[float] = opt([0.25, 0.95], "Healthy band of the D loss on fakes",
                                   parse=parse_band, advanced=True)
    g_band: list[float] = opt([0.40, 1.50], "Healthy band of the G loss", parse=parse_band,
                              advanced=True)
    d_bounds: list[float] = opt([0.001, 2.0], "Hard bounds of the D losses", parse=parse_band,
                                advanced=True)
    g_bounds: list[float] = opt([0.01, 4.5], "Hard bounds of the G loss", parse=parse_band,
                                advanced=True)
    snapshot_every_steps: int = opt(50, "Take a 'last good' snapshot at most this often, "
                                        "when all losses are in their bands", ge=1, advanced=True)
    max_failures: int = opt(3, "Stop after this many rollbacks without 2 x "
                               "snapshot_every_steps healthy steps between them", ge=1,
                            advanced=True)


@dataclass
class HorovodSpec:
    compression: Literal["none", "fp16"] = opt(
        "none", "How gradients travel in Horovod's allreduce; fp16: as 16-bit floats, half "
                "the bytes (for ranks on slow links: python -m jobs plan warns when the "
                "allreduce would dominate a step; bench/scaling.py measures it). Ranks stay "
                "identical, but the averaged gradient is rounded to fp16, so training is no "
                "longer bitwise equal to one process; without loss scaling, gradient values "
                "below ~6e-8 become 0 (mind a large loss.r1_gamma)")
    host_allreduce: bool = opt(
        False, "Let several GPU ranks average their gradients through the host (Gloo or MPI "
               "over TCP) when Horovod was built without NCCL: every gradient then travels "
               "GPU -> host -> network -> GPU. Off: such a job stops before training (exit 3)",
                               advanced=True)


@dataclass
class TrainSpec:
    data: str = opt(help="Merged HDF5 from preprocessing (or one shard)", path="exists",
                    example="/scratch/$USER/celeba64/faces.h5")
    run_dir: str = opt(help="Checkpoints, samples, logs; a restart resumes from here",
                       path="output", example="/scratch/$USER/runs/cgan64")
    recipe: Literal["classic", "modern"] = opt(
        "classic", "A set of the fields below that work together (StyleGAN2-ADA's --cfg): "
                   "it fills each of its fields that the spec leaves out, and a field the "
                   "spec sets wins. classic: the fields' own defaults; modern: R3GAN's "
                   "residual networks and relativistic loss with R1 and R2. The table "
                   "'train.recipe' below lists every value")
    init_from: str = opt("", "Start from another run's weights: RUN_DIR (its newest checkpoint), "
                             "RUN_DIR:best (its checkpoint.keep_best snapshot) or "
                             "RUN_DIR:ckpt-N. G, D, the encoder and G's average are loaded; "
                             "the optimizers, the counters and ADA start afresh. Only when "
                             "run_dir holds no checkpoint of its own: a requeued run resumes "
                             "from its own. Same model.name; every shape must match",
                         parse=parse_init_from, example="/scratch/$USER/runs/cgan64:best")
    freeze_d: int = opt(0, "Freeze the first K of D's blocks (one per "
                           "model.discriminator_filters entry, from the input): not trained, "
                           "their BatchNorm statistics kept (StyleGAN2-ADA's --freezed, for "
                           "fine-tuning with init_from)", ge=0)
    epochs: int = opt(100, "Epochs to train", ge=1)
    batch_size: int = opt(64, "Batch size per rank", ge=1)
    seed: int = opt(0, "Seed for weights, data order and latents", ge=0)
    label_smoothing: float = opt(0.9, "Target for real images (one-sided smoothing)", gt=0, le=1)
    disc_input_noise: float = opt(0.0, "Std of Gaussian noise added to D's inputs", ge=0,
                                  advanced=True)
    in_memory_max_gb: float = opt(4.0, "Load the data into memory if it is smaller than this, "
                                       "else stream contiguous blocks", ge=0, advanced=True)
    stage: Literal["none", "local"] = opt(
        "none", "local: before training, copy the images once per node to the node's own "
                "disk (stage_dir), uncompressed and checked against the source, and let every "
                "rank of the node map that copy: batches at memory speed, and one copy in the "
                "node's memory however many ranks it runs. A requeued job finds it intact or "
                "copies again; without room, the shared file is read, with a warning")
    stage_dir: str | None = opt(None, "Where stage: local copies to (default: $SLURM_TMPDIR, "
                                      "else $TMPDIR, else /tmp)", example="/local/scratch",
                                advanced=True)
    precision: Literal["float32", "bfloat16", "float16"] = opt(
        "float32", "What the networks compute in; weights stay float32 either way. bfloat16: "
                   "float32's range, no loss scaling (A100, H100, recent CPUs); float16: for "
                   "V100, T4 and RTX GPUs, with dynamic loss scaling (the scaled gradients are "
                   "averaged across ranks, so every rank unscales, skips or applies alike; the "
                   "scale is in the checkpoint)")
    mixed_precision: bool = opt(False, "The older name of precision: bfloat16 (true means "
                                       "bfloat16)", advanced=True,
                                old_name_of="train.precision: bfloat16")
    deterministic: bool = opt(False, "TensorFlow op determinism (bitwise-reproducible on CPU)")
    jit_compile: bool = opt(False, "Compile each network's forward and backward pass with XLA "
                                   "(the allreduce and the optimizer stay outside, so it works "
                                   "with Horovod). Off by default: on CPU it is 4-6x slower "
                                   "(bench/bench_step.py); try it on GPUs", advanced=True)
    log_every_steps: int = opt(50, "One log line every N steps", ge=1)
    read_every_steps: int = opt(
        16, "The host reads the steps' losses and stop flags every N steps (and at each "
            "epoch's end), all N in one transfer: in between, the device runs ahead and never "
            "waits on the host. The guard and a stop signal act at these reads, so N bounds "
            "their delay in steps; 1 reads every step", ge=1, advanced=True)
    device: Literal["auto", "gpu", "cpu"] = opt(
        "auto", "Where each rank trains. gpu: one GPU per rank, and a rank that sees none "
                "stops before training (exit 3, one line saying why) instead of training on "
                "the CPU; auto: gpu when resources.gpus_per_node > 0, else a GPU if one is "
                "seen and the CPU if not; cpu: the CPU, even where GPUs are visible")
    model: ModelSpec = section(ModelSpec, "Network architecture")
    optimizer: OptimizerSpec = section(OptimizerSpec, "Optimizer (same settings for G and D)")
    latent: LatentSpec = section(LatentSpec, "Latent and label sampling")
    checkpoint: CheckpointSpec = section(CheckpointSpec, "Checkpointing")
    loss: LossSpec = section(LossSpec, "Adversarial loss and the R1 penalty on D")
    ema: EmaSpec = section(EmaSpec, "Exponential moving average of the generator")
    schedule: ScheduleSpec = section(ScheduleSpec, "Values that move with the images seen")
    augment: AugmentSpec = section(AugmentSpec, "Differentiable augmentation for D")
    metrics: MetricsSpec = section(MetricsSpec, "Quality measured during training")
    guard: GuardSpec = section(GuardSpec, "Mode-collapse guard")
    horovod: HorovodSpec = section(HorovodSpec, "Data-parallel training across ranks")
    watchdog: WatchdogSpec = section(WatchdogSpec, "Stall watchdog: a hung rank ends the "
                                                   "job with evidence, and it is retried")
    tracking: TrackingSpec = section(TrackingSpec, "Offline experiment tracking (MLflow or "
                                                   "W&B)")

    def __post_init__(self) -> None:
        if self.mixed_precision and self.precision == "float32":
            self.precision = "bfloat16"  # the old name resolves here, once

    def problems(self) -> list[tuple[str, str]]:
        """Rules across train's sections (each section's own sit beside its fields)."""
        out = []
        blocks = len(self.model.discriminator_filters)  # D's blocks (gan/models/builders.py)
        if self.freeze_d > blocks:
            out.append(("freeze_d", f"{self.freeze_d} is more than D's {blocks} blocks (one "
                                    "per train.model.discriminator_filters entry)"))
        metrics, keep_best = self.metrics, self.checkpoint.keep_best
        if keep_best != "none" and not (metrics.every_epochs or metrics.every_kimg):
            out.append(("checkpoint.keep_best", "needs train.metrics.every_epochs or "
                        "every_kimg: the best snapshot is chosen by the figures measured there"))
        if keep_best == "face_rate" and not metrics.face_rate:
            out.append(("checkpoint.keep_best", "face_rate needs train.metrics.face_rate"))
        if self.mixed_precision and self.precision == "float16":
            out.append(("mixed_precision", "true is the older name of train.precision: "
                        "bfloat16, but train.precision is float16; set train.precision alone"))
        return out + schedule_problems(self)


def schedule_problems(work: TrainSpec) -> list[tuple[str, str]]:
    """(field under train, why) for each train.schedule entry the run cannot honour."""
    sched, where = work.schedule, "schedule"
    entries = {name: getattr(sched, name) for name in (
        "learning_rate", "beta_2", "gamma", "ema_half_life_kimg", "augment_probability")}
    problems = []
    if sched.kimg <= 0 and any(entries.values()):
        problems.append((f"{where}.kimg", "must be above 0 when a schedule is given"))
    ranges = {"learning_rate": (lambda v: 0 < v <= 1, "in (0, 1]"),
              "beta_2": (lambda v: 0 <= v < 1, "in [0, 1)"),
              "augment_probability": (lambda v: 0 <= v <= 1, "in [0, 1]")}
    for name, ends in entries.items():
        inside, text = ranges.get(name, (lambda v: v >= 0, "at least 0"))
        if ends and not all(inside(v) for v in ends):
            problems.append((f"{where}.{name}", f"{ends}: both values must be {text}"))
    needs = {"gamma": (work.loss.r1_gamma > 0 or work.loss.r2_gamma > 0,
                       "needs train.loss.r1_gamma or r2_gamma above 0: the penalties it sets"),
             "ema_half_life_kimg": (work.ema.enabled, "needs train.ema.enabled"),
             "augment_probability": (bool(work.augment.policy) and not work.augment.adaptive,
                                     "needs train.augment.policy and not augment.adaptive "
                                     "(ADA sets the probability itself)")}
    problems += [(f"{where}.{name}", why) for name, (ok, why) in needs.items()
                 if entries[name] and not ok]
    return problems
