"""What the system tests share: the data sets and the example models, each made at most once
per suite run, whichever pytest-xdist worker asks first, and read by every test that checks
it. Training is the suite's cost, so a trained model is checked many times instead of being
trained again per property. Tests that kill, signal or resume a run keep their own short runs.
"""
from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ROOT, set_args
from tests.system.training import run_train


def shared_root(tmp_path_factory) -> Path:
    """The folder every xdist worker of this run sees (the workers' base folder's parent);
    without xdist, the session's own base folder."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared"
    root.mkdir(exist_ok=True)
    return root


def made_once(tmp_path_factory, name: str, make: Callable[[Path], None]) -> Path:
    """``root/name``, made by ``make(path)`` in the first worker that asks; the others wait on
    a file lock and reuse it. A failed make is recorded, so the others fail at once with its
    message instead of training again."""
    root = shared_root(tmp_path_factory)
    target, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"making the shared {name} failed in another worker:\n"
                        f"{failed.read_text()[-3000:]}")
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            try:
                make(target)
            except BaseException as error:  # an assertion, a timeout: the others must know
                failed.write_text(str(error))
                raise
            done.touch()
    return target


def train_example_into(example: str, data: Path, run_dir: Path, epochs: int,
                       *sets: str) -> None:
    """An example spec for a fixed number of epochs, with ``sets`` applied (the floors asserted
    after it were measured with margin at that point: bench/bench_models.py has the full runs
    of the examples as they are)."""
    proc = run_train(str(ROOT / f"jobs/examples/{example}.yaml"), *set_args([
        f"train.data={data}", f"train.run_dir={run_dir}", "train.log_every_steps=1000",
        f"train.epochs={epochs}", *sets]), timeout=1800)
    assert proc.returncode == 0, f"{example}: {proc.stderr[-3000:]}"


@pytest.fixture(scope="session")
def digits16(tmp_path_factory) -> Path:
    """scikit-learn's digits at 16x16 in the preprocessing layout (1,797 images)."""
    from gan.quality.digits import write_digits

    return made_once(tmp_path_factory, "digits16", lambda d: write_digits(
        d / "digits.h5")) / "digits.h5"


# the first 640 digits: 10 steps an epoch at a global batch of 64
SMALL_DIGITS = 640


@pytest.fixture(scope="session")
def digits_small(tmp_path_factory) -> Path:
    """The first 640 digits at 16x16: for the runs that check mechanics (exact resume, ranks in
    sync), not learning."""
    from gan.quality.digits import write_digits

    return made_once(tmp_path_factory, "digits_small", lambda d: write_digits(
        d / "digits.h5", count=SMALL_DIGITS)) / "digits.h5"


# the first 256 digits: 4 steps an epoch at a global batch of 64, for the model registry's
# runs (tests/system/test_train_models.py: 9 sets, 4 trainings each; float16 is emulated on
# a CPU, about 40x a float32 step)
TINY_DIGITS = 256


@pytest.fixture(scope="session")
def digits_tiny(tmp_path_factory) -> Path:
    from gan.quality.digits import write_digits

    return made_once(tmp_path_factory, "digits_tiny", lambda d: write_digits(
        d / "digits.h5", count=TINY_DIGITS)) / "digits.h5"


@pytest.fixture(scope="session")
def digits32(tmp_path_factory) -> Path:
    """The same digits at 32x32, for the DCGAN example."""
    from gan.quality.digits import write_digits

    return made_once(tmp_path_factory, "digits32", lambda d: write_digits(
        d / "digits32.h5", 32)) / "digits32.h5"


# The learning runs: each example at half its width (a quarter of the FLOPs), for the epochs
# its floors were measured at on an AVX2-only CPU with seeds 0 and 7 (the second numeric
# path; TF_ENABLE_ONEDNN_OPTS=0 gave the cGAN's figures to the last digit). The examples as
# they are (twice the width, 3-4x the time an epoch) are bench/bench_models.py's, whose
# figures docs/benchmarks.md shows. The floors sit below the worst seen:
# - cGAN, also twice its learning rate: conditional accuracy chance until epoch 16, then at
#   20/24/28/32/36/40 54/80/92/97/97/99% (seed 0) and 46/77/83/93/95/96% (seed 7); floor 90%.
# - AE-AC-GAN: at 30 epochs accuracy 99.6/98.1%, but its encoder's F1 on real digits 0.77/0.81
#   and the arithmetic +0.15/+0.43; at 40 accuracy 99.9/100%, F1 (D real, E real, D
#   generated) 0.90/0.89, 0.86/0.88, 1.00/1.00, the "1" share 11% -> 96/92% along its
#   direction (floors: 90%, 0.8, +30 points).
# - DCGAN: at epochs 4, 6, 8, 10 and 12, no guard rollback, all 10 classes at every one, the
#   largest 15.0-24.3% (18.6/16.7% at 8), judge confidence 0.84-0.87, the "1" share 2/1% ->
#   92/91% along its direction at 8 (floors: 25%, 0.7, +30 points).
LEARNING_RUNS = {
    "train_cgan_digits": (40, ("train.model.generator_filters=[64, 64]",
                               "train.model.discriminator_filters=[64, 64]",
                               "train.optimizer.learning_rate=4.0e-4")),
    "train_aeacgan_digits": (40, ("train.model.generator_filters=[64, 32]",
                                  "train.model.discriminator_filters=[32, 64]")),
    "train_dcgan_digits": (8, ("train.model.generator_filters=[64, 32, 16]",
                               "train.model.discriminator_filters=[32, 64, 128]")),
}


def trained_once(tmp_path_factory, example: str, data: Path) -> Path:
    """The run directory of ``example`` trained as LEARNING_RUNS says, once per suite run."""
    epochs, sets = LEARNING_RUNS[example]
    return made_once(tmp_path_factory, example, lambda d: train_example_into(
        example, data, d, epochs, *sets))


@pytest.fixture(scope="session")
def trained_cgan(tmp_path_factory, digits16) -> Path:
    """The digits cGAN, trained once."""
    return trained_once(tmp_path_factory, "train_cgan_digits", digits16)


@pytest.fixture(scope="session")
def trained_aeacgan(tmp_path_factory, digits16) -> Path:
    """The digits AE-AC-GAN, trained once."""
    return trained_once(tmp_path_factory, "train_aeacgan_digits", digits16)


@pytest.fixture(scope="session")
def trained_dcgan(tmp_path_factory, digits32) -> Path:
    """The 32x32 digits DCGAN, trained once."""
    return trained_once(tmp_path_factory, "train_dcgan_digits", digits32)
