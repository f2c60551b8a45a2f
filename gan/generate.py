"""The ``generate`` job kind: figures and scores from a trained run's checkpoint.

* ``grid``: ``per_class`` samples of every class (the same latents in every row, so rows differ
  only by the label), the class name stamped on each image.
* ``interpolate``: "vectorizing face to face" — ``steps`` points between two latents, linear
  and spherical, one row per class with the same latents.
* ``arithmetic``: ``z + α·v`` rows along an attribute's latent direction (``gan.arithmetic``).
* ``classifier_score``: a classifier trained on generated images only, tested on held-out real
  images, beside the same classifier trained on real images (``gan.evaluate``).
* ``attribute_f1``: per-attribute F1 of an aeacgan's attribute heads (``gan.evaluate``).

The run directory's ``train_spec.yaml`` rebuilds the model; the data file named there gives the
class names and image shape. Writes PNGs and ``figures.json`` (what was drawn from what, and
every number).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import yaml

from gan import distributed, sampling
from jobs.core.grids import save_grid
from jobs.core import exitcodes
from jobs.core.files import atomic_write_json
from jobs.core.loader import SpecError, parse_spec
from jobs.core.schema import GenerateSpec, JobSpec

log = logging.getLogger(__name__)


def load_generator(run_dir: Path, checkpoint: int | None):
    """(trainer with restored weights, checkpoint path) for a training run directory."""
    from gan.train import Trainer

    saved = yaml.safe_load((run_dir / "train_spec.yaml").read_text())
    spec = parse_spec({"kind": "train", "name": "generate", "train": saved},
                      str(run_dir / "train_spec.yaml"))
    trainer = Trainer(spec.work, distributed.World(0, 1, 0))
    if checkpoint is not None:
        path = str(run_dir / "checkpoints" / f"ckpt-{checkpoint}")
        trainer.ckpt.restore(path).assert_existing_objects_matched()
        return trainer, path
    if trainer.resumed_from is None:
        raise SpecError([f"{run_dir}: no checkpoint to generate from"])
    return trainer, trainer.resumed_from


def slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation: stays on the shell where normal latents live."""
    omega = np.arccos(np.clip(np.dot(a / np.linalg.norm(a), b / np.linalg.norm(b)), -1, 1))
    if omega < 1e-6:
        return (1 - t) * a + t * b
    return (np.sin((1 - t) * omega) * a + np.sin(t * omega) * b) / np.sin(omega)


def grid(trainer, work: GenerateSpec, out: Path) -> dict:
    images = trainer.sample_images(work.per_class, work.seed)
    captions = [trainer.grid_names[i // work.per_class] for i in range(len(images))]
    return {"grid": str(save_grid(out / "grid.png", images, captions, columns=work.per_class))}


def interpolate(trainer, work: GenerateSpec, out: Path) -> dict:
    # one row per class; an unconditional model gets one unlabelled row
    names = trainer.grid_names if trainer.conditional else ["sample"]
    ends = trainer.figure_latent(2, sampling.seed_for(work.seed, 0, 0, "grid")).numpy()
    ts = np.linspace(0, 1, work.steps)
    figures = {}
    for name, fn in (("linear", lambda t: (1 - t) * ends[0] + t * ends[1]),
                     ("spherical", lambda t: slerp(ends[0], ends[1], t))):
        z = np.tile(np.stack([fn(t) for t in ts]), (len(names), 1)).astype(np.float32)
        labels = np.repeat(np.arange(len(names), dtype=np.int32) % trainer.num_classes,
                           work.steps)
        images = trainer.generate(z, labels)
        captions = [f"{names[i // work.steps]} {ts[i % work.steps]:.2f}"
                    for i in range(len(images))]
        figures[name] = str(save_grid(out / f"interpolate_{name}.png", images, captions,
                                      columns=work.steps))
    return figures


def arithmetic(trainer, work: GenerateSpec, out: Path) -> dict:
    from gan.arithmetic import arithmetic as draw

    images, captions, figures = draw(trainer, work.attribute, work.samples, work.rows,
                                     work.steps, work.strength, work.seed)
    figures["arithmetic"] = str(save_grid(out / f"arithmetic_{work.attribute}.png", images,
                                          captions, columns=work.steps))
    return figures


def classifier_score(trainer, work: GenerateSpec, out: Path) -> dict:
    from gan.evaluate import classifier_score as score

    if not trainer.conditional:
        raise ValueError(f"classifier_score needs a conditional model "
                         f"({trainer.spec.model.name} is not)")
    data = trainer.data  # every real image is read: for sets that fit in memory
    figures = score(trainer, np.asarray(data.images[:]), data.labels, 100 * work.per_class,
                    work.seed)
    log.info("classifier score: trained on generated %.3f, on real %.3f (ratio %.2f)",
             figures["synthetic_trained_accuracy"], figures["real_trained_accuracy"],
             figures["ratio"])
    return figures


def attribute_f1(trainer, work: GenerateSpec, out: Path) -> dict:
    from gan.evaluate import attribute_f1 as f1

    if trainer.E is None:
        raise ValueError(f"attribute_f1 needs a model with attribute heads (aeacgan), not "
                         f"{trainer.spec.model.name}")
    figures = f1(trainer, work.samples, work.seed)
    log.info("mean per-attribute F1: %s", ", ".join(
        f"{k} {v:.3f}" for k, v in figures["mean_f1"].items()))
    return figures


TASKS = {"grid": grid, "interpolate": interpolate, "arithmetic": arithmetic,
         "classifier_score": classifier_score, "attribute_f1": attribute_f1}


def run(spec: JobSpec) -> int:
    work = spec.work
    out = Path(work.output_dir)
    try:
        trainer, ckpt = load_generator(Path(work.run_dir), work.checkpoint)
        figures = {"checkpoint": ckpt, "task": work.task, "classes": trainer.grid_names,
                   **TASKS[work.task](trainer, work, out)}
    except (SpecError, OSError, ValueError) as exc:
        log.error("%s", exc)
        return exitcodes.NOT_RUNNABLE
    atomic_write_json(out / "figures.json", figures)
    log.info("%s figures from %s -> %s", work.task, Path(ckpt).name, out)
    return exitcodes.OK
