"""Checkpoint choice: the newest checkpoint that restores wins; a damaged newest one is skipped
with a warning naming it, and the run resumes from the one before; a run made for another
model is refused; a generator loads from the run directory alone."""
from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from gan.models.sampler import Sampler
from gan.parallel import distributed
from gan.quality.digits import write_digits
from gan.training.checkpoint import SpecMismatch
from gan.training.loop import Trainer
from jobs.core.loader import load_spec, parse_set_args
from jobs.core.signals import StopSignals
from tests.conftest import ROOT

SMALL = ["train.batch_size=64", "train.model.latent_dim=8", "train.model.embedding_dim=4",
         "train.model.generator_filters=[8, 8]", "train.model.discriminator_filters=[8, 8]",
         "train.log_every_steps=1000", "train.ema.enabled=false"]


def trainer(tmp_path, *sets: str) -> Trainer:
    data = tmp_path / "digits.h5"
    if not data.exists():
        write_digits(data)
    spec = load_spec(ROOT / "jobs/examples/train_cgan_digits.yaml", parse_set_args(
        [f"train.data={data}", f"train.run_dir={tmp_path / 'run'}", *SMALL, *sets]))
    return Trainer(spec.work, distributed.World(0, 1, 0))


def weights(model) -> list[np.ndarray]:
    return [v.numpy().copy() for v in model.weights]


@pytest.fixture(scope="module")
def trained_two_epochs(tmp_path_factory):
    """One 2-epoch run for the whole file: each test damages or refuses its own copy."""
    folder = tmp_path_factory.mktemp("two_epochs")
    assert trainer(folder, "train.epochs=2").run(StopSignals()) == 0
    return folder


@pytest.fixture
def two_epochs(trained_two_epochs, tmp_path):
    """A copy of the 2-epoch run (data file and run directory) in this test's folder:
    ``trainer(copy)`` points the spec at the copy's files, so a test changes only its own."""
    copy = tmp_path / "copy"
    shutil.copytree(trained_two_epochs, copy)
    return copy


def overwrite(path, data: bytes) -> None:
    path.write_bytes(data)


def flip_middle(path) -> None:
    """Invert 16 bytes in the middle of the file: same size, same names, wrong contents."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(b ^ 0xFF for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [
    ("ckpt-56.data-*", lambda p: overwrite(p, b"\0" * 64)),  # truncated and overwritten
    ("ckpt-56.data-*", flip_middle),  # bytes flipped in the weights: their CRC32C fails
    ("ckpt-56.index", flip_middle),  # the tensor index itself damaged
    ("ckpt-56.index", lambda p: overwrite(p, p.read_bytes()[:len(p.read_bytes()) // 3])),
], ids=["data-truncated", "data-flipped", "index-flipped", "index-truncated"])
def test_newest_checkpoint_restores_and_damaged_newest_falls_back(two_epochs, caplog, damage):
    ckpts = two_epochs / "run" / "checkpoints"
    resumed = trainer(two_epochs, "train.epochs=2")
    assert resumed.resumed_from.endswith("ckpt-56") and int(resumed.state.epoch) == 2
    at_epoch_2 = weights(resumed.G)
    pattern, damage_file = damage
    for path in ckpts.glob(pattern):
        damage_file(path)
    with caplog.at_level(logging.WARNING):
        fallback = trainer(two_epochs, "train.epochs=2")
    assert fallback.resumed_from.endswith("ckpt-28") and int(fallback.state.epoch) == 1
    assert "ckpt-56 does not restore" in caplog.text  # named, with the reason after it
    assert not all(np.array_equal(a, b) for a, b in zip(weights(fallback.G), at_epoch_2))


def test_another_model_in_the_same_run_dir_is_refused(two_epochs):
    with pytest.raises(SpecMismatch, match="another train.model"):
        trainer(two_epochs, "train.model.latent_dim=9")


def test_sampler_loads_the_generator_alone_from_the_run_directory(two_epochs):
    live = trainer(two_epochs, "train.epochs=2")
    (two_epochs / "digits.h5").unlink()  # no data file, no optimizers, no guard
    sampler = Sampler.load(two_epochs / "run")
    assert sampler.checkpoint.endswith("ckpt-56") and sampler.D is None
    for a, b in zip(weights(sampler.G), weights(live.G)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(sampler.sample_images(2), live.sampler.sample_images(2))
    assert sampler.grid_names == [str(i) for i in range(10)]
