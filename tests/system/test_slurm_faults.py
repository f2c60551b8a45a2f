"""Faults a cluster throws at a job, on the real test cluster: the controller restarting
under running and pending jobs, a job that cannot run at all (never requeued), a second job
into a running job's run directory (stopped at once, naming the holder), and a job cancelled
instead of requeued (as where preemption cancels), carried on by its resubmit chain."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.core import exitcodes
from tests.conftest import ROOT
from tests.system.test_slurm import (  # noqa: F401 - fixture
    digits,
    epoch_rows,
    run_at_step,
    sacct,
    submit_sbatch,
    train_spec,
    wait_state,
)

pytestmark = pytest.mark.slow
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}


def submit(env: dict, spec: Path, run_dir: Path, cpus: int) -> tuple[str, Path]:
    """``python -m jobs submit`` (no wait): the job id and rank 0's submitit log."""
    proc = subprocess.run([sys.executable, "-m", "jobs", "submit", str(spec), "--set",
                           "resources.time=20", "--set", f"resources.cpus_per_task={cpus}",
                           "--executor", "slurm"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = (run_dir / "logs" / "submissions.jsonl").read_text().splitlines()
    job = json.loads(records[-1])["job_ids"][0]
    return job, run_dir / "logs" / "submitit" / job / f"{job}_0_log.err"


def restart_controller(cluster: dict) -> None:
    """Stop slurmctld (SIGTERM, by its PID file, as an admin's restart does) and start it
    again from the same configuration and state directory."""
    env, pid_file = cluster["env"], cluster["dir"] / "run" / "slurmctld.pid"
    pid = int(pid_file.read_text())
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, "slurmctld did not stop"
        time.sleep(0.2)
    assert subprocess.run(["scontrol", "ping"], env=env, capture_output=True).returncode != 0
    subprocess.run(["slurmctld"], env=env, check=True)
    while subprocess.run(["scontrol", "ping"], env=env, capture_output=True).returncode:
        assert time.monotonic() < deadline, "slurmctld did not come back"
        time.sleep(0.2)


def test_jobs_finish_across_a_controller_restart(slurm_cluster, digits, tmp_path):  # noqa: F811
    """slurmctld restarted while one job runs (held mid-training, so it is surely running
    then, however fast the machine) and another waits for the CPUs: both finish, every epoch
    once, and ``jobs status`` reports them."""
    env = slurm_cluster["env"]
    runs = [tmp_path / name for name in ("running", "pending")]
    node_cpus = int(subprocess.run(["sinfo", "-h", "-o", "%c"], env=env, capture_output=True,
                                   text=True, check=True).stdout.split()[0])
    jobs = [submit(env, train_spec(tmp_path, digits, run_dir, epochs=2), run_dir, cpus)
            for run_dir, cpus in zip(runs, (node_cpus, 1))]
    pid, _ = run_at_step(jobs[0][1], lambda: True, 0)
    waiting = subprocess.run(["squeue", "-h", "-j", jobs[1][0], "-o", "%T"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert waiting == "PENDING"  # the first job holds all the node's CPUs
    os.kill(pid, signal.SIGSTOP)
    try:
        restart_controller(slurm_cluster)
    finally:
        os.kill(pid, signal.SIGCONT)
    for (job, log), run_dir in zip(jobs, runs):
        assert wait_state(env, job, DONE, 600) == "COMPLETED", log.read_text()[-3000:]
        assert epoch_rows(run_dir) == [1, 2]
        status = subprocess.run([sys.executable, "-m", "jobs", "status", str(run_dir)],
                                env=env, capture_output=True, text=True, cwd=ROOT).stdout
        assert "COMPLETED" in status and "last epoch done: 2" in status, status


def test_a_job_that_cannot_run_is_not_requeued(slurm_cluster, digits, tmp_path):  # noqa: F811
    """Its data file is gone by the time it starts: exit 3 at once, the log says why and that
    it is not requeued, and Slurm shows one FAILED run, however many requeues were allowed."""
    env = slurm_cluster["env"]
    run_dir = tmp_path / "gone"
    spec = train_spec(tmp_path, tmp_path / "deleted.h5", run_dir)
    (run_dir / "logs").mkdir(parents=True)
    job = submit_sbatch(env, spec, tmp_path, ["resources.time=20"])
    log = run_dir / "logs" / f"gone-{job}.out"
    assert wait_state(env, job, DONE, 300) == "FAILED", log.read_text()[-3000:]
    text = log.read_text()
    assert f"{tmp_path / 'deleted.h5'}" in text and "Traceback" not in text, text[-3000:]
    assert "job failed with exit code 3 (cannot run here: inputs missing" in text
    assert "not requeued" in text and "requeueing" not in text
    assert [r[1] for r in sacct(env, job, "JobID", "State")] == ["FAILED"]


ONE_CPU = ["resources.cpus_per_task=1", "resources.time=20"]  # two jobs fit the node at once


def submitted_ids(run_dir) -> list[str]:
    """Every job id ``jobs submit`` recorded, in submission order."""
    records = (run_dir / "logs" / "submissions.jsonl").read_text().splitlines()
    return [i for line in records for i in json.loads(line)["job_ids"]]


def submitit_log(run_dir, job: str):
    return run_dir / "logs" / "submitit" / job / f"{job}_0_log.err"


def test_one_job_per_run_dir_and_a_cancelled_job_goes_on_in_its_chain(
        slurm_cluster, digits, tmp_path):  # noqa: F811
    """``resources.resubmit: 2``: the job and two links. A manual sbatch into its run
    directory meanwhile is refused; the job is cancelled (scancel: SIGTERM, a checkpoint, no
    requeue); link 1 takes over its lock and finishes the run, every epoch once; link 2 finds
    the run over and exits at once."""
    env = slurm_cluster["env"]
    run_dir = tmp_path / "chained"
    spec = train_spec(tmp_path, digits, run_dir, epochs=2)
    sets = [a for s in [*ONE_CPU, "resources.resubmit=2"] for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "jobs", "submit", str(spec), *sets],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first, link1, link2 = submitted_ids(run_dir)
    assert f"afterany {first}" in proc.stdout and f"afterany {link1}" in proc.stdout
    pid, _ = run_at_step(submitit_log(run_dir, first), lambda: True, 0)
    os.kill(pid, signal.SIGSTOP)  # held mid-training, however fast the machine
    try:
        # a second job into the same run directory (a manual sbatch): refused at once
        intruder = submit_sbatch(env, spec, tmp_path, ONE_CPU)
        assert wait_state(env, intruder, DONE, 300) == "FAILED"
        text = (run_dir / "logs" / f"{run_dir.name}-{intruder}.out").read_text()
        assert f"is in use by job {first} on host" in text and "Traceback" not in text, text
        assert f"job failed with exit code {exitcodes.NOT_RUNNABLE}" in text
        # cancelled, not requeued: it checkpoints on SIGTERM, the chain's next link resumes
        subprocess.run(["scancel", first], env=env, check=True)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert wait_state(env, first, DONE, 300) == "CANCELLED"
    assert wait_state(env, link1, DONE, 900) == "COMPLETED", \
        submitit_log(run_dir, link1).read_text()[-3000:]
    resumed = submitit_log(run_dir, link1).read_text()
    assert "the run is not finished" in resumed and "resumed from ckpt-" in resumed
    # one node: its process is gone (on several, the lock is marked kept for the next link)
    assert f"taking over the lock of job {first} on host" in resumed
    assert epoch_rows(run_dir) == [1, 2], "an epoch was lost or repeated"

    # the last link finds the run over: exit 0 at once, no training
    assert wait_state(env, link2, DONE, 300) == "COMPLETED"
    last = submitit_log(run_dir, link2).read_text()
    assert f"the run finished in job {link1}: nothing to do" in last
    assert "rank 0/1" not in last
    assert not (run_dir / "job.lock").exists()
    status = subprocess.run([sys.executable, "-m", "jobs", "status", str(run_dir)], env=env,
                            capture_output=True, text=True, cwd=ROOT).stdout
    assert f"last job to end here: {link1}, exit 0" in status, status
