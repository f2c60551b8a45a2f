"""Scaling, on paper and measured where possible (the formula: gan/scaling.py).

This machine (2 cores, no GPU) cannot show a multi-GPU speed-up, so the bench measures the
formula's inputs and checks the formula where it can:

1. each example model's gradient bytes: parameters counted from the layer shapes (what
   ``python -m jobs plan`` uses) beside the built Keras model's;
2. the loopback link between 2 Horovod ranks (Gloo): a 4 B allreduce gives the overhead per
   collective, a line through 1, 16 and 64 MB the bandwidth; 4 MB, left out, checks the line;
3. the step of 2 Horovod ranks (one thread each), with and without
   ``train.horovod.compression: fp16``, beside the same two processes training independently
   in turns with it (both cores busy either way, so only Horovod's share differs): the
   measured 2-rank efficiency beside the formula's, and the lost time split into waiting for
   the other rank (the step's collectives without their bytes) and sending the bytes;
4. Horovod's published 90% at 512 GPUs for Inception V3 (128 servers x 4 Pascal GPUs, 25 Gb/s
   RoCE), from Inception V3's parameters and TensorFlow's published P100 throughput;

then prints the predicted efficiency at 2-128 GPUs for a few batch sizes per GPU, with and
without fp16: once as ``plan`` predicts it (step time from FLOPs at 10 TFLOP/s, 25 Gb/s links,
or ``--gpu-step-ms``/``--link-gbps``), once with this machine's measured step and link.

    ./run python bench/scaling.py [--quick | --smoke] [--gpu-step-ms cgan64=40] [--link-gbps 100]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from bench.bench_train import random_images  # noqa: E402
from bench.table import Table, add_size_flags, by_size  # noqa: E402
from gan import scaling  # noqa: E402
from jobs.core import runtime  # noqa: E402

TABLE = Table()
ONE_THREAD = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1"}
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", **ONE_THREAD}

# key: (label, example spec, overrides, channels, classes, batch measured on this CPU)
MODELS = {
    "cgan64": ("64x64 cGAN faces", "train_cgan_faces.yaml", [], 3, 4, 16),
    "dcgan32": ("32x32 DCGAN faces", "train_dcgan_faces.yaml",
                ["train.model.image_size=32", "train.model.generator_filters=[256, 128, 64]",
                 "train.model.discriminator_filters=[64, 128, 256]"], 3, 1, 16),
    "digits16": ("16x16 cGAN digits", "train_cgan_digits.yaml", [], 1, 10, 16),
}
GPU_COUNTS = (2, 4, 8, 16, 32, 64, 128)
GPU_BATCHES = (16, 64, 256)
# Horovod's benchmark (docs/benchmarks.rst; Sergeev & Del Balso 2018): tf_cnn_benchmarks,
# batch 64 per GPU, 128 servers x 4 Pascal P100, RoCE-capable 25 Gb/s: 90% at 512 GPUs.
# One P100 trains Inception V3 at 142 images/s at batch 64 (TensorFlow's published
# benchmarks, DGX-1, synthetic data), so a step takes 64 / 142 s.
INCEPTION = {"gpus": 512, "batch": 64, "images_s": 142.0, "gbit_s": 25.0, "published": 0.90}


def model_spec(key: str, *sets: str):
    from jobs.core.loader import load_spec, parse_set_args

    _, example, overrides, *_ = MODELS[key]
    return load_spec(ROOT / "jobs/examples" / example, parse_set_args([*overrides, *sets]))


def horovodrun() -> str:
    path = shutil.which("horovodrun", path=str(Path(sys.executable).parent))
    if not path:
        sys.exit("horovodrun is missing: ./run setup installs Horovod")
    return path


def run_json(argv: list[str], out: Path) -> dict:
    """Run this script as a worker under ``horovodrun -np 2`` (Gloo); rank 0's JSON result."""
    cmd = [horovodrun(), "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, __file__,
           *argv, "--out", str(out)]
    proc = subprocess.run(cmd, env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------
# workers: run in subprocesses, one thread each, maybe under horovodrun
# ---------------------------------------------------------------------------------------------
def worker_allreduce(sizes: list[int], repeats: int) -> dict:
    """Seconds per allreduce of each size in bytes (float32 values) on rank 0: the median of
    ``repeats`` calls, each under one name as a training step's are (Horovod caches it)."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    hvd.init()
    seconds = {}
    for nbytes in sizes:
        x = tf.ones([max(1, nbytes // 4)], tf.float32)
        times = []
        for _ in range(3 + repeats):  # the first 3 warm up
            start = time.perf_counter()
            hvd.allreduce(x, name=f"probe{nbytes}").numpy()
            times.append(time.perf_counter() - start)
        seconds[str(nbytes)] = float(np.median(times[3:]))
    return {"size": hvd.size(), "seconds": seconds}


def worker_steps(args: argparse.Namespace) -> dict:
    """On each of 2 ranks, three trainers of the same model (the trainer's own tf.function
    step): one alone (a world of one: both ranks train independently, nothing averaged) and
    two in the Horovod world, without and with fp16 compression; and ``synced``: the lone
    step followed by ``--collectives`` allreduces of one number, the waits of a Horovod step
    without its bytes. They take turns in time windows, ``--rounds`` times, so all see the
    same machine (two busy cores and whatever else runs); the median seconds per step of
    each, averaged over the ranks."""
    import horovod.tensorflow as hvd
    import tensorflow as tf

    from gan.parallel import distributed
    from gan.training.loop import Trainer

    world = distributed.init(use_horovod=True)

    def trainer(name: str, compression: str, in_world: distributed.World) -> Trainer:
        spec = model_spec(args.model, f"train.data={args.data}", f"train.batch_size={args.batch}",
                          f"train.run_dir={args.run_dir}/{name}", f"train.horovod.compression="
                          f"{compression}", "train.deterministic=false",
                          "train.log_every_steps=100000")
        return Trainer(spec.work, in_world)

    trainers = {"alone": trainer(f"alone{world.rank}", "none", distributed.World(0, 1, 0)),
                "none": trainer("none", "none", world), "fp16": trainer("fp16", "fp16", world)}
    images, labels = (trainers["alone"].data.images[:args.batch],
                      trainers["alone"].data.labels[:args.batch])
    stop, step = tf.constant(0.0), 0

    def run(name: str, count: int) -> float:
        nonlocal step
        hvd.allreduce(tf.constant(0.0), name="barrier").numpy()  # start the window together
        start = time.perf_counter()
        for _ in range(count):
            trainer = trainers["alone" if name == "synced" else name]
            metrics, _ = trainer.step_fn(images, labels, tf.constant(step, tf.int64), stop)
            for i in range(args.collectives if name == "synced" else 0):
                hvd.allreduce(metrics[:1], name=f"sync{i}").numpy()
            step += 1
        metrics.numpy()
        return (time.perf_counter() - start) / count

    modes = ["alone", "synced", "none", "fp16"]
    for name in modes:  # trace and warm up
        run(name, 3)
    warm = hvd.allreduce(tf.constant(run("alone", 2)), op=hvd.Max, name="warm").numpy()
    count = max(2, round(args.seconds / float(warm)))  # every rank the same count
    times = {name: [] for name in modes}
    for _ in range(args.rounds):
        for name in modes:
            times[name].append(run(name, count))
    return {name: float(hvd.allreduce(tf.constant(float(np.median(v))), op=hvd.Average,
                                      name=f"result_{name}").numpy())
            for name, v in times.items()}


def worker_main(args: argparse.Namespace) -> None:
    runtime.configure()
    runtime.skip_keras_extras()  # as a job's own start-up does
    if args.worker == "allreduce":
        result = worker_allreduce([int(s) for s in args.sizes.split(",")], args.repeats)
    else:
        result = worker_steps(args)
    if int(os.environ.get("HOROVOD_RANK", "0")) == 0:
        Path(args.out).write_text(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# measurements and comparisons
# ---------------------------------------------------------------------------------------------
def measure_link(folder: Path, args: argparse.Namespace) -> scaling.Link:
    """The loopback between 2 ranks. With n = 2 the formula is T = B/W + c: the 4 B allreduce
    gives c (the per-hop latency cannot be told apart from it, so it is counted in c), a line
    through c and the larger sizes gives W, and the 4 MB allreduce, left out of the fit,
    checks the line. The smoke run fits at 16 MB alone: a 1 MB allreduce on a busy machine
    can take less than the 4 B one (Horovod's 1 ms cycle dominates both), and a line through
    them would give a negative bandwidth."""
    fit = by_size(args, [1 << 20, 16 << 20, 64 << 20], [1 << 20, 16 << 20], [16 << 20])
    sizes = [4, 4 << 20, *fit]
    result = run_json(["--worker", "allreduce", "--sizes", ",".join(map(str, sizes)),
                       "--repeats", by_size(args, "50", "10", "3")], folder / "link.json")
    t = {s: result["seconds"][str(s)] for s in sizes}
    c = t[4]
    seconds_per_byte = sum(b * (t[b] - c) for b in fit) / sum(b * b for b in fit)
    if seconds_per_byte <= 0:
        raise SystemExit(f"scaling.py: the loopback's bandwidth was lost in noise (allreduce "
                         f"seconds by size: {t}); rerun on a quieter machine")
    link = scaling.Link(gbit_s=8 / seconds_per_byte / 1e9, latency_s=0.0, overhead_s=c)
    TABLE.add(f"allreduce of 4 MB, 2 ranks on the loopback: measured vs the formula fitted at "
              f"4 B, {', '.join(f'{b >> 20}' for b in fit)} MB", t[4 << 20] * 1e3,
              scaling.ring_allreduce_s(4 << 20, 2, link) * 1e3, "ms", fmt=".2f",
              higher_is_better=False)
    return link


def count_parameters(key: str) -> scaling.StepProfile:
    """The formula's profile of a model, its parameter count checked against the built one."""
    from gan.models import builders

    label, _, _, channels, classes, _ = MODELS[key]
    spec = model_spec(key).work.model
    nets = builders.build(spec, classes, channels)
    built = sum(int(np.prod(v.shape)) for m in (nets.generator, nets.discriminator)
                for v in m.trainable_variables)
    prof = scaling.profile(spec, channels, classes)
    TABLE.add(f"{label}: trainable parameters, layer-shape formula vs built model",
              sum(prof.params.values()), built, "", fmt=",.0f")
    return prof


def measure_steps(key: str, prof: scaling.StepProfile, link: scaling.Link, folder: Path,
                  args: argparse.Namespace) -> float:
    """2 ranks' efficiency beside the formula's. The baseline is the same two ranks training
    independently at the same time (same cores, same load), so the ratio isolates what
    Horovod adds; that split in two: waiting for each other (the step's collectives without
    bytes) and sending the bytes. Returns the independent rank's step time."""
    label, _, _, channels, _, batch = MODELS[key]
    size = model_spec(key).work.model.image_size
    data = random_images(folder / f"{key}.h5", 4 * batch, size, channels)
    s = run_json(["--worker", "steps", "--model", key, "--data", str(data), "--batch",
                  str(batch), "--seconds", by_size(args, "3", "1.5", "0.2"), "--rounds",
                  by_size(args, "5", "1", "1"), "--collectives", str(prof.collectives), "--run-dir",
                  str(folder / key)], folder / f"{key}.json")
    one, what = s["alone"], f"{label}, 2 ranks x batch {batch}"
    for compression in ("none", "fp16"):
        predicted = scaling.efficiency(one, scaling.comm_s(prof, 2, link, compression))
        TABLE.add(f"{what}, compression {compression}: efficiency measured vs formula",
                  one / s[compression] * 100, predicted * 100, "%")
    waits = scaling.ring_allreduce_s(0, 2, link, prof.collectives)
    TABLE.add(f"{what}: of that, waiting for each other ({prof.collectives} collectives of one "
              "number), measured vs formula", max(0.0, s["synced"] - one) * 1e3, waits * 1e3,
              "ms/step",
              fmt=".1f", higher_is_better=False)
    TABLE.add(f"{what}: of that, sending {prof.gradient_bytes() / 1e6:.1f} MB of gradients, "
              "measured vs formula", max(0.0, s["none"] - s["synced"]) * 1e3,
              (scaling.comm_s(prof, 2, link) - waits) * 1e3, "ms/step", fmt=".1f",
              higher_is_better=False)
    return one


def horovod_published() -> None:
    """Horovod's Inception V3 at 512 GPUs from the formula, beside the published 90%."""
    import keras

    model = keras.applications.InceptionV3(weights=None)  # the architecture; nothing fetched
    params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    link = scaling.Link(INCEPTION["gbit_s"], scaling.LATENCY_US * 1e-6,
                        scaling.CYCLE_MS * 1e-3)
    step = INCEPTION["batch"] / INCEPTION["images_s"]
    comm = scaling.ring_allreduce_s(params * 4, INCEPTION["gpus"], link)  # one fused collective
    print(f"Inception V3: {params:,} trainable parameters ({params * 4 / 1e6:.1f} MB), step "
          f"{step * 1e3:.0f} ms (batch 64 at 142 img/s on a P100), allreduce at 512 GPUs "
          f"{comm * 1e3:.1f} ms over 25 Gb/s")
    TABLE.add("Inception V3, 512 GPUs over 25 Gb/s: formula's efficiency vs Horovod's published",
              scaling.efficiency(step, comm) * 100, INCEPTION["published"] * 100, "%")


# ---------------------------------------------------------------------------------------------
# the prediction grid
# ---------------------------------------------------------------------------------------------
def print_grid(title: str, rows: list[tuple[str, scaling.StepProfile, dict[int, float]]],
               link: scaling.Link) -> None:
    """Predicted efficiency per model, batch per GPU and compression (``rows``: label,
    profile, step seconds per batch), at each GPU count."""
    print(f"\n{title}\n  link {link.gbit_s:.1f} Gb/s, {link.latency_s * 1e6:.0f} us per hop, "
          f"{link.overhead_s * 1e3:.2f} ms per collective")
    head = f"  {'model':<20} {'batch/GPU':>9} {'grads':>8} {'step ms':>9}"
    print(head + "".join(f"{n:>6}" for n in GPU_COUNTS))
    for label, prof, steps in rows:
        for batch, step in steps.items():
            for compression in ("none", "fp16"):
                effs = [scaling.efficiency(step, scaling.comm_s(prof, n, link, compression))
                        for n in GPU_COUNTS]
                mb = prof.gradient_bytes(compression) / 1e6
                print(f"  {label:<20} {batch:>9} {mb:>6.1f}MB {step * 1e3:>9.1f}"
                      + "".join(f"{e:>6.0%}" for e in effs) + f"  {compression}")


def gpu_rows(keys: list[str], profiles: dict, gpu_step_ms: dict[str, float]) -> list:
    """Step times on a GPU: the user's (at the example's batch, scaled linearly) or the FLOP
    estimate ``plan`` uses."""
    rows = []
    for key in keys:
        base = model_spec(key).work.batch_size
        steps = {b: gpu_step_ms[key] / 1e3 * b / base if key in gpu_step_ms
                 else scaling.gpu_step_s(profiles[key], b) for b in GPU_BATCHES}
        rows.append((MODELS[key][0], profiles[key], steps))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_size_flags(parser, "one model, small sizes")
    parser.add_argument("--gpu-step-ms", action="append", default=[], metavar="MODEL=MS",
                        help="a measured GPU step time at the example's batch; MODEL: "
                             + ", ".join(MODELS))
    parser.add_argument("--link-gbps", type=float, default=scaling.NETWORK_GBIT_S,
                        help="link bandwidth for the GPU grid (default: %(default)s)")
    parser.add_argument("--worker", choices=("allreduce", "steps"), help=argparse.SUPPRESS)
    for name in ("--out", "--sizes", "--model", "--data", "--run-dir"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    for name in ("--repeats", "--batch", "--rounds", "--collectives"):
        parser.add_argument(name, type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.worker:
        return worker_main(args)
    runtime.configure()
    runtime.skip_keras_extras()  # as a job's own start-up does
    gpu_step_ms = {k: float(v) for k, v in (item.split("=", 1) for item in args.gpu_step_ms)}
    keys = by_size(args, list(MODELS), ["digits16"], ["digits16"])
    print(__doc__.split("\n\n")[0])
    print("T(n) = 2(n-1)/n * B/W + k * (2(n-1) * a + c);  efficiency(n) = t_step / (t_step + "
          "T(n)), no overlap (gan/scaling.py)")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        profiles = {key: count_parameters(key) for key in keys}
        link = measure_link(folder, args)
        cpu_steps = {key: measure_steps(key, profiles[key], link, folder, args)
                     for key in keys}
    horovod_published()
    print(f"load average (1 min) at the start {load:.1f}, at the end {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores: other processes slow one rank or the other, and a "
          "synchronous step waits for the slower one")
    gpu_link = scaling.Link(args.link_gbps, scaling.LATENCY_US * 1e-6, scaling.CYCLE_MS * 1e-3)
    print_grid(f"Predicted efficiency on GPUs, as `python -m jobs plan` sees it (step time: "
               f"{'as given, else ' if gpu_step_ms else ''}FLOPs at {scaling.gpu_tflops():g} "
               "TFLOP/s per GPU; every rank on the network link)",
               gpu_rows(keys, profiles, gpu_step_ms), gpu_link)
    print_grid("Predicted efficiency of this machine's CPU ranks (step measured with one thread "
               "beside a second process, scaled linearly in the batch; the loopback link "
               "measured above)",
               [(MODELS[k][0], profiles[k], {b: cpu_steps[k] * b / MODELS[k][5]
                                             for b in GPU_BATCHES}) for k in keys], link)
    TABLE.print()  # last: the smoke test reads every line after its header


if __name__ == "__main__":
    main()
