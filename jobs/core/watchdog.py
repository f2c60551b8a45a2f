"""The stall watchdog: a thread in every training rank that turns a hang into a retry with
evidence.

Why: a rank stuck in a collective after a peer died, an NCCL or driver fault, a filesystem
stall or a reader thread's deadlock burn the whole allocation and say nothing. The training
thread marks its progress in a :class:`Progress` (plain attribute writes, a few per step);
the watchdog thread reads it every poll, rewrites this rank's heartbeat file
(``jobs/core/heartbeats.py``) and, once this rank has made no progress for the bound
(``train.watchdog``, ``jobs/core/watchdog_spec.py``) while no peer moved either, acts:

1. every thread's Python stack (``faulthandler``) and, on a GPU rank, ``nvidia-smi`` into
   the job log;
2. a ``stall`` event naming this rank, and the rank and host that stopped first;
3. ``os._exit(STALLED)``: the training thread is stuck and cannot be asked to return.

The retry is decided from the ``stall`` event, never from the exit code (srun may report a
killed peer's status instead): ``jobs/core/stall.py``.

Legitimate pauses (a checkpoint, a quality measurement, rank 0's figures while the others
wait) are named with :meth:`Progress.pause` and bounded by ``pause_s`` instead; a rank that
waits for a peer in a pause sees the pause in the peer's heartbeat and keeps waiting.
"""
from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from jobs.core import events, exitcodes, heartbeats
from jobs.core.watchdog_spec import CAP_FLOORS, WatchdogSpec

log = logging.getLogger(__name__)
MEASURED_STEPS = 8  # steps timed before a derived bound replaces the floor
STARTING = "start-up"


class Progress:
    """Where the training thread is. Written by it, read by the watchdog thread: each write is
    one attribute (atomic under the GIL), so no lock is needed."""

    def __init__(self) -> None:
        # until the first step finishes, the trainer is still setting up (its outputs, the
        # first batch, the step's compile on its first call): a pause
        self.step, self.inside, self.paused = 0, False, STARTING
        self.moved = time.monotonic()
        self.intervals: deque[float] = deque(maxlen=100)
        self._finished_at: float | None = None

    def entering(self, step: int) -> None:
        """The training thread starts step ``step + 1`` (``step`` steps finished)."""
        self.step, self.inside, self.moved = step, True, time.monotonic()

    def finished(self, step: int) -> None:
        """``step`` steps are finished: a step interval measured (not across a pause)."""
        now = time.monotonic()
        if self._finished_at is not None:
            self.intervals.append(now - self._finished_at)
        self._finished_at = now
        if self.paused == STARTING:
            self.paused = ""
        self.step, self.inside, self.moved = step, False, now

    @contextlib.contextmanager
    def pause(self, what: str) -> Iterator[None]:
        """A legitimate pause, bounded by ``pause_s`` instead of the stall bound."""
        before, self.paused, self.moved = self.paused, what, time.monotonic()
        try:
            yield
        finally:
            self.paused, self.moved, self._finished_at = before, time.monotonic(), None


def stall_bound(settings: WatchdogSpec, intervals: list[float]) -> float:
    """Seconds without progress that count as a stall: ``stall_s`` when set; else
    ``step_factor`` x the 95th percentile of the measured step intervals, within
    [floor_s, CAP_FLOORS x floor_s], and floor_s until MEASURED_STEPS are timed."""
    if settings.stall_s is not None:
        return settings.stall_s
    if len(intervals) < MEASURED_STEPS:
        return settings.floor_s
    slow = sorted(intervals)[int(0.95 * (len(intervals) - 1))]
    return min(CAP_FLOORS * settings.floor_s, max(settings.floor_s,
                                                  settings.step_factor * slow))


@dataclass(frozen=True)
class Stall:
    quiet_s: float
    bound_s: float
    culprit: heartbeats.Culprit


def attempt_name() -> str:
    """The job and its restart: heartbeats of an earlier attempt are not this one's."""
    return f"{events.job_id()}/{os.environ.get('SLURM_RESTART_COUNT', '0')}"


