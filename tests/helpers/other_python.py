"""The project on another supported Python (3.12), set up once per machine and kept.

Like the GPU flavour (tests/helpers/gpu_flavour.py), its checkout and venv live in the user's
cache (``~/.cache/facegan-hpc/python3.12``): a new venv and a Horovod build for that Python
take minutes the suite cannot pay on every run. Every run copies the current files into that
checkout and runs ``./run setup`` for real, with ``FACEGAN_PYTHON`` naming the interpreter:
a change to ``run``, requirements.txt or pyproject.toml reinstalls, nothing changed is a
no-op. Horovod's wheel is cached beside the suite's, under its own key (``py312``).
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.conftest import CACHE
from tests.helpers.checkout import kept_checkout_environment, refresh_and_run

VERSION = "3.12"
HOME = CACHE / f"python{VERSION}"
CHECKOUT = HOME / "checkout"
WHEELS = CACHE / "wheels"


def interpreter() -> Path | None:
    """A Python 3.12 that runs: FACEGAN_TEST_PYTHON312, else pyenv's, else python3.12 on
    PATH (a pyenv shim with no such version selected does not run, and is passed over)."""
    candidates = [os.environ.get("FACEGAN_TEST_PYTHON312", "")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += sorted(str(p) for p in pyenv_root.glob(f"versions/{VERSION}.*/bin/"
                                                         f"python{VERSION}"))
    candidates.append(shutil.which(f"python{VERSION}") or "")
    for candidate in filter(None, candidates):
        proc = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.strip() == f"({VERSION.replace('.', ', ')})":
            return Path(candidate)
    return None


def environment(python: Path, **extra: str) -> dict[str, str]:
    return kept_checkout_environment(FACEGAN_PYTHON=str(python),
                                     FACEGAN_WHEEL_CACHE=str(WHEELS), **extra)


def set_up(python: Path) -> subprocess.CompletedProcess:
    """``./run setup`` in the kept checkout, refreshed from this one (one test at a time)."""
    return refresh_and_run(HOME, [str(CHECKOUT / "run"), "setup"], environment(python))


def in_venv(python: Path, *argv: str) -> subprocess.CompletedProcess:
    """``./run ARGV`` in the kept checkout, as its user types it."""
    return subprocess.run([str(CHECKOUT / "run"), *argv],
                          env=environment(python, TF_CPP_MIN_LOG_LEVEL="2"), cwd=CHECKOUT,
                          capture_output=True, text=True, timeout=1800)
