"""The model benchmark: every model of the registry trained on scikit-learn's digits through
its example spec, then judged by classifiers trained on *real* digits. One table, every figure
beside a baseline measured in the same run:

* cgan, aeacgan: conditional accuracy (generated digits classified as the digit they were
  asked for) beside the judge's accuracy on held-out real digits; the classification accuracy
  score (a classifier trained on generated digits only vs on real ones, tested on real ones).
* aeacgan: mean per-attribute F1 of D's attribute head on generated vs on real digits.
* dcgan (unconditional, 32×32): the largest share of one class among its samples (mode
  collapse check: ≤ 25%, uniform is 10%), classes found, judge confidence vs on real digits.
* attribute arithmetic: share of samples judged "1" after z + 2·v vs at z.
* checkpoint save time vs one epoch.

    ./run python bench/bench_models.py [--quick | --smoke]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.table import Table, add_size_flags, by_size  # noqa: E402
from jobs.core import runtime  # noqa: E402

TABLE = Table()
EXAMPLES = {"cgan": "train_cgan_digits", "aeacgan": "train_aeacgan_digits",
            "dcgan": "train_dcgan_digits"}


class Sizes(NamedTuple):
    """How long each model trains (None: its example's epochs), on how many digits (None: all
    1,797), and how many images each figure generates (the classifier score: per class)."""
    epochs: int | None
    digits: int | None
    samples: int


def digits_file(folder: Path, size: int, count: int | None) -> Path:
    """scikit-learn's digits at ``size`` px, written once per run: all of them, or the first
    ``count`` (a smoke run trains on a few batches; DigitJudge still learns from all)."""
    from gan.quality.digits import write_digits
    from jobs.core import facefile

    data = folder / f"digits{size}.h5"
    if not data.exists():
        write_digits(data, size)
    if count is None:
        return data
    first = folder / f"digits{size}-first{count}.h5"
    if not first.exists():
        with facefile.open_h5(data) as f:
            facefile.write_arrays(
                first, f[facefile.IMAGES][:count], f[facefile.LABELS][:count],
                class_names=facefile.names(f, facefile.CLASS_NAMES),
                attributes=f[facefile.ATTRIBUTES][:count],
                attribute_names=facefile.names(f, facefile.ATTRIBUTE_NAMES))
    return first


def train(model: str, folder: Path, sizes: Sizes):
    """Train one example to the end; (trainer holding the final weights, seconds, epochs)."""
    from gan.parallel import distributed
    from gan.training.loop import Trainer
    from jobs.core.loader import load_spec
    from jobs.core.signals import StopSignals

    example = ROOT / "jobs/examples" / f"{EXAMPLES[model]}.yaml"
    spec = load_spec(example)
    data = digits_file(folder, spec.work.model.image_size, sizes.digits)
    sets = [("train.data", str(data)), ("train.run_dir", str(folder / model)),
            ("train.log_every_steps", 10**6)] + \
        ([("train.epochs", sizes.epochs)] if sizes.epochs else [])
    spec = load_spec(example, sets)
    t = time.perf_counter()
    trainer = Trainer(spec.work, distributed.World(0, 1, 0))
    assert trainer.run(StopSignals()) == 0
    return trainer, time.perf_counter() - t, spec.work.epochs


def last_epoch_secs(run_dir: Path) -> float:
    """The last epoch's training time, from metrics.csv (no startup, tracing or figures)."""
    from gan.training.outputs import read_metrics

    secs = [float(r["secs"]) for r in read_metrics(run_dir, "epoch")]
    return secs[-1] - secs[-2]


def always_present_f1(attributes: np.ndarray) -> float:
    """The mean F1 of the trivial judge that says every attribute is there: 2p / (1 + p) for
    an attribute present in a share p of the images (the baseline of the F1 rows: never 0)."""
    p = attributes.mean(axis=0)
    p = p[p > 0]
    return float(np.mean(2 * p / (1 + p)))


