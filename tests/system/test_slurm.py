"""On a real Slurm cluster (started by the ``slurm_cluster`` fixture): self-requeueing training
at the walltime through sbatch and through submitit, external preemption, the preprocess →
merge → train chain and a failing chain that cancels itself (sweeps: test_slurm_sweeps.py)."""
from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jobs.core.fields import walltime_minutes
from jobs.core.loader import load_spec, parse_set_args
from jobs.scheduler import sbatch_argv
from tests.conftest import QUIET_ENV, ROOT
from tests.system.test_bench_smoke import check_requeue_smoke
from tests.system.training import signal_mask

pytestmark = pytest.mark.slow
EPOCHS, STEPS = 6, 28  # digits: 1797 // 64 = 28 steps an epoch
HOLD_BUDGET_S = 300  # Slurm sends the walltime signal within ~30 s; generous for slow machines


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def train_spec(folder: Path, data: Path, run_dir: Path, epochs: int = EPOCHS) -> Path:
    """A 2-minute job with a generous requeue budget: how many restarts a run needs depends on
    the machine's speed, so the test never counts on a small one. Its walltime signal: the
    controller checks every 30 s and sends it at the first check that finds the job within
    lead + 30 s of its limit, so with a 20 s lead 70-100 s after the start. Not sooner: a
    signal sent in the job's first second, before its batch step or srun's tasks exist, is
    lost (seen with a 30 s lead, whose window starts at 0 s); and a 1-minute limit was too
    short on a loaded machine (the suite's other worker training): the signal came during
    start-up, the first step took 44 s, and the job reached its hard limit before it could
    checkpoint (TIMEOUT, never requeued)."""
    return write(folder / f"{run_dir.name}.yaml", f"""\
kind: train
name: {run_dir.name}
resources: {{cpus_per_task: 2, mem_gb: 2, time: 2, signal_lead_s: 20, max_requeues: 30}}
train:
  data: {data}
  run_dir: {run_dir}
  epochs: {epochs}
  batch_size: 64
  deterministic: true
  log_every_steps: 7
  model: {{image_size: 16, latent_dim: 64, embedding_dim: 16,
          generator_filters: [64, 32], discriminator_filters: [32, 64]}}
  optimizer: {{name: adam, learning_rate: 2.0e-4, beta_1: 0.5}}
""")


def sacct(env: dict, job: str, *fields: str) -> list[list[str]]:
    out = subprocess.run(["sacct", "-n", "-P", "-X", "--duplicates", "-j", job, "-o",
                          ",".join(fields)], env=env, capture_output=True, text=True,
                         check=True).stdout
    return [line.split("|") for line in out.splitlines() if line]


