"""Small pieces of preprocessing: sharding, alignment, rules, decoding edge cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from jobs.core import facefile
from jobs.core.grids import image_grid
from jobs.core.schema import ClassRule, FaceSpec, PreprocessSpec
from preprocess.decode import Skip, load_rgb
from preprocess.faces import Face, crop_face
from preprocess.fixture import write_hostile_photos
from preprocess.inputs import list_images, shard_slice
from preprocess.labels import Labeler
from preprocess.merge import write_sample_sheet


def test_shards_partition_the_list_deterministically():
    items = list(range(10))
    shards = [shard_slice(items, k, 3) for k in range(3)]
    assert sum(shards, []) == items and [len(s) for s in shards] == [3, 3, 4]
    assert shard_slice(list(range(2)), 4, 5) == [1] and shard_slice(list(range(2)), 0, 5) == []
    with pytest.raises(ValueError):
        shard_slice(items, 3, 3)


def _dot_image(left, right) -> np.ndarray:
    img = np.zeros((200, 200, 3), np.uint8)
    for x, y in (left, right):
        img[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3] = 255
    return img


def _dot_rows(crop: np.ndarray) -> list[float]:
    mask = crop[..., 0] > 100
    cols = np.where(mask.any(axis=0))[0]
    halves = [cols[cols < crop.shape[1] / 2], cols[cols >= crop.shape[1] / 2]]
    return [np.mean(np.where(mask[:, h].any(axis=1))[0]) for h in halves]


def test_alignment_levels_the_eyes():
    angle = math.radians(20)
    cx, cy, r = 100, 100, 30
    left = (cx - r * math.cos(angle), cy - r * math.sin(angle))
    right = (cx + r * math.cos(angle), cy + r * math.sin(angle))
    image = _dot_image(left, right)
    face = Face(box=np.array([60, 60, 80, 80], np.float32), confidence=1.0,
                keypoints=np.array([left, right, (0, 0), (0, 0), (0, 0)], np.float32))
    aligned = crop_face(image, face, FaceSpec(image_size=64, margin=0.0, align=True))
    plain = crop_face(image, face, FaceSpec(image_size=64, margin=0.0, align=False))
    a_left, a_right = _dot_rows(aligned)
    p_left, p_right = _dot_rows(plain)
    assert abs(a_left - a_right) <= 1.0
    assert abs(p_left - p_right) > 10  # without alignment the tilt stays


def test_rules_first_match_filter_and_no_class():
    names = ["Attractive", "Male", "Smiling"]
    spec = PreprocessSpec(input_dir="x", output_dir="y",
                          classes=[ClassRule(name="man", all=["Male"]),
                                   ClassRule(name="smile", all=["Smiling"], none=["Male"])],
                          filter=ClassRule(name="attractive", all=["Attractive"]))
    lab = Labeler(spec, names)
    assert lab.class_names == ["man", "smile"]
    assert lab.label(np.array([1, 1, 1], np.uint8)) == 0  # first match wins
    assert lab.label(np.array([1, 0, 1], np.uint8)) == 1
    with pytest.raises(Skip, match="no_class"):
        lab.label(np.array([1, 0, 0], np.uint8))
    with pytest.raises(Skip, match="filtered"):
        lab.label(np.array([0, 1, 1], np.uint8))


@pytest.mark.parametrize("mode,note", [("L", "greyscale"), ("CMYK", "cmyk"), ("RGBA", "alpha"),
                                       ("P", None), ("RGB", None)])
def test_unusual_modes_are_converted(tmp_path, mode, note):
    path = tmp_path / "x.png" if mode != "CMYK" else tmp_path / "x.jpg"
    Image.new("RGB", (40, 30), (200, 100, 50)).convert(mode).save(path)
    rgb, got = load_rgb(path, min_side=20)
    assert rgb.shape == (30, 40, 3) and rgb.dtype == np.uint8
    assert got == (note if mode != "P" else "p")


def test_sixteen_bit_is_scaled_not_clipped(tmp_path):
    arr = (np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    rgb, note = load_rgb(tmp_path / "deep.png", min_side=20)
    assert note == "16-bit" and rgb.max() == 255 and rgb.min() == 0
    assert 100 < rgb.mean() < 155  # a ramp, not a white image


@pytest.mark.parametrize("data,reason", [(b"", "empty_file"), (b"hello", "not_an_image")])
def test_unusable_files_raise_skip(tmp_path, data, reason):
    path = tmp_path / "bad.jpg"
    path.write_bytes(data)
    with pytest.raises(Skip) as info:
        load_rgb(path, min_side=20)
    assert info.value.reason == reason


def test_hostile_files_are_listed_then_converted_or_skipped_with_their_reason(tmp_path):
    """Listed (a link loop, a dangling link, a FIFO too: counted, never silently left out),
    then each converted or skipped by its reason, without opening the FIFO (which would
    block). ``unreadable.jpg`` reads as root; the system test runs it without that right."""
    truth = write_hostile_photos(tmp_path)
    assert list_images(tmp_path) == sorted(truth)
    upright = None
    for name, expect in sorted(truth.items()):
        if expect["expect"] == "skip" and name != "unreadable.jpg":
            with pytest.raises(Skip) as info:
                load_rgb(tmp_path / name, min_side=20)
            assert info.value.reason == expect["reason"], name
        elif name != "unreadable.jpg":
            rgb, note = load_rgb(tmp_path / name, min_side=20)
            assert note == expect.get("converted"), name
            if name == "photo.webp":
                upright = rgb
    rotated, _ = load_rgb(tmp_path / "exif_rotated.jpg", min_side=20)
    assert rotated.shape == upright.shape  # turned the right way: not lying on its side
    assert np.abs(rotated.astype(int) - upright).mean() < 8


@pytest.mark.parametrize("names, captioned", [(["all"], False), (["smiling", "other"], True)])
def test_the_sample_sheet_captions_classes_only_when_there_are_some(tmp_path, names, captioned):
    """An unlabelled set (one class, "all") gets a sheet without captions; a labelled one
    names each face's class under it."""
    images = np.full((4, 16, 16, 3), 128, np.uint8)
    merged = facefile.write_arrays(tmp_path / "faces.h5", images,
                                   np.arange(4) % len(names), class_names=names)
    sheet = Image.open(write_sample_sheet(merged, tmp_path / "sheet.png", 4, seed=0))
    plain = image_grid(images, None, None)
    assert (sheet.size != plain.size) == captioned, (sheet.size, plain.size)
