"""Per-rank progress heartbeats: one small file per rank in ``RUN_DIR/heartbeats/``.

Why files: a rank that waits in a collective cannot ask its peers anything (the collective is
what hangs), but it can read what they last wrote on the shared filesystem. So each rank's
watchdog thread (``jobs/core/watchdog.py``) rewrites its rank's file every poll: where the
training thread is (steps finished, inside the next step or not, a named pause) and when it
last moved. A rank whose file is no longer rewritten is frozen or gone (its watchdog thread
stopped with it: SIGSTOP, a kill, a dead node). From the files, the watchdog of a rank that
waits names the peer that stopped.

Each file is replaced atomically (tmp + rename), so a reader sees a whole record or the one
before. Files of another attempt (an earlier run, a requeue: ``attempt`` differs) are ignored.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from jobs.core import files

HEARTBEATS = "heartbeats"


@dataclass(frozen=True)
class Beat:
    """What one rank last said about its training thread."""
    rank: int
    host: str
    pid: int
    attempt: str         # the scheduler's job id and restart: files of other attempts ignored
    step: int            # steps this rank has finished
    inside: bool         # inside step ``step + 1``: waiting for its collective, if it hangs
    paused: str          # the name of a legitimate pause it is in, or ""
    moved: float         # wall time of its last progress (or of its pause's start)
    written: float       # wall time of this record: fresh while its watchdog thread lives

    @property
    def position(self) -> tuple[int, bool]:
        """How far it got: a rank behind every other at the same step is the one that stopped."""
        return self.step, self.inside


def path_of(directory: str | os.PathLike, rank: int) -> Path:
    return Path(directory) / HEARTBEATS / f"rank-{rank}.json"


def write(directory: str | os.PathLike, beat: Beat) -> None:
    path = path_of(directory, beat.rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write_text(path, json.dumps(asdict(beat)))


def read(directory: str | os.PathLike, rank: int) -> Beat | None:
    """What ``rank`` last wrote, whatever its attempt; None if missing or unreadable."""
    try:
        return Beat(**json.loads(path_of(directory, rank).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def read_all(directory: str | os.PathLike, attempt: str, size: int) -> dict[int, Beat]:
    """This attempt's beats of ranks 0..size-1 (a missing or unreadable file is left out)."""
    beats = {rank: read(directory, rank) for rank in range(size)}
    return {rank: b for rank, b in beats.items() if b is not None and b.attempt == attempt}


@dataclass(frozen=True)
class Culprit:
    rank: int | None
    host: str
    why: str


def culprit(beats: dict[int, Beat], size: int, now: float, alive_s: float) -> Culprit:
    """The rank that stopped while the others waited for it, and why it is the one; rank
    None when no single rank stands out (every rank waits at the same place: a collective,
    the network or a device), so no node is to blame."""
    silent = [r for r in range(size) if r in beats and now - beats[r].written > alive_s]
    missing = [r for r in range(size) if r not in beats]
    if len(silent) + len(missing) == 1:
        rank = (silent + missing)[0]
        host = beats[rank].host if rank in beats else ""
        return Culprit(rank, host, "its watchdog fell silent: the process is frozen or gone"
                       if silent else "it never wrote a heartbeat")
    if silent or missing:
        return Culprit(None, "", f"ranks {sorted(silent + missing)} all fell silent")
    if size == 1:
        only = beats[0]
        return Culprit(0, only.host, "the job's only rank stopped")
    positions = {r: b.position for r, b in beats.items()}
    low = min(positions.values())
    behind = [r for r, p in positions.items() if p == low]
    if len(behind) == 1 and len(set(positions.values())) > 1:
        b = beats[behind[0]]
        where = "outside step" if not b.inside else "inside step"
        return Culprit(b.rank, b.host, f"it stopped {where} {b.step + 1} while the others "
                                        "went on to wait for it")
    paused = [b for b in beats.values() if b.paused]
    if len(paused) == 1:  # one rank in a pause (a checkpoint) that never ended
        b = paused[0]
        return Culprit(b.rank, b.host, f"its pause '{b.paused}' never ended while the others "
                                        "waited for it")
    return Culprit(None, "", "every rank waits at the same place (a collective, the network "
                             "or a device): no single rank is behind")
