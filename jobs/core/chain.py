"""Resubmit chains (``resources.resubmit: N``) and the outcome record they read.

Where preemption cancels jobs (``PreemptMode=CANCEL``) or requeue is disabled, ``--requeue``
does nothing and a preempted training simply ends. A chain covers that: the job, and N
successors that each start ``afterany`` of the one before. A successor (a *link*) reads how
the run directory's last job ended, from its run events (``jobs/core/events.py``): the last
``job_started`` and the ``outcome`` rank 0 of that job wrote as it exited:

* the run finished (exit 0): nothing to do, exit 0 at once;
* it ended for good (an invalid spec, inputs missing, the mode-collapse guard, an error):
  exit at once with that code, naming the job that ended it;
* it checkpointed after a stop signal (exit 75), or its job started and wrote no outcome
  (it was killed outright), or no job ever started: resume from the last checkpoint, as a
  requeued job would.

Only a job that started training counts: one refused on the way (``--fresh``, another
model, the lock held) writes an outcome but no ``job_started``, and leaves the last real
outcome in force.

A link takes over the run directory's lock (``jobs/core/runlock.py``) from the earlier links
of its chain, which share the chain's first job id.
"""
from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from jobs.core import events, exitcodes

log = logging.getLogger(__name__)
# the outcomes a link resumes from (and no record at all): a checkpoint after a stop signal,
# and a rank that failed because a peer's stall watchdog ended the job
RESUMES = {exitcodes.REQUEUE, exitcodes.STALLED}


@dataclass(frozen=True)
class Link:
    """A job's place in its resubmit chain: the chain's first job id and the link's number
    (0: the first job, or a job outside any chain)."""
    first: str = ""
    index: int = 0

    def __str__(self) -> str:
        return f"{self.first}:{self.index}"


NO_CHAIN = Link()


def parse_link(text: str) -> Link:
    """``FIRST:K`` (what ``python -m jobs run --chain`` takes); ValueError if malformed."""
    match = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not match:
        raise ValueError(f"--chain {text!r}: expected FIRST_JOB_ID:LINK, e.g. 1234:1")
    return Link(match[1], int(match[2]))


def read_outcome(run_dir: str | Path) -> dict | None:
    """How the last job that trained in ``run_dir`` ended: {exit, meaning, job, host, time},
    ``exit`` None while it trains (or if it was killed outright); None if none ever did."""
    started, outcome = events.last_run(events.read(run_dir))
    if started is None:
        return _legacy_outcome(run_dir)
    said = outcome or {**started, "exit": None, "meaning": "training"}
    return {key: said[key] for key in ("exit", "meaning", "job", "host", "time")}


LEGACY_OUTCOME = "outcome.json"  # what a run directory held before run events (schema 1)


def _legacy_outcome(run_dir: str | Path) -> dict | None:
    """A run directory last trained by a version before run events: its ``outcome.json``
    (the same fields), so a chain link or a summary across the upgrade still knows that a
    run finished or the guard stopped it. Read, never written."""
    try:
        record = json.loads((Path(run_dir) / LEGACY_OUTCOME).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "exit" in record else None


def link_exit(run_dir: str | Path, link: Link) -> int | None:
    """For a chain's later link: the code to exit with at once (logged why), or None to
    resume. The first job of a chain, or one outside any chain, always runs."""
    if link.index == 0:
        return None
    outcome = read_outcome(run_dir)
    if outcome is None or outcome.get("exit") in RESUMES or outcome.get("exit") is None:
        said = "" if outcome is None else f" (job {outcome.get('job')} " + (
            "checkpointed)" if outcome.get("exit") in RESUMES else "was killed)")
        log.info("resubmit chain %s: the run is not finished%s: resuming", link, said)
        return None
    code = int(outcome.get("exit", exitcodes.FAILED))
    if code == exitcodes.OK:
        log.info("resubmit chain %s: the run finished in job %s: nothing to do", link,
                 outcome.get("job"))
    else:
        log.error("resubmit chain %s: job %s ended this run with exit %d (%s): not resuming",
                  link, outcome.get("job"), code, outcome.get("meaning"))
    return code

