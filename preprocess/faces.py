"""Find one face per photo and cut it out as a square, optionally eye-aligned.

MTCNN runs on batches of same-size photos only: mtcnn pads photos of different sizes to a
common canvas, which changes its results (false faces appear), so the caller groups by size.
After the first ``auto_min_face`` photos of a size, the search skips face sizes far below the
smallest face found in them (``preprocess.pyramid``); a photo it misses is searched again in
full. The fixed-crop mode reproduces the classic CelebA crop (128×128 at row 59, column 24)
without a detector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from jobs.core.schema import FaceSpec
from preprocess.decode import Skip
from preprocess.pyramid import MinFaceRule

KEYPOINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    box: np.ndarray        # x, y, w, h in source pixels (float32)
    confidence: float      # NaN for fixed crops
    keypoints: np.ndarray  # 5×2 (x, y) in KEYPOINTS order; NaN for fixed crops


def crop_square(image: np.ndarray, cx: float, cy: float, side: float, angle: float,
                size: int) -> np.ndarray:
    """Sample a ``side``-pixel square centred on (cx, cy), rotated by ``angle`` radians, into
    a ``size``×``size`` image. Areas outside the photo are black."""
    img = Image.fromarray(image)
    factor = max(1, int(side / size / 2))  # shrink first: bicubic alone would alias
    if factor > 1:
        img = img.reduce(factor)
        cx, cy, side = cx / factor, cy / factor, side / factor
    scale = side / size
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    half = size / 2
    # output (u, v) -> input (a u + b v + c, d u + e v + f): a rotation about the centre
    data = (cos, -sin, cx - cos * half + sin * half,
            sin, cos, cy - sin * half - cos * half)
    out = img.transform((size, size), Image.Transform.AFFINE, data,
                        resample=Image.Resampling.BICUBIC, fillcolor=(0, 0, 0))
    return np.asarray(out, dtype=np.uint8)


def crop_face(image: np.ndarray, face: Face, spec: FaceSpec) -> np.ndarray:
    x, y, w, h = (float(v) for v in face.box)
    side = max(w, h) * (1 + spec.margin)
    angle = 0.0
    if spec.align and not np.isnan(face.keypoints).any():
        (lx, ly), (rx, ry) = face.keypoints[0], face.keypoints[1]
        angle = math.atan2(ry - ly, rx - lx)
    return crop_square(image, x + w / 2, y + h / 2, side, angle, spec.image_size)


class MtcnnExtractor:
    """Batched MTCNN detection + crop. The detector (weights) is shared by the process; the
    pyramid rule (``preprocess.pyramid``) is this extractor's, i.e. one shard's."""

    def __init__(self, spec: FaceSpec, fast: bool = True, detector=None):
        if detector is None:  # (tests pass a stand-in)
            from preprocess.detector import shared_detector  # imports TensorFlow: only here

            detector = shared_detector(fast)
        self.spec = spec
        self.detector = detector
        self.rule = MinFaceRule(spec.auto_min_face)
        self.retried = 0  # photos the narrowed search missed, searched again in full

    def detect(self, images: list[np.ndarray]) -> list[Face | Skip]:
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise ValueError(f"a detection batch must have one image size, got {shapes}")
        shape = images[0].shape
        full = self.rule.calibrating(shape, len(images))
        found = self._search(images[:full], None)
        self.rule.observe(shape, [None if isinstance(f, Skip) else float(min(f.box[2:]))
                                  for f in found])
        rest = images[full:]
        floor = self.rule.floor(shape)
        narrowed = self._search(rest, floor)
        missed = [i for i, f in enumerate(narrowed) if isinstance(f, Skip)]
        if floor is not None and missed:  # a smaller face than the first photos had?
            self.retried += len(missed)
            for i, face in zip(missed, self._search([rest[i] for i in missed], None)):
                narrowed[i] = face
        return found + narrowed

    def _search(self, images: list[np.ndarray], floor: float | None) -> list[Face | Skip]:
        if not images:
            return []
        raw = self.detector.detect(images, self.spec.min_face_size, floor,
                                   threshold_onet=min(0.7, self.spec.min_confidence))
        return [self._choose(found) for found in raw]

    def _choose(self, found: list[dict]) -> Face | Skip:
        if not found:
            return Skip("no_face")
        good = [f for f in found if f["confidence"] >= self.spec.min_confidence]
        if not good:
            best = max(f["confidence"] for f in found)
            return Skip("low_confidence", f"best {best:.3f} < {self.spec.min_confidence}")
        key = (lambda f: f["box"][2] * f["box"][3]) if self.spec.select == "largest" \
            else (lambda f: f["confidence"])
        pick = max(good, key=key)
        keypoints = np.asarray([pick["keypoints"][k] for k in KEYPOINTS], dtype=np.float32)
        return Face(box=np.asarray(pick["box"], dtype=np.float32),
                    confidence=float(pick["confidence"]), keypoints=keypoints)

    def extract(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, Face] | Skip]:
        out: list[tuple[np.ndarray, Face] | Skip] = []
        for image, face in zip(images, self.detect(images)):
            out.append(face if isinstance(face, Skip) else (crop_face(image, face, self.spec),
                                                             face))
        return out


class FixedCropExtractor:
    """CelebA's fixed window, no detector: for aligned CelebA photos only."""

    def __init__(self, spec: FaceSpec):
        self.spec = spec

    def extract(self, images: list[np.ndarray]) -> list[tuple[np.ndarray, Face] | Skip]:
        s = self.spec
        out: list[tuple[np.ndarray, Face] | Skip] = []
        for image in images:
            h, w = image.shape[:2]
            if s.crop_top + s.crop_size > h or s.crop_left + s.crop_size > w:
                out.append(Skip("too_small", f"{w}x{h} has no {s.crop_size}px window at "
                                             f"({s.crop_top}, {s.crop_left})"))
                continue
            face = Face(box=np.asarray([s.crop_left, s.crop_top, s.crop_size, s.crop_size],
                                       dtype=np.float32), confidence=float("nan"),
                        keypoints=np.full((5, 2), np.nan, dtype=np.float32))
            crop = crop_square(image, s.crop_left + s.crop_size / 2, s.crop_top + s.crop_size / 2,
                               s.crop_size, 0.0, s.image_size)
            out.append((crop, face))
        return out


def make_extractor(spec: FaceSpec, fast: bool = True) -> MtcnnExtractor | FixedCropExtractor:
    """``fast``: MTCNN as ``preprocess.detector.Detector(fast=True)`` (same detections)."""
    return MtcnnExtractor(spec, fast) if spec.detector == "mtcnn" else FixedCropExtractor(spec)
