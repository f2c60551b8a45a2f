"""Preprocessing end to end on the bundled face set: shards as separate processes, merge,
face boxes against their known placement, labels against the rules, bad files and kills."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from jobs.core import exitcodes
from jobs.core.loader import load_spec
from preprocess.fixture import build, load_truth
from preprocess.shards import shard_path
from tests.conftest import QUIET_ENV, ROOT

RULES = [  # the example spec's four classes, restated independently of the code under test
    lambda a: a["Attractive"] and not a["Male"] and not a["High_Cheekbones"] and
    not a["Big_Lips"],
    lambda a: a["Attractive"] and a["Male"],
    lambda a: a["Attractive"] and not a["Male"] and a["High_Cheekbones"],
    lambda a: a["Attractive"] and not a["Male"] and not a["High_Cheekbones"] and a["Big_Lips"],
]


def expected_label(attrs: dict) -> int | None:
    return next((k for k, rule in enumerate(RULES) if rule(attrs)), None)


def make_spec(folder: Path, input_dir: Path, out: Path, name: str = "", **extra: str) -> Path:
    text = (ROOT / "jobs/examples/preprocess_faces.yaml").read_text()
    text = text.replace("data/default/celeba", str(input_dir)).replace("runs/demo/faces",
                                                                       str(out))
    for key, value in extra.items():
        text = text.replace(f"  {key}: ", f"  {key}: {value}  # was ", 1)
    path = folder / f"{name or out.name}.yaml"
    path.write_text(text)
    return path


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=QUIET_ENV, cwd=ROOT, timeout=timeout,
                          capture_output=True, text=True)


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / (aw * ah + bw * bh - inter)


def read_merged(out: Path) -> dict[str, np.ndarray]:
    with h5py.File(out / "faces.h5", "r") as f:
        data = {name: f[name][:] for name in f}
        data["source"] = np.asarray([s.decode() if isinstance(s, bytes) else s
                                     for s in data["source"]])
        data["class_names"] = [str(c) for c in f.attrs["class_names"]]
        data["complete"] = bool(f.attrs["complete"])
    return data


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """The face set, processed as 3 array tasks in 3 concurrent processes, then merged."""
    root = tmp_path_factory.mktemp("pre")
    celeba = build(root / "celeba")
    spec = make_spec(root, celeba, root / "out")
    procs = [subprocess.Popen([sys.executable, "-m", "jobs", "run", str(spec), "--index",
                               str(k)], env=QUIET_ENV, cwd=ROOT, stderr=subprocess.PIPE,
                              text=True) for k in range(3)]
    for proc in procs:
        _, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, err
    merged = run("-m", "jobs", "run", str(spec), "--merge")
    assert merged.returncode == 0, merged.stderr
    return {"root": root, "celeba": celeba, "spec": spec, "out": root / "out",
            "truth": load_truth(celeba), "data": read_merged(root / "out"),
            "report": json.loads((root / "out/faces.report.json").read_text())}


def skipped_reasons(report: dict) -> dict[str, str]:
    return {item["file"]: reason for reason, items in report["skipped"].items()
            for item in items}


def test_every_photo_accounted_for_exactly_once(faces):
    data, truth, report = faces["data"], faces["truth"], faces["report"]
    kept = list(data["source"])
    assert len(kept) == len(set(kept)), "a face appears twice"
    skipped = skipped_reasons(report)
    assert not set(kept) & set(skipped)
    assert set(kept) | set(skipped) == set(truth)
    assert report["photos"] == len(truth) and report["faces"] == len(kept)
    assert data["complete"] and len(data["images"]) == len(kept)


def test_boxes_land_on_the_faces(faces):
    data, truth = faces["data"], faces["truth"]
    ious = []
    for name, box in zip(data["source"], data["box"]):
        assert truth[name]["expect"] == "face", f"{name} ({truth[name]}) gave a face"
        ious.append(iou(box, truth[name]["box"]))
    assert min(ious) > 0.4, sorted(ious)[:5]
    assert np.mean(ious) > 0.65


def test_faces_are_found_and_misses_are_explained(faces):
    truth, kept = faces["truth"], set(faces["data"]["source"])
    skipped = skipped_reasons(faces["report"])
    labelled = [n for n, t in truth.items()
                if t["expect"] == "face" and expected_label(t["attributes"]) is not None]
    missed = [n for n in labelled if n not in kept]
    assert len(missed) <= 0.05 * len(labelled), missed
    for name in missed:
        assert skipped[name] in ("no_face", "low_confidence"), (name, skipped[name])


def test_labels_follow_the_rules(faces):
    data, truth = faces["data"], faces["truth"]
    assert data["class_names"] == ["feminine", "masculine", "cheekbones", "lips"]
    for name, label, attrs in zip(data["source"], data["labels"], data["attributes"]):
        expected = expected_label(truth[name]["attributes"])
        assert label == expected, name
        assert list(attrs) == list(truth[name]["attributes"].values())
    skipped = skipped_reasons(faces["report"])
    for name, t in truth.items():
        if t["expect"] == "face" and expected_label(t["attributes"]) is None:
            assert skipped[name] == "no_class"
    assert set(data["labels"]) == {0, 1, 2, 3}


def test_bad_files_reported_with_their_reason(faces):
    truth, skipped = faces["truth"], skipped_reasons(faces["report"])
    bad = {n: t["reason"] for n, t in truth.items() if t["expect"] == "skip"}
    assert {"corrupt", "empty_file", "not_an_image", "too_small", "missing_attributes",
            "no_face"} <= set(bad.values())
    for name, reason in bad.items():
        got = skipped.get(name)
        if reason == "no_face":
            assert got in ("no_face", "low_confidence"), (name, got)
        else:
            assert got == reason, (name, truth[name]["source"], got)
    converted = {n: t["converted"] for n, t in truth.items() if "converted" in t}
    assert set(converted.values()) == {"greyscale", "cmyk", "alpha", "16-bit"}
    by_note = {n: note for note, names in faces["report"]["converted"].items() for n in names}
    for name, note in converted.items():
        assert by_note[name] == note
        assert name in set(faces["data"]["source"]), f"converted {note} photo lost its face"


def test_shards_have_provenance_and_chunks(faces):
    with h5py.File(shard_path(faces["out"], 1, 3), "r") as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape[1:] == (64, 64, 3)
        assert f["images"].chunks[1:] == (64, 64, 3)
        assert f.attrs["complete"] and f.attrs["num_shards"] == 3
        versions = json.loads(f.attrs["versions"])
        assert {"numpy", "h5py", "mtcnn"} <= set(versions)
        assert json.loads(f.attrs["spec"])["faces"]["image_size"] == 64
        assert f["keypoints"].shape[1:] == (5, 2) and np.all(f["confidence"][:] >= 0.9)
    manifest = json.loads((faces["out"] / "faces.manifest.json").read_text())
    assert sum(s["faces"] for s in manifest["shards"]) == manifest["num_faces"]
    assert (faces["out"] / "sample_sheet.png").stat().st_size > 10_000


def test_merged_file_is_a_view_not_a_copy(faces):
    merged = (faces["out"] / "faces.h5").stat().st_size
    shards = sum(shard_path(faces["out"], k, 3).stat().st_size for k in range(3))
    assert merged < shards / 20
    with h5py.File(faces["out"] / "faces.h5", "r") as f:
        assert f["images"].is_virtual


def test_killed_task_leaves_no_valid_shard_and_rerun_matches(faces, tmp_path):
    # small batches so the kill lands between batches of a shard being written
    clean_spec = make_spec(tmp_path, faces["celeba"], tmp_path / "clean", batch_size="4")
    assert run("-m", "jobs", "run", str(clean_spec)).returncode == 0
    spec = make_spec(tmp_path, faces["celeba"], tmp_path / "killed", batch_size="4")
    out = tmp_path / "killed"
    for k in (0, 2):
        assert run("-m", "jobs", "run", str(spec), "--index", str(k)).returncode == 0
    proc = subprocess.Popen([sys.executable, "-m", "jobs", "run", str(spec), "--index", "1"],
                            env=QUIET_ENV, cwd=ROOT, stderr=subprocess.DEVNULL)
    final = shard_path(out, 1, 3)
    deadline = time.monotonic() + 120
    while not list(out.glob(f".{final.name}.tmp-*")):  # the writer has started
        assert time.monotonic() < deadline and proc.poll() is None, "task ended too soon"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert not final.exists(), "a killed task left a shard that looks valid"
    merge = run("-m", "jobs", "run", str(spec), "--merge")
    assert merge.returncode == exitcodes.FAILED
    assert "shard 1: missing" in merge.stderr and "--array=1 " in merge.stderr
    assert run("-m", "jobs", "run", str(spec), "--index", "1").returncode == 0
    assert not list(out.glob(".*tmp-*")), "stale temporary was not cleaned up"
    assert run("-m", "jobs", "run", str(spec), "--merge").returncode == 0
    again, clean = read_merged(out), read_merged(tmp_path / "clean")
    for name in ("images", "labels", "attributes", "source", "box", "keypoints"):
        np.testing.assert_array_equal(again[name], clean[name], err_msg=name)
    # batching changes nothing but float noise in MTCNN: same photos, same labels
    np.testing.assert_array_equal(again["source"], faces["data"]["source"])


def test_merge_refuses_shards_made_with_other_settings(faces, tmp_path):
    out = tmp_path / "mixed"
    spec = make_spec(tmp_path, faces["celeba"], out)
    for k in range(3):
        assert run("-m", "jobs", "run", str(spec), "--index", str(k)).returncode == 0
    other = make_spec(tmp_path, faces["celeba"], out, name="other", margin="0.5")
    assert run("-m", "jobs", "run", str(other), "--index", "2").returncode == 0
    merge = run("-m", "jobs", "run", str(spec), "--merge")
    assert merge.returncode == exitcodes.FAILED
    assert "shard 2: was made with different preprocessing settings" in merge.stderr


def test_original_layout_txt_gives_the_same_attributes(faces, tmp_path):
    from preprocess.inputs import open_photo_set

    original = build(tmp_path / "orig", layout="original")
    a = open_photo_set(faces["celeba"])
    b = open_photo_set(original)
    assert (a.layout, b.layout) == ("kaggle", "original")
    assert a.names == b.names and a.attribute_names == b.attribute_names
    assert all(np.array_equal(a.attributes[n], b.attributes[n]) for n in a.attributes)


def test_local_run_does_all_shards_then_merges_and_resumes(faces, tmp_path):
    spec = make_spec(tmp_path, faces["celeba"], tmp_path / "local", detector="fixed_crop")
    first = run("-m", "jobs", "run", str(spec))
    assert first.returncode == 0, first.stderr
    data = read_merged(tmp_path / "local")
    assert np.allclose(data["box"][0], [24, 59, 128, 128])  # the classic CelebA window
    shard_path(tmp_path / "local", 1, 3).unlink()
    second = run("-m", "jobs", "run", str(spec))
    assert second.returncode == 0
    assert second.stderr.count("already complete") == 2
    np.testing.assert_array_equal(read_merged(tmp_path / "local")["images"], data["images"])


def test_search_narrowed_to_the_datas_face_sizes_finds_the_same_faces(faces, tmp_path):
    """``auto_min_face`` (on by default) against the full search, the bundled set as one shard:
    the same photos give a face, and the boxes stay put. Here every box is the same to the
    pixel; a float-noise flip of MTCNN between batch compositions (which the full search shows
    too, e.g. between batch sizes) moves a box 2-3 px, so the bound leaves room for one."""
    from jobs.core.loader import parse_set_args
    from preprocess.extract import process_shard

    boxes = {}
    for auto in (0, 32):
        job = load_spec(faces["spec"], parse_set_args([
            "preprocess.num_shards=1", f"preprocess.faces.auto_min_face={auto}",
            f"preprocess.output_dir={tmp_path / str(auto)}"]))
        with h5py.File(process_shard(job.work, 0), "r") as f:
            boxes[auto] = dict(zip(f["source"].asstr()[:], f["box"][:]))
    assert set(boxes[32]) == set(boxes[0]) and len(boxes[0]) > 100
    ious = np.array([iou(boxes[0][name], boxes[32][name]) for name in boxes[0]])
    assert np.mean(ious >= 0.95) >= 0.98 and ious.min() > 0.85, np.sort(ious)[:5]


def test_plain_folder_needs_no_attributes(tmp_path):
    from jobs.core.loader import parse_set_args
    from preprocess.extract import process_shard

    photos = tmp_path / "plain" / "nested"
    photos.mkdir(parents=True)
    celeba = build(tmp_path / "c", lfw_faces=4, lfw_negatives=0)
    for p in sorted((celeba / "img_align_celeba/img_align_celeba").glob("*.jpg"))[:12]:
        (photos / p.name).write_bytes(p.read_bytes())
    spec = make_spec(tmp_path, tmp_path / "plain", tmp_path / "plainout")
    with pytest.raises(Exception, match="plain photo folder has no attributes"):
        process_shard(load_spec(spec).work, 0)
    job = load_spec(spec, parse_set_args(["preprocess.classes=[]", "preprocess.num_shards=1"]))
    path = process_shard(job.work, 0)
    with h5py.File(path, "r") as f:
        assert "attributes" not in f and set(f["labels"][:]) == {0}
        assert all(s.startswith("nested/") for s in f["source"].asstr()[:])


def test_hostile_photos_are_converted_or_skipped_and_never_stop_a_shard(tmp_path):
    """EXIF-rotated JPEG, animated GIF, multi-page TIFF, WebP, HTML saved as .jpg, a PNG
    header claiming 10^10 pixels, a symlink loop, a dangling link, a FIFO and a file the job
    may not read (the shard runs without CAP_DAC_OVERRIDE, as a normal user would), among
    real photos: each is converted (and its face found where it is, the right way up) or
    skipped with its reason and counted; the shard and the merge finish."""
    from preprocess.fixture import write_hostile_photos

    photos = tmp_path / "photos"
    truth = write_hostile_photos(photos)
    celeba = build(tmp_path / "c", lfw_faces=3, lfw_negatives=0)
    good = sorted((celeba / "img_align_celeba/img_align_celeba").glob("*.jpg"))[:3]
    for p in good:
        (photos / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "out"
    spec = make_spec(tmp_path, photos, out)
    sets = ["--set", "preprocess.classes=[]", "--set", "preprocess.num_shards=1"]
    shard = subprocess.run(["setpriv", "--bounding-set=-dac_override,-dac_read_search",
                            sys.executable, "-m", "jobs", "run", str(spec), "--index", "0",
                            *sets], env=QUIET_ENV, cwd=ROOT, capture_output=True, text=True,
                           timeout=900)
    assert shard.returncode == 0, shard.stderr[-3000:]
    assert run("-m", "jobs", "run", str(spec), "--merge", *sets).returncode == 0
    report = json.loads((out / "faces.report.json").read_text())
    assert report["photos"] == len(truth) + len(good)
    skipped = skipped_reasons(report)
    converted = {name: note for note, names in report["converted"].items() for name in names}
    data = read_merged(out)
    boxes = dict(zip(data["source"], data["box"]))
    for name, expect in truth.items():
        if expect["expect"] == "skip":
            assert skipped.get(name) == expect["reason"], (name, skipped.get(name))
        else:
            assert name in boxes, (name, skipped.get(name))
            assert iou(boxes[name], expect["box"]) > 0.5, (name, boxes[name], expect["box"])
            assert converted.get(name) == expect.get("converted"), name


def test_merge_names_a_damaged_shard_and_the_task_that_rebuilds_it(faces, tmp_path):
    """One byte flipped in the middle of an image chunk of shard 1 (found through HDF5's own
    chunk index, so it lands in face data, not in free space): its checksum fails, the merge
    refuses, naming the shard and the one array task to rerun, and writes no merged file."""
    out = tmp_path / "copy"
    shutil.copytree(faces["out"], out, ignore=shutil.ignore_patterns("faces.*"))
    spec = make_spec(tmp_path, faces["celeba"], out)
    damaged = shard_path(out, 1, 3)
    with h5py.File(damaged, "r") as f:
        chunk = f["images"].id.get_chunk_info(0)
    with open(damaged, "r+b") as f:
        f.seek(chunk.byte_offset + chunk.size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    merge = run("-m", "jobs", "run", str(spec), "--merge")
    assert merge.returncode == exitcodes.FAILED
    assert "shard 1: damaged: dataset 'images' fails to read back near row 0" in merge.stderr
    assert "--array=1 " in merge.stderr and "Traceback" not in merge.stderr
    assert not (out / "faces.h5").exists()


def test_a_full_disk_leaves_no_shard_that_looks_valid(faces, tmp_path, small_disk):
    """Shard 1 written to a filesystem with room for a tenth of it: exit 3, the output folder
    and its free space named, no traceback, nothing in the folder that looks like a shard (or
    any temporary); with room again the same task writes the same shard."""
    disk, resize = small_disk
    out = disk / "faces"
    spec = make_spec(tmp_path, faces["celeba"], out)
    resize(max(4096, shard_path(faces["out"], 1, 3).stat().st_size // 10 // 4096 * 4096))
    full = run("-m", "jobs", "run", str(spec), "--index", "1")
    assert full.returncode == exitcodes.NOT_RUNNABLE, full.stderr[-3000:]
    assert f"{out}: the filesystem is full (" in full.stderr and "Traceback" not in full.stderr
    assert "No shard or merged file was left half-written" in full.stderr
    assert not list(out.glob("*.h5")) and not list(out.glob(".*"))
    resize(256 << 20)
    assert run("-m", "jobs", "run", str(spec), "--index", "1").returncode == 0
    with h5py.File(shard_path(out, 1, 3), "r") as again, \
            h5py.File(shard_path(faces["out"], 1, 3), "r") as reference:
        np.testing.assert_array_equal(again["images"][:], reference["images"][:])
