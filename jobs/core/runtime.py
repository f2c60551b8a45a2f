"""Process-wide setup shared by every entry point: logging and TensorFlow's verbosity.

TensorFlow prints pages of C++ and absl noise on import; batch logs should show our lines. So
the noise is off unless ``--verbose`` (or ``FACEGAN_VERBOSE=1``) asks for it. This must run
before TensorFlow is imported, which is why it lives here and not in ``gan/``.
"""
from __future__ import annotations

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
