"""Preprocessing benchmarks; every figure is printed beside a baseline measured in the same run.

1. MTCNN on CelebA-size photos (178×218): batched (the pipeline) vs one photo at a time (the
   seed code's loop) — faces/s and the speed-up.
2. HDF5 shards of 64×64 uint8 faces: write and sequential read rates and file size for
   lzf and gzip against no compression.
3. Peak memory of a shard task on a 4× bigger shard vs the base shard: it must stay bounded
   by the batch, not grow with the shard.

    ./run python bench/bench_preprocess.py [--quick]
"""
from __future__ import annotations

import argparse
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

from bench.table import Table  # noqa: E402
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


def peak_rss_of_shard(folder: Path, celeba: Path, photos: int, tag: str) -> float:
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
  batch_size: 32
  sample_sheet: 0
""")
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
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    args = parser.parse_args()
    runtime.configure()
    n_detect, n_hdf5, n_mem = (40, 2000, 60) if args.quick else (192, 10000, 400)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        images = celeba_size_faces(folder, n_detect)
        bench_detection(images, batch=32)
        faces = np.stack([np.asarray(Image.fromarray(im).resize((64, 64))) for im in images])
        bench_hdf5(np.concatenate([faces] * (n_hdf5 // len(faces) + 1))[:n_hdf5], folder)
        base = peak_rss_of_shard(folder, folder / "celeba", n_mem, "base")
        big = peak_rss_of_shard(folder, folder / "celeba", 4 * n_mem, "big")
        TABLE.add(f"peak RSS of a shard task, {4 * n_mem} vs {n_mem} photos", big, base, "MiB",
            higher_is_better=False)
    TABLE.print()


if __name__ == "__main__":
    main()
