"""The shard tasks' MTCNN against mtcnn's own: with the full pyramid it finds exactly the same
(to the last bit, fast or as mtcnn runs it), and narrowed it still finds the bundled set's
faces. If an mtcnn upgrade changes the internals ``preprocess.detector`` builds on, this fails
first."""
from __future__ import annotations

import json

import numpy as np
import pytest

from preprocess.decode import load_rgb
from preprocess.fixture import build, load_truth


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[np.ndarray]:
    """CelebA-size (178x218) photos of the bundled set: faces and a few without."""
    celeba = build(tmp_path_factory.mktemp("set") / "celeba", lfw_faces=8, lfw_negatives=2)
    root = celeba / "img_align_celeba" / "img_align_celeba"
    out = []
    for name, truth in sorted(load_truth(celeba).items()):
        if truth["expect"] == "face" or truth.get("reason") == "no_face":
            image, _ = load_rgb(root / name, 20)
            if image.shape == (218, 178, 3):
                out.append(image)
    return out[:24]


def plain(found) -> str:
    return json.dumps(found, sort_keys=True,
                      default=lambda v: v.tolist() if hasattr(v, "tolist") else float(v))


def test_full_pyramid_is_exactly_mtcnns(photos):
    from mtcnn import MTCNN

    from preprocess.detector import Detector

    stock = MTCNN(stages="face_and_landmarks_detection", device="CPU:0").detect_faces(
        photos, box_format="xywh", min_face_size=20, threshold_onet=0.7)
    for fast in (False, True):
        ours = Detector(fast).detect(photos, 20, None, threshold_onet=0.7)
        assert plain(ours) == plain(stock), f"fast={fast}"


def largest_box(found: list[dict]) -> np.ndarray | None:
    if not found:
        return None
    return np.asarray(max(found, key=lambda f: f["box"][2] * f["box"][3])["box"], float)


def test_a_floor_skips_only_the_fine_levels_and_keeps_the_faces(photos):
    from preprocess.detector import level_faces, shared_detector

    faces = level_faces(178, 218, 20)
    assert faces[0] == pytest.approx(20) and faces[1] == pytest.approx(20 / 0.709)
    det = shared_detector()
    full = [largest_box(f) for f in det.detect(photos, 20, None, threshold_onet=0.7)]
    narrow = [largest_box(f) for f in det.detect(photos, 20, 27.0, threshold_onet=0.7)]
    assert [b is None for b in narrow] == [b is None for b in full]
    same = [np.array_equal(a, b) for a, b in zip(full, narrow) if a is not None]
    assert np.mean(same) >= 0.9  # all, here; float noise may move a borderline box
    # all levels but the coarsest skipped: still a search, no error
    assert len(det.detect(photos, 20, 10_000.0, threshold_onet=0.7)) == len(photos)


def test_a_large_min_face_size_finds_faces_where_stock_mtcnn_finds_none(photos):
    """mtcnn's level count ignores min_face_size: above ~22 px on a 178-px photo its last level
    falls under PNet's window and stock mtcnn finds nothing (so the pyramid is narrowed by
    dropping levels instead). ``PyramidPNet`` leaves such levels out.

    What stock mtcnn does with that level depends on the machine: with AVX-512 kernels the
    batch comes back empty, on AVX2-only CPUs Keras raises "The convolution operation
    resulted in an empty output". Either way it finds no face: that alone is asserted."""
    from mtcnn import MTCNN

    from preprocess.detector import shared_detector

    assert not any(stock_faces_or_none(MTCNN(), photos[:4], 40))
    found = shared_detector().detect(photos[:4], 40, None, threshold_onet=0.7)
    assert sum(bool(f) for f in found) >= 3


def stock_faces_or_none(mtcnn, photos: list[np.ndarray], min_face_size: int) -> list:
    """Stock mtcnn's detections, or no detections where its too-small last pyramid level makes
    Keras refuse the convolution (a ValueError naming the empty output, on some CPUs)."""
    try:
        return mtcnn.detect_faces(photos, min_face_size=min_face_size, threshold_onet=0.7)
    except ValueError as error:
        assert "empty output" in str(error), error
        return [[] for _ in photos]
