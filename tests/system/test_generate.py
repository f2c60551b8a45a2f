"""``kind: generate`` from a trained run, through the CLI as a user runs it: every task works
from the run directory alone (the training data moved away), a score without real images says
so, and ``export`` writes a generator plain Keras loads without the project. (The scores that
read real images from ``generate.data`` run on the same kind of copy in the learning tests,
which assert their floors.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs.core import exitcodes
from tests.conftest import QUIET_ENV, ROOT, run_cli, set_args
from tests.system.training import copy_run_without_its_data


def generate(run_dir: Path, out: Path, task: str, *sets: str):
    args = [f"generate.run_dir={run_dir}", f"generate.output_dir={out}",
            f"generate.task={task}", "generate.steps=5", "generate.samples=300", *sets]
    return run_cli("run", str(ROOT / "jobs/examples/generate_grid.yaml"),
                   *set_args(args))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, trained_cgan, trained_aeacgan, digits16):
    """The suite's trained digits cGAN and AE-AC-GAN, each copied with its recorded training
    data gone (as if moved away); the digits file itself is what ``generate.data`` names."""
    tmp = tmp_path_factory.mktemp("gen")
    return {"cgan": copy_run_without_its_data(trained_cgan, tmp / "cgan"),
            "aeacgan": copy_run_without_its_data(trained_aeacgan, tmp / "aeacgan"),
            "moved": digits16, "tmp": tmp}


def test_figures_and_export_need_only_the_run_directory(runs):
    from PIL import Image

    tmp, cgan = runs["tmp"], runs["cgan"]
    before = sorted(p.name for p in cgan.rglob("*"))
    for task in ("grid", "interpolate", "export"):
        proc = generate(cgan, tmp / task, task)
        assert proc.returncode == 0, proc.stderr
    assert Image.open(tmp / "grid" / "grid.png").size == (8 * 96, 10 * (96 + 14))
    for kind in ("linear", "spherical"):
        assert Image.open(tmp / "interpolate" / f"interpolate_{kind}.png").size == (
            5 * 96, 10 * (96 + 14))
    assert sorted(p.name for p in cgan.rglob("*")) == before, "generate wrote into the run"
    # (the aeacgan's arithmetic, judged by its own encoder without any real images, and its
    # attribute F1 from generate.data: test_learning_aeacgan.py, on a copy like these)


def test_arithmetic_reads_generate_data_and_missing_inputs_are_refused(runs):
    tmp = runs["tmp"]
    missing = generate(runs["cgan"], tmp / "x", "classifier_score")
    assert missing.returncode == exitcodes.NOT_RUNNABLE
    assert "generate.data" in missing.stderr and "Traceback" not in missing.stderr
    # the cGAN's arithmetic finds its direction with a classifier of the real images
    proc = generate(runs["cgan"], tmp / "cgan-arithmetic", "arithmetic",
                    f"generate.data={runs['moved']}", "generate.attribute='1'")
    assert proc.returncode == 0 or "no direction to take" in proc.stderr, proc.stderr
    # (classifier_score and attribute_f1 from generate.data, on copies like these: the
    # learning tests of the cGAN and the AE-AC-GAN, which assert their floors on the same)
    nothing = generate(tmp / "no-such-run", tmp / "y", "grid")
    assert nothing.returncode == exitcodes.NOT_RUNNABLE


def test_samples_file_has_the_preprocessing_layout(runs):
    import h5py
    import numpy as np

    from gan.training.data import ImageSet

    out = runs["tmp"] / "samples"
    proc = generate(runs["cgan"], out, "samples", "generate.count=50")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / "samples.h5", "r") as f:
        assert f["images"].shape == (50, 16, 16, 3) and f["images"].dtype == np.uint8
        latent_dim = yaml.safe_load((runs["cgan"] / "train_spec.yaml").read_text())[
            "model"]["latent_dim"]
        assert f["labels"].shape == (50,) and f["latents"].shape == (50, latent_dim)
        assert [str(c) for c in f.attrs["class_names"]] == [str(i) for i in range(10)]
        assert f.attrs["complete"] and f.attrs["format_version"] == 1
    data = ImageSet(out / "samples.h5")  # training (and any tool) reads it as it is
    assert data.num == 50 and len(set(data.labels.tolist())) > 3
    data.close()
    attrs = runs["tmp"] / "samples-aeacgan"
    assert generate(runs["aeacgan"], attrs, "samples", "generate.count=20").returncode == 0
    with h5py.File(attrs / "samples.h5", "r") as f:
        assert f["attributes"].shape == (20, 10)
        assert (np.asarray(f["attributes"]).sum(axis=1) == 1).all()  # digits' one-hot rows


PLAIN_KERAS = """
import json, sys
for name in ("gan", "jobs", "preprocess"):  # the project must not be needed: block it
    sys.modules[name] = None
import keras, numpy as np
g = keras.models.load_model(sys.argv[1])
info = json.load(open(sys.argv[2]))
z = np.random.default_rng(0).normal(size=(3, info["latent"]["dim"])).astype("float32")
labels = np.array([0, 4, 9], dtype="int32")
images = np.asarray(g([z, labels]))
assert images.shape == (3, *info["output"]["shape"]), images.shape
assert images.min() >= -1 and images.max() <= 1
print("ok", images.shape, info["condition"]["class_names"][9])
"""


def test_exported_generator_loads_with_plain_keras_in_a_fresh_process(runs):
    out = runs["tmp"] / "export"
    if not (out / "generator.keras").exists():
        assert generate(runs["cgan"], out, "export").returncode == 0
    env = {k: v for k, v in QUIET_ENV.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", PLAIN_KERAS, str(out / "generator.keras"),
                           str(out / "generator.json")], cwd=out, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("ok (3, 16, 16, 1) 9")
