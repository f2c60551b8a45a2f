"""Array task k: photos of shard k → faces in ``shard-k-of-N.h5`` (+ its report).

Photos stream through in windows of ``batch_size`` (or fewer, under a byte budget): one MTCNN
call per image size in the window, results written in input order. A worker thread decodes the
next window while MTCNN runs on this one (one window ahead, no more). Memory is bounded by two
windows, never by the shard, and the shard's content depends neither on the batch size nor on
decoding ahead.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import platform
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jobs.core import facefile, runtime
from jobs.core.ahead import read_ahead
from jobs.core.fields import to_plain
from jobs.core.files import atomic_write_json, remove_stale_temps
from jobs.core.schema import PreprocessSpec
from preprocess.decode import Skip, load_rgb
from preprocess.faces import make_extractor
from preprocess.inputs import PhotoSet, open_photo_set
from preprocess.labels import Labeler
from preprocess.report import ShardReport
from preprocess.shards import ShardWriter, report_path, shard_path

log = logging.getLogger(__name__)

MAX_BUFFER_BYTES = 256 * 2**20
# Settings that do not change which faces end up in a shard, so array tasks may differ in them
# (batch_size only moves MTCNN's boxes by float noise, at most a few pixels).
NOT_CONTENT = {"batch_size", "sample_sheet", "seed", "output_dir"}
PACKAGES = ("numpy", "h5py", "Pillow", "mtcnn", "tensorflow-cpu", "tensorflow")


def spec_hash(spec: PreprocessSpec) -> str:
    content = {k: v for k, v in to_plain(spec).items() if k not in NOT_CONTENT}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


@dataclass
class Photo:
    name: str
    image: np.ndarray
    label: int
    attributes: np.ndarray


@dataclass
class Window:
    """Up to ``batch_size`` decoded photos, plus what happened to every photo read for it
    (``events``: ("skip", name, reason, detail) or ("convert", name, note), in input order).
    The report is written from the events by the thread that owns it, so decoding ahead in
    another thread cannot reorder it."""
    photos: list[Photo] = field(default_factory=list)
    events: list[tuple[str, ...]] = field(default_factory=list)
    read: int = 0  # photos read for this window, kept or skipped

    def record(self, report: ShardReport) -> None:
        report.photos += self.read
        for kind, name, *what in self.events:
            if kind == "skip":
                report.skip(name, *what)
            else:
                report.convert(name, *what)


@dataclass(frozen=True)
class Tuning:
    """How a shard task runs, not what it writes: neither setting changes a shard's bytes.
    ``decode_ahead``: decode the next window in a thread while MTCNN runs on this one;
    ``fast_mtcnn``: run MTCNN's networks as TensorFlow graphs on a batch handed to TensorFlow
    once (``preprocess.detector``; the same detections to the last bit). bench/ measures both
    against LEGACY."""
    decode_ahead: bool = True
    fast_mtcnn: bool = True


# the pipeline before issue #16 (in-line decode, mtcnn as shipped): kept as the
# benchmark's baseline and the test that both give the same shards
LEGACY = Tuning(decode_ahead=False, fast_mtcnn=False)


def iter_windows(photos: PhotoSet, names: list[str], labeler: Labeler,
                 spec: PreprocessSpec) -> Iterator[Window]:
    """Decoded, labelled photos in input order, ``batch_size`` at a time (fewer if they would
    exceed the byte budget); the last window may hold only events. Touches no shared state, so
    it may run in another thread."""
    window, buffered = Window(), 0
    min_side = spec.faces.min_face_size
    empty = np.zeros(len(photos.attribute_names), dtype=np.uint8)
    for name in names:
        window.read += 1
        try:
            attrs = None
            if photos.layout != "plain":
                attrs = photos.attributes.get(Path(name).name)
                if attrs is None:
                    raise Skip("missing_attributes", "not in the attribute file")
            label = labeler.label(attrs)
            image, note = load_rgb(photos.root / name, min_side)
        except Skip as skip:
            window.events.append(("skip", name, skip.reason, skip.detail))
            continue
        if note:
            window.events.append(("convert", name, note))
        window.photos.append(Photo(name, image, label, empty if attrs is None else attrs))
        buffered += image.nbytes
        if len(window.photos) >= spec.batch_size or buffered > MAX_BUFFER_BYTES:
            yield window
            window, buffered = Window(), 0
    if window.read:
        yield window


def extract_in_order(extractor, window: list[Photo]) -> list:
    """Run the extractor once per image size in the window (MTCNN must not mix sizes), and
    return the results in the window's order, so a shard never depends on the batching."""
    by_shape: dict[tuple, list[int]] = {}
    for i, photo in enumerate(window):
        by_shape.setdefault(photo.image.shape, []).append(i)
    results: list = [None] * len(window)
    for indices in by_shape.values():
        for i, result in zip(indices, extractor.extract([window[i].image for i in indices])):
            results[i] = result
    return results


