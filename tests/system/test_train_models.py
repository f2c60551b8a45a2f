"""Every model of the registry through the same loop: trains, resumes bitwise exactly and
stays in sync across 2 Horovod ranks, each reading its own slice of the data; a process no
launcher joins refuses; the mode-collapse guard rolls back only the failing model and stops a
run it cannot save."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gan.training.data import ImageSet, Split
from gan.training.outputs import read_metrics
from jobs.core import exitcodes
from jobs.core.rundir import INIT_RECORD
from jobs.core.signals import StopSignals
from tests.conftest import QUIET_ENV, ROOT
from tests.system.conftest import TINY_DIGITS
from tests.system.training import (
    READ_EVERY,
    STEPS,
    digests,
    figures,
    killed_after_epoch,
    rank_rows,
    run_train,
    spec_for,
    tf_checkpoint_reader,
    train_cmd,
)


def assert_ranks_read_disjoint_slices(run_dir: Path, data: Path, epochs: int, batch: int
                                      ) -> None:
    """Each of 2 ranks read exactly its own slice of every epoch's order (what it logged in
    ranks.csv: the count and the sum of the indices it read), none shared."""
    images, rows = ImageSet(data), rank_rows(run_dir)
    steps = images.num // (2 * batch)
    for epoch in range(1, epochs + 1):
        seen = []
        for rank in (0, 1):
            row = next(r for r in rows if int(r["epoch"]) == epoch and int(r["rank"]) == rank)
            idx = np.concatenate([images.rank_indices(0, epoch - 1, Split(rank, 2, batch), s)
                                  for s in range(steps)])
            assert int(row["images"]) == len(idx) == steps * batch
            assert int(row["index_sum"]) == int(idx.sum())
            seen.append(set(idx.tolist()))
        assert not seen[0] & seen[1]


def test_processes_no_launcher_joins_refuse_to_train_alone(digits16, tmp_path):
    """Two tasks by Slurm's count (SLURM_NTASKS) but no process manager's rank in the
    environment: the job's own check refuses before MPI_Init, exit 3 (never requeued), one
    clear line, nothing written."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(train_cmd(*spec_for(tmp_path, digits16, run_dir)),
                          env={**QUIET_ENV, "SLURM_NTASKS": "2"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "the launcher started 2 processes but no process manager joins them" in proc.stderr
    assert "srun --mpi=pmix" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_dir / "checkpoints").exists()



@pytest.mark.parametrize("recipe", ["classic", "modern"])
def test_guard_rolls_back_only_the_failing_model_then_stops(digits16, tmp_path, recipe):
    """An injected collapse: D's loss is forced out of bounds from step 40 on; with the classic
    networks and with the modern recipe's (residual networks, the relativistic loss, whose
    reported losses are those of the centred logits)."""
    import tensorflow as tf

    from gan.parallel import distributed
    from gan.training import loop
    from gan.training.guard import GuardStop
    from jobs.core.loader import load_spec, parse_set_args

    spec = load_spec(ROOT / "jobs/examples/train_cgan_digits.yaml", parse_set_args(spec_for(
        tmp_path, digits16, tmp_path / "run")[2::2] + [
        "train.guard.snapshot_every_steps=5", "train.guard.max_failures=3",
        "train.guard.d_real_band=[0.0, 10.0]", "train.guard.d_fake_band=[0.0, 10.0]",
        "train.guard.g_band=[0.0, 10.0]", "train.read_every_steps=1",  # judged per step
        f"train.recipe={recipe}"]))
    trainer = loop.Trainer(spec.work, distributed.World(0, 1, 0))
    real_step = trainer.step_fn
    before, after = {}, {}  # step -> (D weights, G weights) before/after that step trains

    def weights():
        return ([v.numpy().copy() for v in trainer.D.weights],
                [v.numpy().copy() for v in trainer.G.weights])

    def collapsing_step(images, labels, step, stop):
        k = int(step)  # read first: the step counts itself
        before[k] = weights()
        metrics, stops = real_step(images, labels, step, stop)
        after[k] = weights()
        if k >= 40:
            metrics = tf.tensor_scatter_nd_update(metrics, [[0]], [5.0])  # d_real = 5
        return metrics, stops

    trainer.step_fn = collapsing_step
    with pytest.raises(GuardStop, match="3 rollbacks without"):
        trainer.run(StopSignals())
    assert int(trainer.guard.rollbacks) == 2

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(a, b))

    # the guard observes step k's losses as global step k+1; its snapshot of step s holds the
    # weights after training step s-1. The first rollback happened after step 40 trained:
    snap = int(trainer.guard.slot_step[1])
    assert 0 < snap < 40
    d_restored, g_kept = before[41]
    assert same(d_restored, after[snap - 1][0]), "D was not restored to the older snapshot"
    assert same(g_kept, after[40][1]), "G was rolled back although its loss was fine"
    assert not same(d_restored, after[40][0])


