"""How much of the machine a training step uses, and what the loop around it wastes.

Every figure is a ratio measured in this run, on the example models with their own batch
sizes (random images: speed does not depend on the content):

1. **MFU** (model FLOPs utilisation): FLOPs of one training step × steps/s, against the
   machine's peak: the best of several float32 4096² ``tf.matmul`` on the same threads,
   measured before, between and after the models (the best of all: another process on the
   machine slows some). A step's FLOPs come from TensorFlow's cost model
   (``tf.compat.v1.profiler`` with ``float_operation()``) on the step's graph at the run's
   shapes: every convolution, matrix product and element-wise op of D's and G's forward and
   backward passes and the optimizers (ops inside a ``tf.cond``, i.e. a lazy R1 penalty, are
   not counted; no example uses one).
2. **The loop**: steps/s of the training loop (``Trainer._train_epoch``: reading batches,
   the guard, metrics.csv, TensorBoard, logging) ÷ steps/s of the bare compiled step on one
   fixed batch.
3. **Streaming**: the loop on a set read from HDF5 in blocks (``in_memory_max_gb: 0``) ÷ the
   same loop on the set held in memory (the next batch is read while the step runs).
4. **XLA**: the bare step with ``train.jit_compile`` ÷ without.

Times are the best of several interleaved repeats, so another process on the machine costs
less than it would in one long measurement.

    ./run python bench/bench_step.py [--quick | --smoke]
"""
from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from jobs.core import runtime  # noqa: E402

runtime.skip_keras_extras()  # as a job's own start-up does

import tensorflow as tf  # noqa: E402

from bench.bench_train import random_images  # noqa: E402
from bench.table import Table, add_size_flags, by_size  # noqa: E402
from gan.parallel import distributed  # noqa: E402
from gan.preflight import device_peak_flops  # noqa: E402
from gan.training.loop import Trainer  # noqa: E402
from gan.training.outputs import RunOutputs  # noqa: E402
from jobs.core.loader import load_spec, parse_set_args  # noqa: E402
from jobs.core.signals import StopSignals  # noqa: E402

TABLE = Table()
MODELS = {  # docs/benchmarks.md's names: (example spec, image size, channels)
    "64x64 cGAN": ("train_cgan_faces.yaml", 64, 3),
    "32x32 DCGAN (demo)": ("train_demo_faces.yaml", 32, 3),
    "16x16 digits cGAN": ("train_cgan_digits.yaml", 16, 1),
}


def trainer_for(model: str, folder: Path, *sets: str, batches: int = 12) -> Trainer:
    """The example's trainer on ``batches`` batches of random images (one epoch), quality
    measurements off."""
    example, size, channels = MODELS[model]
    path = ROOT / "jobs/examples" / example
    # the example's batch size, read with any existing file standing in for its data
    batch = load_spec(path, parse_set_args([f"train.data={__file__}"])).work.batch_size
    tag = "".join(c for c in model if c.isalnum())
    data = random_images(folder / f"{tag}.h5", batch * batches, size, channels)
    run_dir = folder / f"{tag}-{abs(hash(sets))}"
    shutil.rmtree(run_dir, ignore_errors=True)
    spec = load_spec(path, parse_set_args([
        f"train.data={data}", f"train.run_dir={run_dir}", "train.metrics.every_epochs=0",
        "train.metrics.every_kimg=0", "train.checkpoint.keep_best=none",
        "train.deterministic=false", *sets])).work
    return Trainer(spec, distributed.World(0, 1, 0))


def fixed_batch(trainer: Trainer) -> tuple:
    b = trainer.spec.batch_size
    condition = trainer.data.attributes[:b] if trainer.conditioning.kind == "attributes" \
        else trainer.data.labels[:b]
    return (tf.constant(trainer.data.images[:b]), tf.constant(condition),
            tf.constant(0, tf.int64), tf.constant(0.0))


def step_flops(trainer: Trainer) -> float:
    """FLOPs of one step from TensorFlow's cost model on the step's graph at these shapes."""
    graph = trainer.step_fn.get_concrete_function(*fixed_batch(trainer)).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return float(tf.compat.v1.profiler.profile(graph, options=options).total_float_ops)


