"""The GPU flavour (``./run setup --gpu``) for the suite, made once per machine and kept.

The flavour installs TensorFlow's CUDA build (about 3 GB of wheels, 5 GB on disk) and compiles
Horovod with NCCL: minutes that the suite's budget cannot pay on every run. So, like the
Horovod wheel cache and Docker's layers, its checkout and venv live in the user's cache
(``~/.cache/facegan-hpc/gpu-flavour``). Every run copies the current files into that same
checkout and runs ``./run setup --gpu`` for real: a change to ``run``, requirements.txt or
pyproject.toml reinstalls (pip then installs only what changed), nothing changed is a no-op.

``nvcc`` comes from pip's CUDA 13.0 toolchain (containers/cuda-toolkit.txt), the stand-in for
``module load cuda``: the Horovod it builds needs a driver for CUDA 13 (R580 or newer).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.helpers.checkout import copy_checkout

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "facegan-hpc"
HOME = CACHE / "gpu-flavour"
CHECKOUT = HOME / "checkout"
VENV = CHECKOUT / ".venv"
WHEELS = CACHE / "wheels"


def cuda_toolkit() -> Path:
    """A CUDA home made of pip's nvcc wheels (kept in the cache)."""
    home = HOME / "cuda-toolkit" / "nvidia" / "cu13"
    if not (home / "bin" / "nvcc").exists():
        scratch = HOME / f"cuda-toolkit.tmp.{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                        str(scratch), "-r", str(ROOT / "containers/cuda-toolkit.txt")],
                       check=True, capture_output=True, timeout=900)
        (scratch / "nvidia/cu13/lib64").symlink_to("lib")  # the CUDA home layout nvcc expects
        shutil.rmtree(HOME / "cuda-toolkit", ignore_errors=True)
        scratch.rename(HOME / "cuda-toolkit")
    return home


def environment(**extra: str) -> dict[str, str]:
    """The environment of a user who ran ``module load cuda``: nvcc first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "FACEGAN_VENV", "FACEGAN_GPU")}
    env["PATH"] = f"{cuda_toolkit() / 'bin'}:{env['PATH']}"
    return {**env, "FACEGAN_WHEEL_CACHE": str(WHEELS), **extra}


def set_up(*args: str) -> subprocess.CompletedProcess:
    """``./run setup --gpu`` (or ``args``) in the kept checkout, refreshed from this one; one
    test process at a time (the image's test needs the same wheel)."""
    HOME.mkdir(parents=True, exist_ok=True)
    with open(HOME / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for entry in CHECKOUT.iterdir() if CHECKOUT.exists() else ():
            if entry.name != ".venv":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        copy_checkout(CHECKOUT)
        return subprocess.run([str(CHECKOUT / "run"), *(args or ("setup", "--gpu"))],
                              env=environment(), cwd=CHECKOUT, capture_output=True, text=True,
                              timeout=3600)


def gpu_wheel_folder() -> Path:
    """The wheel cache's NCCL build (after :func:`set_up`)."""
    folders = sorted(WHEELS.glob("horovod-*-nccl-cuda*"))
    assert folders and any(folders[-1].glob("horovod-*.whl")), f"no NCCL build in {WHEELS}"
    return folders[-1]
