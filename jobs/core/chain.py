"""Resubmit chains (``resources.resubmit: N``) and the outcome record they read.

Where preemption cancels jobs (``PreemptMode=CANCEL``) or requeue is disabled, ``--requeue``
does nothing and a preempted training simply ends. A chain covers that: the job, and N
successors that each start ``afterany`` of the one before. A successor (a *link*) reads how
the run directory's last job ended, ``RUN_DIR/outcome.json``, written by rank 0 as it exits:

* the run finished (exit 0): nothing to do, exit 0 at once;
* it ended for good (an invalid spec, inputs missing, the mode-collapse guard, an error):
  exit at once with that code, naming the job that ended it;
* it checkpointed after a stop signal (exit 75), or its record still says it is training
  (the job was killed outright), or there is no record: resume from the last checkpoint, as
  a requeued job would.

A job writes the record only once it starts training (``exit: null`` then, its end later):
one refused on the way (``--fresh``, another model) leaves the last real outcome alone.

A link takes over the run directory's lock (``jobs/core/runlock.py``) from the earlier links
of its chain, which share the chain's first job id.
"""
from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.core import exitcodes
from jobs.core.files import atomic_write_json

log = logging.getLogger(__name__)
OUTCOME_NAME = "outcome.json"
RESUMES = {exitcodes.REQUEUE}  # the outcomes a link resumes from (and no record at all)


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


def record_outcome(run_dir: str | Path, code: int | None, job: str, host: str) -> None:
    """How this job (``job``: its id, '' outside Slurm) ended, for the next link of its chain
    and for people (``jobs status``); ``code`` None: it is training now (a job killed
    outright leaves that, and the next link resumes)."""
    meaning = "training" if code is None else exitcodes.DESCRIPTIONS.get(code, "unknown")
    atomic_write_json(Path(run_dir) / OUTCOME_NAME, {
        "exit": code, "meaning": meaning, "job": job, "host": host,
        "time": time.strftime("%Y-%m-%d %H:%M:%S")})


def read_outcome(run_dir: str | Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / OUTCOME_NAME).read_text())
    except (OSError, ValueError):
        return None


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

