"""The shard pipeline's speed-ups change nothing but speed: decoding ahead keeps the order, every
skip and count; the search narrowed to the data's face sizes learns from the first photos of
each size only and searches a photo it misses again in full."""
from __future__ import annotations

import json
import threading
import time

import h5py
import numpy as np
import pytest

from jobs.core.ahead import read_ahead
from jobs.core.schema import FaceSpec, PreprocessSpec
from preprocess.decode import Skip
from preprocess.extract import LEGACY, Tuning, iter_windows, process_shard
from preprocess.faces import MtcnnExtractor
from preprocess.fixture import build
from preprocess.inputs import open_photo_set
from preprocess.labels import Labeler
from preprocess.pyramid import MinFaceRule, levels_to_skip
from preprocess.report import ShardReport
from preprocess.shards import report_path


@pytest.fixture(scope="module")
def celeba(tmp_path_factory):
    """A small bundled set: faces, photos without faces and every kind of broken file."""
    return build(tmp_path_factory.mktemp("set") / "celeba", lfw_faces=6, lfw_negatives=2)


def test_read_ahead_keeps_order_and_stays_one_item_ahead():
    made = []

    def items():
        for i in range(20):
            made.append(i)
            yield i

    got = []
    for item in read_ahead(items()):
        time.sleep(0.002)  # the worker has time to run ahead, if it would
        assert len(made) <= item + 2, f"holding {item}, {len(made)} made: more than one ahead"
        got.append(item)
    assert got == list(range(20))


def test_read_ahead_raises_an_error_in_its_place_and_decodes_in_another_thread():
    threads = set()

    def items():
        for i in range(3):
            threads.add(threading.current_thread().name)
            yield i
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(items()):
            got.append(item)
    assert got == [0, 1, 2]
    assert threads and threading.current_thread().name not in threads


def windows_and_report(celeba, batch: int, ahead: bool):
    spec = PreprocessSpec(input_dir=str(celeba), output_dir="unused", batch_size=batch)
    photos = open_photo_set(str(celeba), "auto")
    report = ShardReport(0, 1)
    windows = iter_windows(photos, photos.names, Labeler(spec, photos.attribute_names), spec)
    names = []
    for window in read_ahead(windows) if ahead else windows:
        window.record(report)
        names.append([p.name for p in window.photos])
    return names, report.to_dict(), len(photos.names)


@pytest.mark.parametrize("batch", [1, 4, 1000])
def test_decoding_ahead_gives_the_same_windows_and_report(celeba, batch):
    inline_names, inline_report, total = windows_and_report(celeba, batch, ahead=False)
    ahead_names, ahead_report, _ = windows_and_report(celeba, batch, ahead=True)
    assert ahead_names == inline_names
    assert json.dumps(ahead_report) == json.dumps(inline_report)  # same entries, same order
    assert inline_report["photos"] == total  # every photo read is counted once
    skipped = sum(inline_report["skipped_counts"].values())
    assert skipped + sum(len(w) for w in inline_names) == total
    assert {"corrupt", "empty_file", "not_an_image", "too_small",
            "missing_attributes"} <= set(inline_report["skipped_counts"])


def shard_content(path) -> dict:
    with h5py.File(path, "r") as f:
        return {name: f[name][:] for name in f}


def test_a_shard_is_the_same_with_or_without_decoding_ahead(celeba, tmp_path):
    """Fixed crops (no detector): the photos, skips, order and faces are the pipeline's own."""
    outs = {}
    for tag, tuning in (("legacy", LEGACY), ("ahead", Tuning())):
        spec = PreprocessSpec(input_dir=str(celeba), output_dir=str(tmp_path / tag),
                              num_shards=2, batch_size=3,
                              faces=FaceSpec(detector="fixed_crop"))
        outs[tag] = (shard_content(process_shard(spec, 1, tuning)),
                     report_path(spec.output_dir, 1, 2).read_text())
    (legacy, legacy_report), (ahead, ahead_report) = outs["legacy"], outs["ahead"]
    assert ahead_report == legacy_report
    assert set(ahead) == set(legacy) and len(legacy["images"]) > 0
    for name in legacy:
        np.testing.assert_array_equal(ahead[name], legacy[name], err_msg=name)


