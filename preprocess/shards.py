"""One HDF5 shard per array task: written under a temporary name, renamed when complete.

The layout (datasets, attributes, version) is ``jobs.core.facefile``'s; the merged file's
datasets are virtual views over the shards. A shard is valid only if its name is final
(``shard-KKKKK-of-NNNNN.h5``) *and* ``attrs['complete']`` is true: a task killed at any instant
leaves at most a hidden temporary.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from jobs.core import facefile
from jobs.core.files import temp_name, why

STR = h5py.string_dtype("utf-8")


def shard_path(output_dir: str | Path, index: int, count: int) -> Path:
    return Path(output_dir) / f"shard-{index:05d}-of-{count:05d}.h5"


def report_path(output_dir: str | Path, index: int, count: int) -> Path:
    return shard_path(output_dir, index, count).with_suffix(".report.json")


class ShardWriter:
    """Append faces batch by batch; ``commit()`` makes the shard visible, atomically."""

    def __init__(self, final: Path, image_size: int, num_attributes: int, chunk: int,
                 compression: str, attrs: dict[str, Any]):
        self.final = final
        self.tmp = temp_name(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        self.file = facefile.open_h5(self.tmp, "w")
        self.count = 0
        comp = None if compression == "none" else compression
        s = image_size

        def make(name, shape, dtype, compress=False):
            # checksummed (see verify_rows), but for the variable-length photo names: HDF5
            # filters cannot take those
            self.file.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape),
                                     dtype=dtype, chunks=(chunk, *shape),
                                     fletcher32=dtype is not STR,
                                     compression=comp if compress else None)
        make(facefile.IMAGES, (s, s, 3), np.uint8, compress=True)
        make(facefile.LABELS, (), np.int16)
        if num_attributes:  # a plain photo folder has none: no dataset rather than (N, 0)
            make(facefile.ATTRIBUTES, (num_attributes,), np.uint8)
        make(facefile.SOURCE, (), STR)
        make(facefile.BOX, (4,), np.float32)
        make(facefile.CONFIDENCE, (), np.float32)
        make(facefile.KEYPOINTS, (5, 2), np.float32)
        for key, value in attrs.items():
            self.file.attrs[key] = value
        facefile.stamp(self.file.attrs, complete=False)

    def append(self, rows: dict[str, np.ndarray]) -> None:
        n = len(rows[facefile.IMAGES])
        if not n:
            return
        for name, values in rows.items():
            if name not in self.file:
                continue
            dset = self.file[name]
            dset.resize(self.count + n, axis=0)
            dset[self.count:self.count + n] = values
        self.count += n

    def commit(self, counts: dict[str, int]) -> Path:
        self.file.attrs["num_faces"] = self.count
        self.file.attrs["counts"] = json.dumps(counts)
        facefile.stamp(self.file.attrs, complete=True)  # last write before close + rename
        self.file.flush()
        self.file.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(self.tmp, self.final)
        return self.final

    def abort(self) -> None:
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


@dataclass
class ShardInfo:
    path: Path
    num_faces: int
    spec_hash: str
    attrs: dict[str, Any]


def verify_rows(f: Any, block: int = 4096) -> str | None:
    """Read every row of every dataset once: a flipped bit on disk or in transit fails the
    chunk's Fletcher-32 checksum (or its decompression) here, at the merge, instead of as
    garbage faces or a crash in the middle of training. None when all of it reads back."""
    for name in f:
        dset = f[name]
        for start in range(0, len(dset), block):
            try:
                dset[start:start + block]
            except OSError as exc:
                return (f"damaged: dataset '{name}' fails to read back near row {start} "
                        f"({why(exc)})")
    return None


def inspect_shard(path: Path, index: int, count: int, spec_hash: str,
                  verify: bool = True) -> ShardInfo | str:
    """The shard's facts, or a one-line reason why it is not a usable shard of this set.
    ``verify`` reads every row back (the merge does; deciding what to rerun need not)."""
    if not path.exists():
        return "missing"
    try:
        with facefile.open_h5(path) as f:
            attrs = dict(f.attrs)
            if not attrs.get(facefile.COMPLETE_KEY):
                return "incomplete (writer did not finish)"
            if attrs.get(facefile.VERSION_KEY) != facefile.FORMAT_VERSION:
                return (f"face-file format version {attrs.get(facefile.VERSION_KEY)}, this "
                        f"version writes {facefile.FORMAT_VERSION}: rebuild it")
            if (attrs.get("shard_index"), attrs.get("num_shards")) != (index, count):
                return (f"is shard {attrs.get('shard_index')} of {attrs.get('num_shards')}, "
                        f"expected {index} of {count}")
            if attrs.get("spec_hash") != spec_hash:
                return "was made with different preprocessing settings"
            n = int(attrs["num_faces"])
            lengths = {name: len(f[name]) for name in f}
            if set(lengths.values()) != {n}:
                return f"dataset lengths {lengths} do not match num_faces={n}"
            damage = verify_rows(f) if verify else None
            if damage:
                return damage
    except (OSError, KeyError) as exc:
        return f"unreadable ({exc})"
    return ShardInfo(path=path, num_faces=n, spec_hash=spec_hash, attrs=attrs)
