"""Helpers of the training system tests: the small digits spec they share, running the CLI,
and reading what a run wrote (per-rank digests, checkpoints, figures)."""
from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.conftest import ROOT, run_cli, set_args

EPOCHS, STEPS = 4, 28  # digits: 1797 images // batch 64 = 28 steps per epoch


READ_EVERY = 4


def spec_for(folder: Path, data: Path, run_dir: Path, *sets: str) -> list[str]:
    """CLI args: the digits example spec pointed at test paths, small and fast."""
    return [str(ROOT / "jobs/examples/train_cgan_digits.yaml"),
            "--set", f"train.data={data}", "--set", f"train.run_dir={run_dir}",
            "--set", f"train.epochs={EPOCHS}", "--set", "train.log_every_steps=7",
            # the host reads the steps every READ_EVERY: stops, the guard and resume at reads
            "--set", f"train.advanced.read_every_steps={READ_EVERY}",
            "--set", "train.model.latent_dim=32", "--set", "train.model.advanced.embedding_dim=8",
            "--set", "train.model.generator_filters=[32, 16]",
            "--set", "train.model.discriminator_filters=[16, 32]",
            "--set", "train.ema.enabled=false", *set_args(sets)]


def train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs", "run", *args]


def run_train(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """``python -m jobs run ARGS``, with a hang guard long enough for a loaded machine."""
    return run_cli("run", *args, timeout=timeout)


def rank_rows(run_dir: Path) -> list[dict]:
    with open(run_dir / "ranks.csv", newline="") as f:
        return list(csv.DictReader(f))


def digests(run_dir: Path) -> dict[int, str]:
    return {int(r["epoch"]): r["weights_digest"] for r in rank_rows(run_dir)
            if r["rank"] == "0"}


def latest_checkpoint_step(run_dir: Path) -> int:
    """The step of the checkpoint TensorFlow's index file names as the latest."""
    state = (run_dir / "checkpoints" / "checkpoint").read_text()
    return int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"', state).group(1))


def signal_mask(pid: int, *fields: str) -> int:
    """The union of the signal masks ``fields`` of /proc/PID/status (``SigCgt``: caught,
    ``SigPnd``/``ShdPnd``: pending), as bits (bit n-1 = signal n)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = 0
    for field in fields:
        mask |= int(re.search(rf"{field}:\s*([0-9a-f]+)", status).group(1), 16)
    return mask


def wait_until_caught(proc: subprocess.Popen, signum: int, timeout: float = 300) -> None:
    """Wait until ``proc`` has its handler for ``signum``: a process signalled before that
    dies of the signal's default action however early its code would have caught it, and
    how soon that is depends on the machine's load, not on the code."""
    deadline = time.monotonic() + timeout
    while not signal_mask(proc.pid, "SigCgt") & (1 << (signum - 1)):
        assert proc.poll() is None, "the process ended before it caught the signal"
        assert time.monotonic() < deadline, f"signal {signum} never caught"
        time.sleep(0.005)


def killed_after_epoch(run_dir: Path, copy: Path, epoch: int, step: int) -> Path:
    """A copy of a finished run as a kill just after its step-``step`` checkpoint (the end of
    ``epoch``) would have left it: the later checkpoints, the later epochs' rows of
    ``ranks.csv`` and the best snapshot gone, so what the later epochs show in the copy can
    only come from a process that resumed it. One uninterrupted run then serves as both the
    reference and the run to resume."""
    shutil.copytree(run_dir, copy)
    checkpoints = copy / "checkpoints"
    for path in checkpoints.glob("ckpt-*"):
        if int(re.match(r"ckpt-(\d+)", path.name).group(1)) > step:
            path.unlink()
    assert list(checkpoints.glob(f"ckpt-{step}.index")), f"{run_dir} has no ckpt-{step}"
    index = checkpoints / "checkpoint"  # TensorFlow's: newest, all kept, when each was saved
    text = index.read_text()
    kept = [(path, stamp) for path, stamp in zip(
        re.findall(r'all_model_checkpoint_paths: "ckpt-(\d+)"', text),
        re.findall(r"all_model_checkpoint_timestamps: (\S+)", text)) if int(path) <= step]
    index.write_text(f'model_checkpoint_path: "ckpt-{step}"\n' + "".join(
        f'all_model_checkpoint_paths: "ckpt-{p}"\n' for p, _ in kept) + "".join(
        f"all_model_checkpoint_timestamps: {t}\n" for _, t in kept) + re.search(
        r"last_preserved_timestamp: \S+\n", text).group(0))
    rows = [r for r in rank_rows(copy) if int(r["epoch"]) <= epoch]
    with open(copy / "ranks.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shutil.rmtree(copy / "best", ignore_errors=True)
    return copy


def tf_checkpoint_reader(run_dir: Path) -> list[str]:
    """The names of the variables in a run's newest checkpoint (TensorFlow imported only
    here: the helpers must not slow every test module's import)."""
    import tensorflow as tf

    path = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    return [name for name, _ in tf.train.list_variables(path)]


def figures(run_dir: Path, out: Path, example: str, *sets: str) -> dict:
    """Run a generate example against a trained run; its figures.json."""
    proc = run_train(str(ROOT / f"jobs/examples/{example}.yaml"),
                     "--set", f"generate.run_dir={run_dir}", "--set", f"generate.output_dir={out}",
                     *set_args(sets))
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "figures.json").read_text())


def copy_run_without_its_data(run_dir: Path, copy: Path) -> Path:
    """A copy of a trained run whose recorded training data no longer exists (as if the data
    had been moved away): what a run directory alone must be enough for."""
    shutil.copytree(run_dir, copy)
    spec_file = copy / "train_spec.yaml"
    spec = yaml.safe_load(spec_file.read_text())
    spec["data"] = str(copy.parent / "moved-away.h5")
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False))
    return copy
