"""Test-only fault hooks, armed by ``FACEGAN_TEST_FAULT`` and inert without it.

Why in the product: a hang cannot be injected from outside a process at a chosen step (a
SIGSTOP freezes every thread, the watchdog's too), and the stall tests must freeze exactly
one thread of one rank mid-epoch. A comma-separated list of ``KIND@RANK:STEP[:SECONDS][/TASK]``:

* ``freeze@R:K``: rank R's training thread blocks for good before global step K+1;
* ``slow@R:K:S``: rank R sleeps S seconds before every step from K+1 on (slow, not hung);
* ``hang_read@R:K``: rank R's read-ahead thread blocks for good reading global step K+1's
  batch (the training thread then waits for a batch that never comes);
* ``slow_quality@R:0:S``: rank R sleeps S seconds in every quality measurement (a long
  legitimate pause).

The hangs (``freeze``, ``hang_read``) fire in a job's first run only
(``SLURM_RESTART_COUNT`` unset or 0): the retry of a job that a fault stalled runs clean, as
a retry on a healthy node would; the slow ones hold in every run. A ``/T`` suffix
keeps a fault to array task T (one trial of a sweep). With ``FACEGAN_TEST_FAULT_MARKS`` set
to a shared folder, each hang fires once in all, in whichever run reaches its step first (a
requeued run, or a resubmit chain's next job): it leaves a mark there as it fires.

Each hook logs one warning when it fires, so a log shows that a fault was injected.
"""
from __future__ import annotations

import functools
import logging
import os
import threading
import time
from dataclasses import dataclass

from jobs.core import files

log = logging.getLogger(__name__)
VARIABLE = "FACEGAN_TEST_FAULT"
MARKS = "FACEGAN_TEST_FAULT_MARKS"
KINDS = ("freeze", "slow", "hang_read", "slow_quality")
HANGS = ("freeze", "hang_read")


@dataclass(frozen=True)
class Fault:
    kind: str
    rank: int
    step: int
    seconds: float = 0.0
    task: int | None = None  # an array task: only there


def _here(fault: Fault) -> bool:
    task = os.environ.get("SLURM_ARRAY_TASK_ID", "")
    return fault.task is None or task == str(fault.task)


@functools.cache
def armed() -> tuple[Fault, ...]:
    text = os.environ.get(VARIABLE, "").strip()
    retry = os.environ.get("SLURM_RESTART_COUNT", "0") not in ("", "0") \
        and not os.environ.get(MARKS)  # marked: once in all, whichever run
    return tuple(f for f in (parse(part) for part in text.split(",") if part.strip())
                 if _here(f) and not (retry and f.kind in HANGS))


def parse(text: str) -> Fault:
    """``KIND@RANK:STEP[:SECONDS][/TASK]``; ValueError naming the variable if malformed."""
    try:
        kind, where = text.strip().split("@")
        where, _, task = where.partition("/")
        numbers = where.split(":")
        fault = Fault(kind, int(numbers[0]), int(numbers[1]),
                      float(numbers[2]) if len(numbers) > 2 else 0.0,
                      int(task) if task else None)
    except (ValueError, IndexError):
        fault = None
    if fault is None or fault.kind not in KINDS:
        raise ValueError(f"{VARIABLE}: {text!r} is not KIND@RANK:STEP[:SECONDS][/TASK] "
                         f"with KIND one of {', '.join(KINDS)}")
    return fault


def _first_time(fault: Fault) -> bool:
    """Whether ``fault`` fires now: always, unless MARKS names a folder where it already
    left its mark (an exclusive create: one firing across processes and jobs)."""
    folder = os.environ.get(MARKS)
    if not folder:
        return True
    name = f"{fault.kind}@{fault.rank}:{fault.step}" + (
        f"-{fault.task}" if fault.task is not None else "")
    return files.create_first(os.path.join(folder, name))


def before_step(rank: int, step: int) -> None:
    """Called by the training thread before global step ``step + 1``."""
    for fault in armed():
        if fault.rank != rank:
            continue
        if fault.kind == "freeze" and step == fault.step and _first_time(fault):
            _block(f"rank {rank}'s training thread frozen before step {step + 1}")
        if fault.kind == "slow" and step >= fault.step:
            if step == fault.step:
                log.warning("test fault: rank %d sleeps %.1f s before every step from %d",
                            rank, fault.seconds, step + 1)
            time.sleep(fault.seconds)


def before_read(rank: int, step: int) -> None:
    """Called by the read-ahead thread before reading global step ``step + 1``'s batch."""
    for fault in armed():
        if fault.kind == "hang_read" and fault.rank == rank and step == fault.step \
                and _first_time(fault):
            _block(f"rank {rank}'s read-ahead thread hangs reading step {step + 1}'s batch")


def in_quality(rank: int) -> None:
    """Called by every rank as a quality measurement starts."""
    for fault in armed():
        if fault.kind == "slow_quality" and fault.rank == rank:
            log.warning("test fault: rank %d sleeps %.1f s in the quality measurement", rank,
                        fault.seconds)
            time.sleep(fault.seconds)


def _block(what: str) -> None:
    log.warning("test fault: %s", what)
    threading.Event().wait()
