"""One job per run directory: a lock file in it that names its holder.

Two jobs training into one run directory (a resubmitted sweep point, a manual ``sbatch``
beside a requeued job) overwrite each other's checkpoints. So a training takes
``RUN_DIR/job.lock`` before it touches anything there, and a second job stops at once (exit
``NOT_RUNNABLE``), naming the holder's job id, host and pid.

Why not ``flock``: on NFS it depends on the client's lock manager (``nolock`` mounts, old
servers), and a lock held by a dead node may never be released. Instead the lock is made the
way NFS guarantees is atomic: the record is written to a file of its own, then hard-linked to
the lock's name (``link`` fails if the name exists); if the reply got lost, the link count of
the record file says whether it worked.

The lock outlives its process on purpose when the job is requeued (exit ``REQUEUE``): it is
marked ``kept`` and taken over by the job that comes next. Otherwise it is taken from:

* a holder whose process is gone, on this host (same pid namespace): its pid no longer runs
  the process that wrote the lock;
* an earlier run of the same job (Slurm keeps the job id; ``SLURM_RESTART_COUNT`` grows) or
  an earlier link of the same resubmit chain that did not hand it on (killed): once its
  heartbeat stopped, waited for up to ``3 x HEARTBEAT_S`` (a node cut off from the network
  may still be writing);
* another job that has left the queue (``squeue``, on the same Slurm cluster);
* with no check possible (no ``squeue`` inside a container, another cluster sharing the
  filesystem), a holder whose heartbeat (the lock's mtime, touched every ``HEARTBEAT_S``,
  compared with the file server's clock) is older than ``STALE_AFTER_S``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from jobs.core.chain import NO_CHAIN, Link
from jobs.core.files import atomic_write_text

log = logging.getLogger(__name__)
LOCK_NAME = "job.lock"
HEARTBEAT_S = 30.0
STALE_AFTER_S = 300.0
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}
# squeue states of a job that may still run (or come back) in the run directory
ALIVE_STATES = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
                "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING", "SIGNALING",
                "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}


@dataclass(frozen=True)
class Holder:
    """Who holds (or wants) a run directory."""
    host: str
    pid: int
    started: str = ""     # /proc/PID/stat's start time: a reused pid is another process
    pid_ns: str = ""      # /proc/self/ns/pid: pids compare only within one namespace
    job: str = ""         # SLURM_JOB_ID ('' outside Slurm)
    shown: str = ""       # the id users see (an array task: 123_4)
    chain: str = ""       # the first job of a resubmit chain (or the job itself)
    link: int = 0         # which link of that chain
    restart: int = 0      # SLURM_RESTART_COUNT
    since: str = ""
    cluster: str = ""     # SLURM_CLUSTER_NAME: squeue answers for its own cluster only
    kept: bool = False    # left for the job's next run (it exited to be requeued)

    def describe(self) -> str:
        job = f"job {self.shown or self.job}" if self.job else "a run outside Slurm"
        return f"{job} on host {self.host} (pid {self.pid}), since {self.since}"

    def incarnation(self) -> tuple[int, int]:
        return self.link, self.restart

    def record(self) -> str:
        """The lock file's text."""
        return json.dumps(dataclasses.asdict(self)) + "\n"


