"""Two Slurm nodes on one machine (``slurm/testcluster/start.sh --nodes 2``: node1 and node2
each in its own network, UTS and mount namespace, Horovod's traffic crossing a bridge): ranks
on both nodes training one model, a 2-node job requeued at the walltime and resumed exactly
through sbatch and through submitit, and a rank killed on node2 ending the job at once."""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gan.training import staging
from jobs.core import events, faults
from tests.conftest import ROOT, set_args
from tests.system.test_horovod import HELPER, assert_synced_and_equal_to_one_process
from tests.system.test_slurm import (
    epoch_rows,
    final_digest,
    give_time,
    hold_until_signalled,
    job_alive,
    run_at_step,
    sacct,
    signalled_in,
    submit_sbatch,
    train_spec,
    wait_state,
)

pytestmark = pytest.mark.slow
EPOCHS = 3
# every step logged: the test drives each run from its first step, however slow the machine
TWO_NODES = ["resources.nodes=2", "resources.tasks_per_node=1", "resources.cpus_per_task=1",
             "train.batch_size=32", "train.log_every_steps=1"]
RANK0 = re.compile(r"rank 0/2 on \S+, pid (\d+), restart (\d+)")
RANK = re.compile(r"rank (\d)/2 on (\S+), pid (\d+), restart (\d+)")
DONE = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"}
# A dead rank must end the job long before its 20-minute limit; Slurm ends the step in
# ~0.2 s (--kill-on-bad-exit), accounting and polling add seconds. Not a speed test: without
# the flag the peers spin in the allreduce until the walltime.
DEAD_RANK_BUDGET_S = 180
# the stall test's configured bound; from the freeze to the stall event: the bound, the
# watchdog's poll (2 s at this bound), the stack dump. A hang guard, not a speed test
STALL_S, STALL_MARGIN_S = 20, 90


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    from gan.quality.digits import write_digits

    return write_digits(tmp_path_factory.mktemp("mdigits") / "digits.h5")


def sbatch_job(cluster: dict, spec: Path, folder: Path, *sets: str) -> tuple[str, Path]:
    run_dir = Path(re.search(r"run_dir: (\S+)", spec.read_text()).group(1))
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    job = submit_sbatch(cluster["env"], spec, folder, [*TWO_NODES, *sets])
    return job, run_dir / "logs" / f"{run_dir.name}-{job}.out"


@pytest.fixture(scope="module")
def reference(two_node_cluster, digits, tmp_path_factory) -> dict:
    """The 2-node run straight through (a long time limit): the figures the others match."""
    folder = tmp_path_factory.mktemp("mref")
    spec = train_spec(folder, digits, folder / "ref", epochs=EPOCHS)
    job, log = sbatch_job(two_node_cluster, spec, folder, "resources.time=20")
    assert wait_state(two_node_cluster["env"], job, DONE, 900) == "COMPLETED", \
        log.read_text()[-3000:]
    return {"digest": final_digest(folder / "ref"), "log": log.read_text(),
            "run_dir": folder / "ref"}


