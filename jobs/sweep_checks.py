"""A sweep's rules beyond the schema, for its entry in ``jobs/kinds.py``: every point loads,
the early-stopping rule judges a figure every point measures, and each point passes the
checks of a train spec (``deep``: the kinds table's own, handed in)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jobs.core.schema import JobSpec
from jobs.core.sweep_schema import STUDIED
from jobs.sweep import checked_points, overrides_spec, validate_points


def check_sweep(spec: JobSpec, found: list[str],
                deep: Callable[[JobSpec], list[str]]) -> list[str]:
    if not Path(spec.work.base).exists():
        return found
    # the sweep's own resources apply to every point: said once, naming the sweep
    problems = found or validate_points(spec) or _study_problems(spec)
    if problems:
        return problems
    points = sweep_points(spec)  # every point loads: validate_points found none broken
    return _early_stop_problems(spec, points) or [
        f"{p} [{label}]" for label, point in points for p in deep(point)]


def _study_problems(spec: JobSpec) -> list[str]:
    """A TPE or CMA-ES sweep whose run_root holds a study made for another objective or
    space (read only; none for other searches, which keep no study)."""
    if spec.work.search not in STUDIED:
        return []
    from jobs import study  # Optuna: only for the searches that draw

    return study.study_problems(spec)


def _early_stop_problems(spec: JobSpec, points: list[tuple[str, JobSpec]]) -> list[str]:
    """The rule (and a TPE or CMA-ES study's objective) judges a figure every point
    measures (``train.metrics`` of the base): the first point that does not, named."""
    rule = spec.work.early_stop
    if rule.rule == "none" and spec.work.search not in STUDIED:
        return []
    for label, point in points:
        m = point.work.metrics
        switch, on = _metric_switch(rule.metric, m)
        if not ((m.every_epochs or m.every_kimg) and on):
            return [f"{spec.source}: sweep.early_stop.metric: {label} never measures "
                    f"{rule.metric}: set train.metrics.every_epochs (or every_kimg)"
                    + ("" if on else f" and train.metrics.{switch}") + " in the base spec"]
    return []


def _metric_switch(metric: str, m) -> tuple[str, bool]:
    """The train.metrics field that turns ``metric`` on (beside every_epochs/kimg), and
    whether it is on."""
    if metric == "face_rate":
        return "face_rate", bool(m.face_rate)
    if metric.startswith("inception_"):
        return "inception.weights", bool(m.inception.weights)
    if metric in ("precision", "recall", "coverage"):
        return "precision_recall", bool(m.precision_recall)
    return "", True


def sweep_points(spec: JobSpec) -> list[tuple[str, JobSpec]]:
    """The trainings checked (``checked_points``: a TPE or CMA-ES space's corners)."""
    if not Path(spec.work.base).exists():
        return []
    return [(label, overrides_spec(spec, name, overrides))
            for label, name, overrides in checked_points(spec)]
