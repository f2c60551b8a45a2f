"""Training data: the HDF5 from preprocessing, in a deterministic, resumable, rank-split order.

The order of epoch *e* is a function of (seed, e) only, so a restarted run sees exactly the
batches it would have seen, from any step. Each epoch, step *s* of rank *r* takes positions
``[(s·R + r)·B, (s·R + r + 1)·B)`` of the epoch's order: ranks never share an image within an
epoch. Images stay uint8 until they reach the training step (4× less memory and bandwidth).

Small sets (``in_memory_max_gb``) are loaded whole; larger ones are streamed in blocks of
``BLOCK`` images: the epoch's order shuffles the blocks, then the images inside each, so a
batch falls in at most two blocks. Each block is read whole, as one contiguous slice of whole
chunks (the shards' chunks divide it), and the batches are cut from it in memory: HDF5 reads
a selection of single images scattered through a chunk many times slower, and re-reads (and
re-checksums) a chunk for every batch that touches it once the chunk outgrows its cache.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.core import facefile, faults
from jobs.core.ahead import read_ahead

log = logging.getLogger(__name__)
BLOCK = 1024  # images per contiguous read when streaming
PREFETCH = 2  # batches read while the step runs (memory: two besides the one in use)


@dataclass
class Split:
    rank: int
    size: int
    batch: int


class BlockReader:
    """Images by index from a streamed set, each ``BLOCK`` read whole once and kept while the
    epoch's order is inside it (the two latest: a batch spans at most two). One per reading
    thread (``ImageSet.batches`` makes its own)."""

    def __init__(self, images):
        self.images = images
        self.blocks: dict[int, np.ndarray] = {}

    def block(self, b: int) -> np.ndarray:
        if b not in self.blocks:
            if len(self.blocks) >= 2:
                del self.blocks[next(iter(self.blocks))]  # the older
            self.blocks[b] = self.images[b * BLOCK:(b + 1) * BLOCK]
        return self.blocks[b]

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        blocks = idx // BLOCK
        out = np.empty((len(idx), *self.images.shape[1:]), self.images.dtype)
        for b in np.unique(blocks):
            inside = blocks == b
            out[inside] = self.block(int(b))[idx[inside] - b * BLOCK]
        return out


class ImageSet:
    """``images`` (N, S, S, C) uint8 and ``labels`` (N,) from a merged file or one shard."""

    def __init__(self, path: str | Path, in_memory_max_gb: float = 4.0,
                 staged: Path | None = None):
        """``staged``: a node-local copy of the images (``gan/training/staging.py``), mapped
        instead of loaded or streamed; the epoch's order stays what ``in_memory_max_gb``
        makes it, so a run reads the same batches staged or not."""
        self.path = Path(path)
        self.file = facefile.open_h5(self.path)
        try:
            facefile.check_readable(self.file, self.path)
        except facefile.FaceFileError:
            self.file.close()
            raise
        images = self.file[facefile.IMAGES]
        self.num = len(images)
        self.shape = tuple(images.shape[1:])
        self.labels = self.file[facefile.LABELS][:].astype(np.int32)
        self.class_names = facefile.names(self.file, facefile.CLASS_NAMES, ["all"])
        # CelebA's 0/1 attributes (kept in memory: 40 bytes an image), if the file has them
        self.attributes = self.file[facefile.ATTRIBUTES][:] \
            if facefile.ATTRIBUTES in self.file else None
        self.attribute_names = facefile.names(self.file, facefile.ATTRIBUTE_NAMES)
        # the order's kind: a permutation of all images, or shuffled blocks when streamed
        self.in_memory = images.size <= in_memory_max_gb * 2**30
        self.staged = staged
        if staged is not None:
            self.images = np.load(staged, mmap_mode="r")
        else:
            self.images = images[:] if self.in_memory else images
        log.info("data %s: %d images %s, %d classes, %s", self.path.name, self.num, self.shape,
                 len(self.class_names), f"mapped from the staged {staged}" if staged else
                 "in memory" if self.in_memory else "streamed in blocks")
        if self.num == 0:
            raise ValueError(f"{self.path} holds no images")

    @property
    def streamed(self) -> bool:
        """Read from the HDF5 file as the steps go (neither loaded nor mapped)."""
        return not self.in_memory and self.staged is None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_frequencies(self) -> np.ndarray:
        counts = np.bincount(self.labels, minlength=self.num_classes).astype(np.float64)
        return counts / counts.sum()

    def class_prototypes(self, num_classes: int) -> np.ndarray:
        """Each class's typical attribute row (attributes held by most of its images): what an
        attribute-conditioned generator is given to draw "a face of class c"."""
        out = np.zeros((num_classes, self.attributes.shape[1]), np.float32)
        for c in range(num_classes):
            rows = self.attributes[self.labels == c]
            if len(rows):
                out[c] = rows.mean(axis=0) > 0.5
        return out

    def steps_per_epoch(self, split: Split) -> int:
        return self.num // (split.batch * split.size)

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([seed, epoch])
        if self.in_memory:
            return rng.permutation(self.num)
        starts = rng.permutation(np.arange(0, self.num, BLOCK))
        return np.concatenate([s + rng.permutation(min(BLOCK, self.num - s)) for s in starts])

    def rank_indices(self, seed: int, epoch: int, split: Split, step: int) -> np.ndarray:
        order = self.epoch_order(seed, epoch)
        start = (step * split.size + split.rank) * split.batch
        return order[start:start + split.batch]

    def batches(self, seed: int, epoch: int, split: Split, start_step: int = 0,
                ahead: int = PREFETCH) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(images uint8, labels int32, indices) for this rank, from ``start_step`` on, read
        ``ahead`` batches in advance by a background thread (0: in the caller's thread)."""
        order = self.epoch_order(seed, epoch)
        pick = BlockReader(self.images) if self.streamed else lambda idx: self.images[idx]

        per_epoch = self.steps_per_epoch(split)

        def read() -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
            for step in range(start_step, per_epoch):
                faults.before_read(split.rank, epoch * per_epoch + step)
                start = (step * split.size + split.rank) * split.batch
                idx = order[start:start + split.batch]
                yield pick(idx), self.labels[idx], idx

        return read_ahead(read(), ahead, "prefetch") if ahead > 0 else read()

    def close(self) -> None:
        self.file.close()
