"""Run events: the one structured record of what happened in a job's directory.

Every view of a job — the progress bar, ``status``, a sweep's summary and early stopping,
``submit``'s exit codes and ``submit --preflight``'s report — reads this record and nothing
else: never a log line (written for people, reworded at will) nor an exception's message.
The schema is a contract for outside tools too (docs/events.md): each line of
``DIR/events.jsonl`` is one JSON object with the common fields ``COMMON`` and the fields of
its type in ``TYPES``, and ``v`` says which version of this table wrote it.

Why one append-only JSON-lines file: a job's directory outlives its jobs (requeues, resubmit
chains), and an append keeps every earlier job's story beside the new one. Each event is
one ``write(2)`` of one line to a file opened ``O_APPEND``, so lines from the ranks of a job
never interleave on a local filesystem; a reader ignores a line that is not complete JSON
(a writer killed mid-line, an NFS client's torn append), so a killed job never leaves an
event that looks valid. Rank 0 writes most events; any rank may write one only it knows,
and every event names its rank.

Where events go when there is no such directory: a job refused before it starts (a bad
spec, a GPU spec on a CPU node, a run directory held by another job) creates none, and its
exit code is what the shell or submitit sees; the preflight writes to ``RUN_DIR.preflight``;
a job killed outright (SIGKILL, OOM) writes no ``outcome``, so its ``job_started`` has none
after it; on the sbatch route bash decides the requeue, and Slurm's accounting keeps it.
"""
from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1
EVENTS_NAME = "events.jsonl"
COMMON = ("v", "type", "time", "rank", "host", "pid", "job")
# each type's own fields: writers must give exactly these (a typo fails at once, in tests)
TYPES: dict[str, tuple[str, ...]] = {
    "job_started": ("kind", "ranks", "device", "link", "restart", "spec"),
    "epoch_done": ("epoch", "epochs", "step", "metrics"),
    "quality": ("epoch", "kimg", "figures", "seconds"),
    "checkpoint": ("epoch", "step", "reason", "name"),
    "best": ("figure", "value", "epoch", "step", "name"),
    "stop_signal": ("signal", "epoch", "step"),
    "requeue": ("by",),
    "rung": ("point", "rung", "unit", "metric", "value", "epochs", "kimg", "compared_with",
             "stop"),
    "early_stop": ("epoch", "reason"),
    "preflight": ("lines", "exit"),
    "outcome": ("kind", "exit", "meaning"),
    # rank 0's tracked run (train.tracking): a requeued job continues the run named here
    "tracking": ("backend", "store", "run_id", "experiment"),
    # any rank's watchdog (jobs/core/watchdog.py): the rank that stopped, and the host to
    # leave out of the retry (culprit_rank None: no single rank stood out)
    "stall": ("step", "quiet_s", "bound_s", "paused", "culprit_rank", "culprit_host", "why"),
}
# fields added to a type after version 1 shipped: writers give them, readers do without
# (an event written before has none)
LATER = {"job_started": ("spec",)}
# what the launchers set (gan/parallel/distributed.py reads the same), srun's own last: under
# another launcher inside a batch step every rank would see SLURM_PROCID 0
PROCESS_MANAGER_RANK = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK")
RANK_VARIABLES = (*PROCESS_MANAGER_RANK, "SLURM_PROCID")


def env_rank() -> int:
    """This process's rank as its launcher set it (0 when it set none: one process)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


def job_id() -> str:
    """The job as its scheduler names it: submitit's local executor's (first: its jobs
    inherit the Slurm variables of an allocation they run in), Slurm's (an array task as
    ARRAY_TASK, the id ``submitit`` and ``sacct`` show), or '' outside both."""
    env = os.environ
    if env.get("SUBMITIT_LOCAL_JOB_ID"):
        return env["SUBMITIT_LOCAL_JOB_ID"]
    array, task = env.get("SLURM_ARRAY_JOB_ID", ""), env.get("SLURM_ARRAY_TASK_ID", "")
    if array and task:
        return f"{array}_{task}"
    return env.get("SLURM_JOB_ID", "")


def _plain(value: Any) -> Any:
    """JSON as any reader parses it: a number that is not finite becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):  # a numpy scalar
        return _plain(value.item())
    return value


