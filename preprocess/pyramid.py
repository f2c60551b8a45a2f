"""How much of MTCNN's image pyramid a shard task searches, derived from its own photos.

MTCNN's first network (PNet) slides a 12-pixel window over the photo scaled to a pyramid of
sizes; level i looks for faces of about ``min_face_size / 0.709**i`` pixels. The finest levels
(the smallest faces) are the largest images, so they cost the most: on a 178×218 photo with
``min_face_size: 20`` level 0 alone is half of PNet's pixels, and it looks for 20-pixel faces
that aligned CelebA photos (faces of 50-110 px) do not have.

The rule (``faces.auto_min_face``, a photo count N):

* the first N photos of each photo size are searched in full, down to ``min_face_size``
  (the search every photo got before this rule existed);
* after them, photos of that size skip the leading levels that look for faces smaller than
  half the smallest face chosen among those N (the shorter side of its box). Half, because
  dropping the levels that look for faces of at least half a face's size moved some boxes by
  2-3 px on the bundled set (IoU 0.91), while dropping those below half left every box
  unchanged to the pixel;
* a photo where the narrowed search finds no usable face is searched again in full, so a
  photo with a smaller face than the first N had still gets today's answer;
* a size whose first N photos gave no face is never narrowed; ``auto_min_face: 0`` never
  narrows anything.

Only the input order decides which photos calibrate (not the batch size), so a shard stays
independent of the batching. This module is pure bookkeeping (no TensorFlow): the detector
applies the floor to mtcnn's own pyramid (``preprocess.detector``).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence

log = logging.getLogger(__name__)

KEEP_FRACTION = 0.5  # levels for faces >= this share of the smallest face seen are kept


def levels_to_skip(level_faces: Sequence[float], floor: float | None) -> int:
    """How many leading pyramid levels look for faces smaller than ``floor`` (``level_faces``:
    the face size each level looks for, finest first). The coarsest level is always kept, so a
    photo is never left without a search."""
    if floor is None:
        return 0
    skip = 0
    while skip < len(level_faces) - 1 and level_faces[skip] < floor:
        skip += 1
    return skip


class MinFaceRule:
    """Per photo size (the array shape): count the photos searched in full, remember the
    smallest face among the first ``sample`` of them, then give the floor for the rest."""

    def __init__(self, sample: int, fraction: float = KEEP_FRACTION):
        self.sample = sample
        self.fraction = fraction
        self.seen: dict[tuple, int] = {}
        self.smallest: dict[tuple, float] = {}

    def calibrating(self, shape: tuple, count: int) -> int:
        """How many of the next ``count`` photos of this size still get the full search."""
        if self.sample <= 0:
            return count
        return min(count, max(0, self.sample - self.seen.get(shape, 0)))

    def observe(self, shape: tuple, face_sides: Sequence[float | None]) -> None:
        """Record the fully searched photos' chosen faces (shorter box side; None: no face)."""
        before = self.seen.get(shape, 0)
        self.seen[shape] = before + len(face_sides)
        sides = [s for s in face_sides if s is not None and s > 0]
        if sides:
            self.smallest[shape] = min([*sides, self.smallest.get(shape, float("inf"))])
        if self.sample > 0 and before < self.sample <= self.seen[shape]:
            floor = self.floor(shape)
            if floor is None:
                log.info("%s photos: no face in the first %d, so every photo of this size is "
                         "searched down to the smallest face size", _size(shape), self.sample)
            else:
                log.info("%s photos: smallest face %.0f px in the first %d; from now on looking "
                         "for faces of %.0f px and up (a photo with none found there is "
                         "searched again in full)", _size(shape), self.smallest[shape],
                         self.sample, floor)

    def floor(self, shape: tuple) -> float | None:
        """Smallest face size worth searching for in photos of this size; None: search all."""
        if self.sample <= 0 or self.seen.get(shape, 0) < self.sample \
                or shape not in self.smallest:
            return None
        return self.smallest[shape] * self.fraction


def _size(shape: tuple) -> str:
    return f"{shape[1]}x{shape[0]}"
