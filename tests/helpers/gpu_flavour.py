"""The GPU flavour (``./run setup --gpu``) for the suite, made once per machine and kept.

The flavour installs TensorFlow's CUDA build (about 3 GB of wheels, 5 GB on disk) and compiles
Horovod with NCCL: minutes that the suite's budget cannot pay on every run. So, like the
Horovod wheel cache and Docker's layers, its checkout and venv live in the user's cache
(``~/.cache/facegan-hpc/gpu-flavour``). Every run copies the current files into that same
checkout and runs ``./run setup --gpu`` for real: a change to ``run``, requirements.txt or
pyproject.toml reinstalls (pip then installs only what changed), nothing changed is a no-op.

``nvcc`` comes from pip's CUDA 13.0 toolchain (containers/cuda-toolkit.txt, made a CUDA home by
containers/cuda-toolkit.sh, as in the GPU image), the stand-in for ``module load cuda``: the
Horovod it builds needs a driver for CUDA 13 (R580 or newer).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import CACHE, ROOT
from tests.helpers.checkout import kept_checkout_environment, refresh_and_run

HOME = CACHE / "gpu-flavour"
CHECKOUT = HOME / "checkout"
VENV = CHECKOUT / ".venv"
WHEELS = CACHE / "wheels"


def cuda_toolkit() -> Path:
    """A CUDA home made of pip's nvcc wheels by containers/cuda-toolkit.sh, the recipe the GPU
    image uses too (kept in the cache; the script reuses a complete one). The folder the
    suite made before that script (``cuda-toolkit``, no libcudart.so link) is removed."""
    shutil.rmtree(HOME / "cuda-toolkit", ignore_errors=True)
    proc = subprocess.run([str(ROOT / "containers/cuda-toolkit.sh"), str(HOME / "cuda-home")],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip())


def environment(**extra: str) -> dict[str, str]:
    """The environment of a user who ran ``module load cuda``: nvcc first on PATH."""
    path = f"{cuda_toolkit() / 'bin'}:{os.environ['PATH']}"
    return kept_checkout_environment(PATH=path, FACEGAN_WHEEL_CACHE=str(WHEELS), **extra)


def set_up(*args: str) -> subprocess.CompletedProcess:
    """``./run setup --gpu`` (or ``args``) in the kept checkout, refreshed from this one; one
    test process at a time (the image's test needs the same wheel)."""
    return refresh_and_run(HOME, [str(CHECKOUT / "run"), *(args or ("setup", "--gpu"))],
                           environment())


def build_key(flavour: str, env: dict[str, str] | None = None) -> str:
    """The wheel cache's key of the Horovod build that ./run makes here for ``flavour``
    (./run's own ``horovod_key``): the one folder a reader takes, never a failed build's
    scratch folder nor a build for other pins or another MPI choice."""
    return subprocess.run(["bash", "-c", f'source "{ROOT / "run"}"; horovod_key {flavour}'],
                          env=env, capture_output=True, text=True, check=True,
                          timeout=120).stdout.strip()


def gpu_wheel_folder() -> Path:
    """The wheel cache's NCCL build (after :func:`set_up`)."""
    folder = WHEELS / build_key("gpu", environment())
    assert any(folder.glob("horovod-*.whl")), f"no NCCL build in {folder}"
    return folder
