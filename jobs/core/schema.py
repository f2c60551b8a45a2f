"""The one schema every job spec is validated against.

A job spec is a YAML file with four parts: ``kind`` (what to run), ``name``, ``resources``
(what to ask Slurm for: the same for every kind) and one work section named after the kind
(``preprocess:``, ``train:``, ``sweep:``, ``generate:``). Everything else in the suite reads
its settings from these dataclasses; defaults and ranges are declared here and nowhere else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from jobs.core.fields import (is_secret_name, iter_path_fields, nearest, opt, parse_walltime,
                              section, to_plain)

CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose "
    "Black_Hair Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee "
    "Gray_Hair Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes "
    "No_Beard Oval_Face Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling "
    "Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace "
    "Wearing_Necktie Young"
).split()


def _attribute_list(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of CelebA attribute names")

    for name in value:
        if name not in CELEBA_ATTRIBUTES:
            raise ValueError(f"unknown attribute {name!r}{nearest(name, CELEBA_ATTRIBUTES)}")
    return list(value)


def _band(value: Any) -> list[float]:
    ok = (isinstance(value, list) and len(value) == 2
          and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
    if not ok or not value[0] < value[1]:
        raise ValueError(f"expected [low, high] with low < high, got {value!r}")
    return [float(v) for v in value]


AUGMENTATIONS = ("color", "translation", "cutout", "flip")


def _augment_policy(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"expected a list of augmentations, got {value!r}")
    for name in value:
        if name not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {name!r}{nearest(name, AUGMENTATIONS)}; "
                             f"choose from {', '.join(AUGMENTATIONS)}")
    return list(value)


def _filters(value: Any) -> list[int]:
    ok = isinstance(value, list) and value and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    if not ok:
        raise ValueError(f"expected a non-empty list of positive integers, got {value!r}")
    return list(value)


# ---------------------------------------------------------------------------------------------
# Resources: what the scheduler is asked for. Shared by every kind.
# ---------------------------------------------------------------------------------------------
@dataclass
class ContainerSpec:
    runtime: Literal["none", "apptainer", "docker"] = opt(
        "none", "Run the job's command inside this container runtime (scontrol stays on the host)")
    image: str | None = opt(None, "Apptainer .sif path or Docker image name",
                            example="/shared/images/facegan.sif")
    binds: list[str] = opt([], "Extra bind mounts 'host[:container]'; data and run dirs are "
                               "bound automatically")


class SpecError(Exception):
    """A spec is invalid; ``problems`` lists every message."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Resources:
    nodes: int = opt(1, "Nodes per job (Horovod spans them)", ge=1)
    tasks_per_node: int = opt(1, "Processes per node; for training one Horovod rank each "
                                 "(= GPUs per node on GPU clusters)", ge=1)
    gpus_per_node: int = opt(0, "GPUs per node (--gres=gpu:N); 0 for CPU", ge=0)
    cpus_per_task: int = opt(2, "CPU cores per task", ge=1)
    mem_gb: float = opt(8.0, "Memory per node in GiB", gt=0)
    time: str = opt("01:00:00", "Walltime (Slurm format: MM, HH:MM:SS, D-HH:MM:SS, or minutes)",
                    parse=parse_walltime)
    partition: str | None = opt(None, "Slurm partition (-p)")
    account: str | None = opt(None, "Slurm account to charge (-A)")
    qos: str | None = opt(None, "Slurm QOS")
    array_throttle: int | None = opt(None, "Max array tasks running at once (the %K of "
                                           "--array); none = no limit", ge=1)
    max_requeues: int = opt(10, "Stop requeueing a job after this many restarts", ge=0)
    signal_lead_s: int = opt(120, "Seconds before the walltime that the job is told to "
                                  "checkpoint and requeue", ge=10)
    container: ContainerSpec = section(ContainerSpec, "Optional container for the job")


# ---------------------------------------------------------------------------------------------
# preprocess: photos -> HDF5 shards
# ---------------------------------------------------------------------------------------------
@dataclass
class ClassRule:
    name: str = opt(help="Class name, stamped on sample images")
    all: list[str] = opt([], "Attributes that must be present", parse=_attribute_list)
    none: list[str] = opt([], "Attributes that must be absent", parse=_attribute_list)


