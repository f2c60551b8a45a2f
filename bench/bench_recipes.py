"""The recipe benchmark: ``train.recipe: modern`` (R3GAN's residual networks, relativistic
loss, R1 + R2) against today's models (the shipped examples as they are, ``classic``), at
equal wall time on this CPU, 3 seeds each, every figure as mean ± spread (half the range).
Each run is an example with ``train.recipe`` added, as a user would add it: the fields the
example sets (its optimizer, the demo's EMA half-life) win over the recipe's.

* faces: the demo's spec (``train_demo_faces.yaml``, 32×32 on the bundled faces): KID ×1000,
  precision, recall and coverage over MTCNN O-Net features, and the face rate, of 500
  samples of G's average (``generate.task: metrics``);
* digits cGAN (``train_cgan_digits.yaml``): conditional accuracy (generated digits the
  real-data judge reads as the digit asked for), the classifier score (a classifier trained
  on generated digits only, tested on real ones) and class coverage (digits drawn right at
  least half the time);
* AE-AC-GAN on digits (``train_aeacgan_digits.yaml``): attribute accuracy (its attributes are
  the digit's one-hot row: generated digits the judge reads as the attribute asked for).

Equal wall time is a step count per recipe, calibrated once on this machine's CPU and
written in ``EPOCHS`` below (a timer would make the table depend on the machine's load):
each modern run gets the epochs that take as long as the classic run's.

    ./run python bench/bench_recipes.py [--quick | --smoke] [--suite NAME ...]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.bench_faces import faces, measure  # noqa: E402
from bench.bench_models import digits_file  # noqa: E402
from bench.table import Table, add_size_flags, by_size  # noqa: E402
from jobs.core import runtime  # noqa: E402

TABLE = Table()
SEEDS = (0, 1, 2)
EXAMPLES = {"faces": "train_demo_faces", "digits cGAN": "train_cgan_digits",
            "digits AE-AC-GAN": "train_aeacgan_digits"}
# Equal wall time: classic trains its example's epochs, modern the epochs that take as long.
# Seconds per epoch measured once, each alone on a quiet 2-core AVX-512 EPYC (checkpoints on,
# quality measurements off): faces 0.58 classic / 2.07 modern; digits cGAN 2.73 / 25.1;
# AE-AC-GAN 2.90 / 18.1 (scaling.py's FLOPs per image: 3.2x, 7.7x, 6x).
EPOCHS = {"faces": {"classic": 100, "modern": 28},
          "digits cGAN": {"classic": 80, "modern": 9},
          "digits AE-AC-GAN": {"classic": 40, "modern": 6}}
# the faces also at equal steps: what the modern networks reach per step, whatever its cost
EQUAL_STEPS = {"faces"}
# a smoke run proves the recipe's path on one suite: the faces' and the digits' judges have
# smoke runs of their own (bench_faces.py, bench_models.py)
SMOKE_SUITES = ["digits cGAN"]


def runs(suite: str, smoke: bool = False) -> list[tuple[str, str, int]]:
    """(label, recipe, epochs) of a suite; the last is the baseline the others are held to
    (a smoke run leaves out the equal-steps run: the same code as the equal-time one)."""
    out = [("modern, equal time", "modern", EPOCHS[suite]["modern"])]
    if suite in EQUAL_STEPS and not smoke:
        out.append(("modern, equal steps", "modern", EPOCHS[suite]["classic"]))
    return out + [("classic", "classic", EPOCHS[suite]["classic"])]


def train(suite: str, recipe: str, seed: int, data: Path, folder: Path,
          epochs: int) -> tuple[object, float]:
    """One run of a suite's example under a recipe and seed; (trainer, seconds)."""
    from gan.parallel import distributed
    from gan.training.loop import Trainer
    from jobs.core.loader import load_spec
    from jobs.core.signals import StopSignals

    run_dir = folder / f"{suite.replace(' ', '-')}-{recipe}-{epochs}-{seed}"
    sets = [("train.data", str(data)), ("train.run_dir", str(run_dir)),
            ("train.recipe", recipe), ("train.seed", seed),
            ("train.epochs", epochs),
            ("train.log_every_steps", 10**6), ("train.metrics.every_epochs", 0),
            ("train.checkpoint.keep_best", "none")]
    spec = load_spec(ROOT / "jobs/examples" / f"{EXAMPLES[suite]}.yaml", sets)
    t = time.perf_counter()
    trainer = Trainer(spec.work, distributed.World(0, 1, 0))
    assert trainer.run(StopSignals()) == 0, f"{suite} {recipe} seed {seed} failed"
    return trainer, time.perf_counter() - t


