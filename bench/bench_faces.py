"""The face benchmark: the demo's model (``jobs/examples/train_demo_faces.yaml``, a 32×32
DCGAN) trained on the bundled faces four times in one run, the same steps each — plain, with
the generator average (``train.ema``), with the average plus DiffAugment (``train.augment``),
and with the average plus ADA (``augment.adaptive``: p from 0) — then measured like
``generate.task: metrics`` does: KID over MTCNN O-Net features and the face rate of 500
samples, beside the untrained generator and real faces.

    ./run python bench/bench_faces.py [--quick | --smoke]

The faces come from ``runs/demo/faces32/faces.h5`` (``./run demo`` makes it); if it is not
there, the bundled photo set is built and preprocessed first (about a minute; ``--smoke``
preprocesses only a few of its face photos).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.bench_preprocess import face_photo_folder  # noqa: E402
from bench.table import Table, add_size_flags, by_size  # noqa: E402
from jobs.core import runtime  # noqa: E402

TABLE = Table()
SPEC = ROOT / "jobs/examples/train_demo_faces.yaml"
FACES = ROOT / "runs/demo/faces32/faces.h5"
VARIANTS = {"plain": [("train.ema.enabled", False)],
            "generator average": [],
            "average + DiffAugment": [("train.augment.policy",
                                       ["color", "translation", "cutout"])],
            "average + ADA": [("train.augment.policy", ["color", "translation", "cutout"]),
                              ("train.augment.adaptive", True),
                              ("train.augment.probability", 0.0),
                              ("train.augment.advanced.speed_kimg", 20.0)]}


def faces(folder: Path, photos: int | None = None) -> Path:
    """The demo's 32×32 faces: the demo's file, or made the way the demo makes it (from only
    ``photos`` of the bundled face photos if given)."""
    if FACES.exists():
        return FACES
    from jobs.core.loader import load_spec, parse_set_args
    from jobs.kinds import run
    from preprocess.fixture import build

    celeba = build(folder / "celeba")
    source = celeba if photos is None else face_photo_folder(folder, celeba, photos)
    spec = load_spec(ROOT / "jobs/examples/preprocess_faces.yaml", parse_set_args(
        [f"preprocess.input_dir={source}", f"preprocess.output_dir={folder / 'faces'}",
         "preprocess.faces.image_size=32", "preprocess.classes=[]"]))
    assert run(spec) == 0
    return folder / "faces" / "faces.h5"


def train(name: str, data: Path, folder: Path, epochs: int | None) -> tuple[Path, float]:
    from gan.parallel import distributed
    from gan.training.loop import Trainer
    from jobs.core.loader import load_spec
    from jobs.core.signals import StopSignals

    run_dir = folder / name.replace(" ", "").replace("+", "_")
    sets = [("train.data", str(data)), ("train.run_dir", str(run_dir)),
            ("train.log_every_steps", 10**6), ("train.metrics.every_epochs", 0),
            ("train.checkpoint.keep_best", "none"), *VARIANTS[name]]
    spec = load_spec(SPEC, sets + ([("train.epochs", epochs)] if epochs else []))
    t = time.perf_counter()
    assert Trainer(spec.work, distributed.World(0, 1, 0)).run(StopSignals()) == 0
    return run_dir, time.perf_counter() - t


def measure(run_dir: Path, data: Path, count: int, precision_recall: bool = False) -> dict:
    from gan.generate import quality_metrics
    from gan.models.sampler import Sampler
    from jobs.core.loader import parse_spec

    work = parse_spec({"kind": "generate", "name": "bench", "generate": {
        "run_dir": str(run_dir), "output_dir": str(run_dir / "metrics"), "task": "metrics",
        "count": count, "data": str(data), "precision_recall": precision_recall}}, "bench").work
    return quality_metrics(Sampler.load(run_dir), work, run_dir / "metrics")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_flags(parser, "2 epochs each")
    args = parser.parse_args()
    runtime.configure()
    # epochs, samples measured, photos preprocessed if the demo's faces are not there
    epochs, count, photos = by_size(args, (None, 500, None), (2, 60, None), (1, 16, 32))
    # a smoke run: the variant with the real-vs-real figure, and the one with every option
    variants = by_size(args, list(VARIANTS), list(VARIANTS), ["plain", "average + ADA"])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = faces(folder, photos)
        for name in variants:
            run_dir, secs = train(name, data, folder, epochs)
            m = measure(run_dir, data, count)
            kid, rate = m["kid"], m["face_rate"]
            real = f"; real vs real {1000 * kid['real_vs_real'][0]:.2f}" if name == "plain" else ""
            TABLE.add(f"{name} ({secs:.0f} s): KID x1000 vs the untrained G's{real}",
                      1000 * kid["generated"][0], 1000 * kid["untrained"][0], "", ".2f",
                      higher_is_better=False)
            TABLE.add(f"{name}: face rate of samples vs of real faces",
                      100 * rate["generated"], 100 * rate["real"], "%")
    TABLE.print()


if __name__ == "__main__":
    main()