class Watchdog:
    """One rank's watchdog thread. ``act`` is called once on a stall (tests replace it)."""

    def __init__(self, settings: WatchdogSpec, progress: Progress, rank: int, size: int,
                 run_dir: str | os.PathLike, on_gpu: bool = False,
                 stream: TextIO | None = None) -> None:
        self.settings, self.progress, self.rank, self.size = settings, progress, rank, size
        self.run_dir, self.on_gpu, self.stream = Path(run_dir), on_gpu, stream
        # Slurm's name for the node (what --exclude takes), else the host's
        self.host = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
        self.attempt = attempt_name()
        least, most = settings.bounds()
        self.poll_s = min(15.0, max(0.5, least / 10))
        # a peer's file older than this: it is frozen. Generous: NFS clients may show a file
        # up to a minute old (attribute caching), which must not end a healthy pause
        self.alive_s = max(4 * self.poll_s + 2, 90.0)
        # the last resort, should this thread itself block (a stalled filesystem under its
        # heartbeat): faulthandler's own thread dumps every stack and exits
        self.hard_s = settings.pause_s + most + 120
        self.not_before = time.monotonic()  # quiet is counted from here at the earliest
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stall-watchdog", daemon=True)
        self.after_stall: Callable[[Stall], None] = lambda stall: None

    def start(self) -> Watchdog:
        self.started = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(time.time() - 1))
        self.beat_out()
        self._thread.start()
        return self

    def peer_stalled(self) -> bool:
        """Whether another rank's watchdog recorded a stall in this run: a collective that
        then fails in this rank failed because that watchdog ended its process."""
        return any(e["job"] == events.job_id() and e["time"][:19] >= self.started
                   and (e["host"], e["pid"]) != (socket.gethostname(), os.getpid())
                   for e in events.read(self.run_dir, "stall"))

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        faulthandler.cancel_dump_traceback_later()

    def moved(self) -> float:
        """When this rank last moved (monotonic), never before ``not_before``."""
        return max(self.progress.moved, self.not_before)

    def own_beat(self) -> heartbeats.Beat:
        p, now = self.progress, time.time()
        return heartbeats.Beat(self.rank, self.host, os.getpid(), self.attempt, p.step,
                               p.inside, p.paused, now - (time.monotonic() - self.moved()),
                               now)

    def beat_out(self) -> None:
        try:
            heartbeats.write(self.run_dir, self.own_beat())
        except OSError as exc:  # a full or stalled disk: the next poll tries again
            log.debug("heartbeat not written: %s", exc)

    def _watch(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.poll_s):
            self._arm_last_resort()
            now = time.monotonic()
            if now - last > 3 * self.poll_s + 5:  # this process was not run (suspended)
                log.info("stall watchdog: not scheduled for %.0f s (the job suspended?): "
                         "counting from now", now - last)
                self.not_before = now
            last = now
            self.beat_out()
            try:
                stall = self.check()
            except Exception as exc:  # a bug or an unreadable peer: the next poll again
                log.warning("stall watchdog: check failed: %s", exc)
                continue
            if stall is not None:
                self.act(stall)
                return

    def check(self) -> Stall | None:
        """A stall, or None while this rank moves, pauses within pause_s, or waits for a peer
        that moves or pauses within its bound."""
        p, bound = self.progress, stall_bound(self.settings, list(self.progress.intervals))
        quiet = time.monotonic() - self.moved()
        if quiet < (self.settings.pause_s if p.paused else bound):
            return None
        now = time.time()
        beats = {**heartbeats.read_all(self.run_dir, self.attempt, self.size),
                 self.rank: self.own_beat()}
        for rank, beat in beats.items():
            fresh = now - beat.written <= self.alive_s
            limit = self.settings.pause_s if beat.paused else bound
            if rank != self.rank and fresh and now - beat.moved < limit:
                return None  # it moves (or pauses): this rank waits for it
        return Stall(quiet, bound, heartbeats.culprit(beats, self.size, now, self.alive_s))

    def act(self, stall: Stall) -> None:
        """Evidence into the log and the run's events, then end this process, whatever the
        evidence's writing does (a timer ends it should a write hang)."""
        if self._stop.is_set():
            return  # the training ended meanwhile: nothing hangs
        timer = threading.Timer(60, os._exit, (exitcodes.STALLED,))
        timer.daemon = True
        timer.start()
        try:
            self.report(stall)
            self.after_stall(stall)
            logging.shutdown()
        finally:
            os._exit(exitcodes.STALLED)

    def _stream(self) -> TextIO:
        return self.stream or sys.stderr

    def _arm_last_resort(self) -> None:
        try:
            faulthandler.dump_traceback_later(self.hard_s, exit=True, file=self._stream())
        except (ValueError, OSError):  # a stream without a file descriptor (captured)
            pass

    def report(self, stall: Stall) -> None:
        p, c = self.progress, stall.culprit
        named = f"rank {c.rank} on {c.host or '?'} stopped first: {c.why}" \
            if c.rank is not None else c.why
        log.error("stall watchdog: rank %d on %s made no progress for %.0f s (bound %.0f s%s) "
                  "after %d steps; %s. Every thread's stack follows; exit %d (a retry resumes "
                  "from the last checkpoint)",
                  self.rank, self.host, stall.quiet_s, stall.bound_s,
                  f", in pause '{p.paused}'" if p.paused else "", p.step, named,
                  exitcodes.STALLED)
        stream = self._stream()
        stream.flush()
        faulthandler.dump_traceback(file=stream, all_threads=True)
        if self.on_gpu:
            log.error("nvidia-smi:\n%s", nvidia_smi())
        events.emit(self.run_dir, "stall", rank=self.rank, step=p.step,
                    quiet_s=round(stall.quiet_s, 1), bound_s=round(stall.bound_s, 1),
                    paused=p.paused, culprit_rank=c.rank, culprit_host=c.host, why=c.why)


def nvidia_smi() -> str:
    """The driver's view of the GPUs (their utilization, memory, processes): a hung kernel
    or an Xid error shows there, never in Python's stacks."""
    tool = shutil.which("nvidia-smi")
    if tool is None:
        return "(no nvidia-smi on this node)"
    try:
        return subprocess.run([tool], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"(nvidia-smi did not answer: {exc})"