def wait_state(env: dict, job: str, done: set[str], timeout: float) -> str:
    """Wait until the job (every task, for an array) is in one of ``done``; the state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = {}  # task id -> state of its latest run (a requeued job has several)
        for row in sacct(env, job, "JobID", "State"):
            if row[0] == job or row[0].startswith(f"{job}_"):
                latest[row[0]] = row[1].split()[0]
        states = set(latest.values())
        if states and states <= done:
            return "FAILED" if "FAILED" in states else states.pop()
        time.sleep(2)
    raise AssertionError(f"job {job} not done after {timeout} s: {sacct(env, job, 'State')}")


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
            "BOOT_FAIL", "DEADLINE"}


def job_alive(env: dict, job: str, settle_s: float = 5) -> bool:
    """False once the job's newest run is in a final state and still is ``settle_s`` later: a
    job requeueing itself (an early signal, a slow start on a loaded machine) passes through
    states that are not PENDING or RUNNING on its way back."""
    for attempt in range(2):
        rows = sacct(env, job, "State")  # empty until the accounting has the job
        if not rows or rows[-1][0].split()[0] not in TERMINAL:
            return True
        if attempt == 0:
            time.sleep(settle_s)
    return False


def final_digest(run_dir: Path) -> str:
    with open(run_dir / "ranks.csv", newline="") as f:
        return [r for r in csv.DictReader(f)][-1]["weights_digest"]


def epoch_rows(run_dir: Path) -> list[int]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return [int(r["epoch"]) for r in csv.DictReader(f) if r["kind"] == "epoch"]


# --------------------------------------------------------------- driving a job by its steps
START = re.compile(r"rank 0/1 on \S+, pid (\d+), restart (\d+)")
STEP = re.compile(r"epoch \d+/\d+ it \d+/\d+")
SIGNALLED = r"received SIG(?:USR1|USR2|TERM) \(pid {pid}\b"


def starts_of(text: str, start: re.Pattern) -> list[tuple[int, int, int]]:
    """Each start of the job in its log: (the pid ``start`` names, where that line ends, where
    the next start's line begins)."""
    found = list(start.finditer(text))
    ends = [m.start() for m in found[1:]] + [len(text)]
    return [(int(m.group(1)), m.end(), end) for m, end in zip(found, ends)]


def signal_at(text: str, pid: int) -> int | None:
    """Where the log says a stop signal reached process ``pid`` (by pid: a signal caught
    during start-up is logged before that process's start line), None if it has not."""
    found = re.search(SIGNALLED.format(pid=pid), text)
    return found.start() if found else None


def signalled_in(log: Path, index: int, start: re.Pattern = START) -> bool:
    """Did the process of the job's ``index``-th start log that a stop signal reached it?"""
    text = log.read_text() if log.exists() else ""
    runs = starts_of(text, start)
    return len(runs) > index and signal_at(text, runs[index][0]) is not None


def run_at_step(log: Path, proc_alive, start_index: int, timeout: float = 600,
                start: re.Pattern = START) -> tuple[int, int]:
    """Wait until a start of the job, from its ``start_index``-th (0 = first) on, has logged a
    training step before any stop signal reached it: (the pid of the rank ``start`` matches in
    that run, its index). A run signalled during its start-up is left to end on its own."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text() if log.exists() else ""
        assert proc_alive(), f"the job ended before the test could drive it:\n{text[-4000:]}"
        runs = starts_of(text, start)
        while len(runs) > start_index:
            pid, begin, end = runs[start_index]
            step, signalled = STEP.search(text, begin, end), signal_at(text, pid)
            if step and (signalled is None or signalled > step.start()):
                return pid, start_index
            if signalled is None or len(runs) == start_index + 1:
                break  # no step yet, or signalled: wait for its step or for the next start
            start_index += 1
        time.sleep(0.1)
    raise AssertionError(f"no training step logged in start {start_index}:\n"
                         f"{log.read_text()[-3000:] if log.exists() else '(no log)'}")


def pending(pid: int) -> int:
    """The signals pending for a (stopped) process, as a bit mask (bit n-1 = signal n)."""
    return signal_mask(pid, "ShdPnd", "SigPnd")


def hold_until_signalled(pid: int, signum: int, received=lambda: False,
                         peers: tuple[int, ...] = ()) -> bool:
    """Pause the training (SIGSTOP) until Slurm's walltime signal is pending for it, then let
    it go: the signal lands mid-training however fast or slow this machine is, so the number
    of walltime requeues is the test's choice, not the machine's. False if the process was
    already gone; also done when ``received()`` says the signal got in before the SIGSTOP.
    ``peers``, the job's other ranks, are paused and let go with it: left running, each would
    wait for it inside an MPI collective, spinning a core for the whole hold."""
    try:
        os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return False
    try:
        for peer in peers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(peer, signal.SIGSTOP)
        deadline = time.monotonic() + HOLD_BUDGET_S
        while True:
            try:
                if pending(pid) & (1 << (signum - 1)) or received():
                    return True
            except (FileNotFoundError, ProcessLookupError):
                return False
            assert time.monotonic() < deadline, "Slurm never sent the walltime signal"
            time.sleep(0.2)
    finally:
        for held in (pid, *peers):
            with contextlib.suppress(ProcessLookupError):
                os.kill(held, signal.SIGCONT)


def give_time(env: dict, job: str, minutes: int = 20) -> None:
    """Raise the job's time limit so the rest of the work fits in its next run whatever the
    machine's speed (the test's budget; the job's own limit was the short one)."""
    subprocess.run(["scontrol", "update", f"JobId={job}", f"TimeLimit={minutes}"], env=env,
                   check=True, capture_output=True)


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    from gan.quality.digits import write_digits

    return write_digits(tmp_path_factory.mktemp("sdigits") / "digits.h5")


@pytest.fixture(scope="module")
def uninterrupted(digits, tmp_path_factory) -> str:
    """The reference: the same spec trained straight through, with the threads a 2-CPU Slurm
    task gets (SLURM_CPUS_PER_TASK sets TensorFlow's pools)."""
    folder = tmp_path_factory.mktemp("ref")
    spec = train_spec(folder, digits, folder / "ref")
    proc = subprocess.run([sys.executable, "-m", "jobs", "run", str(spec)],
                          env={**QUIET_ENV, "SLURM_CPUS_PER_TASK": "2"}, cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr
    return final_digest(folder / "ref")


def submit_sbatch(env: dict, spec: Path, cwd: Path, sets: list[str] = ()) -> str:
    argv = sbatch_argv(load_spec(spec, parse_set_args(list(sets))), list(sets))
    return subprocess.run(argv[:1] + ["--parsable"] + argv[1:], env=env, capture_output=True,
                          text=True, check=True, cwd=cwd).stdout.strip().split(";")[0]


def test_sbatch_training_requeues_itself_at_walltime(slurm_cluster, digits, uninterrupted,
                                                     tmp_path):
    """A real walltime signal (Slurm's --signal=B:USR1 to the batch shell) landing
    mid-training, answered by a checkpoint and a self-requeue; then the run finishes exactly.
    (A second requeue of the same job, restart 2: the two-node sbatch test, same script.)"""
    env = slurm_cluster["env"]
    run_dir = tmp_path / "sb"
    spec = train_spec(tmp_path, digits, run_dir)
    (run_dir / "logs").mkdir(parents=True)
    job = submit_sbatch(env, spec, tmp_path)
    log_path = run_dir / "logs" / f"sb-{job}.out"

    def alive() -> bool:
        return job_alive(env, job)

    pid, start = run_at_step(log_path, alive, 0)
    hold_until_signalled(pid, signal.SIGUSR1, lambda: signalled_in(log_path, start))
    give_time(env, job)
    assert wait_state(env, job, {"COMPLETED", "FAILED", "TIMEOUT", "CANCELLED"},
                      900) == "COMPLETED", log_path.read_text()[-3000:]
    log = log_path.read_text()
    restarts = [r for r in sacct(env, job, "JobID", "State") if r[1] == "REQUEUED"]
    assert len(restarts) >= 1, log[-3000:]
    assert "walltime signal: asking the job to checkpoint" in log, log[-3000:]
    assert f"job {job} start: restart 1" in log and "resumed from ckpt-" in log
    assert "exit 75 to be requeued" in log
    assert epoch_rows(run_dir) == list(range(1, EPOCHS + 1)), "an epoch was lost or repeated"
    assert final_digest(run_dir) == uninterrupted
    # bench/bench_requeue.py's smoke: its table from this log, over every requeue Slurm saw
    check_requeue_smoke(log_path, walltime_minutes(load_spec(spec).resources.time) * 60,
                        len(restarts))


def test_submitit_timeout_and_external_preemption(slurm_cluster, digits, uninterrupted,
                                                  tmp_path):
    """submitit's timeout signal (USR2 to the step, at the real walltime) and then an external
    preemption (`scontrol requeue`: SIGTERM), each mid-training; the run ends exactly."""
    env = slurm_cluster["env"]
    run_dir = tmp_path / "sub"
    spec = train_spec(tmp_path, digits, run_dir)
    proc = subprocess.Popen([sys.executable, "-m", "jobs", "submit", str(spec), "--executor",
                             "slurm", "--wait"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    records = run_dir / "logs" / "submissions.jsonl"
    deadline = time.monotonic() + 120
    while not records.exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
        time.sleep(0.5)
    job = json.loads(records.read_text().splitlines()[-1])["job_ids"][0]
    log = run_dir / "logs" / "submitit" / job / f"{job}_0_log.err"

    def alive() -> bool:
        return proc.poll() is None

    pid, start = run_at_step(log, alive, 0)
    hold_until_signalled(pid, signal.SIGUSR2,  # submitit's timeout signal, from Slurm
                         lambda: signalled_in(log, start))
    give_time(env, job)
    pid, start = run_at_step(log, alive, start + 1)
    assert subprocess.run(["scontrol", "requeue", job], env=env).returncode == 0
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, out + err
    assert wait_state(env, job, {"COMPLETED", "FAILED", "CANCELLED"}, 120) == "COMPLETED"
    states = [r[1] for r in sacct(env, job, "JobID", "State")]
    assert states.count("REQUEUED") >= 2, states
    logs = "".join(p.read_text() for p in (run_dir / "logs" / "submitit").rglob("*.err"))
    assert "received SIGUSR2" in logs  # submitit's timeout signal: checkpoint, requeue
    assert "received SIGTERM" in logs  # the preemption: checkpoint, then Slurm requeues
    assert epoch_rows(run_dir) == list(range(1, EPOCHS + 1)), "an epoch was lost or repeated"
    assert final_digest(run_dir) == uninterrupted
    status = subprocess.run([sys.executable, "-m", "jobs", "status", str(run_dir)], env=env,
                            capture_output=True, text=True, cwd=ROOT).stdout
    assert "COMPLETED" in status and f"last epoch done: {EPOCHS}" in status


def pipeline_specs(folder: Path, celeba: Path, broken: bool = False) -> Path:
    pre = write(folder / "pre.yaml", f"""\
kind: preprocess
name: pre
resources: {{cpus_per_task: 1, mem_gb: 2, time: 10, array_throttle: 3}}
preprocess:
  input_dir: {celeba}
  output_dir: {folder / 'faces'}
  num_shards: 3
  faces: {{detector: {'mtcnn' if not broken else 'fixed_crop'}}}
""")
    train = write(folder / "train.yaml", f"""\
kind: train
name: tr
resources: {{cpus_per_task: 2, mem_gb: 2, time: 10}}
train:
  data: unused-the-pipeline-sets-it.h5
  run_dir: {folder / 'cgan'}
  epochs: 2
  batch_size: 8
""")
    return write(folder / "pipeline.yaml", f"""\
kind: pipeline
name: chain
pipeline:
  preprocess: {pre}
  train: {train}
""")


def test_pipeline_chain_completes_from_one_command(slurm_cluster, tmp_path):
    from preprocess.fixture import build

    env = slurm_cluster["env"]
    celeba = build(tmp_path / "celeba", lfw_faces=30, lfw_negatives=2)
    spec = pipeline_specs(tmp_path, celeba)
    proc = subprocess.run([sys.executable, "-m", "jobs", "submit", str(spec), "--executor",
                           "slurm", "--wait"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("submitted")]
    assert len(lines) == 3 and "after" in lines[1] and "after" in lines[2]
    assert (tmp_path / "faces" / "faces.h5").exists()
    assert (tmp_path / "cgan" / "samples" / "epoch_0002.png").exists()
    # figures from the trained run, as a plain sbatch job and through submitit
    sets = [f"generate.run_dir={tmp_path / 'cgan'}"]
    argv = sbatch_argv(load_spec(ROOT / "jobs/examples/generate_interpolate.yaml",
                                 parse_set_args(sets)),
                       [*sets, f"generate.output_dir={tmp_path / 'sb_figures'}"],
                       options={"output": str(tmp_path / "generate-%j.out")})
    job = subprocess.run(argv[:1] + ["--parsable"] + argv[1:], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.strip().split(";")[0]
    assert wait_state(env, job, {"COMPLETED", "FAILED", "CANCELLED"}, 300) == "COMPLETED", \
        (tmp_path / f"generate-{job}.out").read_text()[-3000:]
    assert (tmp_path / "sb_figures" / "interpolate_spherical.png").exists()
    proc = subprocess.run([sys.executable, "-m", "jobs", "submit",
                           str(ROOT / "jobs/examples/generate_grid.yaml"), "--executor", "slurm",
                           "--wait", "--set", sets[0], "--set",
                           f"generate.output_dir={tmp_path / 'submitit_figures'}"], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    figures = json.loads((tmp_path / "submitit_figures" / "figures.json").read_text())
    assert Path(figures["grid"]).exists()
    assert figures["checkpoint"].startswith(str(tmp_path / "cgan" / "checkpoints"))


def test_failed_preprocess_cancels_the_rest_of_the_chain(slurm_cluster, tmp_path):
    """Through the plain sbatch chain that `plan` prints: merge and train must end CANCELLED,
    not stay PENDING forever."""
    from preprocess.fixture import build

    env = slurm_cluster["env"]
    celeba = build(tmp_path / "celeba", lfw_faces=4, lfw_negatives=0)
    (celeba / "list_attr_celeba.csv").write_text("image_id,Smiling\n000001.jpg\n")  # broken
    spec = pipeline_specs(tmp_path, celeba, broken=True)
    plan = subprocess.run([sys.executable, "-m", "jobs", "plan", str(spec)], env=env,
                          cwd=ROOT, capture_output=True, text=True, check=True).stdout
    chain = plan.split("a chain of dependent jobs:\n")[1].strip()
    script = write(tmp_path / "chain.sh", "set -e\n" + chain + "\necho $pre $merge $first\n")
    pre, merge, train = subprocess.run(["bash", str(script)], env=env, cwd=tmp_path,
                                       capture_output=True, text=True,
                                       check=True).stdout.split()
    assert wait_state(env, pre, {"FAILED"}, 300) == "FAILED"
    assert wait_state(env, merge, {"CANCELLED"}, 120) == "CANCELLED"
    assert wait_state(env, train, {"CANCELLED"}, 120) == "CANCELLED"


def test_sbatch_two_ranks_with_srun_pmix(slurm_cluster, digits, tmp_path):
    """train.sbatch with 2 tasks: srun --mpi=pmix starts 2 Horovod ranks (Open MPI build)."""
    env = slurm_cluster["env"]
    run_dir = tmp_path / "two"
    spec = train_spec(tmp_path, digits, run_dir, epochs=2)
    sets = ["resources.tasks_per_node=2", "resources.cpus_per_task=1", "train.batch_size=32",
            "resources.time=10"]
    argv = sbatch_argv(load_spec(spec, parse_set_args(sets)), sets)
    (run_dir / "logs").mkdir(parents=True)
    job = subprocess.run(argv[:1] + ["--parsable"] + argv[1:], env=env, capture_output=True,
                         text=True, check=True, cwd=tmp_path).stdout.strip()
    assert wait_state(env, job, {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"},
                      300) == "COMPLETED", (run_dir / "logs" / f"two-{job}.out").read_text()
    with open(run_dir / "ranks.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["rank"] for r in rows} == {"0", "1"}
    for epoch in ("1", "2"):
        digests = {r["weights_digest"] for r in rows if r["epoch"] == epoch}
        assert len(digests) == 1, rows


def test_slurm_extra_options_reach_slurm_through_sbatch_and_submitit(slurm_cluster, digits,
                                                                      tmp_path):
    """resources.slurm_extra as the controller records it, on both routes: a comment and a
    begin time an hour away (which keeps the jobs pending: nothing runs), then cancelled."""
    env = slurm_cluster["env"]
    extra = "resources.slurm_extra={comment: facegan-extra-test, begin: now+1hour}"
    jobs = []
    for route in ("sbatch", "submitit"):
        run_dir = tmp_path / route
        spec = train_spec(tmp_path, digits, run_dir)
        (run_dir / "logs").mkdir(parents=True)
        if route == "sbatch":
            jobs.append(submit_sbatch(env, spec, tmp_path, [extra]))
        else:
            proc = subprocess.run([sys.executable, "-m", "jobs", "submit", str(spec), "--set",
                                   extra, "--executor", "slurm"], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=300)
            assert proc.returncode == 0, proc.stderr[-3000:]
            jobs.append(re.search(r"\(slurm\): (\d+)", proc.stdout).group(1))
    try:
        for route, job in zip(("sbatch", "submitit"), jobs):
            shown = subprocess.run(["scontrol", "show", "job", job], env=env,
                                   capture_output=True, text=True, check=True).stdout
            assert "Comment=facegan-extra-test" in shown, (route, shown)
            assert "JobState=PENDING" in shown and "Reason=BeginTime" in shown, (route, shown)
    finally:
        subprocess.run(["scancel", *jobs], env=env, capture_output=True)
