"""Python 3.12, the other supported version (pyproject.toml's requires-python): ``./run
setup`` with ``FACEGAN_PYTHON`` pointing at it builds a venv of that Python and Horovod for
it (its own wheel-cache key), and a digits cGAN trains an epoch there. The checkout and venv
are kept between runs (tests/helpers/other_python.py says why)."""
from __future__ import annotations

import pytest

from jobs.core import events
from tests.helpers import other_python
from tests.system.training import spec_for

pytestmark = pytest.mark.slow


def test_setup_and_an_epoch_on_python_312(digits_small, tmp_path):
    python = other_python.interpreter()
    if python is None:  # not this project's core path: a platform it also supports
        pytest.skip("no Python 3.12 on this machine (FACEGAN_TEST_PYTHON312 names one)")
    setup = other_python.set_up(python)
    assert setup.returncode == 0, setup.stderr[-4000:]
    venv = other_python.CHECKOUT / ".venv"
    version = other_python.in_venv(python, "python", "-c", "import sys; print(sys.version)")
    assert version.stdout.startswith("3.12."), version.stdout + version.stderr
    build = other_python.in_venv(python, "horovodrun", "--check-build")
    assert "[X] TensorFlow" in build.stdout and "[X] Gloo" in build.stdout, build.stdout
    assert list(other_python.WHEELS.glob("horovod-0.28.1-tf-2.18.1-py312-*/horovod-*.whl"))
    run_dir = tmp_path / "run"
    proc = other_python.in_venv(python, "python", "-m", "jobs", "run", *spec_for(
        tmp_path, digits_small, run_dir, "train.epochs=1"))
    assert proc.returncode == 0, proc.stderr[-4000:]
    [done] = events.read(run_dir, "epoch_done")
    assert done["epoch"] == 1 and (run_dir / "report.html").exists()
    assert (venv / "lib/python3.12").is_dir()
