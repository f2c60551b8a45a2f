"""A training run directory's layout, and ``train.init_from``: another run's weights to start
from, checked here without TensorFlow (``validate``, ``plan``, ``run`` and ``submit`` call
:func:`init_from_problems` through the train kind's checks, so a wrong source exits 2 before
anything runs). The trainer loads the weights (``gan/training/warmstart.py``).

``train.init_from: RUN_DIR[:latest|:best|:ckpt-N]``: the source's newest checkpoint (the
default), its ``checkpoint.keep_best`` snapshot, or checkpoint number N.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

# what a training run leaves in its directory (gan/training/checkpoint.py, outputs.py)
CHECKPOINTS = "checkpoints"        # TensorFlow's rolling checkpoints ...
INDEX = "checkpoint"               # ... and its index file naming them, newest first
SPEC_FILE = "train_spec.yaml"      # the spec the run was trained with
BEST_DIR, BEST_RECORD = "best", "best.json"
INIT_RECORD = "init_from.json"     # which checkpoint a run started from (train.init_from)
SAMPLES = "samples"                # each epoch's sample grid: samples/epoch_NNNN.png

FIELD = "train.init_from"
WHICH = re.compile(r"latest|best|ckpt-(\d+)")


def sample_grid(run_dir: str | Path, epoch: int) -> Path:
    """Where the trainer draws epoch ``epoch``'s sample grid."""
    return Path(run_dir) / SAMPLES / f"epoch_{epoch:04d}.png"


def sample_grids(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Every sample grid the run holds, as (epoch, path), by epoch."""
    found = ((p.stem.removeprefix("epoch_"), p)
             for p in (Path(run_dir) / SAMPLES).glob("epoch_*.png"))
    return sorted((int(epoch), p) for epoch, p in found if epoch.isdigit())


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether the run has checkpoints of its own (it resumes from them)."""
    return (Path(run_dir) / CHECKPOINTS / INDEX).exists()


def split_init_from(value: str) -> tuple[str, str]:
    """``RUN_DIR[:which]`` -> (RUN_DIR, which); which is latest, best or ckpt-N. A last
    ``:part`` without a slash is the suffix; ValueError if it is not one of those."""
    path, sep, which = value.rpartition(":")
    if not sep or "/" in which:
        return value, "latest"
    if not WHICH.fullmatch(which):
        raise ValueError(f"{value!r}: unknown checkpoint suffix {which!r}; use RUN_DIR, "
                         "RUN_DIR:latest, RUN_DIR:best or RUN_DIR:ckpt-N")
    return path, which


def parse_init_from(value: Any) -> str:
    """The field's parser: the suffix checked, the directory made absolute (as every path
    field is, relative to where the spec is loaded), so a job sees it wherever it lands."""
    if not isinstance(value, str):
        raise ValueError(f"expected RUN_DIR[:latest|:best|:ckpt-N], got {value!r}")
    if not value:
        return value
    path, which = split_init_from(value)
    if not path:
        raise ValueError(f"{value!r}: no run directory before the ':'")
    return f"{Path(os.path.expandvars(path)).expanduser().resolve()}:{which}"


def checkpoint_problem(run: Path, which: str) -> str:
    """Why ``run`` has no checkpoint ``which`` ('' when it has)."""
    ckpts = run / CHECKPOINTS
    if which == "best":
        return "" if (run / BEST_DIR / BEST_RECORD).exists() else (
            f"{run} has no {BEST_DIR}/{BEST_RECORD} (the source needs "
            "train.checkpoint.keep_best)")
    if not (ckpts / INDEX).exists():
        return f"{run} holds no checkpoint ({ckpts / INDEX} is missing)"
    if which != "latest" and not (ckpts / f"{which}.index").exists():
        kept = sorted(p.name[:-len(".index")] for p in ckpts.glob("ckpt-*.index"))
        return f"{run} has no {which} (it keeps {', '.join(kept) or 'none'})"
    return ""


def init_from_problems(work: Any) -> list[str]:
    """What is wrong with a train spec's ``init_from`` (empty: nothing, or not used: a run
    with checkpoints of its own resumes from them and never reads the source)."""
    if not work.init_from or has_checkpoint(work.run_dir):
        return []
    path, which = split_init_from(work.init_from)
    run = Path(path)
    if not run.is_dir():
        return [f"{FIELD}: {path!r} does not exist (or is not a directory)"]
    if not (run / SPEC_FILE).exists():
        return [f"{FIELD}: {path} is not a training run directory (no {SPEC_FILE})"]
    saved = yaml.safe_load((run / SPEC_FILE).read_text()) or {}
    family = (saved.get("model") or {}).get("name")
    if family != work.model.name:
        return [f"{FIELD}: {path} trained train.model.name {family}, this spec "
                f"{work.model.name}: their networks differ"]
    problem = checkpoint_problem(run, which)
    return [f"{FIELD}: {problem}"] if problem else []
