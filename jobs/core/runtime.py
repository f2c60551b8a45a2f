"""Process-wide setup shared by every entry point: logging and TensorFlow's verbosity.

TensorFlow prints pages of C++ and absl noise on import; batch logs should show our lines. So
the noise is off unless ``--verbose`` (or ``FACEGAN_VERBOSE=1``) asks for it. This must run
before TensorFlow is imported, which is why it lives here and not in ``gan/``.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import os
import sys

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(verbose: bool = False) -> None:
    verbose = verbose or os.environ.get("FACEGAN_VERBOSE") == "1"
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT,
                        datefmt="%Y-%m-%d %H:%M:%S", stream=sys.stderr, force=True)
    if verbose:
        os.environ["FACEGAN_VERBOSE"] = "1"  # child processes (ranks, array tasks) inherit it
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also grappler's harmless errors
        for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        if "absl.logging" in sys.modules or _importable("absl"):
            import absl.logging

            absl.logging.set_verbosity(absl.logging.ERROR)


def quiet_before_imports(argv: list[str]) -> None:
    """Entry points call this before importing TensorFlow (which reads the variable once, on
    import): the C++ noise is off unless ``--verbose`` or ``FACEGAN_VERBOSE=1``."""
    if "--verbose" not in argv and os.environ.get("FACEGAN_VERBOSE") != "1":
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def show_tf_warnings() -> None:
    """A GPU job keeps TensorFlow's warnings: "Skipping registering GPU devices" or a CUDA and
    driver mismatch are the only words TensorFlow says about a GPU it lost. Call it before
    TensorFlow's import, which reads the level once."""
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")
    if not level.isdigit() or int(level) > 1:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "1"  # warnings and errors, not its info lines
    logging.getLogger("tensorflow").setLevel(logging.WARNING)


def show_progress() -> bool:
    """tqdm bars only when a human watches; batch logs get plain lines instead."""
    return sys.stderr.isatty()


def _importable(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def array_index_from_env() -> int | None:
    """This Slurm array task's index, if the process is one."""
    value = os.environ.get("SLURM_ARRAY_TASK_ID")
    return int(value) if value and value.isdigit() else None


# Keras modules whose optional imports a job never uses, and what they import: the sklearn
# wrappers import scikit-learn (and with it SciPy), the plotting helpers matplotlib.pyplot,
# at ``import keras``, whenever those are installed (this venv has them for the quality
# scores and the report pages, which import them themselves when they run)
KERAS_EXTRAS = {"keras/src/wrappers/": ("sklearn",),
                "keras/src/visualization/": ("matplotlib",)}


class _KerasExtras(importlib.abc.MetaPathFinder):
    """Refuses those imports to those Keras modules only, which then do what they do when
    the package is absent (``try: import sklearn except ImportError``); every other importer
    gets the real package."""

    def find_spec(self, fullname, path, target=None):
        top = fullname.partition(".")[0]
        if any(top in names for names in KERAS_EXTRAS.values()) and _keras_extra_imports(top):
            raise ImportError(f"{fullname}: not for Keras's optional helpers in a job")
        return None


def _keras_extra_imports(top: str) -> bool:
    """Whether the module importing ``top`` (the first frame outside the import machinery)
    is one of KERAS_EXTRAS' that skip it."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename.replace("\\", "/")
        if not (name.startswith("<frozen importlib") or name.endswith("importlib/__init__.py")):
            return any(folder in name and top in names
                       for folder, names in KERAS_EXTRAS.items())
        frame = frame.f_back
    return False


def skip_keras_extras() -> None:
    """Entry points call this before TensorFlow's import (which imports Keras). Those
    imports cost every process, every rank, about a CPU-second (scikit-learn and SciPy
    alone; more on a parallel filesystem, where each of their thousands of files is a
    metadata lookup) for nothing a job uses: see docs/architecture.md."""
    if not any(isinstance(f, _KerasExtras) for f in sys.meta_path):
        sys.meta_path.insert(0, _KerasExtras())
