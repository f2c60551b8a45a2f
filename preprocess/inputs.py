"""Find the photos and their CelebA attributes, and split them into shards.

Three layouts are understood:

* Kaggle:   ``img_align_celeba/img_align_celeba/*.jpg`` + ``list_attr_celeba.csv``
            (header ``image_id,5_o_Clock_Shadow,...``; rows ``000001.jpg,-1,1,...``)
* original: ``img_align_celeba/*.jpg`` + ``list_attr_celeba.txt`` (line 1: count, line 2: the
            40 names, then ``000001.jpg -1  1 ...``)
* plain:    any folder of photos (searched recursively), no attributes.

The image list is sorted by relative path, so every array task computes the same split.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
ATTR_FILES = {"kaggle": "list_attr_celeba.csv", "original": "list_attr_celeba.txt"}


class InputError(Exception):
    """The input folder cannot be used at all (as opposed to one bad photo)."""


@dataclass
class PhotoSet:
    root: Path                       # folder the image names are relative to
    layout: str
    names: list[str]                 # sorted relative paths
    attribute_names: list[str] = field(default_factory=list)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)  # name -> uint8 0/1

    def shard(self, index: int, count: int) -> list[str]:
        return shard_slice(self.names, index, count)


def shard_slice(items: list, index: int, count: int) -> list:
    """Contiguous, deterministic split: shard k gets items[k*n//N:(k+1)*n//N]."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    n = len(items)
    return items[index * n // count:(index + 1) * n // count]


def detect_layout(input_dir: Path) -> str:
    for layout, attr_file in ATTR_FILES.items():
        if (input_dir / attr_file).is_file():
            return layout
    return "plain"


def image_root(input_dir: Path, layout: str) -> Path:
    if layout == "kaggle":
        nested = input_dir / "img_align_celeba" / "img_align_celeba"
        return nested if nested.is_dir() else input_dir / "img_align_celeba"
    if layout == "original":
        return input_dir / "img_align_celeba"
    return input_dir


def list_images(root: Path) -> list[str]:
    if not root.is_dir():
        raise InputError(f"image folder {root} does not exist")
    # everything with a photo's name but a folder: a dangling link, a symlink loop or a FIFO
    # is listed, then skipped and counted with its reason, never silently left out
    names = sorted(str(p.relative_to(root)) for p in root.rglob("*")
                   if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir())
    if not names:
        raise InputError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return names


def read_attributes(path: Path) -> tuple[list[str], dict[str, np.ndarray]]:
    """Parse either CelebA attribute format; values -1/1 become 0/1."""
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        header, body = rows[0][1:], rows[1:]
    else:
        lines = path.read_text().splitlines()
        header = lines[1].split()
        body = [line.split() for line in lines[2:] if line.strip()]
    table = {}
    for lineno, row in enumerate(body, start=2):
        if len(row) != len(header) + 1:
            raise InputError(f"{path}: row {lineno} has {len(row) - 1} values, "
                             f"expected {len(header)}")
        table[row[0]] = (np.asarray(row[1:], dtype=np.int8) > 0).astype(np.uint8)
    return header, table


def open_photo_set(input_dir: str | Path, layout: str = "auto") -> PhotoSet:
    input_dir = Path(input_dir)
    if layout == "auto":
        layout = detect_layout(input_dir)
    root = image_root(input_dir, layout)
    names = list_images(root)
    if layout == "plain":
        return PhotoSet(root=root, layout=layout, names=names)
    attr_path = input_dir / ATTR_FILES[layout]
    if not attr_path.is_file():
        raise InputError(f"layout '{layout}' needs {attr_path}")
    attribute_names, attributes = read_attributes(attr_path)
    return PhotoSet(root=root, layout=layout, names=names, attribute_names=attribute_names,
                    attributes=attributes)
