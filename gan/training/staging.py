"""Node-local staging (``train.stage: local``): one uncompressed copy of the training images
per node, on the node's own disk, memory-mapped by every rank of the node.

Cluster sites ask jobs to copy hot data off the shared filesystem, which serves every job at
once, to node-local disk (``$SLURM_TMPDIR``, ``$TMPDIR``). Memory-mapped, the copy lives once
in the node's page cache however many ranks read it, where a set loaded into memory is one
private copy per rank; and a batch is a gather from memory, with no HDF5 chunk to find,
check and copy.

The copy is ``images.npy`` in ``facegan-stage-<key>/``, the key naming the source (its real
path, size and modification time). Local rank 0 makes it while the other ranks wait:

* reading the source checks each chunk's Fletcher-32 (HDF5 refuses a damaged one), and the
  bytes are hashed as they are read;
* the copy is written under a temporary name, flushed, read back and hashed again; only
  when both digests agree is it renamed into place, and ``stage.json`` (the source, the size,
  the digest) written last: a copy without its record is never used, so a kill at any instant
  leaves nothing that looks complete;
* a requeued job finds it intact (the record matches the source and the file hashes to the
  record's digest) or makes it again;
* without room for it (or on any error writing it), the ranks read the shared file, with a
  warning: staging is an optimisation, never a reason to fail.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from jobs.core import facefile
from jobs.core.files import atomic_write_json, remove_stale_temps, temp_name, why

log = logging.getLogger(__name__)

RECORD = "stage.json"
IMAGES = "images.npy"
MARGIN_BYTES = 256 * 2**20       # left free on the node's disk besides the copy
BLOCK_BYTES = 64 * 2**20         # copied, hashed and checked this much at a time


def default_dir(configured: str | None) -> Path:
    """``train.stage_dir``, else the node's own disk as Slurm sites name it."""
    for candidate in (configured, os.environ.get("SLURM_TMPDIR"), os.environ.get("TMPDIR")):
        if candidate:
            return Path(candidate)
    return Path("/tmp")


def source_identity(source: Path) -> dict:
    info = source.stat()
    return {"path": str(source.resolve()), "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def folder_for(source: Path, directory: Path) -> Path:
    key = hashlib.sha256(json.dumps(source_identity(source)).encode()).hexdigest()[:16]
    return directory / f"facegan-stage-{key}"


def _rows_per_block(images) -> int:
    row = int(np.prod(images.shape[1:])) * images.dtype.itemsize
    chunk = (getattr(images, "chunks", None) or (1,))[0]
    return max(chunk, BLOCK_BYTES // row // chunk * chunk)  # whole chunks at a time


def data_sha256(array) -> str:
    """SHA-256 of an image array's bytes (not the .npy header), a block at a time."""
    h, step = hashlib.sha256(), _rows_per_block(array)
    for start in range(0, len(array), step):
        h.update(np.ascontiguousarray(array[start:start + step]).tobytes())
    return h.hexdigest()


def recorded(folder: Path, source: Path) -> dict | None:
    """The record of a complete copy of ``source``'s images, if ``folder`` holds one."""
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("source") == source_identity(source) else None


def intact(folder: Path, source: Path) -> bool:
    """A complete copy whose bytes hash to its record's digest."""
    record = recorded(folder, source)
    if record is None:
        return False
    try:
        images = np.load(folder / IMAGES, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return list(images.shape) == record["shape"] and data_sha256(images) == record["sha256"]


def _copy(source: Path, folder: Path) -> None:
    """The checked copy (see the module's docstring): record last, never a partial file."""
    final = folder / IMAGES
    (folder / RECORD).unlink(missing_ok=True)  # no record until the copy is whole again
    tmp = temp_name(final)
    try:
        with facefile.open_h5(source) as f:
            images = f[facefile.IMAGES]
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=images.dtype,
                                            shape=images.shape)
            read_hash, step = hashlib.sha256(), _rows_per_block(images)
            for start in range(0, len(images), step):
                block = images[start:start + step]  # Fletcher-32 checked by HDF5
                read_hash.update(block.tobytes())
                out[start:start + step] = block
            out.flush()
            shape = list(images.shape)
            del out
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        written = data_sha256(np.load(tmp, mmap_mode="r"))
        if written != read_hash.hexdigest():
            raise OSError(f"{tmp}: the copy reads back differently from the source")
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    atomic_write_json(folder / RECORD, {"source": source_identity(source), "shape": shape,
                                        "sha256": written})


def needed_bytes(source: Path) -> int:
    with facefile.open_h5(source) as f:
        images = f[facefile.IMAGES]
        return int(images.size) * images.dtype.itemsize


def stage(source: Path, directory: Path) -> Path | None:
    """(Local rank 0.) The node's intact copy of ``source``'s images, made if need be; None
    (and a warning) when it cannot be had, and the ranks read ``source`` itself. Never
    raises: staging is an optimisation, and the node's other ranks wait for this."""
    try:
        return _stage(source, directory)
    except Exception as exc:  # any way it fails (a full disk, a damaged chunk, an odd file)
        log.warning("train.stage: cannot stage %s to %s (%s): reading the shared file "
                    "instead", source, directory, why(exc))
        return None


def _stage(source: Path, directory: Path) -> Path | None:
    """``stage`` without its safety net."""
    folder = folder_for(source, directory)
    if intact(folder, source):
        log.info("staged copy found intact: %s", folder / IMAGES)
        return folder / IMAGES
    # not intact: no record may point the node's other ranks at it, and a copy killed
    # mid-way (its temporary file) must not take the room of the next
    (folder / RECORD).unlink(missing_ok=True)
    remove_stale_temps(folder / IMAGES)
    folder.mkdir(parents=True, exist_ok=True)
    need, free = needed_bytes(source), shutil.disk_usage(folder).free
    if free < need + MARGIN_BYTES:
        log.warning("train.stage: %s has %.1f GB free, the copy needs %.1f GB (and %d MB "
                    "to spare): reading the shared %s instead", folder, free / 2**30,
                    need / 2**30, MARGIN_BYTES // 2**20, source)
        return None
    log.info("staging %s (%.2f GB) to %s", source, need / 2**30, folder)
    _copy(source, folder)
    log.info("staged: %s", folder / IMAGES)
    return folder / IMAGES


def stage_for_node(source: Path, configured_dir: str | None, world) -> Path | None:
    """Local rank 0 of each node stages while the node's other ranks wait; then every rank
    opens what it left: the copy, or (no record) the shared file. Every rank must call it."""
    directory = default_dir(configured_dir)
    path = stage(source, directory) if world.local_rank == 0 else None
    world.barrier()
    if world.local_rank != 0:
        folder = folder_for(source, directory)
        path = folder / IMAGES if recorded(folder, source) else None
    return path
