"""Training's progress while a submission waits for it, read from the job's own log.

``./run demo`` and ``python -m jobs submit --wait`` block for minutes while a training runs
as a submitit job (a child process, or a Slurm job on the shared filesystem): the console said
nothing between "submitted" and the summary. The job already logs every finished epoch and
its quality figures, so the waiting side follows that log: a bar over the epochs on a
terminal, one plain line per epoch otherwise (batch logs, pipes, CI).
"""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from jobs.core import runtime

log = logging.getLogger(__name__)

EPOCH_DONE = re.compile(r"epoch (\d+)/(\d+) done: d_real=(\S+) d_fake=(\S+) g=(\S+)")
QUALITY = re.compile(r"epoch (\d+) quality: (.*?) \([\d.]+ s\)")
POLL_SECONDS = 2.0


@dataclass
class LogTail:
    """The complete lines a growing file gained since the last read (a half-written last
    line waits for the next read)."""
    path: Path
    offset: int = 0

    def new_lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except OSError:  # not created yet
            return []
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        return complete.decode(errors="replace").splitlines()


@dataclass
class EpochLines:
    """Turns the log's lines into progress: each finished epoch, with the latest quality."""
    show: Callable[[int, int, str], None]
    quality: str = ""
    quality_epoch: int = 0
    seen: set = field(default_factory=set)

    def read(self, lines: list[str]) -> None:
        for line in lines:
            if match := QUALITY.search(line):
                self.quality, self.quality_epoch = match.group(2), int(match.group(1))
            elif (match := EPOCH_DONE.search(line)) and match.group(1) not in self.seen:
                self.seen.add(match.group(1))  # a requeued run logs no epoch twice anyway
                epoch, epochs = int(match.group(1)), int(match.group(2))
                losses = f"d_real={match.group(3)} d_fake={match.group(4)} g={match.group(5)}"
                self.show(epoch, epochs, losses + self._latest_quality(epoch))

    def _latest_quality(self, epoch: int) -> str:
        """The figures last measured, saying when if that was an earlier epoch."""
        if not self.quality:
            return ""
        when = "" if self.quality_epoch == epoch else f" (epoch {self.quality_epoch})"
        return f" {self.quality}{when}"


def plain_lines() -> Callable[[int, int, str], None]:
    def show(epoch: int, epochs: int, text: str) -> None:
        log.info("training: epoch %d/%d %s", epoch, epochs, text)
    return show


def progress_bar() -> tuple[Callable[[int, int, str], None], Callable[[], None]]:
    """A tqdm bar over the epochs (sized by the first epoch line), and its closer."""
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


def follow(job: Any, poll_seconds: float = POLL_SECONDS) -> None:
    """Show ``job``'s epochs until it is done (a submitit job: its rank 0 logs to
    ``job.paths.stderr``)."""
    if runtime.show_progress():
        show, close = progress_bar()
    else:
        show, close = plain_lines(), (lambda: None)
    tail, epochs = LogTail(Path(job.paths.stderr)), EpochLines(show)
    try:
        while not job.done():
            epochs.read(tail.new_lines())
            time.sleep(poll_seconds)
        epochs.read(tail.new_lines())
    finally:
        close()
