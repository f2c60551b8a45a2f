"""The ``generate`` job kind: figures, scores and the exported generator from a trained run.

* ``grid``: ``per_class`` samples of every class (the same latents in every row, so rows differ
  only by the label), the class name stamped on each image.
* ``interpolate``: "vectorizing face to face" — ``steps`` points between two latents, linear
  and spherical, one row per class with the same latents.
* ``arithmetic``: ``z + α·v`` rows along an attribute's latent direction
  (``gan.quality.arithmetic``).
* ``classifier_score``: a classifier trained on generated images only, tested on held-out real
  images, beside the same classifier trained on real images (``gan.quality.evaluate``).
* ``attribute_f1``: per-attribute F1 of an aeacgan's attribute heads (``gan.quality.evaluate``).
* ``export``: the generator as a standalone Keras file and a JSON of what it needs
  (``gan.export``): it loads with plain Keras, without this project.

The generator comes from the run directory alone (``gan.models.sampler.Sampler.load``). Only the
tasks that compare with real images read a data file: ``generate.data``, by default the run's
training data. Writes PNGs and ``figures.json`` (what was drawn from what, and every number)
into ``output_dir``, never into the run directory.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from gan import export as exporter
from gan.models import latents
from gan.models.conditioning import ConditioningError
from gan.models.sampler import NoCheckpoint, Sampler
from gan.quality import metrics
from gan.quality.arithmetic import arithmetic as draw_arithmetic
from gan.quality.evaluate import attribute_f1 as f1_scores
from gan.quality.evaluate import classifier_score as score
from gan.training.data import ImageSet
from jobs.core import exitcodes, facefile
from jobs.core.files import atomic_write_json
from jobs.core.grids import save_grid
from jobs.core.schema import GenerateSpec, JobSpec

log = logging.getLogger(__name__)


def real_data(sampler: Sampler, work: GenerateSpec) -> ImageSet:
    """The real images a score compares with: ``generate.data``, else the training data."""
    path = work.data or sampler.spec.data
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: the real images for {work.task} are not there "
                                "(moved? point generate.data at a copy)")
    return ImageSet(path)


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: stays on the shell where normal latents live."""
    omega = np.arccos(np.clip(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)), -1, 1))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def grid(sampler, work: GenerateSpec, out: Path) -> dict:
    images = sampler.sample_images(work.per_class, work.seed)
    captions = [sampler.grid_names[i // work.per_class] for i in range(len(images))]
    return {"grid": str(save_grid(out / "grid.png", images, captions, columns=work.per_class))}


def interpolate(sampler, work: GenerateSpec, out: Path) -> dict:
    # one row per class; an unconditional model gets one unlabelled row
    names = sampler.grid_names if sampler.conditional else ["sample"]
    ends = sampler.figure_latent(2, latents.seed_for(work.seed, 0, 0, "grid")).numpy()
    ts = np.linspace(0, 1, work.steps)
    figures = {}
    for name, fn in (("linear", lambda t: (1 - t) * ends[0] + t * ends[1]),
                     ("spherical", lambda t: slerp(ends[0], ends[1], t))):
        z = np.tile(np.stack([fn(t) for t in ts]), (len(names), 1)).astype(np.float32)
        labels = np.repeat(np.arange(len(names), dtype=np.int32) % sampler.num_classes,
                           work.steps)
        images = sampler.generate(z, labels)
        captions = [f"{names[i // work.steps]} {ts[i % work.steps]:.2f}"
                    for i in range(len(images))]
        figures[name] = str(save_grid(out / f"interpolate_{name}.png", images, captions,
                                      columns=work.steps))
    return figures


def arithmetic(sampler, work: GenerateSpec, out: Path) -> dict:
    needs_data = sampler.E is None or work.attribute not in \
        sampler.conditioning.attribute_names
    data = real_data(sampler, work) if needs_data else None
    images, captions, figures = draw_arithmetic(sampler, data, work.attribute, work.samples,
                                                work.rows, work.steps, work.strength, work.seed)
    figures["arithmetic"] = str(save_grid(out / f"arithmetic_{work.attribute}.png", images,
                                          captions, columns=work.steps))
    return figures


def classifier_score(sampler, work: GenerateSpec, out: Path) -> dict:
    if not sampler.conditional:
        raise ValueError(f"classifier_score needs a conditional model "
                         f"({sampler.spec.model.name} is not)")
    data = real_data(sampler, work)  # every real image is read: for sets that fit in memory
    figures = score(sampler, np.asarray(data.images[:]), data.labels, 100 * work.per_class,
                    work.seed)
    log.info("classifier score: trained on generated %.3f, on real %.3f (ratio %.2f)",
             figures["synthetic_trained_accuracy"], figures["real_trained_accuracy"],
             figures["ratio"])
    return figures


def attribute_f1(sampler, work: GenerateSpec, out: Path) -> dict:
    if sampler.E is None:
        raise ValueError(f"attribute_f1 needs a model with attribute heads (aeacgan), not "
                         f"{sampler.spec.model.name}")
    figures = f1_scores(sampler, real_data(sampler, work), work.samples, work.seed)
    log.info("mean per-attribute F1: %s", ", ".join(
        f"{k} {v:.3f}" for k, v in figures["mean_f1"].items()))
    return figures


def samples(sampler, work: GenerateSpec, out: Path) -> dict:
    """``count`` generated images in ``samples.h5``, the face-file layout preprocessing writes
    (RGB uint8), with what each was conditioned on and its latent: any tool reads them."""
    n, cond = work.count, sampler.conditioning
    z, conditions = sampler.random_inputs(n, work.seed)
    labelled = cond.kind == "label"
    path = facefile.write_arrays(
        out / "samples.h5", sampler.draw(z, conditions),
        np.asarray(conditions) if labelled else np.zeros(n, np.int16),
        class_names=cond.class_names if labelled else ["all"],
        attributes=np.asarray(conditions) if cond.kind == "attributes" else None,
        attribute_names=cond.attribute_names if cond.kind == "attributes" else (),
        extra={"latents": np.asarray(z, np.float32)})
    return {"samples": str(path), "count": n}


def quality_metrics(sampler, work: GenerateSpec, out: Path) -> dict:
    """KID and FID (O-Net features, ``gan.quality.metrics``), with ``precision_recall`` also
    precision, recall, density and coverage, and the face rate of ``count`` generated images,
    beside the same for the untrained generator and for real images (``generate.data``; one
    half of them against the other: what "indistinguishable" scores)."""
    data = real_data(sampler, work)
    real = np.asarray(data.images[metrics.real_indices(data.num, work.count, work.seed)])
    sets = {name: s.draw(*s.random_inputs(work.count, work.seed)) for name, s in
            (("generated", sampler), ("untrained", sampler.untrained()))}
    rate = metrics.FaceRate()
    result = {"face_rate": {"real": rate(real), **{n: rate(im) for n, im in sets.items()}},
              "real_images": int(len(real)), "generated_images": work.count}
    k = work.nearest_k if work.precision_recall else None
    for prefix, extract in metrics.extractors(work.inception, "generate.inception").items():
        real_f = extract(real)
        half = len(real_f) // 2
        against = {"real_vs_real": metrics.compare(real_f[:half], real_f[half:], work.seed,
                                                   nearest_k=k),
                   **{name: metrics.compare(extract(images), real_f, work.seed, nearest_k=k)
                      for name, images in sets.items()}}
        result[prefix + "features"] = extract.NAME
        result[prefix + "kid"] = {n: (v["kid"], v["kid_std"]) for n, v in against.items()}
        for figure in metrics.figures(k)[2:]:  # fid, then precision ... coverage
            result[prefix + figure] = {n: v[figure] for n, v in against.items()}
    log_quality(result)
    return result


def log_quality(result: dict) -> None:
    """One line: the O-Net figures of the generator beside the untrained one and real."""
    names = ("generated", "untrained", "real_vs_real")
    log.info("KID x1000 (mean, std): generated %s, untrained %s, real vs real %s; face rate: "
             "generated %.2f, untrained %.2f, real %.2f%s",
             *(tuple(round(1000 * v, 2) for v in result["kid"][k]) for k in names),
             *(result["face_rate"][k] for k in ("generated", "untrained", "real")),
             "" if "recall" not in result else "; recall: generated {:.2f}, untrained {:.2f}, "
             "real vs real {:.2f}".format(*(result["recall"][k] for k in names)))


def export(sampler, work: GenerateSpec, out: Path) -> dict:
    return exporter.export(sampler, out)


TASKS = {"grid": grid, "interpolate": interpolate, "arithmetic": arithmetic,
         "classifier_score": classifier_score, "attribute_f1": attribute_f1, "export": export,
         "samples": samples, "metrics": quality_metrics}


def run(spec: JobSpec) -> int:
    work = spec.work
    out = Path(work.output_dir)
    try:
        sampler = Sampler.load(Path(work.run_dir), work.checkpoint,
                               with_discriminator=work.task == "attribute_f1")
        figures = {"checkpoint": sampler.checkpoint, "task": work.task,
                   "classes": sampler.grid_names, **TASKS[work.task](sampler, work, out)}
    except (NoCheckpoint, ConditioningError, OSError, ValueError) as exc:
        log.error("%s", exc)
        return exitcodes.NOT_RUNNABLE
    atomic_write_json(out / "figures.json", figures)
    log.info("%s figures from %s -> %s", work.task, Path(sampler.checkpoint).name, out)
    return exitcodes.OK
