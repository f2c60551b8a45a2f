"""Sweeps on the real test cluster: one throttled array with a summary; a sweep whose
early-stopping rule provably stops a trial at its rung (exit 80, never requeued), says why in
the summary, and skips it when the sweep runs again; and a TPE sweep cancelled mid-trial and
submitted again, which never re-runs a finished trial and asks the study for the rest."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs import study
from jobs.core import events, exitcodes
from jobs.core.chain import read_outcome
from jobs.core.loader import load_spec
from jobs.early_stop import decide, read_rung
from jobs.sweep import point_names
from preprocess.fixture import build
from tests.conftest import QUIET_ENV, ROOT
from tests.system.report_pages import check_sweep_page
from tests.system.test_slurm import digits, sacct, submit_sbatch, train_spec, wait_state, write  # noqa: F401 - fixture

pytestmark = pytest.mark.slow
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}


def test_sweep_is_one_throttled_array_with_a_summary(slurm_cluster, digits,  # noqa: F811
                                                     tmp_path):
    env = slurm_cluster["env"]
    base = train_spec(tmp_path, digits, tmp_path / "base", epochs=2)
    sweep = write(tmp_path / "sweep.yaml", f"""\
kind: sweep
name: sw
resources: {{cpus_per_task: 1, mem_gb: 1, time: 10, array_throttle: 2}}
sweep:
  base: {base}
  run_root: {tmp_path / 'sweep'}
  grid:
    train.optimizer.learning_rate: [1.0e-4, 2.0e-4]
    train.batch_size: [32, 64]
""")
    proc = subprocess.run([sys.executable, "-m", "jobs", "submit", str(sweep), "--executor",
                           "slurm", "--wait"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = json.loads((tmp_path / "sweep/logs/submissions.jsonl").read_text())["job_ids"]
    assert len(ids) == 4 and len({i.split("_")[0] for i in ids}) == 1  # one array
    assert wait_state(env, ids[0].split("_")[0], {"COMPLETED", "FAILED", "CANCELLED"},
                      120) == "COMPLETED"
    rows = subprocess.run(["sacct", "-n", "-P", "-X", "-j", ids[0].split("_")[0], "-o",
                           "JobID,State,Start,End"], env=env, capture_output=True, text=True,
                          check=True).stdout.split()
    spans = [tuple(r.split("|")[2:4]) for r in rows]
    assert all(r.split("|")[1] == "COMPLETED" for r in rows) and len(rows) == 4
    for start, _ in spans:  # at any start, at most 2 tasks were running
        assert sum(s <= start < e for s, e in spans) <= 2
    summary = subprocess.run([sys.executable, "-m", "jobs", "summary", str(sweep)], env=env,
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    with open(tmp_path / "sweep" / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 4 and all(r["epoch"] == "2" for r in table)
    assert "learning_rate=0.0001,batch_size=32" in summary


@pytest.fixture(scope="module")
def faces32(tmp_path_factory) -> Path:
    """The bundled face photos at 32x32, cut by the fixed CelebA window (no detector: seconds).
    Faces, not digits: over O-Net's features, 16-pixel digits from an untrained generator
    score as well as trained ones (measured), so a rule judging KID there proves nothing."""
    folder = tmp_path_factory.mktemp("faces32")
    out, celeba = folder / "faces", build(folder / "celeba")  # the demo's default set
    proc = subprocess.run([sys.executable, "-m", "jobs", "run",
                           str(ROOT / "jobs/examples/preprocess_faces.yaml"),
                           "--set", f"preprocess.input_dir={celeba}",
                           "--set", f"preprocess.output_dir={out}",
                           "--set", "preprocess.faces.image_size=32",
                           "--set", "preprocess.classes=[]",
                           "--set", "preprocess.faces.detector=fixed_crop"],
                          env=QUIET_ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "faces.h5"


def stopping_sweep(folder: Path, data: Path) -> Path:
    """Three trials, one at a time, judged by the median rule at 6 epochs on KID. Trial 1
    barely moves its generator (learning rate 1e-9); trials 0 and 2 train. Measured here:
    KID 0.0049 and 0.0055 trained, 0.0184 untrained, so trial 1 is worse than the median of
    the one before it and stops, and trial 2 beats the median of the two before it."""
    base = write(folder / "base.yaml", f"""\
