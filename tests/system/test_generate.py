"""``kind: generate`` from a trained run, through the CLI as a user runs it."""
from __future__ import annotations

import pytest

from jobs.core import exitcodes
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.slow


def test_generate_grid_and_interpolation_from_a_run(tmp_path):
    from PIL import Image

    from gan.digits import write_digits

    data = write_digits(tmp_path / "digits.h5")
    run_dir = tmp_path / "run"
    train = run_cli("run", str(ROOT / "jobs/examples/train_cgan_digits.yaml"), "--set",
                    f"train.data={data}", "--set", f"train.run_dir={run_dir}", "--set",
                    "train.epochs=1")
    assert train.returncode == 0, train.stderr
    for task in ("grid", "interpolate"):
        proc = run_cli("run", str(ROOT / "jobs/examples/generate_grid.yaml"), "--set",
                       f"generate.run_dir={run_dir}", "--set",
                       f"generate.output_dir={tmp_path / task}", "--set",
                       f"generate.task={task}", "--set", "generate.steps=6")
        assert proc.returncode == 0, proc.stderr
    grid = Image.open(tmp_path / "grid" / "grid.png")
    assert grid.size == (8 * 96, 10 * (96 + 14))  # 8 per class x 10 digits, 16px shown at 6x
    for kind in ("linear", "spherical"):
        assert Image.open(tmp_path / "interpolate" / f"interpolate_{kind}.png").size == (
            6 * 96, 10 * (96 + 14))
    missing = run_cli("run", str(ROOT / "jobs/examples/generate_grid.yaml"), "--set",
                      f"generate.run_dir={tmp_path}", "--set",
                      f"generate.output_dir={tmp_path / 'x'}")
    assert missing.returncode == exitcodes.NOT_RUNNABLE