def bare_rate(trainer: Trainer, steps: int) -> float:
    """Steps/s of the compiled step alone, one fixed batch (traced and warmed up first)."""
    images, condition, step, stop = fixed_batch(trainer)
    for _ in range(2):
        trainer.step_fn(images, condition, step, stop)
    t = time.perf_counter()
    for _ in range(steps):
        metrics, _ = trainer.step_fn(images, condition, step, stop)
    metrics.numpy()
    return steps / (time.perf_counter() - t)


class Loop:
    """The trainer's own loop over one epoch of its data, timed."""

    def __init__(self, trainer: Trainer):
        self.trainer, self.epoch = trainer, 0
        self.outputs = RunOutputs(trainer.run_dir, trainer.sampler.grid_names, 0,
                                  trainer.metric_names)
        self.rate()  # warm up: trace, first reads

    def rate(self) -> float:
        t = time.perf_counter()
        self.trainer._train_epoch(self.epoch, 0, StopSignals(), self.outputs, time.monotonic())
        self.epoch += 1
        return self.trainer.steps_per_epoch / (time.perf_counter() - t)


def best_of(repeats: int, *measures) -> list[float]:
    """Each measure's best over ``repeats`` rounds, the measures interleaved in each round."""
    best = [0.0] * len(measures)
    for _ in range(repeats):
        for i, measure in enumerate(measures):
            best[i] = max(best[i], measure())
    return best


def bench_model(model: str, folder: Path, repeats: int, batches: int) -> dict:
    """This model's rows (the MFU row waits for the peak, measured between models)."""
    trainer = trainer_for(model, folder, batches=batches)
    batch, steps = trainer.spec.batch_size, trainer.steps_per_epoch
    flops = step_flops(trainer)
    loop = Loop(trainer)
    bare, in_loop = best_of(repeats, lambda: bare_rate(trainer, steps), loop.rate)
    TABLE.add(f"loop {model}: training loop vs bare compiled step", in_loop, bare, "steps/s",
              fmt=",.2f")
    streamed = Loop(trainer_for(model, folder, "train.advanced.in_memory_max_gb=0",
                                batches=batches))
    stream, memory = best_of(repeats, streamed.rate, loop.rate)
    TABLE.add(f"streaming {model}: loop on HDF5 blocks vs in memory", stream, memory,
              "steps/s", fmt=",.2f")
    jit = trainer_for(model, folder, "train.advanced.jit_compile=true", batches=batches)
    xla, plain = best_of(repeats, lambda: bare_rate(jit, max(2, steps // 4)),
                         lambda: bare_rate(trainer, max(2, steps // 4)))
    TABLE.add(f"XLA {model}: jit_compile vs not (bare step)", xla, plain, "steps/s", fmt=",.2f")
    return {"model": model, "batch": batch, "flops": flops, "rate": max(bare, plain)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_flags(parser, "the digits model only, 2 rounds")
    args = parser.parse_args()
    runtime.configure()
    digits = ["16x16 digits cGAN"]
    models = by_size(args, list(MODELS), digits, digits)
    repeats, batches = by_size(args, (3, 12), (2, 12), (1, 2))
    measure_peak = functools.partial(device_peak_flops, "float32",
                                     *by_size(args, (4096, 7), (4096, 7), (1024, 2)))
    peaks, results = [measure_peak()], []
    with tempfile.TemporaryDirectory() as tmp:
        for model in models:
            results.append(bench_model(model, Path(tmp), repeats, batches))
            peaks.append(measure_peak())  # the best of all: another process slows some
    peak = max(peaks)
    for r in results:
        TABLE.add(f"MFU {r['model']}, batch {r['batch']}: {r['flops'] / 1e9:.2f} GFLOP/step x "
                  f"{r['rate']:.2f} steps/s vs float32 matmul peak", r["flops"] * r["rate"] / 1e9,
                  peak / 1e9, "GFLOP/s")
    print(f"\nthreads: intra-op {tf.config.threading.get_intra_op_parallelism_threads()} "
          f"(0 = all {os.cpu_count()} cores); matmul peaks measured "
          f"{', '.join(f'{p / 1e9:.0f}' for p in peaks)} GFLOP/s", flush=True)
    TABLE.print()


if __name__ == "__main__":
    main()
