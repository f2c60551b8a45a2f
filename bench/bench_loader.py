"""Whether the training data keeps up with a GPU, and what it costs a node's memory.

A CPU benchmark can hide a loader that starves a GPU: a CPU step is slower than any reader.
So each rate is set beside what one H100 would consume of that model (``gan/scaling.py``:
the example model's FLOPs per image at ``H100_TFLOPS``, capped by a launch-bound step):

1. **Rate**, images/s of one rank's batches (``ImageSet.batches``: the order, the reads and
   the prefetch thread), on **one core** (the process is pinned to it), for a set in the
   shards' layout (chunks of 256 images, Fletcher-32) at 64×64 and 128×128:
   streamed from the HDF5 file in blocks, staged (the node-local copy, memory-mapped), and
   loaded in memory; and streaming beside the reader it replaced (an HDF5 point selection per
   batch), measured in the same run. The file sits in the page cache: this is the CPU's cost
   of reading, not a shared filesystem's bandwidth (staging is how a job stops depending on
   that).
2. **Memory per node**: the data's proportional set size (PSS, shared pages split between
   the processes that map them) summed over the ranks of a node, with 2 ranks beside 1, after
   each rank read a whole epoch: a staged copy is mapped once however many ranks read it; a
   set loaded in memory is a copy per rank.

    ./run python bench/bench_loader.py [--quick | --smoke]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import Table, add_size_flags, by_size  # noqa: E402
from gan import scaling  # noqa: E402
from gan.training import staging  # noqa: E402
from gan.training.data import ImageSet, Split  # noqa: E402
from jobs.core import facefile  # noqa: E402
from jobs.core.loader import load_spec, parse_set_args  # noqa: E402
from preprocess.shards import ShardWriter  # noqa: E402

SIZES = {  # image side: the example model a set of that size trains
    64: "train_cgan_faces.yaml",
    128: "train_dcgan128_faces.yaml",
}
BATCH = 64
MODES = ("streamed", "staged", "in memory")


def write_shard_like(path: Path, n: int, side: int) -> None:
    """A shard as preprocessing writes it (its ``ShardWriter``: chunks of 256, Fletcher-32),
    of random images."""
    rng = np.random.default_rng(side)
    writer = ShardWriter(path, side, 0, 256, "none", {"class_names": ["all"]})
    for start in range(0, n, 1024):
        count = min(1024, n - start)
        writer.append({facefile.IMAGES: rng.integers(0, 256, (count, side, side, 3), np.uint8),
                       facefile.LABELS: np.zeros(count, np.int16)})
    writer.commit({})


def open_set(path: Path, mode: str, staged: Path) -> ImageSet:
    if mode == "staged":
        return ImageSet(path, 0.0, staged)
    return ImageSet(path, 64.0 if mode == "in memory" else 0.0)


def epoch_rate(data: ImageSet, epoch: int) -> float:
    t, n = time.perf_counter(), 0
    for images, _, _ in data.batches(0, epoch, Split(0, 1, BATCH)):
        n += len(images)
    return n / (time.perf_counter() - t)


def point_selection_rate(data: ImageSet, epoch: int, seconds: float = 10.0) -> float:
    """The reader streaming replaced: each batch an HDF5 point selection of its 64 images."""
    order, t, n = data.epoch_order(0, epoch), time.perf_counter(), 0
    for start in range(0, data.num - BATCH + 1, BATCH):
        idx = order[start:start + BATCH]
        n += len(data.images[np.sort(idx)])
        if time.perf_counter() - t > seconds:
            break
    return n / (time.perf_counter() - t)


def rate_on_one_core(path: Path, mode: str, staged: Path, repeats: int, out) -> None:
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    data = open_set(path, mode, staged)
    if mode == "point selection":
        out.put(point_selection_rate(open_set(path, "streamed", staged), 0))
        return
    out.put(max(epoch_rate(data, e) for e in range(repeats)))


def pss_bytes() -> int:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))


def rank_memory(path: Path, mode: str, staged: Path, barrier, out) -> None:
    """One rank: its PSS grown by opening the set and reading an epoch, measured while every
    rank still holds its own."""
    before = pss_bytes()
    data = open_set(path, mode, staged)
    for images, _, _ in data.batches(0, 0, Split(0, 1, BATCH)):
        np.sum(images[:, 0, 0, 0])  # touch the batch
    if data.staged is not None:
        np.sum(data.images[:, 0, 0, 0])  # every page of the mapping, as a long run would
    barrier.wait()
    out.put(pss_bytes() - before)
    barrier.wait()


def node_memory(path: Path, mode: str, staged: Path, ranks: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(ranks), ctx.Queue()
    procs = [ctx.Process(target=rank_memory, args=(path, mode, staged, barrier, out))
             for _ in range(ranks)]
    for p in procs:
        p.start()
    total = sum(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join()
    return total / 2**20


def one_core_rate(path: Path, mode: str, staged: Path, repeats: int) -> float:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=rate_on_one_core, args=(path, mode, staged, repeats, out))
    p.start()
    rate = out.get(timeout=1200)
    p.join()
    return rate


def gpu_demand(side: int) -> float:
    spec = load_spec(ROOT / "jobs/examples" / SIZES[side],
                     parse_set_args([f"train.data={__file__}"])).work
    return scaling.gpu_images_per_s(scaling.profile(spec.model), BATCH)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_flags(parser, "fewer images and epochs")
    args = parser.parse_args()
    table, repeats = Table(), by_size(args, 3, 2, 1)
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        for side in SIZES:
            n = by_size(args, {64: 16384, 128: 6144}[side], {64: 4096, 128: 2048}[side], 512)
            path = Path(tmp) / f"faces{side}.h5"
            write_shard_like(path, n, side)
            staged = staging.stage(path, Path(tmp) / "node")
            demand = gpu_demand(side)
            rates = {mode: one_core_rate(path, mode, staged, repeats)
                     for mode in (*MODES, "point selection")}
            for mode in MODES:
                table.add(f"{side}x{side} {mode}, 1 core vs one H100's demand", rates[mode],
                          demand, "img/s", ",.0f")
            table.add(f"{side}x{side} streamed in blocks vs per-batch point selection",
                      rates["streamed"], rates["point selection"], "img/s", ",.0f")
            for mode in ("staged", "in memory"):
                one, two = (node_memory(path, mode, staged, r) for r in (1, 2))
                table.add(f"{side}x{side} {mode}: node memory, 2 ranks vs 1 ({n} images)",
                          two, one, "MB", ",.0f", higher_is_better=False)
    print(f"GPU demand: {scaling.H100_TFLOPS:.0f} useful TFLOP/s on the example model's FLOPs "
          f"per image, at most {BATCH} images per {scaling.LAUNCH_BOUND_STEP_S * 1e3:.0f} ms "
          f"step; batch {BATCH}")
    table.print()


if __name__ == "__main__":
    main()
