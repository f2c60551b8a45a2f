"""The bundled face photos through the preprocess job into faces.h5, then each face example
model at its real size (64x64): a few steps, its labelled grid and its figures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import QUIET_ENV, ROOT
from tests.system.training import figures, run_train


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """The bundled photo set through the preprocess job: a merged faces.h5 (64x64, with the
    40 attributes and the example's four classes)."""
    from preprocess.fixture import build

    tmp = tmp_path_factory.mktemp("faces")
    celeba = build(tmp / "celeba", lfw_faces=40, lfw_negatives=2)
    pre = subprocess.run([sys.executable, "-m", "jobs", "run",
                          str(ROOT / "jobs/examples/preprocess_faces.yaml"), "--set",
                          f"preprocess.input_dir={celeba}", "--set",
                          f"preprocess.output_dir={tmp / 'faces'}"], env=QUIET_ENV, cwd=ROOT,
                         capture_output=True, text=True, timeout=900)
    assert pre.returncode == 0, pre.stderr
    return tmp / "faces" / "faces.h5"


def test_face_path_end_to_end(faces, tmp_path):
    """Photos -> preprocess shards -> merged faces.h5 -> a few epochs -> labelled grid."""
    from PIL import Image

    run_dir = tmp_path / "cgan"
    proc = run_train(str(ROOT / "jobs/examples/train_cgan_faces.yaml"),
                     "--set", f"train.data={faces}",
                     "--set", f"train.run_dir={run_dir}", "--set", "train.epochs=2",
                     "--set", "train.batch_size=8", "--set", "train.log_every_steps=2")
    assert proc.returncode == 0, proc.stderr
    grid = Image.open(run_dir / "samples" / "epoch_0002.png")
    tile = 128 + 14  # 64 px faces shown at 2x, plus the caption strip
    assert grid.size == (8 * 128, 4 * tile)  # 8 samples x 4 classes
    assert "epoch 2/2 it 2/" in proc.stderr
    # the synthetic-data classifier with the fixture's labels (runs; 2 epochs learn nothing)
    score = figures(run_dir, tmp_path / "cas", "generate_grid", "generate.task=classifier_score",
                    "generate.per_class=1")
    assert score["synthetic_images"] == 400 and score["real_test_images"] > 10


@pytest.mark.parametrize("example", ["train_dcgan_faces", "train_aeacgan_faces"])
def test_face_examples_train_an_epoch_and_draw_figures(example, faces, tmp_path):
    """Each example model at its real size (64x64) on the face fixture, then its figures."""
    run_dir = tmp_path / "run"
    proc = run_train(str(ROOT / f"jobs/examples/{example}.yaml"), "--set", f"train.data={faces}",
                     "--set", f"train.run_dir={run_dir}", "--set", "train.epochs=1",
                     "--set", "train.batch_size=8")
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "samples" / "epoch_0001.png").exists()
    out = tmp_path / "figures"
    task = "attribute_f1" if "aeacgan" in example else "interpolate"
    proc = run_train(str(ROOT / "jobs/examples/generate_grid.yaml"),
                     "--set", f"generate.run_dir={run_dir}", "--set", f"generate.output_dir={out}",
                     "--set", f"generate.task={task}", "--set", "generate.samples=64")
    assert proc.returncode == 0, proc.stderr
    figures = json.loads((out / "figures.json").read_text())
    if task == "attribute_f1":
        assert len(figures["attributes"]) == 40 and "Smiling" in figures["attributes"]
    else:
        assert Path(figures["spherical"]).exists()