def test_levels_to_skip_drops_only_levels_for_faces_below_the_floor():
    faces = [20.0, 28.2, 39.8, 56.1, 79.2, 111.7, 157.5]  # a 178x218 photo's, min face 20
    assert levels_to_skip(faces, None) == 0
    assert levels_to_skip(faces, 20.0) == 0
    assert levels_to_skip(faces, 27.0) == 1
    assert levels_to_skip(faces, 28.2) == 1
    assert levels_to_skip(faces, 40.0) == 3
    assert levels_to_skip(faces, 1000.0) == len(faces) - 1  # never no search at all


def test_min_face_rule_learns_per_photo_size_from_the_first_photos_only():
    rule = MinFaceRule(sample=4)
    celeba, big = (218, 178, 3), (512, 512, 3)
    assert rule.calibrating(celeba, 3) == 3 and rule.floor(celeba) is None
    rule.observe(celeba, [80.0, None, 60.0])
    assert rule.calibrating(celeba, 10) == 1 and rule.floor(celeba) is None
    rule.observe(celeba, [90.0])
    assert rule.calibrating(celeba, 10) == 0
    assert rule.floor(celeba) == 30.0  # half the smallest face among the first four
    assert rule.floor(big) is None and rule.calibrating(big, 10) == 4  # its own sample


def test_min_face_rule_without_faces_or_switched_off_searches_everything():
    rule = MinFaceRule(sample=2)
    rule.observe((10, 10, 3), [None, None])
    assert rule.floor((10, 10, 3)) is None  # no face seen: no evidence to narrow on
    off = MinFaceRule(sample=0)
    assert off.calibrating((10, 10, 3), 7) == 7
    off.observe((10, 10, 3), [50.0] * 7)
    assert off.floor((10, 10, 3)) is None


class FakeDetector:
    """Stands in for MTCNN: a photo's face side is its first pixel's value (0 = no face);
    a narrowed search finds only faces of at least its floor."""

    def __init__(self):
        self.calls: list[tuple[list[int], float | None]] = []

    def detect(self, images, min_face_size, floor, threshold_onet):
        sides = [int(im[0, 0, 0]) for im in images]
        self.calls.append((sides, floor))
        return [[{"box": [1, 1, s, s], "confidence": 0.99, "keypoints": {
            k: [0, 0] for k in ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")}}]
            if s and (floor is None or s >= floor) else [] for s in sides]


def photos(*sides: int) -> list[np.ndarray]:
    return [np.full((30, 20, 3), s, np.uint8) for s in sides]


def test_extractor_narrows_after_the_sample_and_searches_misses_again():
    fake = FakeDetector()
    ex = MtcnnExtractor(FaceSpec(auto_min_face=3), detector=fake)
    first = ex.detect(photos(80, 0))  # calibrating: full search
    rest = ex.detect(photos(60, 90, 25, 0))  # the 3rd photo of the size still calibrates
    assert [c[1] for c in fake.calls] == [None, None, 30.0, None]
    assert fake.calls[1][0] == [60] and fake.calls[2][0] == [90, 25, 0]
    assert fake.calls[3][0] == [25, 0]  # the narrowed search's misses, in full
    found = [None if isinstance(f, Skip) else int(f.box[2]) for f in first + rest]
    assert found == [80, None, 60, 90, 25, None]  # nothing lost, order kept
    assert ex.retried == 2


def test_extractor_with_auto_min_face_off_never_narrows():
    fake = FakeDetector()
    ex = MtcnnExtractor(FaceSpec(auto_min_face=0), detector=fake)
    for _ in range(3):
        ex.detect(photos(80, 70, 0))
    assert all(floor is None for _, floor in fake.calls) and len(fake.calls) == 3