def face_figures(trainer, data: Path, count: int) -> dict[str, float]:
    m = measure(trainer.run_dir, data, count, precision_recall=True)
    return {"KID x1000": 1000 * m["kid"]["generated"][0],
            **{name: 100 * m[name]["generated"] for name in ("precision", "recall",
                                                              "coverage")},
            "face rate": 100 * m["face_rate"]["generated"]}


def digit_figures(trainer, count: int, with_score: bool) -> dict[str, float]:
    from gan.quality.digits import DigitJudge
    from gan.quality.evaluate import classifier_score, generate

    judge = DigitJudge(size=trainer.spec.model.image_size)
    images, labels = generate(trainer.sampler, count // 10)
    right = judge.predict(images) == labels
    per_class = np.array([right[labels == c].mean() for c in range(10)])
    name = "conditional accuracy" if with_score else "attribute accuracy"
    out = {name: 100 * float(right.mean())}
    if with_score:
        data = trainer.data
        cas = classifier_score(trainer.sampler, np.asarray(data.images[:]), data.labels,
                               count // 10)
        out["classifier score"] = 100 * cas["synthetic_trained_accuracy"]
        out["class coverage"] = float((per_class >= 0.5).sum())
    return out


LOWER_IS_BETTER = {"KID x1000"}


def run_suite(suite: str, data: Path, folder: Path, seeds, shrink: Callable[[int], int],
              figures: Callable, smoke: bool) -> None:
    """Every run and seed of one suite (``shrink``: the epochs a smaller run trains), then
    per figure one row for each run against the classic one."""
    results: dict[str, list[dict]] = {}
    secs: dict[str, list[float]] = {}
    for label, recipe, epochs in runs(suite, smoke):
        for seed in seeds:
            trainer, took = train(suite, recipe, seed, data, folder, shrink(epochs))
            results.setdefault(label, []).append(figures(trainer))
            secs.setdefault(label, []).append(took)
            print(f"{suite} {label} seed {seed}: {took:.0f} s {results[label][-1]}",
                  flush=True)
    *labels, baseline = results
    for name in results[baseline][0]:
        base = _mean_spread([r[name] for r in results[baseline]])
        for label in labels:
            value = _mean_spread([r[name] for r in results[label]])
            TABLE.add(f"{suite}: {name}, {label} vs classic", value[0], base[0], "", ".1f",
                      name not in LOWER_IS_BETTER, (value[1], base[1]))
    for label in labels:
        (m, m_s), (c, c_s) = _mean_spread(secs[label]), _mean_spread(secs[baseline])
        TABLE.add(f"{suite}: training seconds, {label} vs classic", m, c, "s", ".0f", False,
                  (m_s, c_s))


def _mean_spread(values: list[float]) -> tuple[float, float]:
    """Mean and half the range: with 3 seeds, what a reader can hold the ratio against."""
    return float(np.mean(values)), (max(values) - min(values)) / 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_flags(parser, "1 seed, a quarter of the epochs")
    parser.add_argument("--suite", action="append", choices=list(EXAMPLES),
                        help="only this suite (repeat for several; default: all)")
    args = parser.parse_args()
    runtime.configure()
    if args.smoke:  # as bench_models.py: the judges' small matrices on a second OpenBLAS
        threadpool_limits(1, user_api="blas")  # thread only wait, up to 20x slower when busy
    seeds = by_size(args, SEEDS, SEEDS[:1], SEEDS[:1])
    # the calibrated epochs; a quarter of them; one epoch for a smoke run
    shrink = by_size(args, lambda n: n, lambda n: max(1, n // 4), lambda n: 1)
    faces_count, digits_count, digits = by_size(args, (500, 1000, None), (200, 500, None),
                                                (40, 100, 256))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        suites = args.suite or (SMOKE_SUITES if args.smoke else list(EXAMPLES))
        face_data = faces(folder, by_size(args, None, None, 32)) if "faces" in suites else None
        digit_data = digits_file(folder, 16, digits)  # both digits examples are 16x16
        judges = {"faces": lambda t: face_figures(t, face_data, faces_count),
                  "digits cGAN": lambda t: digit_figures(t, digits_count, True),
                  "digits AE-AC-GAN": lambda t: digit_figures(t, digits_count, False)}
        for suite, judge in judges.items():
            if suite not in suites:
                continue
            run_suite(suite, face_data if suite == "faces" else digit_data, folder, seeds,
                      shrink, judge, args.smoke)
    TABLE.print()


if __name__ == "__main__":
    main()