kind: train
name: base
train:
  data: {data}
  run_dir: {folder / 'unused'}
  epochs: 8
  batch_size: 16
  deterministic: true
  label_smoothing: 0.9
  log_every_steps: 40
  model: {{name: dcgan, image_size: 32, latent_dim: 100, generator_filters: [128, 64, 32],
          discriminator_filters: [32, 64, 128]}}
  latent: {{distribution: normal}}
  guard: {{enabled: false}}
  metrics: {{every_epochs: 3, count: 130, face_rate: false}}
""")
    return write(folder / "sweep.yaml", f"""\
kind: sweep
name: stopping
resources: {{cpus_per_task: 2, mem_gb: 2, time: 20, array_throttle: 1}}
sweep:
  base: {base}
  run_root: {folder / 'sweep'}
  points:
    - {{train.seed: 1, train.optimizer.learning_rate: 4.0e-4}}
    - {{train.seed: 2, train.optimizer.learning_rate: 1.0e-9}}
    - {{train.seed: 2, train.optimizer.learning_rate: 4.0e-4}}
  early_stop: {{rule: median, metric: kid, unit: epochs, rungs: [6]}}
""")


def test_early_stopping_stops_a_trial_at_its_rung(slurm_cluster, faces32, tmp_path):
    env = slurm_cluster["env"]
    sweep = stopping_sweep(tmp_path, faces32)
    root = tmp_path / "sweep"
    (root / "logs").mkdir(parents=True)
    array = submit_sbatch(env, sweep, tmp_path)
    assert wait_state(env, array, DONE, 1200) == "FAILED"  # trial 1's exit 80
    states = {r[0]: (r[1], r[2]) for r in sacct(env, array, "JobID", "State", "ExitCode")}
    assert states == {f"{array}_0": ("COMPLETED", "0:0"), f"{array}_2": ("COMPLETED", "0:0"),
                      f"{array}_1": ("FAILED", f"{exitcodes.EARLY_STOPPED}:0")}, states
    log = (root / "logs" / f"stopping-{array}_1.out").read_text()
    assert "stopped early after epoch 6: kid" in log and "not requeueing" in log, log[-3000:]

    # the records prove it: each decision is the rule's on the values before it
    records = read_rung(root, 6)
    spec = load_spec(sweep)
    names = point_names(spec.work)  # one trial at a time, in array order
    order = sorted(records, key=lambda r: names.index(r["point"]))
    for k, record in enumerate(order):
        others = [r["value"] for r in order[:k]]
        assert record["stop"] == decide(spec.work.early_stop, record["value"], others, True, 6)
    assert [bool(r["stop"]) for r in order] == [False, True, False], records
    stopped = next(r for r in records if r["stop"])
    assert stopped["point"] == "seed=2,learning_rate=1e-09" and stopped["epochs"] == 6

    summary = subprocess.run([sys.executable, "-m", "jobs", "summary", str(sweep)], env=env,
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    with open(root / "summary.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["done", "stopped", "done"]
    assert [r["epoch"] for r in table] == ["8", "6", "8"]
    assert table[1]["stopped_because"] == stopped["stop"]
    assert (root / "summary.png").stat().st_size > 10_000 and "summary.png" in summary
    # the page its tasks wrote as each ended, in a browser: the table sorts, each grid shows
    check_sweep_page(root, tmp_path / "sweep-page.png", points=3, sort_by="best_kid")

    # the sweep again: the stopped trial is not run again
    again = subprocess.run([sys.executable, "-m", "jobs", "run", str(sweep), "--index", "1"],
                           env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == exitcodes.EARLY_STOPPED
    assert "stopped early before" in again.stderr and "rank 0/1" not in again.stderr
    assert read_outcome(root / table[1]["point"])["exit"] == 80


def test_a_tpe_sweep_cancelled_and_submitted_again_asks_only_for_the_rest(
        slurm_cluster, digits, tmp_path):  # noqa: F811
    """Four TPE trials one at a time (two random start-up ones, then modelled). The array is
    cancelled while trial 1 trains; submitted again, trial 0 is not trained again, trial 1
    resumes its point in its run directory, and trials 2 and 3 are asked of the study."""
    env = slurm_cluster["env"]
    base = train_spec(tmp_path, digits, tmp_path / "unused", epochs=2)
    with open(base, "a") as f:  # the objective: each point's best KID
        f.write("  metrics: {every_epochs: 1, count: 64, face_rate: false}\n")
    sweep = write(tmp_path / "tpe.yaml", f"""\
