"""Stop signals, in one place: what a job does when the scheduler wants it gone.

``USR1``  the sbatch scripts' walltime signal (``--signal=B:USR1@lead``, passed on by the
          batch shell): checkpoint, exit ``REQUEUE``; the batch shell requeues the job.
``USR2``  submitit's timeout signal: checkpoint, exit ``REQUEUE``; the submitit task raises it
          again for submitit, which requeues (see ``jobs.submit.SpecTask``).
``TERM``  preemption, ``scancel``, ``scontrol requeue``: checkpoint, exit ``REQUEUE``; Slurm
          decides what happens next.
``INT``   Ctrl-C: the same; a second Ctrl-C stops at once, without a checkpoint.

A :class:`StopSignals` is created when the process starts (``python -m jobs`` catches USR1 and
USR2 before its slow imports: by default they would kill it) and handed down to the job, which
arms it for all four and checks ``requested`` after every step. No module state: each process
holds its own instance, and ``signum`` tells its caller which signal stopped the job.
"""
from __future__ import annotations

import logging
import os
import signal

from jobs.core import exitcodes

log = logging.getLogger(__name__)

WALLTIME = signal.SIGUSR1      # the sbatch scripts' --signal=B:USR1@lead
SUBMITIT_TIMEOUT = signal.SIGUSR2
PREEMPTION = signal.SIGTERM
EARLY = (signal.SIGUSR1, signal.SIGUSR2)
ALL = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Turns stop signals into a flag the training loop checks after every step."""

    def __init__(self):
        self.signum: int | None = None
        self._before_arm: dict[int, object] = {}

    def catch_early(self) -> StopSignals:
        """Remember USR1/USR2 from now on (quietly: logging is not configured yet). This
        stays the process's handler outside training: a late walltime signal after the job
        finished is remembered, not fatal."""
        for s in EARLY:
            signal.signal(s, self._remember)
        return self

    def arm(self) -> StopSignals:
        """Catch all four while the job runs; a signal caught early is announced now."""
        for s in ALL:
            self._before_arm.setdefault(s, signal.signal(s, self._handle))
        if self.signum is not None:
            self._announce(self.signum, "before training started")
        return self

    def restore(self) -> None:
        """Put back the handlers :meth:`arm` replaced (the early catcher, or a library's
        own such as submitit's)."""
        for s, handler in self._before_arm.items():
            signal.signal(s, handler)
        self._before_arm.clear()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _remember(self, signum, frame) -> None:
        self.signum = signum

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        self.signum = signum
        self._announce(signum, "")

    @staticmethod
    def _announce(signum: int, when: str) -> None:
        """One line naming the signal and this process (in a multi-rank job's shared log,
        which rank got it: the rank line at start names the same pid)."""
        log.warning("received %s (pid %d%s): will checkpoint after this step and exit %d "
                    "(requeue)", signal.Signals(signum).name, os.getpid(),
                    f", {when}" if when else "", exitcodes.REQUEUE)
