"""The report pages of a job's directory: which page a kind has, and writing it without ever
costing the job.

A training's run directory gets its run page (``jobs/core/run_page.py``), a sweep's
run_root its sweep page (``jobs/sweep_page.py``); the other kinds have none. The runner
writes the page as a job ends (``jobs/kinds.py`` ``run``), the trainer after each quality
measurement, and ``python -m jobs report`` on demand.
"""
from __future__ import annotations

from pathlib import Path

from jobs.core import events
from jobs.core.run_page import write_run_page
from jobs.core.schema import JobSpec
from jobs.sweep import POINTS_FILE, write_points
from jobs.sweep_page import NotASweep, write_sweep_page


class NoPage(Exception):
    """The target has no page: not a run directory, a sweep's run_root or their spec."""


def run_page(spec: JobSpec) -> Path | None:
    """A training's page, once it has a record to show (a job refused before it started
    training wrote none, and gets no page)."""
    run_dir = Path(spec.work.run_dir)
    return write_run_page(run_dir) if (run_dir / events.EVENTS_NAME).exists() else None


def sweep_page(spec: JobSpec) -> Path | None:
    """A sweep's page, its points record first (the page exists before any point ran); none
    for a sweep refused before it made its run_root."""
    if not Path(spec.work.run_root).is_dir():
        return None
    write_points(spec)
    return write_sweep_page(spec.work.run_root)


def page_of_directory(directory: Path) -> Path:
    """The page of a sweep's run_root (it holds ``points.json``) or of a run directory."""
    if not directory.is_dir():
        raise NoPage(f"{directory} is not a directory")
    if (directory / POINTS_FILE).exists():
        try:
            return write_sweep_page(directory)
        except NotASweep as exc:
            raise NoPage(str(exc)) from None
    if (directory / events.EVENTS_NAME).exists():
        return write_run_page(directory)
    raise NoPage(f"{directory} is neither a run directory ({events.EVENTS_NAME}: no job has "
                 f"trained there) nor a sweep's run_root ({POINTS_FILE})")
