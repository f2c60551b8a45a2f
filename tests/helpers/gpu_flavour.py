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

import fcntl
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import CACHE, ROOT
from tests.helpers.checkout import copy_checkout

HOME = CACHE / "gpu-flavour"
CHECKOUT = HOME / "checkout"
VENV = CHECKOUT / ".venv"
WHEELS = CACHE / "wheels"


def cuda_toolkit() -> Path:
    """A CUDA home made of pip's nvcc wheels by containers/cuda-toolkit.sh, the recipe the GPU
    image uses too (kept in the cache; the script reuses a complete one)."""
    proc = subprocess.run([str(ROOT / "containers/cuda-toolkit.sh"), str(HOME / "cuda-toolkit")],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return Path(proc.stdout.strip())


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


def complete_builds(wheels: Path, suffix: str) -> list[Path]:
    """The wheel cache's finished Horovod builds whose key ends with the ``suffix`` pattern
    (a regular expression), in version order, as ./run reads them: a folder named exactly by
    its key, holding a wheel. A build's scratch folder (./run's ``.building-…``, or the
    ``KEY.tmp.PID`` an older ./run left when killed) never matches, wheel or not."""
    key = re.compile(r"horovod-[0-9.]+-tf-[0-9.]+-py[0-9]+-[a-z0-9_]+-" + suffix)
    return sorted((f for f in wheels.glob("horovod-*") if key.fullmatch(f.name)
                   and f.is_dir() and any(f.glob("horovod-*.whl"))),
                  key=lambda f: [int(n) for n in re.findall(r"[0-9]+", f.name)])


def gpu_wheel_folder(wheels: Path = WHEELS) -> Path:
    """The wheel cache's NCCL build (after :func:`set_up`)."""
    folders = complete_builds(wheels, r"gloo(-mpi)?-nccl-cuda[0-9]+")
    assert folders, f"no NCCL build in {wheels}"
    return folders[-1]
