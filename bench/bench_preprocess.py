"""Preprocessing benchmarks; every figure is printed beside a baseline measured in the same run.

1. MTCNN on CelebA-size photos (178×218): batched (the pipeline) vs one photo at a time (the
   seed code's loop) — faces/s and the speed-up.
2. A shard task end to end (decode, detect, crop, write) on CelebA-size photos: the pipeline
   as it runs now vs as it ran before issue #16 (decoding in line, MTCNN's networks called
   eagerly, the full image pyramid, batch 32), each change added one at a time. Configurations
   take turns, several rounds, best round each: the machines are shared and noisy.
3. The boxes the new pipeline finds on the bundled face set vs the old pipeline's: the
   smallest and mean IoU over the faces both found, and how many faces each found.
4. HDF5 shards of 64×64 uint8 faces: write and sequential read rates and file size for
   lzf and gzip against no compression.
5. Peak memory of a shard task on a 4× bigger shard vs the base shard: it must stay bounded
   by the batch, not grow with the shard.

    ./run python bench/bench_preprocess.py [--quick | --smoke]
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.table import Table, add_size_flags, by_size  # noqa: E402
from jobs.core import runtime  # noqa: E402

TABLE = Table()


def celeba_size_faces(folder: Path, count: int) -> list[np.ndarray]:
    from preprocess.decode import Skip, load_rgb
    from preprocess.fixture import build, load_truth

    celeba = build(folder / "celeba")
    root = celeba / "img_align_celeba" / "img_align_celeba"
    images = []
    for name, truth in sorted(load_truth(celeba).items()):
        if truth["expect"] != "face":
            continue
        try:
            image, _ = load_rgb(root / name, 20)
        except Skip:
            continue
        if image.shape == (218, 178, 3):
            images.append(image)
    return (images * (count // len(images) + 1))[:count]


def bench_detection(images: list[np.ndarray], batch: int) -> None:
    from mtcnn import MTCNN

    det = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")
    det.detect_faces(images[:batch])  # warm up both code paths
    det.detect_faces(images[0])
    t = time.perf_counter()
    found_single = sum(bool(det.detect_faces(im)) for im in images)
    single = len(images) / (time.perf_counter() - t)
    t = time.perf_counter()
    found_batched = 0
    for i in range(0, len(images), batch):
        found_batched += sum(bool(r) for r in det.detect_faces(images[i:i + batch]))
    batched = len(images) / (time.perf_counter() - t)
    TABLE.add(f"MTCNN 178x218, batch {batch} vs single ({len(images)} photos, "
        f"faces {found_batched}/{found_single})", batched, single, "img/s")


def face_photo_folder(folder: Path, celeba: Path, count: int) -> Path:
    """A plain folder of ``count`` CelebA-size (178x218) face photos from the bundled set,
    repeated as hard links in a fixed order."""
    from preprocess.fixture import load_truth

    root = celeba / "img_align_celeba" / "img_align_celeba"
    src = [root / name for name, truth in sorted(load_truth(celeba).items())
           if truth["expect"] == "face" and name.endswith(".jpg")
           and Image.open(root / name).size == (178, 218)]
    plain = folder / f"faces-{count}"
    plain.mkdir()
    for i in range(count):
        os.link(src[i % len(src)], plain / f"{i:06d}.jpg")
    return plain


def shard_spec(input_dir: Path, output_dir: Path, batch: int, auto_min_face: int, **extra):
    from jobs.core.schema import FaceSpec, PreprocessSpec

    return PreprocessSpec(input_dir=str(input_dir), output_dir=str(output_dir), num_shards=1,
                          batch_size=batch, sample_sheet=0,
                          faces=FaceSpec(auto_min_face=auto_min_face), **extra)


def shard_run(spec, tuning) -> tuple[float, float]:
    """(photos/s, CPU ms per photo) of one shard task, run in this process so the detector
    is loaded once. CPU time counts every thread of the process, and others' load hardly
    moves it: the steadier figure on a shared machine."""
    from preprocess.extract import process_shard

    wall, cpu = time.perf_counter(), time.process_time()
    process_shard(spec, 0, tuning)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    photos = len(list(Path(spec.input_dir).iterdir()))
    return photos / wall, 1000 * cpu / photos


def pipeline_steps(big_batch: int) -> list[tuple[str, int, int, object]]:
    """(what, batch, auto_min_face, tuning): before issue #16, each change added in turn (the
    last of them is the new pipeline), and the new pipeline with a bigger batch."""
    from jobs.core.schema import FaceSpec, PreprocessSpec
    from preprocess.extract import LEGACY, Tuning

    auto = FaceSpec().auto_min_face
    batch = PreprocessSpec(input_dir="", output_dir="").batch_size
    return [("before (in-line decode, mtcnn as shipped, full pyramid)", 32, 0, LEGACY),
            ("+ MTCNN as TF graphs on one float32 batch", 32, 0,
             Tuning(decode_ahead=False)),
            (f"+ min face from the data (auto_min_face {auto})", batch, auto,
             Tuning(decode_ahead=False)),
            ("+ decode ahead = new pipeline", batch, auto, Tuning()),
            (f"new pipeline, batch {big_batch}", big_batch, auto, Tuning())]


def bench_pipeline(folder: Path, celeba: Path, photos: int, rounds: int,
                   big_batch: int) -> Path:
    """The shard task before issue #16 vs each change added in turn; the steps take turns,
    and each keeps its best round (the machine is shared: others only ever slow it down).
    Returns the folder of photos the shard tasks ran on."""
    steps = pipeline_steps(big_batch)
    warm = face_photo_folder(folder, celeba, big_batch + 8)
    source = face_photo_folder(folder, celeba, photos)
    rate, cpu = [0.0] * len(steps), [float("inf")] * len(steps)
    for k, (_, batch, auto, tuning) in enumerate(steps):  # load, trace, fill caches
        shard_run(shard_spec(warm, folder / f"warm-{k}", batch, auto), tuning)
    for r in range(rounds):
        for k, (_, batch, auto, tuning) in enumerate(steps):
            spec = shard_spec(source, folder / f"pipe-{r}-{k}", batch, auto)
            got = shard_run(spec, tuning)
            rate[k], cpu[k] = max(rate[k], got[0]), min(cpu[k], got[1])
    for (what, *_), value in zip(steps[1:-1], rate[1:-1]):
        TABLE.add(f"shard task, {photos} photos 178x218: {what} vs before", value, rate[0],
                  "img/s")
    TABLE.add("shard task: CPU time per photo, new pipeline vs before", cpu[-2], cpu[0],
              "ms", fmt=".2f", higher_is_better=False)
    TABLE.add(f"shard task: new pipeline, batch {big_batch} vs {steps[-2][1]}", rate[-1],
              rate[-2], "img/s")
    return source


def read_boxes(path: Path) -> dict[str, np.ndarray]:
    from jobs.core import facefile

    with facefile.open_h5(path) as f:
        sources = [s.decode() if isinstance(s, bytes) else s for s in f[facefile.SOURCE][:]]
        return dict(zip(sources, f[facefile.BOX][:]))


def box_iou(a, b) -> float:
    ax, ay, aw, ah = (float(v) for v in a)
    bx, by, bw, bh = (float(v) for v in b)
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / (aw * ah + bw * bh - ix * iy)


def bench_boxes(folder: Path, photos: Path, big_batch: int) -> None:
    """The bundled set (``photos``: a smoke run passes a few of its faces) as one shard,
    before vs now: the same faces, and how far each box moved (IoU with the box found
    before; issue #16 asks >= 0.95 for every face)."""
    from preprocess.extract import process_shard

    (_, b0, a0, t0), *_, (_, b1, a1, t1), (_, b2, a2, t2) = pipeline_steps(big_batch)
    before = read_boxes(process_shard(shard_spec(photos, folder / "boxes-0", b0, a0), 0, t0))
    for tag, batch, auto, tuning in (("new", b1, a1, t1), (f"new at batch {b2}", b2, a2, t2)):
        now = read_boxes(process_shard(shard_spec(photos, folder / f"boxes-{batch}", batch,
                                                  auto), 0, tuning))
        both = sorted(set(before) & set(now))
        ious = np.array([box_iou(before[name], now[name]) for name in both])
        TABLE.add(f"bundled set: smallest box IoU, {tag} vs before ({len(both)} faces, mean "
                  f"{ious.mean():.4f}, {np.mean(ious >= 0.95):.0%} >= 0.95)", ious.min(), 1.0,
                  "IoU", fmt=".3f")
        TABLE.add(f"bundled set: faces found, {tag} vs before "
                  f"({len(set(before) ^ set(now))} photos differ)", len(now), len(before),
                  "faces", fmt="d")


def bench_hdf5(images: np.ndarray, folder: Path) -> None:
    import h5py

    results = {}
    for comp in ("none", "lzf", "gzip"):
        path = folder / f"{comp}.h5"
        t = time.perf_counter()
        with h5py.File(path, "w") as f:
            d = f.create_dataset("images", shape=images.shape, dtype=np.uint8,
                                 chunks=(256, *images.shape[1:]),
                                 compression=None if comp == "none" else comp)
            for i in range(0, len(images), 256):
                d[i:i + 256] = images[i:i + 256]
        write = len(images) / (time.perf_counter() - t)
        os.sync()
        t = time.perf_counter()
        with h5py.File(path, "r") as f:
            for i in range(0, len(images), 256):
                f["images"][i:i + 256]
        read = len(images) / (time.perf_counter() - t)
        results[comp] = (write, read, path.stat().st_size)
    base_w, base_r, base_size = results["none"]
    for comp in ("none", "lzf", "gzip"):
        w, r, size = results[comp]
        TABLE.add(f"HDF5 write {len(images)} faces 64x64, {comp} vs none", w, base_w, "img/s")
        TABLE.add(f"HDF5 sequential read, {comp} vs none", r, base_r, "img/s")
        TABLE.add(f"HDF5 file size, {comp} vs none", size / 2**20, base_size / 2**20, "MiB",
            higher_is_better=False)


def peak_rss_of_shard(folder: Path, celeba: Path, photos: int, tag: str,
                      batch: int | None = None) -> float:
    """Peak RSS (MiB) of `python -m jobs run SPEC --index 0` over a shard of `photos`."""
    import psutil

    src = sorted((celeba / "img_align_celeba" / "img_align_celeba").glob("*.jpg"))
    plain = folder / f"plain-{tag}"
    plain.mkdir()
    for i in range(photos):
        os.link(src[i % len(src)], plain / f"{i:06d}.jpg")
    spec = folder / f"{tag}.yaml"
    spec.write_text(f"""kind: preprocess
name: mem-{tag}
preprocess:
  input_dir: {plain}
  output_dir: {folder / f"out-{tag}"}
  num_shards: 1
  sample_sheet: 0
""" + (f"  batch_size: {batch}\n" if batch else ""))
    proc = psutil.Popen([sys.executable, "-m", "jobs", "run", str(spec), "--index", "0"],
                        cwd=ROOT, stderr=subprocess.DEVNULL,
                        env={**os.environ, "PYTHONPATH": str(ROOT)})
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, proc.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    assert proc.returncode == 0, f"shard task failed ({proc.returncode})"
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_flags(parser, "small sizes")
    args = parser.parse_args()
    runtime.configure()
    logging.getLogger("preprocess").setLevel(logging.WARNING)  # shard tasks run in-process
    # photos detected, per shard task, rounds, faces in HDF5, per memory shard, bigger batch
    n_detect, n_pipe, rounds, n_hdf5, n_mem, big_batch = by_size(
        args, (192, 512, 5, 10000, 400, 128), (40, 96, 1, 2000, 60, 128),
        (8, 12, 1, 256, 8, 8))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = celeba_size_faces(folder, n_detect)
        celeba = folder / "celeba"
        bench_detection(images, batch=32)
        shard = bench_pipeline(folder, celeba, n_pipe, rounds, big_batch)
        bench_boxes(folder, by_size(args, celeba, celeba, shard), big_batch)
        faces = np.stack([np.asarray(Image.fromarray(im).resize((64, 64))) for im in images])
        bench_hdf5(np.concatenate([faces] * (n_hdf5 // len(faces) + 1))[:n_hdf5], folder)
        base = peak_rss_of_shard(folder, celeba, n_mem, "base")
        big = peak_rss_of_shard(folder, celeba, 4 * n_mem, "big")
        TABLE.add(f"peak RSS of a shard task, {4 * n_mem} vs {n_mem} photos", big, base, "MiB",
            higher_is_better=False)
        wide = peak_rss_of_shard(folder, celeba, n_mem, "wide", batch=128)
        TABLE.add(f"peak RSS of a shard task, batch 128 vs default ({n_mem} photos)", wide,
                  base, "MiB", higher_is_better=False)
    TABLE.print()


if __name__ == "__main__":
    main()
