"""The HDF5 face file: the one place that knows its layout.

Preprocessing writes it (one shard per array task, merged into a virtual view), training reads
it, and scikit-learn's digits are written in it for the benchmarks and tests. Every writer
stamps ``FORMAT_VERSION``; every reader calls :func:`check_readable`, so a file from an
incompatible version is refused with its name. Any HDF5 with ``images`` and ``labels`` reads
too (a hand-made one need not carry the other datasets and attributes).

=============  ==================  ==================================================
dataset        shape / dtype       meaning
=============  ==================  ==================================================
images         (N, S, S, C) uint8  faces (C = 3; 1 for the grey digits), chunked along N
labels         (N,) int16          class index (``attrs['class_names']``)
attributes     (N, A) uint8        CelebA attributes 0/1 (``attrs['attribute_names']``)
source         (N,) str            photo path relative to the input folder (preprocessing)
box            (N, 4) float32      x, y, w, h of the face in the photo (preprocessing)
confidence     (N,) float32        MTCNN confidence (NaN for fixed crops; preprocessing)
keypoints      (N, 5, 2) float32   eyes, nose, mouth corners (x, y) in the photo
=============  ==================  ==================================================

Writers set ``attrs['complete']`` false when they start and true last, before the rename: a
file that says false is refused.

Every file is opened through :func:`open_h5`, without HDF5's file locks. Those locks fail on
many NFS and Lustre mounts (``errno 37``/``11``, "unable to lock file") and a lock another
process holds makes a merged view read **zeros** in place of the locked shard, silently. Nothing
here needs them: writers write under a temporary name no one else opens, readers open only
complete, renamed files, which no one writes again. A merged view whose shard is gone is
refused by :func:`check_readable` for the same reason: HDF5 would read zeros for it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jobs.core.files import atomic_path

FORMAT_VERSION = 1
MERGED_NAME = "faces.h5"  # the merged view in a preprocess output_dir

IMAGES, LABELS, ATTRIBUTES = "images", "labels", "attributes"
SOURCE, BOX, CONFIDENCE, KEYPOINTS = "source", "box", "confidence", "keypoints"  # shards
CLASS_NAMES, ATTRIBUTE_NAMES = "class_names", "attribute_names"
VERSION_KEY, COMPLETE_KEY, NUM_FACES_KEY = "format_version", "complete", "num_faces"


class FaceFileError(ValueError):
    """The file is not a usable face file (named in the message)."""


def stamp(attrs: Any, complete: bool = True) -> None:
    """Mark a file being written with this layout's version (and completeness)."""
    attrs[VERSION_KEY] = FORMAT_VERSION
    attrs[COMPLETE_KEY] = complete


def open_h5(path: Any, mode: str = "r") -> h5py.File:
    """``h5py.File`` without file locks (see the module's docstring for why that is safe)."""
    return h5py.File(path, mode, locking=False)


def missing_sources(f: Any, path: Any) -> list[str]:
    """The shard files a merged (virtual) view points at that do not exist: HDF5 would read
    fill values (zeros) for them without a word."""
    folder, missing = Path(path).parent, []
    for name in (IMAGES, LABELS):
        if name in f and f[name].is_virtual:
            for source in f[name].virtual_sources():
                file = Path(source.file_name)
                if not (file if file.is_absolute() else folder / file).is_file() \
                        and source.file_name not in missing:
                    missing.append(source.file_name)
    return missing


def check_readable(f: Any, path: Any) -> None:
    """Refuse an incomplete file, one of another layout version, one without images, or a
    merged view with a missing shard."""
    version = f.attrs.get(VERSION_KEY)
    if version is not None and int(version) != FORMAT_VERSION:
        raise FaceFileError(f"{path}: face-file format version {int(version)}, this version "
                            f"of facegan-hpc reads version {FORMAT_VERSION}: re-run its "
                            "preprocessing")
    if not f.attrs.get(COMPLETE_KEY, True):  # a hand-made file may not say: fine
        raise FaceFileError(f"{path}: incomplete (its writer did not finish)")
    if IMAGES not in f or LABELS not in f:
        raise FaceFileError(f"{path}: no '{IMAGES}'/'{LABELS}' datasets: not a face file")
    missing = missing_sources(f, path)
    if missing:
        raise FaceFileError(f"{path}: its shard(s) {', '.join(missing)} are missing beside it "
                            "(a merged view reads its shards in place): restore them or re-run "
                            "the preprocessing")


def names(f: Any, key: str, default: list[str] | None = None) -> list[str]:
    """A list-of-strings attribute (class or attribute names) as Python strings."""
    return [str(v) for v in f.attrs.get(key, default if default is not None else [])]


def write_arrays(path: Any, images: np.ndarray, labels: np.ndarray, *,
                 class_names: list[str], attributes: np.ndarray | None = None,
                 attribute_names: list[str] = (), chunk: int = 256,
                 extra: dict[str, np.ndarray] | None = None) -> Path:
    """A whole face file from arrays in memory (digits, generated samples, test data),
    written under a temporary name and renamed: a killed writer leaves nothing valid."""
    with atomic_path(path) as tmp, open_h5(tmp, "w") as f:
        f.create_dataset(IMAGES, data=images,
                         chunks=(max(1, min(chunk, len(images))), *images.shape[1:]))
        f.create_dataset(LABELS, data=np.asarray(labels, np.int16))
        if attributes is not None:
            f.create_dataset(ATTRIBUTES, data=np.asarray(attributes, np.uint8))
        for name, values in (extra or {}).items():
            f.create_dataset(name, data=values)
        f.attrs[CLASS_NAMES] = list(class_names)
        f.attrs[ATTRIBUTE_NAMES] = list(attribute_names)
        f.attrs[NUM_FACES_KEY] = len(images)
        stamp(f.attrs)
    return Path(path)