@dataclass
class FaceSpec:
    detector: Literal["mtcnn", "fixed_crop"] = opt(
        "mtcnn", "mtcnn: detect faces; fixed_crop: CelebA's fixed 128x128 window, no detector")
    image_size: int = opt(64, "Side of the square output face in pixels", ge=8, le=1024)
    margin: float = opt(0.2, "Extra border around the detected box, as a fraction of its size",
                        ge=0, le=2)
    min_confidence: float = opt(0.9, "Drop detections below this MTCNN confidence", ge=0, le=1)
    min_face_size: int = opt(20, "Smallest face MTCNN looks for, in pixels", ge=8)
    select: Literal["largest", "most_confident"] = opt(
        "largest", "Which face to keep when a photo has several")
    align: bool = opt(False, "Rotate so the eyes are level (uses MTCNN's eye keypoints)")
    crop_top: int = opt(59, "fixed_crop: top row of the window", ge=0)
    crop_left: int = opt(24, "fixed_crop: left column of the window", ge=0)
    crop_size: int = opt(128, "fixed_crop: side of the window", ge=8)


@dataclass
class PreprocessSpec:
    input_dir: str = opt(help="CelebA folder (Kaggle or original layout) or any folder of "
                              "photos", path="exists", example="/shared/data/celeba")
    output_dir: str = opt(help="Where shards, reports, the merged HDF5 and the sample sheet "
                               "go", path="output", example="/scratch/$USER/celeba64")
    layout: Literal["auto", "kaggle", "original", "plain"] = opt(
        "auto", "Input layout; auto detects list_attr_celeba.csv/.txt, else plain")
    num_shards: int = opt(1, "Number of shards = array tasks", ge=1, le=100000)
    batch_size: int = opt(32, "Images per MTCNN call (same-size images only)", ge=1, le=4096)
    faces: FaceSpec = section(FaceSpec, "Face extraction")
    classes: list[ClassRule] = opt([], "Class labels as rules over attributes, first match "
                                       "wins; images matching none are dropped. Empty: one "
                                       "class (0)")
    filter: ClassRule | None = opt(None, "Keep only images matching this rule (its name is "
                                         "only used in reports)")
    compression: Literal["none", "lzf", "gzip"] = opt(
        "none", "HDF5 compression of the image dataset")
    chunk_images: int = opt(256, "Images per HDF5 chunk", ge=1)
    sample_sheet: int = opt(64, "Faces on the sample sheet PNG (0 = none)", ge=0, le=1024)
    seed: int = opt(0, "Seed for the sample sheet's choice of faces", ge=0)


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
    embedding_dim: int = opt(50, "Size of the learned per-class embedding", ge=1)
    generator_filters: list[int] = opt([256, 128, 64], "Filters of the generator's upsampling "
                                                       "blocks (each doubles the size)",
                                       parse=_filters)
    discriminator_filters: list[int] = opt([64, 128, 256], "Filters of the discriminator's "
                                                           "stride-2 blocks", parse=_filters)
    leaky_relu: float = opt(0.2, "LeakyReLU negative slope", ge=0, lt=1)
    dropout: float = opt(0.4, "Dropout before the discriminator's output", ge=0, lt=1)


@dataclass
class OptimizerSpec:
    name: Literal["adamax", "adam"] = opt("adamax", "Optimizer for both networks")
    learning_rate: float = opt(7e-5, "Learning rate (per rank, before scaling)", gt=0, le=1)
    beta_1: float = opt(0.08, "First-moment decay", ge=0, lt=1)
    beta_2: float = opt(0.999, "Second-moment decay", ge=0, lt=1)
    scale_lr_by_ranks: bool = opt(False, "Multiply the learning rate by the number of ranks")
    autoencoder_lr_ratio: float = opt(0.25, "aeacgan: the autoencoder update's learning rate "
                                            "as a share of learning_rate", gt=0, le=10)


@dataclass
class LatentSpec:
    distribution: Literal["normal", "uniform", "unit_uniform", "stratified"] = opt(
        "normal", "How z is drawn; uniform: in [-1, 1]; unit_uniform: in [0, 1] (aeacgan "
                  "needs it); stratified: evenly spaced over [-3, 3], shuffled")
    class_probabilities: list[float] | None = opt(
        None, "Probabilities of the sampled class labels; none = the data's frequencies")


@dataclass
class CheckpointSpec:
    every_steps: int = opt(0, "Also checkpoint every K steps (0 = only at epoch ends)", ge=0)
    keep: int = opt(3, "Checkpoints kept", ge=1)


@dataclass
class LossSpec:
    name: Literal["non_saturating", "hinge"] = opt(
        "non_saturating", "non_saturating: binary cross-entropy, G maximises log D(fake); hinge: "
                          "D minimises relu(1 - real) + relu(1 + fake), G maximises D(fake). "
                          "metrics.csv and the guard always show the cross-entropy values")
    r1_gamma: float = opt(0.0, "Weight of the R1 penalty: gamma/2 x |grad D(real)|^2 (0 = off)",
                          ge=0)
    r1_interval: int = opt(16, "Lazy R1: every N steps, scaled by N (StyleGAN2)", ge=1)


