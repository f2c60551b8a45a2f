"""Early stopping of a sweep's trials at rungs: the median rule and ASHA.

A trial is judged at each rung of ``sweep.early_stop.rungs`` (epochs or kimg), at the first
``train.metrics`` measurement at or after it, against what the other trials recorded at the
same rung. Each trial records its value and the decision as a ``rung`` event in its own run
directory's events (``jobs/core/events.py``): trials in different array tasks (different
nodes) share nothing else, and no record is written by two processes.

* **median** (Golovin et al. 2017, Google Vizier): stop when the metric is worse than the
  median of the other trials' at this rung.
* **asha** (Li et al. 2020, as Ray Tune's ``ASHAScheduler`` stops trials): keep the best
  ``1 / reduction_factor`` of all trials at this rung, this one included; stop the rest.

No trial is judged before ``min_trials`` trials (itself included) reached the rung, so the
first ones always go on. A decision, once recorded, is final: a trial resumed after a requeue
reads its own record instead of judging again, and one whose record says stop is not run
again. Decisions depend on which trials reached the rung first: with
``resources.array_throttle: 1`` (one trial at a time) and no preemption a sweep decides the
same every time; with more at once, as in ASHA, the order of arrival counts, and a trial
stopped by a signal at a rung's epoch end (when the measurement is skipped) is judged at its
next measurement instead. A stopped trial exits ``EARLY_STOPPED``, never requeued, and its
reason is in the sweep's summary.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jobs.core import chain, events, exitcodes
from jobs.core.figures import QUALITY
from jobs.core.schema import EarlyStopSpec, JobSpec

log = logging.getLogger(__name__)


def decide(rule: EarlyStopSpec, value: float, others: list[float], lower: bool,
           rung: float) -> str | None:
    """The reason to stop a trial whose metric at ``rung`` is ``value``, given the other
    trials' values there; None to go on."""
    n = len(others) + 1
    if n < rule.min_trials:
        return None
    def as_lower(v: float) -> float:  # compared as "lower is better"; NaN is the worst
        return (v if lower else -v) if math.isfinite(v) else math.inf

    mine, rest = as_lower(value), [as_lower(v) for v in others]
    where = f"{rule.metric} {value:.4g} at rung {rung:g} {rule.unit}"
    if rule.rule == "median":
        median = float(np.median(rest))
        if mine > median:
            return (f"{where} is worse than the median {median if lower else -median:.4g} "
                    f"of the {len(others)} other trial(s) there")
        return None
    keep = max(1, math.floor(n / rule.reduction_factor))
    cutoff = sorted(rest + [mine])[keep - 1]
    if mine > cutoff:
        return f"{where} is not among the best {keep} of the {n} trials there"
    return None


@dataclass
class Judge:
    """Called by the trainer (rank 0) after every quality measurement of one sweep point."""
    rule: EarlyStopSpec
    run_root: Path  # the sweep's: every point's run directory is below it
    point: str    # the point's directory name

    def __call__(self, epochs_done: int, kimg: float, figures: dict[str, float]) -> str | None:
        """The reason to stop now, or None."""
        if self.rule.rule == "none" or self.rule.metric not in figures:
            return None
        progress = epochs_done if self.rule.unit == "epochs" else kimg
        reached = [r for r in self.rule.rungs if r <= progress]
        if not reached:
            return None
        rung = reached[-1]
        mine = self._own_rungs().get(rung)
        if mine is not None:  # decided before a requeue: final
            return mine["stop"]
        value = float(figures[self.rule.metric])
        others = [r["value"] for r in read_rung(self.run_root, rung) if r["point"] != self.point]
        reason = decide(self.rule, value, others, bool(QUALITY[self.rule.metric]), rung)
        events.emit(self.run_root / self.point, "rung", point=self.point, rung=rung,
                    unit=self.rule.unit, metric=self.rule.metric, value=value,
                    epochs=epochs_done, kimg=round(kimg, 3), compared_with=len(others),
                    stop=reason)
        log.info("early stopping, rung %g %s: %s", rung, self.rule.unit,
                 reason or f"{self.rule.metric} {value:.4g} goes on "
                            f"({len(others)} other trial(s) there)")
        return reason

    def recorded_stop(self) -> str | None:
        """Why this point was stopped at any rung, if it was (its own records only)."""
        return next((r["stop"] for r in self._own_rungs().values() if r["stop"]), None)

    def _own_rungs(self) -> dict[float, dict]:
        return {r["rung"]: r for r in events.read(self.run_root / self.point, "rung")}


def read_rung(run_root: Path, rung: float) -> list[dict]:
    """Every trial's record at one rung (a torn line is no record: ``events.read``)."""
    return [r for folder in _points(run_root) for r in events.read(folder, "rung")
            if r["rung"] == rung]


def stop_reasons(run_root: Path) -> dict[str, str]:
    """Point name -> why it was stopped (for the summary)."""
    return {r["point"]: r["stop"] for folder in _points(run_root)
            for r in events.read(folder, "rung") if r["stop"]}


def _points(run_root: Path) -> list[Path]:
    return sorted(p for p in Path(run_root).iterdir() if p.is_dir()) \
        if Path(run_root).is_dir() else []


def stopped_before(judge: Judge, point: JobSpec) -> bool:
    """Whether the sweep's rule stopped this point before (its exit, or its record if the
    job died before it could exit): not run again while the rule is on."""
    outcome = chain.read_outcome(point.work.run_dir) or {}
    reason = judge.recorded_stop()
    if outcome.get("exit") == exitcodes.EARLY_STOPPED or reason:
        log.info("%s: stopped early before: not run again (%s)", point.work.run_dir,
                 reason or f"job {outcome.get('job')}")
        return True
    return False


def sweep_judge(spec: JobSpec, point: JobSpec) -> Judge | None:
    """The point's early-stopping judge; None without a rule."""
    rule = spec.work.early_stop
    if rule.rule == "none":
        return None
    return Judge(rule, Path(spec.work.run_root), Path(point.work.run_dir).name)
