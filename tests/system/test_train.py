"""Training runs that are killed, signalled, refused and resumed: the resumed run must end
bitwise equal to one uninterrupted run, with every step logged once and nothing partial left.
Each test keeps its own short run (it needs its own kills); the data set is shared."""
from __future__ import annotations

import csv
import json
import random
import re
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from jobs.core import exitcodes
from tests.conftest import QUIET_ENV, ROOT
from tests.system.training import (
    EPOCHS,
    READ_EVERY,
    STEPS,
    digests,
    latest_checkpoint_step,
    run_train,
    spec_for,
    train_cmd,
    wait_until_caught,
)


@pytest.fixture(scope="module")
def straight(digits16, tmp_path_factory) -> Path:
    """An uninterrupted 4-epoch run: the reference every interrupted run must equal."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    proc = run_train(*spec_for(run_dir.parent, digits16, run_dir))
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_straight_run_writes_outputs(straight):
    d = digests(straight)
    assert sorted(d) == [1, 2, 3, 4] and len(set(d.values())) == 4
    assert (straight / "samples" / "epoch_0004.png").stat().st_size > 1000
    assert (straight / "loss_curve.png").exists()
    assert list((straight / "tensorboard").glob("events.out.tfevents.*"))
    with open(straight / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    interval = [int(r["step"]) for r in rows if r["kind"] == "interval"]
    assert interval == list(range(7, EPOCHS * STEPS + 1, 7))
    assert [int(r["epoch"]) for r in rows if r["kind"] == "epoch"] == [1, 2, 3, 4]
    ckpts = sorted((straight / "checkpoints").glob("ckpt-*.index"), key=lambda p: int(p.name[5:-6]))
    assert [p.name for p in ckpts] == [f"ckpt-{n}.index" for n in (56, 84, 112)]  # keep=3


def test_a_full_disk_while_checkpointing_keeps_the_last_checkpoint(digits16, straight,
                                                                   small_disk):
    """The filesystem fills up while epoch 2's checkpoint is written (sized from epoch 1's
    real usage: room for the epoch's outputs and half a checkpoint). The job exits 3 with
    the directory and free space named, no traceback and nothing partial left; with space
    again it resumes from epoch 1's checkpoint and ends bitwise as the uninterrupted run."""
    disk, resize = small_disk
    run_dir = disk / "run"
    args = spec_for(disk, digits16, run_dir)
    assert run_train(*args, "--set", "train.epochs=1").returncode == 0
    used = shutil.disk_usage(disk).used
    checkpoint = sum(p.stat().st_size for p in (run_dir / "checkpoints").glob(
        f"ckpt-{STEPS}.*"))
    resize(-(-(used + checkpoint // 2 + (256 << 10)) // 4096) * 4096)
    full = run_train(*args)
    assert full.returncode == exitcodes.NOT_RUNNABLE, full.stderr[-3000:]
    assert f"{run_dir}: the filesystem is full (" in full.stderr, full.stderr[-3000:]
    assert f"The last complete checkpoint, {run_dir / 'checkpoints'}/ckpt-{STEPS}, is kept" \
        in full.stderr and "No space left on device" in full.stderr
    assert "Traceback" not in full.stderr
    assert latest_checkpoint_step(run_dir) == STEPS
    assert not [p for p in run_dir.rglob("*") if "_temp" in p.name or ".tmp-" in p.name]
    resize(256 << 20)
    resumed = run_train(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert re.search(rf"resumed from \S*ckpt-{STEPS}: ", resumed.stderr)
    assert digests(run_dir) == digests(straight)


def test_random_sigkills_always_resume_and_finish(digits16, straight, tmp_path):
    """Three SIGKILLs, each at a random logged step past the last one's checkpoint: every
    restart must resume from a newer checkpoint than the one before (progress is kept), and
    the run must end bitwise equal to the uninterrupted one, at every epoch. (A resume from
    an epoch's own checkpoint: the full-disk test here, and every model-registry set.)"""
    run_dir = tmp_path / "run"
    args = spec_for(tmp_path, digits16, run_dir, "train.checkpoint.every_steps=5",
                    "train.log_every_steps=1")
    rng = random.Random(7)
    resumed_from = [0]  # the global step each run started from
    for _ in range(3):
        proc = subprocess.Popen(train_cmd(*args), env=QUIET_ENV, cwd=ROOT,
                                stderr=subprocess.PIPE, text=True)
        target = resumed_from[-1] + rng.randint(6, 30)  # at least one checkpoint past the start
        start = None
        for line in proc.stderr:
            found = re.search(r"resumed from ckpt-(\d+)", line)
            if found:
                start = int(found.group(1))
            step = re.search(r"epoch (\d+)/\d+ it (\d+)/", line)
            if step and (int(step.group(1)) - 1) * STEPS + int(step.group(2)) >= target:
                proc.send_signal(signal.SIGKILL)
                break
        assert proc.wait() == -signal.SIGKILL, "the run ended before its kill"
        proc.stderr.close()
        assert (start or 0) == resumed_from[-1], "did not resume from the last checkpoint"
        newest = latest_checkpoint_step(run_dir)  # what the next run will restore
        assert newest > resumed_from[-1], "the kill landed before any new checkpoint"
        resumed_from.append(newest)
    final = run_train(*args)
    assert final.returncode == 0, final.stderr
    assert f"resumed from ckpt-{resumed_from[-1]}" in final.stderr
    assert digests(run_dir) == digests(straight)
    with open(run_dir / "metrics.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f) if r["kind"] == "interval"]
    assert steps == list(range(1, EPOCHS * STEPS + 1)), "a step was lost or logged twice"


def test_stop_signal_checkpoints_mid_epoch_exits_75_and_resumes(digits16, straight, tmp_path):
    run_dir = tmp_path / "run"
    args = spec_for(tmp_path, digits16, run_dir)
    proc = subprocess.Popen(train_cmd(*args), env=QUIET_ENV, cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # signal at step 7 of epoch 2: 20 steps before its end
        seen.append(line)
        if f"epoch 2/{EPOCHS} it 7/{STEPS}" in line:
            proc.send_signal(signal.SIGUSR1)
            break
    _, rest = proc.communicate(timeout=900)
    err = "".join(seen) + rest
    assert proc.returncode == exitcodes.REQUEUE, err
    assert "received SIGUSR1" in err
    step = max(int(p.name[5:-6]) for p in (run_dir / "checkpoints").glob("ckpt-*.index"))
    assert step % STEPS, "the stop checkpoint should be mid-epoch"
    resumed = run_train(*args)
    assert resumed.returncode == 0, resumed.stderr
    assert f"step {step % STEPS} of {STEPS}" in resumed.stderr
    assert digests(run_dir) == digests(straight)



def test_a_run_started_from_another_resumes_exactly_without_it(digits_small, straight,
                                                               tmp_path):
    """Run B starts from a copy of the straight run's newest checkpoint (fresh optimizers and
    counters, D's first block frozen, other data), is stopped mid-epoch by SIGUSR1 and
    resumed with the source gone: it ends bitwise as B uninterrupted, the source read once."""
    source = tmp_path / "source"
    shutil.copytree(straight, source)

    def args(run_dir: Path) -> list[str]:
        return spec_for(tmp_path, digits_small, run_dir, "train.epochs=2", "train.freeze_d=1",
                        "train.batch_size=32", f"train.init_from={source}:latest")

    whole = run_train(*args(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert f"train.init_from: generator, discriminator from {source}/checkpoints/ckpt-" \
        f"{EPOCHS * STEPS}; optimizers, counters and the guard start afresh" in whole.stderr
    run_dir = tmp_path / "stopped"
    proc = subprocess.Popen(train_cmd(*args(run_dir)), env=QUIET_ENV, cwd=ROOT,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:  # 20 steps an epoch: signal at step 7 of epoch 1
        seen.append(line)
        if "epoch 1/2 it 7/20" in line:
            proc.send_signal(signal.SIGUSR1)
            break
    _, rest = proc.communicate(timeout=900)
    assert proc.returncode == exitcodes.REQUEUE, "".join(seen) + rest
    assert 0 < latest_checkpoint_step(run_dir) < 20, "the stop should be mid-epoch"
    shutil.rmtree(source)  # a run with its own checkpoint never reads its source again
    resumed = run_train(*args(run_dir))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "not read: the run resumes from its own ckpt-" in resumed.stderr
    assert digests(run_dir) == digests(tmp_path / "whole")
    assert json.loads((run_dir / "init_from.json").read_text())["init_from"] == \
        f"{source}:latest"


def test_fresh_refuses_and_model_change_is_rejected(digits16, straight, tmp_path):
    run_dir = tmp_path / "copy"
    shutil.copytree(straight, run_dir)
    args = spec_for(tmp_path, digits16, run_dir)
    fresh = subprocess.run(train_cmd(*args, "--fresh"), env=QUIET_ENV, cwd=ROOT,
                           capture_output=True, text=True, timeout=900)
    assert fresh.returncode == exitcodes.NOT_RUNNABLE and "--fresh" in fresh.stderr
    other = run_train(*args, "--set", "train.model.latent_dim=16")
    assert other.returncode == exitcodes.NOT_RUNNABLE and "another train.model" in other.stderr
    done = run_train(*args)
    assert done.returncode == 0 and "already done" in done.stderr
    assert "rank 0 device: CPU; TensorFlow " in done.stderr  # every rank names its device


def test_a_gpu_spec_on_this_cpu_node_stops_with_one_line(digits16, tmp_path):
    """resources.gpus_per_node > 0 where TensorFlow sees no GPU (this machine has none, and its
    TensorFlow is the CPU build): exit 3 before training, one error line naming the host,
    CUDA_VISIBLE_DEVICES and the build, no traceback, and no run directory that looks begun."""
    run_dir = tmp_path / "run"
    proc = run_train(*spec_for(tmp_path, digits16, run_dir, "resources.gpus_per_node=1"))
    assert proc.returncode == exitcodes.NOT_RUNNABLE, proc.stderr
    [error] = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert f"{socket.gethostname()}: resources.gpus_per_node is 1, but TensorFlow sees no GPU " \
           "(CUDA_VISIBLE_DEVICES=unset; TensorFlow " in error, error
    assert "is the CPU build)" in error and "train.device: cpu" in error
    assert "Traceback" not in proc.stderr and not run_dir.exists()



def test_stop_signal_during_startup_is_not_lost(digits16, tmp_path):
    """Slurm's early signal can come while TensorFlow still imports: it must not kill the
    job; the trainer checkpoints after its first step and asks to be requeued."""
    args = spec_for(tmp_path, digits16, tmp_path / "early")
    proc = subprocess.Popen(train_cmd(*args), env=QUIET_ENV, cwd=ROOT, stderr=subprocess.PIPE,
                            text=True)
    wait_until_caught(proc, signal.SIGUSR1)  # the entry point's first act, before TensorFlow
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == exitcodes.REQUEUE, err
    # pending since before the first step: acted on at the first read
    assert f"stopped at epoch 1 step {READ_EVERY}/" in err
    assert run_train(*args).returncode == 0