def test_ranks_on_two_nodes_train_one_model(reference):
    ranks = {int(m.group(1)): m.group(2) for m in RANK.finditer(reference["log"])}
    assert sorted(ranks) == [0, 1] and set(ranks.values()) == {"node1", "node2"}, ranks
    with open(reference["run_dir"] / "ranks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for epoch in map(str, range(1, EPOCHS + 1)):
        assert {r["rank"] for r in rows if r["epoch"] == epoch} == {"0", "1"}
        assert len({r["weights_digest"] for r in rows if r["epoch"] == epoch}) == 1, rows


def peers_of(text: str, rank0_pid: int) -> tuple[int, ...]:
    """The pids of the other ranks of the start whose rank 0 is ``rank0_pid`` (the same
    restart: the latest, as a pid may be reused), as far as the log has them yet."""
    restarts = [m.group(4) for m in RANK.finditer(text)
                if m.group(1) == "0" and int(m.group(3)) == rank0_pid]
    if not restarts:  # none to hold: the peers spin, as they did before
        return ()
    return tuple(int(m.group(3)) for m in RANK.finditer(text)
                 if m.group(1) != "0" and m.group(4) == restarts[-1])


def test_srun_ranks_on_two_nodes_equal_one_process_on_the_global_batch(two_node_cluster,
                                                                       tmp_path):
    """Horovod's allreduce across node1 and node2 (srun, PMIx): the ranks end identical and
    equal to one process on both ranks' batches (the check the 2-rank Gloo test makes)."""
    proc = subprocess.run(["srun", "--nodes=2", "--ntasks-per-node=1", "--mpi=pmix",
                           "--kill-on-bad-exit=1", sys.executable, str(HELPER), str(tmp_path)],
                          env=two_node_cluster["env"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert_synced_and_equal_to_one_process(tmp_path)


def test_two_node_sbatch_job_requeues_at_walltime_and_resumes_exactly(
        two_node_cluster, digits, reference, tmp_path):
    """Staged on each node's own disk (the cluster's TmpFS: one folder per node, bound in
    each node's mount namespace): each node copies once, each restart finds its copy intact,
    and the staged run ends where the reference, which read the shared file, did."""
    env, cluster_dir = two_node_cluster["env"], two_node_cluster["dir"]
    spec = train_spec(tmp_path, digits, tmp_path / "sb2", epochs=EPOCHS)
    job, log = sbatch_job(two_node_cluster, spec, tmp_path, "train.stage=local",
                          f"train.stage_dir={cluster_dir / 'tmpfs'}")

    start = 0
    for held in range(2):  # both ranks paused until Slurm's walltime signal reached rank 0
        pid, start = run_at_step(log, lambda: job_alive(env, job), start, start=RANK0)
        hold_until_signalled(pid, signal.SIGUSR1,
                             lambda start=start: signalled_in(log, start, RANK0),
                             peers_of(log.read_text(), pid))
        if held == 1:
            give_time(env, job)
        start += 1
    assert wait_state(env, job, DONE, 900) == "COMPLETED", log.read_text()[-3000:]
    text = log.read_text()
    assert len([r for r in sacct(env, job, "JobID", "State") if r[1] == "REQUEUED"]) >= 2
    assert text.count("exit 75 to be requeued") >= 2 and "resumed from ckpt-" in text
    # the batch script's own trap, twice in one job (the one-node test sees it once)
    assert text.count("walltime signal: asking the job to checkpoint") >= 2, text[-3000:]
    assert f"job {job} start: restart 2" in text
    assert {m.group(2) for m in RANK.finditer(text)} == {"node1", "node2"}
    assert epoch_rows(tmp_path / "sb2") == list(range(1, EPOCHS + 1))
    assert final_digest(tmp_path / "sb2") == reference["digest"]
    # rank 0 logs (node1's copy made once, then found at each restart); node2's rank is quiet
    assert text.count("staged: ") == 1 and text.count("staged copy found intact") >= 2
    for node in ("node1", "node2"):  # a copy on each node's own disk, and none elsewhere
        [folder] = (cluster_dir / "tmp" / node).glob("facegan-stage-*")
        assert staging.intact(folder, digits), node
    assert not list((cluster_dir / "tmpfs").iterdir())


def submit_submitit(env: dict, spec: Path, run_dir: Path, *sets: str
                    ) -> tuple[subprocess.Popen, str, Path]:
    proc = subprocess.Popen([sys.executable, "-m", "jobs", "submit", str(spec),
                             *set_args([*TWO_NODES, *sets]),
                             "--executor", "slurm", "--wait"], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    records = run_dir / "logs" / "submissions.jsonl"
    deadline = time.monotonic() + 120
    while not records.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.5)
    job = json.loads(records.read_text().splitlines()[-1])["job_ids"][0]
    return proc, job, run_dir / "logs" / "submitit" / job


def submitit_log(folder: Path) -> str:
    return "".join(p.read_text() for p in sorted(folder.glob("*.err"))) if folder.exists() \
        else ""


def test_two_node_submitit_job_requeues_at_its_timeout_and_resumes_exactly(
        two_node_cluster, digits, reference, tmp_path):
    env = two_node_cluster["env"]
    run_dir = tmp_path / "sub2"
    spec = train_spec(tmp_path, digits, run_dir, epochs=EPOCHS)
    # 3 minutes: the timeout signal (Slurm sends it up to 60 s early) lands after both ranks
    # started. One that lands while submitit itself is still starting the tasks is handled by
    # submitit's own requeue, which was seen to fail a 2-task job: a known gap, not tested
    proc, job, logs = submit_submitit(env, spec, run_dir, "resources.time=3")
    rank0_log = logs / f"{job}_0_log.err"
    pid, start = run_at_step(rank0_log, lambda: proc.poll() is None, 0, start=RANK0)
    hold_until_signalled(pid, signal.SIGUSR2,  # submitit's timeout signal, from Slurm
                         lambda: signalled_in(rank0_log, start, RANK0),
                         peers_of(submitit_log(logs), pid))
    give_time(env, job)
    run_at_step(rank0_log, lambda: proc.poll() is None, start + 1, start=RANK0)
    assert subprocess.run(["scontrol", "requeue", job], env=env).returncode == 0  # preempted
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out[-2000:] + err[-2000:]
    assert [r[1] for r in sacct(env, job, "JobID", "State")].count("REQUEUED") >= 2
    text = submitit_log(logs)
    assert "received SIGUSR2" in text and "received SIGTERM" in text
    assert "resumed from ckpt-" in text
    assert {m.group(2) for m in RANK.finditer(text)} == {"node1", "node2"}
    assert epoch_rows(run_dir) == list(range(1, EPOCHS + 1))
    assert final_digest(run_dir) == reference["digest"]


def kill_rank_on_node2(log_text, timeout: float = 600, epoch: int = 1) -> int:
    """SIGKILL the rank that logged it runs on node2, once a step of ``epoch`` is logged."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_text()
        ranks = {m.group(2): int(m.group(3)) for m in RANK.finditer(text)}
        if "node2" in ranks and re.search(rf"epoch {epoch}/\d+ it \d+/\d+", text):
            os.kill(ranks["node2"], signal.SIGKILL)
            return ranks["node2"]
        time.sleep(0.2)
    raise AssertionError(f"no step on node2:\n{log_text()[-3000:]}")


@pytest.mark.parametrize("launcher", ["sbatch", "submitit"])
def test_a_rank_killed_on_node2_ends_the_job_at_once(two_node_cluster, digits, tmp_path,
                                                     launcher):
    """--kill-on-bad-exit: the peers do not spin in the allreduce until the walltime. A dead
    rank is a failure, not a preemption: the job fails (no requeue); running it again resumes
    from its last checkpoint."""
    env = two_node_cluster["env"]
    run_dir = tmp_path / f"dead-{launcher}"
    spec = train_spec(tmp_path, digits, run_dir, epochs=50)
    if launcher == "sbatch":  # killed in epoch 2 or later: a checkpoint to resume from
        job, log = sbatch_job(two_node_cluster, spec, tmp_path, "resources.time=20")
        kill_rank_on_node2(lambda: log.read_text() if log.exists() else "", epoch=2)
        t = time.monotonic()
        state = wait_state(env, job, DONE, DEAD_RANK_BUDGET_S)
        text = log.read_text()
    else:
        proc, job, logs = submit_submitit(env, spec, run_dir, "resources.time=20")
        kill_rank_on_node2(lambda: submitit_log(logs))
        t = time.monotonic()
        proc.communicate(timeout=DEAD_RANK_BUDGET_S)
        assert proc.returncode != 0
        state = wait_state(env, job, DONE, 60)
        text = submitit_log(logs) + "".join(p.read_text() for p in logs.glob("*.out"))
    assert state == "FAILED", text[-3000:]
    assert time.monotonic() - t < DEAD_RANK_BUDGET_S
    assert not [r for r in sacct(env, job, "JobID", "State") if r[1] == "REQUEUED"]
    assert re.search(r"node2: task 1: Killed", text), text[-3000:]
    if launcher == "sbatch":
        resubmit_resumes_from_the_last_checkpoint(two_node_cluster, spec, tmp_path, run_dir,
                                                  steps_per_epoch(text))


def steps_per_epoch(log_text: str) -> int:
    return int(re.search(r"epoch \d+/\d+ it \d+/(\d+)", log_text).group(1))


def resubmit_resumes_from_the_last_checkpoint(cluster: dict, spec: Path, folder: Path,
                                              run_dir: Path, steps: int) -> None:
    """The user's next step after a dead rank: submit the same spec again (here to one epoch
    past its newest checkpoint, to keep the test short); it goes on from that checkpoint."""
    newest = int(re.search(r'model_checkpoint_path: "ckpt-(\d+)"',
                           (run_dir / "checkpoints" / "checkpoint").read_text()).group(1))
    done = newest // steps
    job, log = sbatch_job(cluster, spec, folder, "resources.time=20", f"train.epochs={done + 1}")
    assert wait_state(cluster["env"], job, DONE, 900) == "COMPLETED", log.read_text()[-3000:]
    assert re.search(rf"resumed from \S*ckpt-{newest}: ", log.read_text())
    assert epoch_rows(run_dir) == list(range(1, done + 2))


def test_ranks_that_do_not_form_one_horovod_world_never_train_alone(two_node_cluster, digits,
                                                                    tmp_path):
    """srun without PMIx: each process could become its own 1-rank Horovod and train alone.
    The job's own check refuses before MPI_Init (no process manager's rank in the
    environment): exit 3 on both nodes, the job fails, nothing is trained or requeued."""
    env = {**two_node_cluster["env"], "FACEGAN_SRUN_MPI": "none"}
    run_dir = tmp_path / "alone"
    spec = train_spec(tmp_path, digits, run_dir, epochs=1)
    job, log = sbatch_job({"env": env}, spec, tmp_path, "resources.time=20")
    assert wait_state(env, job, DONE, DEAD_RANK_BUDGET_S) == "FAILED", log.read_text()[-3000:]
    text = log.read_text()
    assert "the launcher started 2 processes but no process manager joins them" in text
    assert "job failed with exit code" in text and "requeueing" not in text
    assert "rank 0/1 on" not in text and not (run_dir / "checkpoints").exists(), text[-3000:]


def test_a_node_with_a_stale_view_restores_the_checkpoint_rank_0_chose(
        two_node_cluster, digits, reference, tmp_path):
    """Rank 0 alone picks the checkpoint to resume from and sends its choice: node2, shown
    an older index file (bind-mounted over the real one in node2's own mount namespace, as
    a stale NFS attribute cache would), restores the newest and says so."""
    env = two_node_cluster["env"]
    run_dir = tmp_path / "stale"
    spec = train_spec(tmp_path, digits, run_dir, epochs=EPOCHS - 1)
    job, log = sbatch_job(two_node_cluster, spec, tmp_path, "resources.time=20")
    assert wait_state(env, job, DONE, 900) == "COMPLETED", log.read_text()[-3000:]
    steps = steps_per_epoch(log.read_text())
    old, new = f"ckpt-{steps * (EPOCHS - 2)}", f"ckpt-{steps * (EPOCHS - 1)}"
    index = run_dir / "checkpoints" / "checkpoint"
    assert f'model_checkpoint_path: "{new}"' in index.read_text()
    stale = tmp_path / "stale-index"
    stale.write_text(f'model_checkpoint_path: "{old}"\nall_model_checkpoint_paths: "{old}"\n')
    node2 = (two_node_cluster["dir"] / "run" / "slurmd.node2.pid").read_text().strip()
    in_node2 = ["nsenter", f"--mount=/proc/{node2}/ns/mnt", "--"]
    subprocess.run([*in_node2, "mount", "--bind", str(stale), str(index)], check=True)
    try:
        job, log = sbatch_job(two_node_cluster, spec, tmp_path, "resources.time=20",
                              f"train.epochs={EPOCHS}")
        assert wait_state(env, job, DONE, 900) == "COMPLETED", log.read_text()[-3000:]
    finally:  # gone already if rank 0 replaced the file (Linux detaches such a mount)
        subprocess.run([*in_node2, "umount", str(index)], capture_output=True)
    text = log.read_text()
    assert re.search(rf"resumed from \S*{new}: ", text), text[-3000:]
    assert re.search(rf"rank 1: the newest checkpoint here is \S*{old}, rank 0 chose "
                     rf"\S*{new}", text), text[-3000:]
    assert epoch_rows(run_dir) == list(range(1, EPOCHS + 1))
    assert final_digest(run_dir) == reference["digest"]


def preflight(env: dict, spec: Path, *sets: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jobs", "preflight", str(spec),
                           *set_args([*TWO_NODES, *sets])], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


def test_preflight_proves_both_nodes_and_names_a_broken_rank(two_node_cluster, digits,
                                                             tmp_path):
    """``python -m jobs preflight``: a short submitit job on the spec's 2 nodes; every rank
    reports, nothing is written into the run directory. Then the data only on node1's own
    disk (the login node validates its own copy): exit 3 naming the data check and rank 1."""
    env, cluster_dir = two_node_cluster["env"], two_node_cluster["dir"]
    spec = train_spec(tmp_path, digits, tmp_path / "pf")
    proc = preflight(env, spec)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-3000:]
    assert "preflight rank 0 on node1: CPU, Horovod " in out
    assert "preflight rank 1 on node2: CPU, Horovod " in out
    assert out.count("GB/s bus") == 2 and out.count("img/s), alone") == 2
    assert "preflight scaling: " in out and "preflight passed on 2 ranks" in out
    assert not (tmp_path / "pf").exists() and (tmp_path / "pf.preflight").is_dir()
    login_copy = cluster_dir / "tmpfs" / "digits.h5"  # under each node's own TmpFS mount
    shutil.copy(digits, login_copy)
    shutil.copy(digits, cluster_dir / "tmp" / "node1" / "digits.h5")
    try:
        proc = preflight(env, spec, f"train.data={login_copy}")
    finally:
        login_copy.unlink()
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "preflight failed: data on rank 1 (node2): " in proc.stdout, proc.stdout
    assert "step: skipped" not in proc.stdout  # the consequence is not the verdict


@pytest.mark.parametrize("launcher", ["sbatch", "submitit"])
def test_a_frozen_rank_is_caught_its_node_left_out_and_the_run_ends_exactly(
        two_node_cluster, digits, reference, tmp_path, launcher):
    """Two ranks on one node; rank 1's training thread frozen before step 41 (epoch 2; a
    fault fires in a job's first run only). Rank 0 waits inside step 41; after stall_s
    without a step the watchdogs act, naming rank 1 and its node. The batch script (sbatch)
    or the first watchdog (submitit) reads the stall event and requeues the job leaving that
    node out; the retry, on the other node, resumes from epoch 1's checkpoint and ends with
    the reference's weights."""
    env = {**two_node_cluster["env"], faults.VARIABLE: "freeze@1:40"}
    run_dir = tmp_path / "stall"
    spec = train_spec(tmp_path, digits, run_dir, epochs=EPOCHS)
    sets = ["resources.nodes=1", "resources.tasks_per_node=2", "resources.time=20",
            f"train.watchdog.stall_s={STALL_S}"]
    if launcher == "sbatch":
        job, log = sbatch_job({**two_node_cluster, "env": env}, spec, tmp_path, *sets)
        assert wait_state(env, job, DONE, 900) == "COMPLETED", log.read_text()[-3000:]
        text = log.read_text()
    else:
        proc, job, logs = submit_submitit(env, spec, run_dir, *sets)
        out, err = proc.communicate(timeout=900)
        text = "".join(p.read_text() for p in sorted(logs.glob("*.out")) + sorted(
            logs.glob("*.err")))
        assert proc.returncode == 0, out[-2000:] + err[-2000:] + text[-3000:]
    first = {m.group(2) for m in RANK.finditer(text) if m.group(4) == "0"}
    retry = {m.group(2) for m in RANK.finditer(text) if m.group(4) == "1"}
    assert len(first) == 1 and len(retry) == 1 and first != retry, text[-3000:]
    (bad,) = first
    assert "test fault: rank 1's training thread frozen before step 41" in text
    assert f"rank 1 on {bad} stopped first" in text and "most recent call first" in text
    assert f"leaving out {bad} on the retry" in text, text[-3000:]
    stalls = events.read(run_dir, "stall")
    assert {e["culprit_host"] for e in stalls} == {bad} and stalls[0]["step"] == 40
    fault_at = next(line[:19] for line in text.splitlines() if "test fault: rank 1" in line)
    waited = time.mktime(time.strptime(stalls[0]["time"][:19], "%Y-%m-%dT%H:%M:%S")) - \
        time.mktime(time.strptime(fault_at, "%Y-%m-%d %H:%M:%S"))
    assert waited <= STALL_S + STALL_MARGIN_S, (fault_at, stalls[0]["time"])
    assert [r[1] for r in sacct(env, job, "JobID", "State")].count("REQUEUED") == 1
    assert epoch_rows(run_dir) == list(range(1, EPOCHS + 1))
    assert final_digest(run_dir) == reference["digest"]