@dataclass
class EmaSpec:
    enabled: bool = opt(False, "Keep an exponential moving average of G's weights (StyleGAN2's "
                               "G_ema), updated after every step and used for sample grids, "
                               "figures, scores and export")
    half_life_kimg: float = opt(10.0, "Half-life of the average in thousands of images seen "
                                      "(all ranks together)", gt=0)
    rampup: float | None = opt(0.05, "Early on, the half-life is at most this share of the "
                                     "images seen so far (none: no ramp-up)", gt=0)


@dataclass
class AugmentSpec:
    policy: list[str] = opt([], "Differentiable augmentations of every image D sees, real and "
                                "fake alike (DiffAugment): " + ", ".join(AUGMENTATIONS)
                            + "; [] = none", parse=_augment_policy)
    probability: float = opt(1.0, "Chance that each augmentation is applied to an image "
                                  "(1 = always, as DiffAugment)", ge=0, le=1)


@dataclass
class GuardSpec:
    enabled: bool = opt(True, "Roll back a network whose loss leaves its hard bounds")
    d_real_band: list[float] = opt([0.30, 0.95], "Healthy band of the D loss on real images",
                                   parse=_band)
    d_fake_band: list[float] = opt([0.25, 0.95], "Healthy band of the D loss on fakes",
                                   parse=_band)
    g_band: list[float] = opt([0.40, 1.50], "Healthy band of the G loss", parse=_band)
    d_bounds: list[float] = opt([0.001, 2.0], "Hard bounds of the D losses", parse=_band)
    g_bounds: list[float] = opt([0.01, 4.5], "Hard bounds of the G loss", parse=_band)
    snapshot_every_steps: int = opt(50, "Take a 'last good' snapshot at most this often, "
                                        "when all losses are in their bands", ge=1)
    max_failures: int = opt(3, "Stop after this many rollbacks without 2 x "
                               "snapshot_every_steps healthy steps between them", ge=1)


@dataclass
class TrainSpec:
    data: str = opt(help="Merged HDF5 from preprocessing (or one shard)", path="exists",
                    example="/scratch/$USER/celeba64/faces.h5")
    run_dir: str = opt(help="Checkpoints, samples, logs; a restart resumes from here",
                       path="output", example="/scratch/$USER/runs/cgan64")
    epochs: int = opt(100, "Epochs to train", ge=1)
    batch_size: int = opt(64, "Batch size per rank", ge=1)
    seed: int = opt(0, "Seed for weights, data order and latents", ge=0)
    label_smoothing: float = opt(0.9, "Target for real images (one-sided smoothing)", gt=0, le=1)
    disc_input_noise: float = opt(0.0, "Std of Gaussian noise added to D's inputs", ge=0)
    in_memory_max_gb: float = opt(4.0, "Load the data into memory if it is smaller than this, "
                                       "else stream contiguous blocks", ge=0)
    mixed_precision: bool = opt(False, "bfloat16 compute, float32 weights (GPUs with bf16, "
                                       "recent CPUs)")
    deterministic: bool = opt(False, "TensorFlow op determinism (bitwise-reproducible on CPU)")
    log_every_steps: int = opt(50, "One log line every N steps", ge=1)
    model: ModelSpec = section(ModelSpec, "Network architecture")
    optimizer: OptimizerSpec = section(OptimizerSpec, "Optimizer (same settings for G and D)")
    latent: LatentSpec = section(LatentSpec, "Latent and label sampling")
    checkpoint: CheckpointSpec = section(CheckpointSpec, "Checkpointing")
    loss: LossSpec = section(LossSpec, "Adversarial loss and the R1 penalty on D")
    ema: EmaSpec = section(EmaSpec, "Exponential moving average of the generator")
    augment: AugmentSpec = section(AugmentSpec, "Differentiable augmentation for D")
    guard: GuardSpec = section(GuardSpec, "Mode-collapse guard")


# ---------------------------------------------------------------------------------------------
# sweep: one train spec, many overrides, one Slurm array
# ---------------------------------------------------------------------------------------------
@dataclass
class SweepSpec:
    base: str = opt(help="The train spec every point starts from", path="exists",
                    example="jobs/examples/train_cgan_faces.yaml")
    run_root: str = opt(help="Each point trains in run_root/<its overrides>", path="output",
                        example="/scratch/$USER/sweeps/lr")
    grid: dict[str, list[Any]] = opt({}, "Dotted key -> values; every combination is a point")
    points: list[dict[str, Any]] = opt([], "Explicit points (dotted key -> value), added after "
                                           "the grid")