def process_shard(spec: PreprocessSpec, index: int, tuning: Tuning = Tuning()) -> Path:
    """Write shard ``index`` of ``spec.num_shards`` (replacing an older one atomically)."""
    started = time.monotonic()
    photos = open_photo_set(spec.input_dir, spec.layout)
    names = photos.shard(index, spec.num_shards)
    labeler = Labeler(spec, photos.attribute_names)
    final = shard_path(spec.output_dir, index, spec.num_shards)
    for stale in remove_stale_temps(final):
        log.info("removed %s left by a killed task", stale.name)
    log.info("shard %d/%d: %d of %d photos (%s layout) -> %s", index, spec.num_shards,
             len(names), len(photos.names), photos.layout, final)
    extractor = make_extractor(spec.faces, tuning.fast_mtcnn)
    report = ShardReport(index, spec.num_shards)
    attrs = {"shard_index": index, "num_shards": spec.num_shards, "spec_hash": spec_hash(spec),
             "spec": json.dumps(to_plain(spec)), "versions": json.dumps(package_versions()),
             "class_names": labeler.class_names, "attribute_names": photos.attribute_names,
             "image_size": spec.faces.image_size, "layout": photos.layout,
             "input_dir": str(spec.input_dir), "host": platform.node(),
             "created": dt.datetime.now().isoformat(timespec="seconds")}
    writer = ShardWriter(final, spec.faces.image_size, len(photos.attribute_names),
                         spec.chunk_images, spec.compression, attrs)
    windows = iter_windows(photos, names, labeler, spec)
    if tuning.decode_ahead:
        windows = read_ahead(windows, name="decode-ahead")
    try:
        progress = _Progress(len(names), f"shard {index}")
        for window in windows:
            window.record(report)
            writer.append(_rows(window.photos, extract_in_order(extractor, window.photos),
                                report))
            progress.advance(window.read, report.faces)
        progress.close()
        atomic_write_json(report_path(spec.output_dir, index, spec.num_shards), report.to_dict())
        writer.commit(report.counts())
    except BaseException:
        windows.close()  # waits for a decode in flight: no thread outlives the shard
        writer.abort()
        raise
    skipped = ", ".join(f"{r}={n}" for r, n in report.to_dict()["skipped_counts"].items())
    retried = getattr(extractor, "retried", 0)  # see preprocess.pyramid
    log.info("shard %d/%d done: %d faces from %d photos in %.1f s (skipped: %s)%s", index,
             spec.num_shards, report.faces, report.photos, time.monotonic() - started,
             skipped or "none", f"; {retried} photos searched again in full" if retried else "")
    return final


def _rows(batch: list[Photo], results: list, report: ShardReport) -> dict[str, np.ndarray]:
    kept = []
    for photo, result in zip(batch, results):
        if isinstance(result, Skip):
            report.skip(photo.name, result.reason, result.detail)
        else:
            kept.append((photo, *result))
            report.keep(photo.label)
    if not kept:
        return {facefile.IMAGES: np.zeros((0,))}
    return {facefile.IMAGES: np.stack([crop for _, crop, _ in kept]),
            facefile.LABELS: np.asarray([p.label for p, _, _ in kept], dtype=np.int16),
            facefile.ATTRIBUTES: np.stack([p.attributes for p, _, _ in kept]),
            facefile.SOURCE: np.asarray([p.name for p, _, _ in kept], dtype=object),
            facefile.BOX: np.stack([f.box for _, _, f in kept]),
            facefile.CONFIDENCE: np.asarray([f.confidence for _, _, f in kept],
                                            dtype=np.float32),
            facefile.KEYPOINTS: np.stack([f.keypoints for _, _, f in kept])}


class _Progress:
    """tqdm on a terminal; a plain line every ~10% in batch logs."""

    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.next_log = total, label, 0, total / 10
        self.bar = None
        if runtime.show_progress():
            self.bar = tqdm(total=total, desc=label, unit="photo")

    def advance(self, n: int, faces: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            self.bar.set_postfix(faces=faces)
        elif self.next_log <= self.done < self.total:
            log.info("%s: %d/%d photos, %d faces", self.label, self.done, self.total, faces)
            while self.next_log <= self.done:
                self.next_log += self.total / 10

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
