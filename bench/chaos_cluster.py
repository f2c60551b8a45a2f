"""What bench/chaos.py drives: a 2-node test cluster, a sweep submitted through either route
(with its resubmit chain), each trial's live state read from its run directory (heartbeats,
events), and the faults injected into it. Kept apart from the schedule and the table."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobs.core import events, faults, heartbeats  # noqa: E402
from jobs.core.chain import read_outcome  # noqa: E402
from jobs.core.loader import load_spec  # noqa: E402
from jobs.scheduler import chain_argv, log_dir, sbatch_argv  # noqa: E402
from jobs.sweep import point_count, point_spec  # noqa: E402

TESTCLUSTER = ROOT / "slurm" / "testcluster"


class Cluster:
    """slurm/testcluster/start.sh DIR --nodes 2, stopped (by PID, with its jobs) on exit."""

    def __init__(self, folder: Path):
        self.dir = folder

    def __enter__(self) -> Cluster:
        start = subprocess.run([str(TESTCLUSTER / "start.sh"), str(self.dir), "--nodes", "2"],
                               capture_output=True, text=True, timeout=900)
        if start.returncode != 0:
            self.__exit__()
            raise RuntimeError(f"the test cluster did not start:\n{start.stderr[-3000:]}")
        self.env = {**os.environ, "SLURM_CONF": str(self.dir / "etc/slurm.conf"),
                    "PATH": f"{self.dir / 'bin'}:{os.environ['PATH']}",
                    "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3",
                    "FACEGAN_PYTHON": sys.executable}
        return self

    def __exit__(self, *_) -> None:
        subprocess.run([str(TESTCLUSTER / "stop.sh"), str(self.dir)], capture_output=True,
                       timeout=300)

    def run(self, *command: str, env: dict | None = None) -> str:
        return subprocess.run(command, env={**self.env, **(env or {})}, capture_output=True,
                              text=True, check=True, cwd=ROOT, timeout=300).stdout

    def node(self, name: str, action: str) -> None:
        subprocess.run([str(TESTCLUSTER / "node.sh"), str(self.dir), name, action],
                       env=self.env, check=True, timeout=120)

    def queue_empty(self) -> bool:
        return not self.run("squeue", "--noheader", "--format=%i").strip()


@dataclass
class Trial:
    """One point of one route's sweep."""
    route: str
    point: int
    run_dir: Path
    injected: list = field(default_factory=list)  # (fault, step at injection)

    @property
    def name(self) -> str:
        return f"{self.route}/{self.point}"

    def beat(self) -> heartbeats.Beat | None:
        """Rank 0's latest heartbeat, whatever its attempt."""
        return heartbeats.read(self.run_dir, 0)

    def finished(self) -> bool:
        outcome = read_outcome(self.run_dir)
        return outcome is not None and outcome.get("exit") == 0

    def final_digest(self) -> str | None:
        try:
            rows = (self.run_dir / "ranks.csv").read_text().splitlines()
        except OSError:
            return None
        header = rows[0].split(",")
        return rows[-1].split(",")[header.index("weights_digest")] if len(rows) > 1 else None

    def wall_s(self) -> float:
        """First job start to the finishing outcome, from the run's events."""
        record = events.read(self.run_dir)
        stamps = [time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S"))
                  for e in record if e["type"] in ("job_started", "outcome")]
        return max(stamps) - min(stamps) if stamps else float("nan")

    def checkpoint_before(self, step: int) -> int:
        steps = [e["step"] for e in events.read(self.run_dir, "checkpoint") if e["step"] <= step]
        return max(steps, default=0)


def submit_sweep(cluster: Cluster, sweep: Path, route: str, fault_env: dict) -> list[Trial]:
    """The sweep on ``route`` (sbatch: its array and the resubmit chain's links, as ``plan``
    prints them; submitit: ``python -m jobs submit``), with ``fault_env`` in its jobs."""
    spec = load_spec(sweep)
    if route == "sbatch":
        log_dir(spec).mkdir(parents=True, exist_ok=True)  # sbatch opens its log there
        argv = sbatch_argv(spec)
        first = cluster.run(argv[0], "--parsable", *argv[1:], env=fault_env).strip()
        first = first.split(";")[0]
        previous = first
        for k in range(1, spec.resources.resubmit + 1):
            previous = cluster.run(*chain_argv(argv, previous, f"{first}:{k}"),
                                   env=fault_env).strip().split(";")[0]
    else:
        cluster.run(sys.executable, "-m", "jobs", "submit", str(sweep), "--executor", "slurm",
                    env=fault_env)
    return [Trial(route, k, Path(point_spec(spec, k).work.run_dir))
            for k in range(point_count(spec.work))]  # a grid: every point fixed


def inject(cluster: Cluster, trial: Trial, kind: str, beat: heartbeats.Beat) -> None:
    """One fault into the trial's running job (rank 0 as its heartbeat names it)."""
    job = beat.attempt.split("/")[0]
    if kind == "scontrol_requeue":
        cluster.run("scontrol", "requeue", job)
    elif kind == "sigkill":
        os.kill(beat.pid, signal.SIGKILL)
    elif kind == "cancel":
        cluster.run("scancel", job)
    elif kind == "slurmd_restart":
        cluster.node(beat.host, "stop")
        time.sleep(5)
        cluster.node(beat.host, "start")
    else:
        raise ValueError(f"no injector for {kind}")
    trial.injected.append((kind, beat.step))


def fault_env(stalls: list[tuple[int, int]], marks: Path, points: int,
              step_s: float) -> dict[str, str]:
    """The environment of a route's trials: each (array task, step) stall armed (a frozen
    training thread, once in all: the marks folder), and every step made ``step_s`` slower
    (slow, not hung: the tiny digits steps would otherwise end a trial before a fault could
    find it). A one-point sweep is no array: its faults name no task."""
    marks.mkdir(parents=True, exist_ok=True)
    task = (lambda t: f"/{t}") if points > 1 else (lambda t: "")
    armed = [f"freeze@0:{step}{task(t)}" for t, step in stalls] + [f"slow@0:0:{step_s}"]
    return {faults.VARIABLE: ",".join(armed), faults.MARKS: str(marks)}
