"""The one schema every job spec is validated against.

A job spec is a YAML file with four parts: ``kind`` (what to run), ``name``, ``resources``
(what to ask Slurm for: the same for every kind) and one work section named after the kind
(``preprocess:``, ``train:``, ``sweep:``, ``generate:``). Everything else in the suite reads
its settings from these dataclasses; defaults and ranges are declared here and nowhere else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from jobs.core.fields import (
    SECRET_MARKERS,
    is_secret_name,
    iter_path_fields,
    nearest,
    opt,
    parse_walltime,
    section,
    to_plain,
)
from jobs.core.sweep_schema import EarlyStopSpec, SweepSpec  # noqa: F401
from jobs.core.train_schema import (  # noqa: F401
    AUGMENTATIONS,
    NEAREST_K_HELP,
    PRECISION_RECALL_HELP,
    AugmentSpec,
    CheckpointSpec,
    EmaSpec,
    GuardSpec,
    InceptionSpec,
    LatentSpec,
    LossSpec,
    MetricsSpec,
    ModelSpec,
    OptimizerSpec,
    ScheduleSpec,
    TrainSpec,
    nearest_k_problems,
)

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


def _checkpoint_choice(value: Any) -> int | str:
    if value == "best" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value
    raise ValueError(f"expected a checkpoint number or 'best', got {value!r}")


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
    resubmit: int = opt(0, "Training: also submit N successor jobs, each starting when the "
                           "one before ends in any way (afterany), for sites where preemption "
                           "cancels instead of requeueing: each resumes the run, or exits at "
                           "once if it has ended", ge=0, le=100)
    signal_lead_s: int = opt(120, "Seconds before the walltime that the job is told to "
                                  "checkpoint and requeue", ge=10, advanced=True)
    slurm_extra: dict[str, str | int | bool] = opt(
        {}, "Any other sbatch option by its long name, without '--', for both sbatch and "
            "submitit (slurm_additional_parameters): constraint, exclude, nodelist, "
            "reservation, mail-type, mail-user, a typed gres (gpu:a100:4, its count equal to "
            "gpus_per_node), ...; true is a bare flag, false leaves it out. The options this "
            "spec sets through its own fields are refused, naming the field",
        example="{constraint: a100, mail-type: END}")
    container: ContainerSpec = section(ContainerSpec, "Optional container for the job")

    def problems(self) -> list[tuple[str, str]]:
        """resources.slurm_extra: an sbatch option by its name, none this spec sets through
        its own fields, a typed gres that agrees with gpus_per_node."""
        out = []
        for key, value in self.slurm_extra.items():
            where = f"slurm_extra.{key}"
            if not OPTION_NAME.match(key):
                out.append((where, "give an sbatch option's long name without '--', e.g. "
                                   "constraint or mail-type"))
            elif key in MANAGED_SBATCH_OPTIONS:
                out.append((where, f"--{key} is set by {MANAGED_SBATCH_OPTIONS[key]}: set it "
                                   "there"))
            elif key == "gres":
                gpus = sum(int(m.group(1)) for part in str(value).split(",")
                           if (m := GPU_GRES.match(part.strip())))
                if gpus != self.gpus_per_node:
                    out.append((where, f"{value!r} asks for {gpus} GPU(s) per node but "
                                       f"resources.gpus_per_node is {self.gpus_per_node}: "
                                       "make them agree (the device checks read "
                                       "resources.gpus_per_node)"))
        return out


OPTION_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
GPU_GRES = re.compile(r"^gpu(?::[\w.-]+)?:(\d+)$")  # gpu:4, gpu:a100:4


# The sbatch options a spec sets through its own fields (or the project sets itself), each with
# what owns it: resources.slurm_extra may not name them. jobs/scheduler.py renders them, and
# tests/jobs/test_scheduler.py checks that every option it renders is here.
MANAGED_SBATCH_OPTIONS = {
    "job-name": "name", "nodes": "resources.nodes", "ntasks": "resources.nodes and "
    "resources.tasks_per_node", "ntasks-per-node": "resources.tasks_per_node",
    "cpus-per-task": "resources.cpus_per_task", "mem": "resources.mem_gb",
    "mem-per-cpu": "resources.mem_gb", "mem-per-gpu": "resources.mem_gb",
    "time": "resources.time", "partition": "resources.partition",
    "account": "resources.account", "qos": "resources.qos",
    "gpus": "resources.gpus_per_node", "gpus-per-node": "resources.gpus_per_node",
    "gpus-per-task": "resources.gpus_per_node",
    "array": "the job's kind (preprocess shards, sweep points) and resources.array_throttle",
    "dependency": "a pipeline's chain", "signal": "resources.signal_lead_s",
    "requeue": "the job's kind (training requeues itself)",
    "no-requeue": "the job's kind (training requeues itself)",
    "open-mode": "the job's logs", "output": "the job's logs (RUN_DIR/logs)",
    "error": "the job's logs (RUN_DIR/logs)", "export": "env:", "wrap": "the scripts in slurm/",
    "chdir": "the scripts in slurm/",
}


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
    min_face_size: int = opt(20, "Smallest face MTCNN looks for, in pixels", ge=8, advanced=True)
    auto_min_face: int = opt(
        32, "Derive the smallest face to look for from the data: after the first N photos of "
            "each size (searched down to min_face_size), look only for faces of at least half "
            "the smallest face found in them; a photo with no face found that way is searched "
            "again down to min_face_size. Saves MTCNN's costliest pyramid levels (on the "
            "bundled set every box stays where it was; a narrowed search can move a box by "
            "a few pixels, and a photo with no face costs both searches). 0 = always "
            "search down to min_face_size", ge=0, advanced=True)
    select: Literal["largest", "most_confident"] = opt(
        "largest", "Which face to keep when a photo has several")
    align: bool = opt(False, "Rotate so the eyes are level (uses MTCNN's eye keypoints)")
    crop_top: int = opt(59, "fixed_crop: top row of the window", ge=0, advanced=True)
    crop_left: int = opt(24, "fixed_crop: left column of the window", ge=0, advanced=True)
    crop_size: int = opt(128, "fixed_crop: side of the window", ge=8, advanced=True)


@dataclass
class PreprocessSpec:
    input_dir: str = opt(help="CelebA folder (Kaggle or original layout) or any folder of "
                              "photos", path="exists", example="/shared/data/celeba")
    output_dir: str = opt(help="Where shards, reports, the merged HDF5 and the sample sheet "
                               "go", path="output", example="/scratch/$USER/celeba64")
    layout: Literal["auto", "kaggle", "original", "plain"] = opt(
        "auto", "Input layout; auto detects list_attr_celeba.csv/.txt, else plain", advanced=True)
    num_shards: int = opt(1, "Number of shards = array tasks", ge=1, le=100000)
    batch_size: int = opt(32, "Images per MTCNN call (same-size images only)", ge=1, le=4096,
                          advanced=True)
    faces: FaceSpec = section(FaceSpec, "Face extraction")
    classes: list[ClassRule] = opt([], "Class labels as rules over attributes, first match "
                                       "wins; images matching none are dropped. Empty: one "
                                       "class (0)")
    filter: ClassRule | None = opt(None, "Keep only images matching this rule (its name is "
                                         "only used in reports)")
    compression: Literal["none", "lzf", "gzip"] = opt(
        "none", "HDF5 compression of the image dataset", advanced=True)
    chunk_images: int = opt(256, "Images per HDF5 chunk", ge=1, advanced=True)
    sample_sheet: int = opt(64, "Faces on the sample sheet PNG (0 = none)", ge=0, le=1024,
                            advanced=True)
    seed: int = opt(0, "Seed for the sample sheet's choice of faces", ge=0, advanced=True)


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
    checkpoint: int | str | None = opt(None, "Checkpoint number, or best (the run's "
                                             "train.checkpoint.keep_best snapshot); none = the "
                                             "latest", parse=_checkpoint_choice)
    precision_recall: bool = opt(False, "metrics: " + PRECISION_RECALL_HELP)
    nearest_k: int = opt(5, NEAREST_K_HELP, ge=1, advanced=True)
    inception: InceptionSpec = section(InceptionSpec, "metrics: optional Inception-v3 features")
    per_class: int = opt(8, "Samples per class (grid; classifier_score uses 100x this)", ge=1)
    steps: int = opt(10, "Interpolation steps; arithmetic: alpha values", ge=2)
    attribute: str | None = opt(None, "arithmetic: a data attribute (Smiling, Male, ...) or a "
                                      "class name")
    strength: float = opt(2.0, "arithmetic: alpha runs from -strength to +strength", gt=0)
    rows: int = opt(4, "arithmetic: rows (base latents) in the figure", ge=1)
    samples: int = opt(2000, "arithmetic, attribute_f1: generated images judged", ge=10)
    seed: int = opt(0, "Seed for the latents", ge=0, advanced=True)

    def problems(self) -> list[tuple[str, str]]:
        out = nearest_k_problems(self, "generate")
        if self.task == "arithmetic" and not self.attribute:
            out.append(("attribute", "task arithmetic needs the attribute (or class name) "
                                     "whose direction it draws"))
        return out


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
# every section a spec's dotted keys start with: resources (every kind) and the work sections
SPEC_SECTIONS: dict[str, type] = {"resources": Resources, **WORK_SECTIONS}


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
    # passed the rules beyond the schema (jobs/checks.py) in this command: not checked again
    checked: bool = field(default=False, compare=False, repr=False)

    @property
    def work_dir(self) -> str:
        """The directory this job writes to (its first output path): logs and submission
        records go under it. A pipeline writes into its train stage's run directory."""
        outputs = [value for _, value, role in iter_path_fields(self.work, self.kind)
                   if role == "output"]
        if outputs:
            return outputs[0]
        if self.stage_work_dir is None:  # a pipeline has no output of its own
            raise SpecError([f"{self.source}: the pipeline's stage specs do not load "
                             "(python -m jobs validate names the problems)"])
        return self.stage_work_dir

    def to_dict(self, redact: bool = True, env_values: bool = True) -> dict[str, Any]:
        """The resolved spec as plain data, secrets replaced by '***'; without
        ``env_values``, every env: value is (what a record kept beyond the job, a run event
        or a tracker, must not hold: a URL with a password has no secret-like name)."""
        env = {k: ("***" if (redact and is_secret_name(k)) or not env_values else v)
               for k, v in self.env.items()}
        return {"kind": self.kind, "name": self.name, "resources": to_plain(self.resources),
                "env": env, self.kind: to_plain(self.work)}


TOP_LEVEL_HELP = {
    "kind": "What to run: " + ", ".join(WORK_SECTIONS),
    "name": "Job name (Slurm --job-name, run-dir names); letters, digits, '-', '_', '.'",
    "resources": "What to ask the scheduler for (see below)",
    "env": "Extra environment variables for the job; names containing "
           f"{', '.join(SECRET_MARKERS[:-1])} or {SECRET_MARKERS[-1]} are shown as *** in "
           "plans and logs",
}