kind: sweep
name: tpe
resources: {{cpus_per_task: 2, mem_gb: 2, time: 10, array_throttle: 1}}
sweep:
  base: {base}
  run_root: {tmp_path / 'sweep'}
  search: tpe
  trials: 4
  seed: 5
  space: {{train.optimizer.learning_rate: {{log_uniform: [5.0e-5, 1.0e-3]}}}}
  early_stop: {{metric: kid}}
  advanced: {{startup_trials: 2}}
""")
    root = tmp_path / "sweep"
    (root / "logs").mkdir(parents=True)
    first = submit_sbatch(env, sweep, tmp_path)
    second_started = _wait_for(lambda: _started(root, 1), f"array {first}: trial 1 started")
    subprocess.run(["scancel", first], env=env, check=True)
    wait_state(env, first, DONE, 300)
    asked = study.asked_points(root)
    assert asked[0]["state"] == "COMPLETE" and asked[1]["state"] == "RUNNING", asked
    assert 2 not in asked and 3 not in asked  # never started: not asked

    again = submit_sbatch(env, sweep, tmp_path)
    assert wait_state(env, again, DONE, 1200) == "COMPLETED", sacct(env, again, "State")
    final = study.asked_points(root)
    assert sorted(final) == [0, 1, 2, 3] and [final[k]["trial"] for k in range(4)] == [
        0, 1, 2, 3]  # one trial per array index: none asked twice
    assert all(p["state"] == "COMPLETE" for p in final.values()), final
    assert final[1]["overrides"] == asked[1]["overrides"]  # resumed, not re-asked
    rates = {p["overrides"]["train.optimizer.learning_rate"] for p in final.values()}
    assert len(rates) == 4
    starts = {d.name: len(events.read(d, "job_started")) for d in root.iterdir()
              if d.name.startswith("trial")}
    assert sorted(starts.values()) == [1, 1, 1, 2], starts  # trial 1 ran twice, 0 once
    assert starts[second_started] == 2
    log = (root / "logs" / f"tpe-{again}_0.out").read_text()
    assert "its trial of the study is finished: not trained again" in log, log[-2000:]
    summary = subprocess.run([sys.executable, "-m", "jobs", "summary", str(sweep)], env=env,
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "optuna_trial" in summary and summary.count(" done ") == 4, summary


def _started(root: Path, index: int) -> str | None:
    """The run directory name of array index ``index``'s trial once its job has started."""
    point = study.asked_points(root).get(index)
    if point is None:
        return None
    found = [d for d in root.glob(f"trial{index:02d},*") if events.read(d, "job_started")]
    return found[0].name if found else None


def _wait_for(probe, what: str, timeout: float = 900):
    """Poll ``probe`` every second until it returns something (a hang guard, not a timer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1)
    raise AssertionError(f"not seen within {timeout:.0f} s: {what}")
