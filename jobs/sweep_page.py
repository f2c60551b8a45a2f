"""A sweep's page, ``run_root/report.html``: how its points compare, in one self-contained file.

A sortable table of the points (status, last epoch, best figures, why a point was stopped
early, its swept values), the judged figure against each swept value (the summary's plot),
and each point's best sample grid beside a link to its own page. Built from
``run_root/points.json`` (which index is which point, written by every array task; a TPE or
CMA-ES study's journal for the points it chose) and the points' run events and samples: the
same record ``summary`` reads. Every array task rewrites it as its point ends;
``python -m jobs report RUN_ROOT`` writes it any time.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from jobs.core import events, pages
from jobs.core.run_page import best_snapshot
from jobs.core.rundir import sample_grid, sample_grids
from jobs.sweep import read_points, summary_columns, summary_rows
from jobs.sweep_plot import summary_figure


class NotASweep(Exception):
    """The directory holds no sweep's points record."""


def point_card(root: Path, row: dict[str, Any]) -> dict[str, Any]:
    """A point's best sample grid (or its last, before any quality was measured) and the
    link to its own page, relative to the sweep's, so the folder can be copied whole."""
    run_dir = Path(row["run_dir"])
    best = best_snapshot(events.read(run_dir))
    grids = sample_grids(run_dir)
    grid = sample_grid(run_dir, best["epoch"]) if best else (grids[-1][1] if grids else None)
    page = run_dir / pages.PAGE_NAME
    return {"point": row["point"], "status": row["status"],
            "caption": f"best at epoch {best['epoch']}" if best else
            (f"last grid, {grid.stem.replace('_', ' ')}" if grid else "no samples yet"),
            "uri": pages.image_uri(grid, jpeg=True) if grid and grid.exists() else None,
            "page": f"{run_dir.name}/{pages.PAGE_NAME}" if page.exists() else None}


def _cell(value: Any) -> dict[str, Any]:
    text = "" if value is None else str(value)
    try:
        float(text)
        numeric = True
    except ValueError:
        numeric = False
    return {"text": text, "num": numeric}


def context(root: Path) -> dict[str, Any]:
    record = read_points(root)
    if record is None:
        raise NotASweep(f"{root} holds no sweep's points.json: not a sweep's run_root, or "
                        "no task of it has started (python -m jobs report SWEEP_SPEC writes "
                        "it from the spec)")
    rows = summary_rows(root, record)
    columns = [c for c in summary_columns(rows) if c != "run_dir"] + record["keys"]
    fig = summary_figure(rows, record["keys"], record["metric"])
    return {"title": root.name, "root": str(root.resolve()), "metric": record["metric"],
            "columns": columns, "keys": record["keys"],
            "rows": [[_cell(row.get(c, "")) for c in columns] for row in rows],
            "plot": pages.figure_uri(fig) if fig is not None else None,
            "cards": [point_card(root, row) for row in rows]}


def write_sweep_page(run_root: str | Path) -> Path:
    """``run_root/report.html``, rewritten whole; NotASweep without ``points.json``."""
    root = Path(run_root)
    return pages.write_page(root / pages.PAGE_NAME, "sweep.html.j2", context(root))
