"""Training benchmarks; every figure is printed beside a baseline measured in the same run.

1. steps/s of the suite's ``tf.function`` GAN step vs the seed code's ``train_on_batch`` loop
   (D on real, D on fake, G through a frozen D) on the same embedding cGAN, 64×64 faces.
2. images/s with 2 Horovod ranks (Gloo, one core each) vs 1 process, same per-rank batch.
(What the models learn is bench/bench_models.py.)

    ./run python bench/bench_train.py [--quick | --smoke]
"""
from __future__ import annotations

import argparse
import os
import re
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

from bench.table import Table, add_size_flags, by_size  # noqa: E402
from jobs.core import runtime  # noqa: E402
from jobs.core.images import to_signed_unit  # noqa: E402

TABLE = Table()
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}


def spec(data: Path, run_dir: Path, *sets: str):
    from jobs.core.loader import load_spec, parse_set_args

    return load_spec(ROOT / "jobs/examples/train_cgan_digits.yaml", parse_set_args(
        [f"train.data={data}", f"train.run_dir={run_dir}", "train.log_every_steps=100000",
         *sets]))


def random_images(path: Path, count: int, size: int, channels: int) -> Path:
    """Random uint8 images and 4 classes: speed does not depend on the content."""
    from jobs.core import facefile

    rng = np.random.default_rng(0)
    return facefile.write_arrays(
        path, rng.integers(0, 255, (count, size, size, channels), dtype=np.uint8),
        rng.integers(0, 4, count), class_names=["a", "b", "c", "d"])


MODELS = {  # name: (image size, channels, generator filters, discriminator filters)
    "64x64 faces": (64, 3, "[128, 64, 32]", "[32, 64, 128]"),
    "16x16 digits": (16, 1, "[128, 128]", "[128, 128]"),
}


def bench_step_vs_train_on_batch(folder: Path, steps: int, model: str) -> None:
    import tensorflow as tf

    from gan.parallel import distributed
    from gan.training.loop import Trainer

    size, channels, g_filters, d_filters = MODELS[model]
    data = random_images(folder / f"step{size}.h5", 256, size, channels)
    s = spec(data, folder / f"step{size}", f"train.model.image_size={size}",
             "train.batch_size=32", f"train.model.generator_filters={g_filters}",
             f"train.model.discriminator_filters={d_filters}", "train.deterministic=false")
    trainer = Trainer(s.work, distributed.World(0, 1, 0))
    images = trainer.data.images[:32]
    labels = trainer.data.labels[:32]
    stop = tf.constant(0.0)
    for i in range(3):  # trace + warm up
        trainer.step_fn(images, labels, tf.constant(i, tf.int64), stop)
    t = time.perf_counter()
    for i in range(steps):
        m, _ = trainer.step_fn(images, labels, tf.constant(i, tf.int64), stop)
    m.numpy()
    fast = steps / (time.perf_counter() - t)

    import keras

    G, D = trainer.G, trainer.D
    D.compile(optimizer=keras.optimizers.Adam(2e-4, 0.5),
              loss=keras.losses.BinaryCrossentropy(from_logits=True))
    D.trainable = False
    z_in = keras.Input((s.work.model.latent_dim,))
    l_in = keras.Input((), dtype="int32")
    gan = keras.Model([z_in, l_in], D([G([z_in, l_in]), l_in]))
    gan.compile(optimizer=keras.optimizers.Adam(2e-4, 0.5),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
    D.trainable = True
    real = to_signed_unit(images.astype(np.float32))

    def seed_step():
        z = np.random.normal(size=(32, s.work.model.latent_dim)).astype(np.float32)
        fake_labels = np.random.randint(0, 4, 32).astype(np.int32)
        fake = G.predict([z, fake_labels], verbose=0)
        D.train_on_batch([real, labels], np.full((32, 1), 0.9, np.float32))
        D.train_on_batch([fake, fake_labels], np.zeros((32, 1), np.float32))
        gan.train_on_batch([z, fake_labels], np.ones((32, 1), np.float32))

    for _ in range(3):
        seed_step()
    t = time.perf_counter()
    for _ in range(steps):
        seed_step()
    slow = steps / (time.perf_counter() - t)
    TABLE.add(f"GAN step {model}, tf.function vs train_on_batch loop (batch 32)", fast, slow,
        "steps/s")


def _train_secs(proc: subprocess.CompletedProcess) -> float:
    assert proc.returncode == 0, proc.stderr[-2000:] + proc.stdout[-2000:]
    text = proc.stderr + proc.stdout
    secs = [float(x) for x in re.findall(r"epoch 2/2 done: .* secs=([0-9.]+)", text)]
    firsts = [float(x) for x in re.findall(r"epoch 1/2 done: .* secs=([0-9.]+)", text)]
    return secs[-1] - firsts[-1]  # the second epoch only: no tracing or warm-up


def bench_horovod(folder: Path, data: Path, batch: int) -> None:
    horovodrun = shutil.which("horovodrun", path=str(Path(sys.executable).parent))
    common = ["--set", f"train.data={data}", "--set", "train.epochs=2", "--set",
              f"train.batch_size={batch}", "--set", "train.log_every_steps=100000",
              "--set", "train.deterministic=false"]
    cmd = [sys.executable, "-m", "jobs", "run",
           str(ROOT / "jobs/examples/train_cgan_digits.yaml")]
    one = subprocess.run([*cmd, *common, "--set", f"train.run_dir={folder / 'hvd1'}"],
                         env={**ENV, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"},
                         capture_output=True, text=True, cwd=ROOT)
    two = subprocess.run([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", *cmd, *common,
                          "--set", f"train.run_dir={folder / 'hvd2'}"],
                         env={**ENV, "OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1"},
                         capture_output=True, text=True, cwd=ROOT)
    from gan.training.data import ImageSet

    n = ImageSet(data).num
    one_rate = (n // batch) * batch / _train_secs(one)
    two_rate = (n // (2 * batch)) * 2 * batch / _train_secs(two)
    TABLE.add(f"16x16 cGAN, 2 Horovod ranks vs 1 process ({n} images, batch {batch}/rank, 1 "
        "thread each)", two_rate, one_rate, "img/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_size_flags(parser, "small sizes")
    args = parser.parse_args()
    runtime.configure()
    runtime.skip_keras_extras()  # as a job's own start-up does
    models = by_size(args, list(MODELS), list(MODELS), ["16x16 digits"])
    steps, images, batch = by_size(args, (40, 16384, 512), (10, 2048, 512), (3, 256, 64))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for model in models:
            bench_step_vs_train_on_batch(folder, steps=steps, model=model)
        big = random_images(folder / "big16.h5", images, 16, 1)
        bench_horovod(folder, big, batch=batch)
    TABLE.print()


if __name__ == "__main__":
    main()
