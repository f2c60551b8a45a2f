"""Whether a job that stalled is retried, and which nodes its retry leaves out.

Decided from the run's ``stall`` events (``jobs/core/watchdog.py``), never from the exit code:
srun may report a killed peer's status instead of the watchdog's 76, and submitit requeues
only on its own signal. Both routes ask :func:`verdict`: ``slurm/common.sh`` through
``python -m jobs stalled`` after the job's ranks ended, the submitit route from the watchdog
itself (``gan/job.py``). The requeue that leaves nodes out is ``slurm/common.sh``'s
``requeue_excluding`` on both: ``scontrol requeuehold``, ``update ExcNodeList``, ``release``
(Slurm refuses to change a running job's excluded nodes).

Bounds: at most ``train.watchdog.advanced.retries`` runs of one run directory end in a stall
and are retried, within the requeue limit; at most ``exclude_max`` nodes are left out, and
never so many that the job's node count cannot be met in its partition.
"""
from __future__ import annotations

import logging
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from jobs.core import events, files, heartbeats
from jobs.core.watchdog_spec import WatchdogSpec

log = logging.getLogger(__name__)
COMMON_SH = Path(__file__).resolve().parents[2] / "slurm" / "common.sh"


@dataclass(frozen=True)
class Verdict:
    retry: bool
    exclude: tuple[str, ...]
    why: str

    def line(self) -> str:
        """What ``python -m jobs stalled`` prints for the shell: ``retry NODE,NODE`` (``-``
        for none) or ``no``."""
        return f"retry {','.join(self.exclude) or '-'}" if self.retry else "no"


def runs_of(events: list[dict]) -> list[list[dict]]:
    """The run's events cut at each ``job_started``: one list per job run (requeues too)."""
    runs: list[list[dict]] = []
    for event in events:
        if event["type"] == "job_started":
            runs.append([])
        if runs:
            runs[-1].append(event)
    return runs


@dataclass(frozen=True)
class Limits:
    """What bounds a retry besides the run's own record."""
    restarts: int                 # this job's restarts so far (SLURM_RESTART_COUNT)
    max_requeues: int             # the scripts' requeue limit (FACEGAN_MAX_REQUEUES)
    nodes_needed: int             # the job's node count
    nodes: tuple[str, ...] | None  # the partition's nodes; None: unknown (nothing left out)


def verdict(events: list[dict], job: str, settings: WatchdogSpec, limits: Limits) -> Verdict:
    runs = runs_of(events)
    last = runs[-1] if runs else []
    this_run = bool(last) and last[0]["job"] == job and \
        last[0].get("restart") == limits.restarts  # not an earlier run of a requeued job
    if not this_run or not any(e["type"] == "stall" for e in last):
        return Verdict(False, (), f"no stall was recorded in this run of job {job or '?'}")
    stalled = sum(any(e["type"] == "stall" for e in run) for run in runs)
    if stalled > settings.retries:
        return Verdict(False, (), f"{stalled} runs of this run directory stalled, more than "
                                  f"train.watchdog.advanced.retries ({settings.retries}): "
                                  "not retried")
    if limits.restarts >= limits.max_requeues:
        return Verdict(False, (), f"stalled, but the requeue limit {limits.max_requeues} is "
                                  "reached: not retried")
    exclude, why = excluded(events, job, settings, limits)
    return Verdict(True, exclude, f"stalled (retry {stalled} of {settings.retries}): {why}")


def excluded(events: list[dict], job: str, settings: WatchdogSpec,
             limits: Limits) -> tuple[tuple[str, ...], str]:
    """The hosts this job's stall events named, in order, within the bounds; and why."""
    named: list[str] = []
    for event in events:
        host = event.get("culprit_host") or ""
        if event["type"] == "stall" and event["job"] == job and host and host not in named:
            named.append(host)
    if not named:
        return (), "no single rank stopped first, so no node is left out"
    if limits.nodes is None:
        return (), f"{', '.join(named)} named, but the partition's nodes are unknown: none " \
                   "left out"
    strangers = [host for host in named if host not in limits.nodes]
    if strangers:  # a name Slurm does not know would make the update fail
        return (), f"{', '.join(strangers)} is not a node of the partition: none left out"
    spare = len(set(limits.nodes)) - limits.nodes_needed
    keep = tuple(named[:max(0, min(settings.exclude_max, spare))])
    if len(keep) < len(named):
        return keep, (f"leaving out {', '.join(keep) or 'no node'} of {', '.join(named)}: "
                      f"at most {settings.exclude_max} (train.watchdog.advanced.exclude_max), "
                      f"and {limits.nodes_needed} of the partition's {len(limits.nodes)} "
                      "nodes must remain")
    return keep, f"leaving out {', '.join(keep)}, where the rank that stopped ran"


def partition_nodes(partition: str) -> tuple[str, ...] | None:
    """The nodes of ``partition`` (all partitions if empty) as sinfo names them; None if
    sinfo cannot say (not on the host, inside a container without it)."""
    command = ["sinfo", "--noheader", "--Node", "--format=%N"]
    if partition:
        command.append(f"--partition={partition}")
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = tuple(dict.fromkeys(out.stdout.split()))
    return names if out.returncode == 0 and names else None


def limits_from_env(max_requeues: int) -> Limits:
    """The bounds as Slurm and the scripts set them in a job (``FACEGAN_MAX_REQUEUES`` over
    the spec's ``max_requeues``). The partition's nodes come from ``FACEGAN_PARTITION_NODES``
    when the script passed them (a container has no sinfo), else from sinfo."""
    env = os.environ
    listed = env.get("FACEGAN_PARTITION_NODES")
    nodes = tuple(dict.fromkeys(listed.split())) if listed else \
        partition_nodes(env.get("SLURM_JOB_PARTITION", ""))
    return Limits(restarts=int(env.get("SLURM_RESTART_COUNT", "0") or 0),
                  max_requeues=int(env.get("FACEGAN_MAX_REQUEUES") or max_requeues),
                  nodes_needed=int(env.get("SLURM_JOB_NUM_NODES", "1") or 1),
                  nodes=nodes or None)


def retry_from_watchdog(run_dir: str | os.PathLike, settings: WatchdogSpec,
                        attempt: str, max_requeues: int) -> None:
    """The submitit route's retry, asked by a watchdog that saw a stall, before it ends its
    process: no shell waits behind a submitit job's ranks to ask after they end. One rank
    per attempt acts (the first to claim it); under sbatch the script asks instead."""
    if os.environ.get("SUBMITIT_EXECUTOR") != "slurm" or not claim(run_dir, attempt):
        return
    job = events.job_id()
    said = verdict(events.read(run_dir), job, settings, limits_from_env(max_requeues))
    log.error("stall watchdog: %s", said.why)
    if said.retry:
        try:
            subprocess.run(["bash", "-c", 'source "$1"; requeue_excluding "$2" "$3"',
                            "retry", str(COMMON_SH), job, ",".join(said.exclude) or "-"],
                           timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("stall watchdog: the requeue did not finish: %s", exc)


def claim(run_dir: str | os.PathLike, attempt: str) -> bool:
    """Whether this process is the first of its attempt to claim the retry (an exclusive
    create on the shared filesystem)."""
    path = Path(run_dir) / heartbeats.HEARTBEATS / f"retry-{attempt.replace('/', '-')}.claim"
    try:
        return files.create_first(path)
    except OSError as exc:
        log.warning("%s: the retry could not be claimed: %s", path, exc.strerror or exc)
        return False