def read_holder(path: Path) -> Holder | None:
    """The record of the lock file at ``path`` (None if there is none, or it cannot be read
    yet); fields it does not know are ignored."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    known = {f.name for f in dataclasses.fields(Holder)}
    try:
        return Holder(**{k: v for k, v in record.items() if k in known})
    except TypeError:  # a required field missing
        return None


def this_process(link: Link = NO_CHAIN) -> Holder:
    """This process as a holder. Its chain: the first job of its resubmit chain (``link``),
    else its own job (an array task: the array's id and the task)."""
    env = os.environ
    job = env.get("SLURM_JOB_ID", "")
    array, task = env.get("SLURM_ARRAY_JOB_ID", ""), env.get("SLURM_ARRAY_TASK_ID", "")
    first = link.first or array or job
    restart = env.get("SLURM_RESTART_COUNT", "0")
    return Holder(host=socket.gethostname(), pid=os.getpid(), started=process_start(os.getpid()),
                  pid_ns=pid_namespace(), job=job,
                  shown=f"{array}_{task}" if array and task else job,
                  chain=f"{first}_{task}" if first and array and task else first,
                  link=link.index, restart=int(restart) if restart.isdigit() else 0,
                  since=time.strftime("%Y-%m-%d %H:%M:%S"),
                  cluster=env.get("SLURM_CLUSTER_NAME", ""))


def process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot ('' if it does not run)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the name may hold spaces


def pid_namespace() -> str:
    with contextlib.suppress(OSError):
        return os.readlink("/proc/self/ns/pid")
    return ""


def slurm_job_alive(job: str) -> bool | None:
    """Whether the Slurm job may still run; None when squeue cannot tell (not installed, as
    inside a container, or the controller unreachable)."""
    if not shutil.which("squeue"):
        return None
    try:
        out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True,
                             text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode:
        return False if "invalid job id" in out.stderr.lower() else None
    return bool(set(out.stdout.split()) & ALIVE_STATES)


@dataclass
class Probes:
    """How :func:`stale_reason` looks at the world (real ones by default)."""
    process_start: Callable[[int], str] = process_start
    job_alive: Callable[[str], bool | None] = slurm_job_alive


REAL = Probes()


def stale_reason(holder: Holder, me: Holder, heartbeat_age: float,
                 probes: Probes = REAL) -> str | None:
    """Why ``me`` may take the lock ``holder`` wrote, or None while the holder may still
    write into the run directory."""
    here = holder.host == me.host and holder.pid_ns == me.pid_ns
    if here and holder.pid == me.pid and holder.started == me.started:
        return "it is this process's own"
    if here and holder.started and probes.process_start(holder.pid) == holder.started:
        return None  # a live process on this host
    if here:
        return "its process is gone"
    if holder.kept and not holder.job:
        return "its run exited to be resumed (outside Slurm: by whichever run comes next)"
    alive = probes.job_alive(holder.job) if holder.job and holder.cluster == me.cluster \
        else None
    if hands_on(holder, me):
        if holder.kept:
            return "it is this job's own, kept for its next run (a requeue or the next link)"
        if holder.job != me.job and alive:
            return None  # an earlier link still running
        if heartbeat_age > 2 * HEARTBEAT_S:
            return "it is this job's own, from a run that ended without handing it on"
        return None  # perhaps cut off but still running: wait for its heartbeat to stop
    if alive is not None:
        return None if alive else "its Slurm job is no longer in the queue"
    if heartbeat_age > STALE_AFTER_S:
        return f"its heartbeat stopped {heartbeat_age:.0f} s ago"
    return None


def hands_on(holder: Holder, me: Holder) -> bool:
    """Whether ``holder`` is an earlier run of ``me``'s job or chain (a requeue, a link)."""
    return bool(me.chain) and holder.chain == me.chain \
        and me.incarnation() > holder.incarnation()


class RunDirInUse(RuntimeError):
    """Another job holds the run directory (one line, for the log)."""


class RunLock:
    """The lock of one run directory, held by this process from :meth:`acquire` until
    :meth:`release` (or its exit, if the job is to be requeued)."""

    def __init__(self, run_dir: str | os.PathLike, me: Holder, probes: Probes = REAL):
        self.path = Path(run_dir) / LOCK_NAME
        self.me, self.probes = me, probes
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        # in temporary names: containers on one host share its name and small pids
        self._unique = f"{me.host}.{me.pid}.{uuid.uuid4().hex[:12]}"

    def acquire(self) -> None:
        """Take the lock, or raise RunDirInUse naming its holder. An earlier run of this job
        that did not hand the lock on (killed) is waited for until its heartbeat stops."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline, moved = time.monotonic() + 3 * HEARTBEAT_S, 0
        while moved < 3:  # a stale lock moved aside, then the exclusive link again
            if self._link():
                self._start_heartbeat()
                return
            holder, age = self._read()
            if holder is None:
                continue  # released meanwhile
            reason = stale_reason(holder, self.me, age, self.probes)
            if reason is None and hands_on(holder, self.me) and time.monotonic() < deadline:
                time.sleep(HEARTBEAT_S / 6)
                continue
            if reason is None:
                raise RunDirInUse(self._in_use(holder, age))
            if holder != self.me:
                log.warning("%s: taking over the lock of %s: %s", self.path.parent,
                            holder.describe(), reason)
            self._move_aside(holder)
            moved += 1
        raise RunDirInUse(f"{self.path}: could not take the lock (other jobs keep taking it)")

    def release(self) -> None:
        """Stop the heartbeat and remove the lock, if it is still this process's."""
        self._stop.set()
        if read_holder(self.path) == self.me:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def keep(self) -> None:
        """Leave the lock for this job's next run (a requeue, the next link of its chain),
        marked as handed on; the heartbeat stops."""
        self._stop.set()
        if read_holder(self.path) == self.me:
            atomic_write_text(self.path, dataclasses.replace(self.me, kept=True).record())

    # ------------------------------------------------------------------------------ internals
    def _link(self) -> bool:
        """Write the record to a file of its own and link it to the lock's name: exclusive,
        and atomic on NFS too."""
        mine = self.path.with_name(f".{LOCK_NAME}.{self._unique}")
        record = self.me.record()
        mine.write_text(record)
        try:
            os.link(mine, self.path)
            return True
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno in NO_HARD_LINKS:
                return self._create(record)
            return mine.stat().st_nlink == 2  # NFS: the reply may be lost, the link made
        finally:
            mine.unlink()

    def _create(self, record: str) -> bool:
        """Where the filesystem has no hard links (some FUSE and SMB mounts): an exclusive
        create, atomic on local filesystems and NFSv3+ (a reader may find it empty for a
        moment, and then judges it by its age, which is fresh)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(record)
        return True

    def _read(self) -> tuple[Holder | None, float]:
        """The holder's record and its heartbeat's age by the file server's clock."""
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return None, 0.0
        holder = read_holder(self.path)
        return holder or Holder(host="?", pid=0), self._server_now() - mtime

    def _server_now(self) -> float:
        """Now, by the clock that stamps files in the run directory (an NFS server's)."""
        probe = self.path.with_name(f".{LOCK_NAME}.clock.{self._unique}")
        probe.touch()
        try:
            return probe.stat().st_mtime
        finally:
            probe.unlink()

    def _move_aside(self, judged: Holder) -> None:
        """Rename the stale lock away (only one of two racing jobs can), then check that it
        was the lock judged; if another job took it meanwhile, put it back."""
        aside = self.path.with_name(f".{LOCK_NAME}.stale.{self._unique}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_holder(aside) or judged  # an unreadable record was judged by its age
        if moved != judged:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)
        aside.unlink()

    def _in_use(self, holder: Holder, age: float) -> str:
        return (f"{self.path.parent} is in use by {holder.describe()}, last heartbeat "
                f"{age:.0f} s ago: one job per run directory, or they overwrite each other's "
                f"checkpoints. Wait for that job or cancel it, or set another train.run_dir "
                f"(if it is surely dead, delete {self.path})")

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._heartbeat, name="run-lock", daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        """Touch the lock until stopped; an error (the lock moved aside for a moment, NFS's
        ESTALE) is said once and the beat goes on: a stopped heartbeat gives the lock away."""
        failing = False
        while not self._stop.wait(HEARTBEAT_S):
            try:
                os.utime(self.path)  # times=None: NFS sets the server's time
                failing = False
            except OSError as exc:
                if not failing:
                    log.error("%s: the run lock's heartbeat failed: %s", self.path, exc)
                failing = True