# ---------------------------------------------------------------------------------------------
# generate: a trained generator -> figures
# ---------------------------------------------------------------------------------------------
@dataclass
class GenerateSpec:
    run_dir: str = opt(help="Training run whose checkpoint is used", path="exists",
                       example="/scratch/$USER/runs/cgan64")
    output_dir: str = opt(help="Where PNGs and the figures' JSON go", path="output",
                          example="/scratch/$USER/runs/cgan64/figures")
    task: Literal["grid", "interpolate", "arithmetic", "classifier_score", "attribute_f1",
                  "export", "samples", "metrics"] = \
        opt("grid", "grid: samples per class; interpolate: face-to-face rows per class, linear "
                    "and spherical; arithmetic: z + alpha*v rows along an attribute's "
                    "direction; classifier_score: train a classifier on generated images "
                    "only, test it on held-out real ones, beside one trained on real images; "
                    "attribute_f1: per-attribute F1 of an aeacgan's attribute heads; export: "
                    "generator.keras + generator.json, loadable with plain Keras; samples: "
                    "count generated images in samples.h5, the preprocessing layout; metrics: "
                    "KID, FID (offline O-Net features) and face rate, beside real images and "
                    "the untrained generator")
    count: int = opt(1000, "samples, metrics: how many images are generated", ge=1)
    data: str | None = opt(None, "Real images for the tasks that compare with them "
                                 "(classifier_score, attribute_f1, arithmetic's fitted judge); "
                                 "none = the run's training data", path="exists")
    checkpoint: int | None = opt(None, "Checkpoint number; none = the latest", ge=0)
    per_class: int = opt(8, "Samples per class (grid; classifier_score uses 100x this)", ge=1)
    steps: int = opt(10, "Interpolation steps; arithmetic: alpha values", ge=2)
    attribute: str | None = opt(None, "arithmetic: a data attribute (Smiling, Male, ...) or a "
                                      "class name")
    strength: float = opt(2.0, "arithmetic: alpha runs from -strength to +strength", gt=0)
    rows: int = opt(4, "arithmetic: rows (base latents) in the figure", ge=1)
    samples: int = opt(2000, "arithmetic, attribute_f1: generated images judged", ge=10)
    seed: int = opt(0, "Seed for the latents", ge=0)


# ---------------------------------------------------------------------------------------------
# pipeline: preprocess array -> merge -> train, chained by Slurm dependencies
# ---------------------------------------------------------------------------------------------
@dataclass
class PipelineSpec:
    preprocess: str = opt(help="The preprocess spec (stage 1: the shard array, then the "
                               "merge)", path="exists",
                          example="jobs/examples/preprocess_faces.yaml")
    train: str = opt(help="The train spec (stage 2); its train.data is set to stage 1's "
                          "merged faces.h5", path="exists",
                     example="jobs/examples/train_cgan_faces.yaml")
    preprocess_set: list[str] = opt([], "KEY=VALUE overrides for the preprocess spec")
    train_set: list[str] = opt([], "KEY=VALUE overrides for the train spec")


WORK_SECTIONS: dict[str, type] = {
    "preprocess": PreprocessSpec,
    "train": TrainSpec,
    "sweep": SweepSpec,
    "generate": GenerateSpec,
    "pipeline": PipelineSpec,
}


@dataclass
class JobSpec:
    """A validated job: use ``jobs.core.loader.load_spec`` to make one."""
    kind: str
    name: str
    resources: Resources
    env: dict[str, str]
    work: Any
    source: str = "<memory>"
    stage_work_dir: str | None = None  # a pipeline's: its train stage's (set by the loader)

    @property
    def work_dir(self) -> str:
        """The directory this job writes to (its first output path): logs and submission
        records go under it. A pipeline writes into its train stage's run directory."""
        if self.kind == "pipeline":
            if self.stage_work_dir is None:
                raise SpecError([f"{self.source}: the pipeline's stage specs do not load "
                                 "(python -m jobs validate names the problems)"])
            return self.stage_work_dir
        return next(value for _, value, role in iter_path_fields(self.work, self.kind)
                    if role == "output")

    def to_dict(self, redact: bool = True) -> dict[str, Any]:
        """The resolved spec as plain data, secrets replaced by '***'."""
        env = {k: ("***" if redact and is_secret_name(k) else v) for k, v in self.env.items()}
        return {"kind": self.kind, "name": self.name, "resources": to_plain(self.resources),
                "env": env, self.kind: to_plain(self.work, redact)}


TOP_LEVEL_HELP = {
    "kind": "What to run: " + ", ".join(WORK_SECTIONS),
    "name": "Job name (Slurm --job-name, run-dir names); letters, digits, '-', '_', '.'",
    "resources": "What to ask the scheduler for (see below)",
    "env": "Extra environment variables for the job; names containing TOKEN, SECRET, "
           "PASSWORD, PASS or KEY are shown as *** in plans and logs",
}