def test_guard_stop_exits_79_through_the_cli(digits16, tmp_path):
    """A real stop, decided by steps: D's loss on real digits falls steadily from 0.70 (step 1)
    to 0.41 (step 112) on these settings, so a lower bound of 0.55 is healthy at the first
    read (step READ_EVERY, the one snapshot) and broken near step 30; the rollback restores D,
    D learns again, breaks the bound again: 2 rollbacks with no snapshot between them -> exit
    79, never requeued."""
    args = spec_for(tmp_path, digits16, tmp_path / "run", "train.guard.d_bounds=[0.55, 10.0]",
                    "train.guard.g_bounds=[0.0, 10.0]", "train.guard.g_band=[0.0, 10.0]",
                    "train.guard.d_real_band=[0.0, 10.0]",
                    "train.guard.d_fake_band=[0.0, 10.0]",
                    "train.guard.snapshot_every_steps=1000", "train.guard.max_failures=2")
    proc = run_train(*args)
    assert proc.returncode == exitcodes.GUARD_STOPPED, proc.stderr[-3000:]
    assert "guard: rollback 1 at step" in proc.stderr and "restored discriminator" in proc.stderr
    assert "mode-collapse guard: 2 rollbacks without" in proc.stderr
    assert f"snapshot to restore was from step {READ_EVERY})" in proc.stderr  # the first read



def test_mixed_precision_trains(digits16, tmp_path):
    proc = run_train(*spec_for(tmp_path, digits16, tmp_path / "mp", "train.epochs=1",
                               "train.mixed_precision=true"))
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mp" / "checkpoints" / f"ckpt-{STEPS}.index").exists()



MODEL_SETS = {  # the registry's other models, on the small test settings of spec_for
    # (the AE-AC-GAN on the classic networks has no set of its own: its step and checkpoint
    # are aeacgan-residual's, its networks the cGAN's, which have no BatchNorm to average;
    # it trains in test_learning_aeacgan.py and test_train_faces.py)
    # every option of the cGAN's step at once: the generator's moving average and DiffAugment
    # with ADA's p (in the checkpoint, seeded by the step), the hinge loss with the lazy R1
    # penalty (second-order gradients, allreduced like the rest), quality measured per epoch
    "cgan-options": ["train.ema.enabled=true", "train.ema.half_life_kimg=0.5",
                     "train.augment.policy=[color, translation, cutout]",
                     "train.augment.adaptive=true", "train.augment.probability=0.3",
                     "train.augment.speed_kimg=5", "train.metrics.every_epochs=1",
                     "train.metrics.count=40", "train.checkpoint.keep_best=kid",
                     "train.loss.name=hinge", "train.loss.r1_gamma=1.0",
                     "train.loss.r1_interval=4",
                     # and the schedules (train.schedule) that move across the resume
                     "train.schedule.kimg=1", "train.schedule.learning_rate=[2.0e-4, 5.0e-5]",
                     "train.schedule.beta_2=[0.9, 0.99]", "train.schedule.gamma=[2.0, 0.2]",
                     "train.schedule.ema_half_life_kimg=[0.1, 0.5]"],
    # the classic DCGAN (BatchNorm inside) as XLA-compiled networks in bfloat16, Horovod's
    # allreduce outside
    "dcgan-xla-bfloat16": ["train.model.name=dcgan", "train.jit_compile=true",
                           "train.precision=bfloat16"],
    # the modern loss in every precision, the residual networks (no normalization) in the
    # two that a CPU runs at speed. float16: dynamic loss scaling (the scale in the
    # checkpoint, unscaled alike on every rank) with the relativistic loss and R1 + R2
    # (double backprop under the loss scale) every 4th step, on the classic networks: a CPU
    # emulates float16, and the residual networks in it took 2 s a step (3x the classic
    # ones); tests/gan/training/test_steps.py runs their float16 step. bfloat16 on the
    # DCGAN's residual networks; float32 with R1 + R2 on every step in the AE-AC-GAN's three
    # updates
    "cgan-float16": ["train.precision=float16",
                     "train.loss.name=relativistic", "train.loss.r1_gamma=1.0",
                     "train.loss.r2_gamma=1.0", "train.loss.r1_interval=4"],
    "dcgan-bfloat16": ["train.model.name=dcgan", "train.precision=bfloat16",
                       "train.model.architecture=residual", "train.loss.name=relativistic"],
    "aeacgan-residual": ["train.model.name=aeacgan", "train.latent.distribution=unit_uniform",
                         "train.model.architecture=residual", "train.loss.name=relativistic",
                         "train.loss.r1_gamma=0.5", "train.loss.r2_gamma=0.5",
                         "train.loss.r1_interval=1", "train.augment.policy=[translation]",
                         "train.schedule.kimg=1",
                         "train.schedule.augment_probability=[0.0, 0.5]"],
}


