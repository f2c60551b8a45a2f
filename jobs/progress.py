"""Training's progress while a submission waits for it, read from the run's events.

``./run demo`` and ``python -m jobs submit --wait`` block for minutes while a training runs
as a submitit job (a child process, or a Slurm job on the shared filesystem): the console said
nothing between "submitted" and the summary. Rank 0 records every finished epoch and its
quality figures as run events (``jobs/core/events.py``), so the waiting side follows those,
never the job's log: a bar over the epochs on a terminal, one plain line per epoch otherwise
(batch logs, pipes, CI).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gan.families import READS
from jobs.core import events, runtime

log = logging.getLogger(__name__)
POLL_SECONDS = 2.0


@dataclass
class EpochEvents:
    """Turns run events into progress: each finished epoch, with the latest quality."""
    show: Callable[[int, int, str], None]
    quality: str = ""
    quality_epoch: int = 0
    seen: set = field(default_factory=set)

    def read(self, new: list[dict]) -> None:
        for event in new:
            if event["type"] == "quality":
                self.quality = " ".join(f"{k}={_shown(v, '.4g')}"
                                        for k, v in event["figures"].items())
                self.quality_epoch = event["epoch"]
            elif event["type"] == "epoch_done" and event["epoch"] not in self.seen:
                self.seen.add(event["epoch"])  # an epoch redone after a kill shows once
                losses = " ".join(f"{k}={_shown(event['metrics'].get(k), '.3f')}"
                                  for k in READS["progress"])
                self.show(event["epoch"], event["epochs"],
                          losses + self._latest_quality(event["epoch"]))

    def _latest_quality(self, epoch: int) -> str:
        """The figures last measured, saying when if that was an earlier epoch."""
        if not self.quality:
            return ""
        when = "" if self.quality_epoch == epoch else f" (epoch {self.quality_epoch})"
        return f" {self.quality}{when}"


def _shown(value: float | None, spec: str) -> str:
    """A figure as the bar shows it; a loss gone to NaN is recorded as null: 'nan'."""
    return "nan" if value is None else format(value, spec)


def plain_lines() -> Callable[[int, int, str], None]:
    def show(epoch: int, epochs: int, text: str) -> None:
        log.info("training: epoch %d/%d %s", epoch, epochs, text)
    return show


def progress_bar() -> tuple[Callable[[int, int, str], None], Callable[[], None]]:
    """A tqdm bar over the epochs (sized by the first epoch event), and its closer."""
    bar: dict[str, Any] = {}

    def show(epoch: int, epochs: int, text: str) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(total=epochs, initial=epoch - 1, unit="epoch", desc="training")
        bar["bar"].set_postfix_str(text, refresh=False)
        bar["bar"].update(epoch - bar["bar"].n)

    def close() -> None:
        if "bar" in bar:
            bar["bar"].close()
    return show, close


def mine(new: list[dict], job_id: str) -> list[dict]:
    return [event for event in new if event["job"] == job_id]


def follow(job: Any, run_dir: str | Path, poll_seconds: float = POLL_SECONDS) -> None:
    """Show the epochs ``job`` (a submitit job) records in ``run_dir`` until it is done;
    the earlier jobs' epochs there (a resumed run) are not this job's progress."""
    if runtime.show_progress():
        show, close = progress_bar()
    else:
        show, close = plain_lines(), (lambda: None)
    tail, epochs = events.Tail(Path(run_dir)), EpochEvents(show)
    try:
        while not job.done():
            epochs.read(mine(tail.new(), job.job_id))
            time.sleep(poll_seconds)
        epochs.read(mine(tail.new(), job.job_id))
    finally:
        close()