def make(event_type: str, /, rank: int | None = None, job: str | None = None,
         **fields: Any) -> dict[str, Any]:
    """One event of ``event_type`` with exactly its fields (ValueError otherwise); ``rank``
    and ``job`` default to this process's."""
    if event_type not in TYPES:
        raise ValueError(f"no event type {event_type!r}: {', '.join(TYPES)}")
    if set(fields) != set(TYPES[event_type]):
        raise ValueError(f"event {event_type}: fields {sorted(fields)}, expected "
                         f"{sorted(TYPES[event_type])}")
    return _plain({"v": SCHEMA_VERSION, "type": event_type,
                   "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "rank": env_rank() if rank is None else rank, "host": socket.gethostname(),
                   "pid": os.getpid(), "job": job_id() if job is None else job,
                   **{name: fields[name] for name in TYPES[event_type]}})


def emit(directory: str | os.PathLike, event_type: str, /, rank: int | None = None,
         job: str | None = None, **fields: Any) -> bool:
    """Append one event to ``directory``'s record, which must exist (a refused job creates
    none). Whether it was written: a full disk or a missing directory costs the record one
    line, never the job (the exit code still says how the job ended)."""
    try:
        line = (json.dumps(make(event_type, rank=rank, job=job, **fields), allow_nan=False)
                + "\n").encode()
    except (TypeError, ValueError) as exc:  # a value JSON cannot hold: a bug, not the job's
        log.warning("%s: event %s not recorded: %s", directory, event_type, exc)
        return False
    path = Path(directory) / EVENTS_NAME
    if not path.parent.is_dir():
        return False
    try:
        _append(path, line)
        return True
    except OSError as exc:
        log.warning("%s: event %s not recorded: %s", directory, event_type,
                    exc.strerror or exc)
        return False


def _append(path: Path, line: bytes) -> None:
    """One ``write(2)`` to a file opened ``O_APPEND``: the line lands whole, or (a writer
    killed mid-write) not as an event a reader accepts."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        while line:  # a short write (a signal, a nearly full disk): the rest follows
            line = line[os.write(fd, line):]
        os.fsync(fd)
    finally:
        os.close(fd)


def parse(chunk: bytes) -> list[dict]:
    """The events in complete lines of ``chunk``; a line that is not one event of this
    schema (torn by a kill, a field missing, a newer version) is skipped."""
    out = []
    for raw in chunk.splitlines():
        event = _event_in(raw)
        if isinstance(event, dict) and event.get("type") in TYPES \
                and isinstance(event.get("v"), int) and event["v"] <= SCHEMA_VERSION \
                and all(name in event for name in COMMON + TYPES[event["type"]]
                        if name not in LATER.get(event["type"], ())):
            out.append(event)
    return out


def _event_in(raw: bytes) -> object:
    """The JSON of a line; for a line a torn write left unterminated, the event appended
    right after it (every event begins with its version: ``{"v": ``)."""
    for start in (0, raw.rfind(b'{"v": ')):
        try:
            return json.loads(raw[max(start, 0):])
        except ValueError:
            continue
    return None


def read(directory: str | os.PathLike, event_type: str | None = None) -> list[dict]:
    """Every event of ``directory`` (or those of one type), oldest first; [] without any."""
    return [e for e in Tail(Path(directory)).new()
            if event_type is None or e["type"] == event_type]


@dataclass
class Tail:
    """The events a growing record gained since the last read (a half-written last line
    waits for the next read): what a waiting submission follows."""
    directory: Path
    offset: int = 0

    def new(self) -> list[dict]:
        try:
            with open(Path(self.directory) / EVENTS_NAME, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:  # not created yet
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return parse(complete)


def same_process(a: dict, b: dict) -> bool:
    return (a.get("host"), a.get("pid")) == (b.get("host"), b.get("pid"))


def last_run(events: list[dict]) -> tuple[dict | None, dict | None]:
    """The last job that started training here and its outcome (None while it trains, or
    if it was killed outright). A job refused on the way never started, so its outcome
    leaves the last real one in force."""
    started = next((e for e in reversed(events) if e["type"] == "job_started"), None)
    if started is None:
        return None, None
    after = events[events.index(started) + 1:]
    return started, next((e for e in after if e["type"] == "outcome" and e["rank"] == 0
                          and same_process(e, started)), None)


def outcome_of(events: list[dict], job: str) -> dict | None:
    """How ``job`` (a scheduler's id) last ended here: rank 0's outcome, unless the job
    started again or was requeued after it (a requeued job keeps its id; killed outright
    in its next run, it has no outcome of that run)."""
    for event in reversed(events):
        if event["job"] != job or event["rank"] != 0:
            continue
        if event["type"] == "outcome":
            return event
        if event["type"] in ("job_started", "requeue"):
            return None
    return None