def conditional_rows(model: str, trainer, judge, label: str, samples: int) -> None:
    from gan.quality.evaluate import classifier_score, conditional_accuracy

    acc = conditional_accuracy(trainer.sampler, judge, samples // 10)
    TABLE.add(f"{label}: conditional accuracy vs the judge's on real digits", 100 * acc,
              100 * judge.real_accuracy, "%")
    data = trainer.data
    cas = classifier_score(trainer.sampler, np.asarray(data.images[:]), data.labels, samples)
    TABLE.add(f"{model}: classifier trained on generated vs on real digits (real test set)",
              100 * cas["synthetic_trained_accuracy"], 100 * cas["real_trained_accuracy"], "%")


def arithmetic_row(model: str, trainer, attribute: str, samples: int) -> None:
    from gan.quality.arithmetic import arithmetic

    try:
        # alphas -2, -1, 0, 1, 2
        _, _, fig = arithmetic(trainer.sampler, trainer.data, attribute, samples, 1, 5, 2.0)
    except ValueError as exc:  # an undertrained generator (--quick) may draw no "1" at all
        print(f"{model} arithmetic: {exc}")
        return
    over = "latent and attributes" if "direction_norm_attributes" in fig else "the latent"
    TABLE.add(f"{model}: share judged '{attribute}' at z + 2v vs at z (v over {over}; judge: "
              f"{fig['judge']})", 100 * fig["share_with_attribute"][-1],
              100 * fig["share_with_attribute"][2], "%")
    if "share_with_attribute_latent_only" in fig:
        only = fig["share_with_attribute_latent_only"]
        TABLE.add(f"{model}: the same along the latent part of v only", 100 * only[-1],
                  100 * only[2], "%")


def bench_conditional(folder: Path, sizes: Sizes) -> None:
    """The cgan's and aeacgan's rows, and the checkpoint row (on the trained cgan)."""
    from gan.quality.digits import DigitJudge
    from gan.quality.evaluate import attribute_f1

    samples = sizes.samples
    trained = {}
    for model in ("cgan", "aeacgan"):
        trainer, secs, n = train(model, folder, sizes)
        judge = DigitJudge(size=trainer.spec.model.image_size)
        conditional_rows(model, trainer, judge, f"{model} digits ({n} epochs, {secs:.0f} s)",
                         samples)
        trained[model] = trainer
    cgan = trained["cgan"]
    t = time.perf_counter()
    cgan.checkpoints.manager.save(checkpoint_number=10**6)
    TABLE.add("checkpoint save time vs one epoch (cgan digits)", time.perf_counter() - t,
              last_epoch_secs(cgan.run_dir), "s", ".3f", higher_is_better=False)
    aeacgan = trained["aeacgan"]
    f1 = attribute_f1(aeacgan.sampler, aeacgan.data, samples)["mean_f1"]
    chance = always_present_f1(aeacgan.data.attributes)
    TABLE.add("aeacgan: D's attribute head, mean F1 on generated digits vs always "
              "answering 'present'", f1["d_generated"], chance, "", ".3f")
    TABLE.add("aeacgan: the same head on its real training digits vs always 'present'",
              f1["d_real"], chance, "", ".3f")
    arithmetic_row("aeacgan", aeacgan, "digit_1", samples)


def bench_unconditional(folder: Path, sizes: Sizes) -> None:
    """The dcgan's rows: mode collapse, and whether its samples look like digits at all."""
    from gan.quality.digits import DigitJudge
    from gan.quality.evaluate import generate

    trainer, secs, n = train("dcgan", folder, sizes)
    judge = DigitJudge(size=trainer.spec.model.image_size)
    images, _ = generate(trainer.sampler, sizes.samples // 10)  # the labels are ignored
    shares = judge.class_shares(images)
    TABLE.add(f"dcgan 32x32 digits ({n} epochs, {secs:.0f} s): largest class share of "
              f"{len(images):,} samples vs uniform", 100 * shares.max(), 10.0, "%",
              higher_is_better=False)
    TABLE.add("dcgan: classes the judge finds among the samples vs all",
              int((shares > 0).sum()), 10, "", ".0f")
    TABLE.add("dcgan: judge confidence on samples vs on real digits",
              judge.confidence(images), judge.real_confidence, "", ".3f")
    arithmetic_row("dcgan", trainer, "1", sizes.samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_flags(parser, "2 epochs each")
    args = parser.parse_args()
    runtime.configure()
    # two epochs at least: the checkpoint row times the last epoch
    sizes = by_size(args, Sizes(None, None, 1000), Sizes(2, None, 1000), Sizes(2, 128, 100))
    if args.smoke:  # the judges' small matrices: a second OpenBLAS thread only waits, and
        threadpool_limits(1, user_api="blas")  # up to 20x slower on a busy machine
    with tempfile.TemporaryDirectory() as tmp:
        bench_conditional(Path(tmp), sizes)
        bench_unconditional(Path(tmp), sizes)
    TABLE.print()


if __name__ == "__main__":
    main()
