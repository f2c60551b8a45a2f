"""What one run of a job is given beyond its spec, in one value from the command line (or
the submitit task) down to the code of its kind: its array task, whether to start afresh,
the stop signals caught so far, its place in a resubmit chain and, for a sweep's point,
its early-stopping rule. In the base, so ``gan/`` and ``preprocess/`` take it as it is."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from jobs.core.chain import NO_CHAIN, Link
from jobs.core.signals import StopSignals

# a sweep's early stopping: (epochs done, kimg seen, figures measured) -> why to stop, or None
Judge = Callable[[int, float, dict], "str | None"]


@dataclass(frozen=True)
class Launch:
    index: int | None = None  # the array task; None: every task in turn, or no array
    fresh: bool = False  # refuse a run directory that holds checkpoints
    stop: StopSignals = field(default_factory=StopSignals)
    link: Link = NO_CHAIN
    judge: Judge | None = None

    def but(self, **changes) -> Launch:
        """This launch for a sweep's point or a pipeline's stage (``index``, ``judge``)."""
        return replace(self, **changes)
