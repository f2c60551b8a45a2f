"""The model families: one entry each, and everything else follows from it.

An entry names the function in ``gan/models/builders.py`` that builds its networks, what its
generator is conditioned on (``label``: an int class; ``none``: nothing, the input is ignored;
``attributes``: a 0/1 vector per data attribute), the function in ``gan/training/steps.py``
that makes its training step, the metrics that step returns (the columns of ``metrics.csv``),
and the spec rules it needs. Adding a model = a builder function and one entry here.

No TensorFlow here: the orchestration validates specs with this table in milliseconds.
"""
from __future__ import annotations

from dataclasses import dataclass

from jobs.core.fields import nearest

ADVERSARIAL_METRICS = ("d_real", "d_fake", "g", "d_acc_real", "d_acc_fake")

# What each consumer of a step's metrics reads of them, by name: every family's ``metrics``
# must hold them all (``tests/gan/test_families.py``), whatever else it adds.
READS = {
    "guard": ("d_real", "d_fake", "g"),           # gan.training.guard: the losses it bounds
    "progress": ("d_real", "d_fake", "g"),        # the tqdm bar and the interval log line
    "ada": ("d_acc_real",),                       # gan.training.augment.Adaptive: D's sign on reals
    "epoch_line": ADVERSARIAL_METRICS,            # then the family's own_metrics
    "sweep_summary": ADVERSARIAL_METRICS,         # jobs.sweep's summary.csv columns
}


@dataclass(frozen=True)
class Family:
    summary: str
    builder: str                      # in gan.models.builders: (model spec, ...) -> Networks
    condition: str                    # label | none | attributes
    step: str                         # function in gan.training.steps: trainer -> tf.function step
    residual_builder: str             # in gan.models.residual (model.architecture: residual)
    metrics: tuple[str, ...] = ADVERSARIAL_METRICS
    latent_distributions: tuple[str, ...] | None = None  # allowed ones; None: any
    why_latent: str = ""

    @property
    def own_metrics(self) -> tuple[str, ...]:
        """The metrics beyond the adversarial five every family has (what its epoch line
        adds after them)."""
        return tuple(m for m in self.metrics if m not in ADVERSARIAL_METRICS)


FAMILIES: dict[str, Family] = {
    "cgan": Family("the embedding cGAN: labels embedded into G's first map and D's input "
                   "(residual: joined to z, and projected in D)",
                   "build_cgan", "label", "adversarial", "build_cgan"),
    "dcgan": Family("unconditional (the label input is ignored): the classic DCGAN with "
                    "BatchNorm, or the residual networks",
                    "build_dcgan", "none", "adversarial", "build_dcgan"),
    "aeacgan": Family("the autoencoding AC-GAN, conditioned on the data's attributes: an "
                      "encoder, a two-head D, three updates per batch",
                      "build_aeacgan", "attributes", "autoencoding", "build_aeacgan",
                      ADVERSARIAL_METRICS + ("d_attr", "g_attr", "ae_mae"),
                      ("unit_uniform",), "its encoder's latent is a sigmoid, in [0, 1]"),
}


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(problems(name, "normal")[0])
    return FAMILIES[name]


def problems(name: str, latent_distribution: str, where: str = "train") -> list[str]:
    """What is wrong with a train spec's model for its family (empty: nothing)."""
    if name not in FAMILIES:
        return [f"{where}.model.name: unknown model {name!r}{nearest(name, FAMILIES)}; "
                f"the families are {', '.join(FAMILIES)}"]
    allowed = FAMILIES[name].latent_distributions
    if allowed and latent_distribution not in allowed:
        return [f"{where}.latent.distribution: train.model.name {name} needs "
                f"{' or '.join(allowed)} ({FAMILIES[name].why_latent}), got "
                f"{latent_distribution!r}"]
    return []