def assert_tools_work_on_residual_networks(run_dir: Path, data: Path, tmp_path: Path,
                                           sets: list[str]) -> None:
    """The sampler's tools on residual networks: interpolation, export to a plain Keras file,
    and a fine-tune from the run (init_from) with D's first residual stage frozen. (Attribute
    arithmetic needs a generator that already draws the attribute, which 20 steps do not
    make: its encoder finds digit_1 in none of 200 samples and says so.)"""
    interp = figures(run_dir, tmp_path / "interp", "generate_interpolate", "generate.steps=3")
    assert Path(interp["linear"]).exists() and Path(interp["spherical"]).exists(), interp
    export = figures(run_dir, tmp_path / "export", "generate_grid", "generate.task=export")
    assert Path(export["generator"]).exists(), export
    tuned = tmp_path / "tuned"
    networks = [s for s in sets if s.startswith(("train.model", "train.latent"))]
    proc = run_train(*spec_for(tmp_path, data, tuned, *networks, "train.epochs=1",
                               f"train.init_from={run_dir}", "train.freeze_d=1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tuned / INIT_RECORD).read_text())
    assert {"generator", "discriminator", "encoder"} <= set(record["networks"]), record


@pytest.mark.parametrize("model", sorted(MODEL_SETS))
def test_model_trains_resumes_exactly_and_stays_in_sync_across_ranks(model, digits_tiny,
                                                                     tmp_path):
    """The same loop serves every model of the registry: the DCGAN (BatchNorm inside) and the
    AE-AC-GAN (encoder, three updates per batch, its own optimizer in the checkpoint). On the
    first 256 digits (4 steps an epoch, a lazy R1 step in each): the properties are
    exactness and sync, not learning."""
    sets = [*MODEL_SETS[model], "train.epochs=2"]
    data, steps = digits_tiny, TINY_DIGITS // 64
    straight = run_train(*spec_for(tmp_path, data, tmp_path / "a", *sets))
    assert straight.returncode == 0, straight.stderr
    killed_after_epoch(tmp_path / "a", tmp_path / "b", 1, steps)
    resumed = run_train(*spec_for(tmp_path, data, tmp_path / "b", *sets))
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed from ckpt-{steps}" in resumed.stderr
    assert digests(tmp_path / "b") == digests(tmp_path / "a")
    with open(tmp_path / "a" / "metrics.csv") as f:
        header = f.readline().strip().split(",")
    if model == "cgan-options":  # the average is in every checkpoint, apart from G
        reader = tf_checkpoint_reader(tmp_path / "a")
        assert any("generator_ema" in name for name in reader)
        assert any("augment_p" in name for name in reader) and "augment_p" in header
    if model == "cgan-float16":  # each optimizer's loss scale is in the checkpoint
        assert sum("dynamic_scale" in name for name in tf_checkpoint_reader(tmp_path / "a")) == 2
    if model.startswith("aeacgan"):  # its extra losses are logged too
        assert {"d_attr", "g_attr", "ae_mae"} <= set(header)
    if model == "aeacgan-residual":
        assert_tools_work_on_residual_networks(tmp_path / "a", data, tmp_path, sets)
    horovodrun = shutil.which("horovodrun", path=str(Path(sys.executable).parent))
    two = subprocess.run([horovodrun, "-np", "2", "-H", "localhost:2", "--gloo", *train_cmd(
        *spec_for(tmp_path, data, tmp_path / "c", *sets, "train.batch_size=32"))],
        env=QUIET_ENV, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert two.returncode == 0, two.stdout[-3000:]
    rows = rank_rows(tmp_path / "c")
    for epoch in ("1", "2"):  # BatchNorm statistics averaged: identical models every epoch
        assert len({r["weights_digest"] for r in rows if r["epoch"] == epoch}) == 1
    assert digests(tmp_path / "c")[1] != digests(tmp_path / "c")[2]  # and they trained
    assert_ranks_read_disjoint_slices(tmp_path / "c", data, 2, 32)
    if model == "cgan-options":  # quality measured by both ranks, each its share
        epochs = read_metrics(tmp_path / "c", "epoch")
        assert all(float(r["kid"]) > 0 and r["face_rate"] != "" for r in epochs), epochs
        assert (tmp_path / "c" / "best" / "best.json").exists()
        assert "quality yardstick, 40 real images" in two.stdout + two.stderr

