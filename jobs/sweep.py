"""Expand a sweep spec into its points: one validated train spec per Slurm array task.

Each point is the base train spec plus a few dotted overrides (the same syntax as ``--set``);
its run directory is ``run_root/<overrides>`` so every task resumes independently.
"""
from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path
from typing import Any

from gan.families import READS
from gan.training.outputs import quality_summary, read_metrics
from jobs.core.files import atomic_write_text
from jobs.core.loader import SpecError, expect_kind, load_spec
from jobs.core.schema import JobSpec, SweepSpec


def expand_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    """Grid combinations (in key order) followed by the explicit points."""
    points = []
    if sweep.grid:
        keys = list(sweep.grid)
        for combo in itertools.product(*(sweep.grid[k] for k in keys)):
            points.append(dict(zip(keys, combo)))
    points.extend(dict(p) for p in sweep.points)
    return points


def point_name(overrides: dict[str, Any]) -> str:
    """A readable, filesystem-safe directory name, e.g. ``learning_rate=0.0001,batch_size=32``."""
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", ",".join(parts)) or "base"


def point_spec(sweep_job: JobSpec, index: int) -> JobSpec:
    """The train spec of array task ``index``."""
    points = expand_points(sweep_job.work)
    if not 0 <= index < len(points):
        raise SpecError([f"{sweep_job.source}: sweep has {len(points)} points; "
                         f"index {index} is out of range"])
    overrides = points[index]
    run_dir = Path(sweep_job.work.run_root) / point_name(overrides)
    items = list(overrides.items()) + [("train.run_dir", str(run_dir))]
    spec = load_spec(sweep_job.work.base, items)
    expect_kind(spec, "train", f"{sweep_job.source}: sweep.base: {sweep_job.work.base}",
                "a sweep")
    spec.resources = sweep_job.resources  # the sweep's resources apply to every point
    return spec


def validate_points(sweep_job: JobSpec) -> list[str]:
    """Problems in any point (e.g. a misspelt grid key), each naming the point."""
    problems = []
    for index in range(len(expand_points(sweep_job.work))):
        try:
            point_spec(sweep_job, index)
        except SpecError as exc:
            problems += [f"{p} [sweep point {index}]" for p in exc.problems]
    return problems


SUMMARY_COLUMNS = ["point", "run_dir", "epoch", "step", *READS["sweep_summary"]]
QUALITY_COLUMNS = ["kid", "best_kid", "fid", "best_fid", "face_rate", "best_face_rate"]


def summary(sweep_job: JobSpec) -> tuple[Path, list[dict]]:
    """The last epoch's metrics of every point, as rows and as run_root/summary.csv."""
    rows = []
    for index, overrides in enumerate(expand_points(sweep_job.work)):
        run_dir = Path(sweep_job.work.run_root) / point_name(overrides)
        row = {"point": point_name(overrides), "run_dir": str(run_dir)}
        epochs = read_metrics(run_dir, "epoch")
        if epochs:
            row.update({k: epochs[-1].get(k, "") for k in SUMMARY_COLUMNS[2:]})
            row.update({k: v for k, v in quality_summary(epochs).items()
                        if k in QUALITY_COLUMNS})
        rows.append(row)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=summary_columns(rows), restval="")
    writer.writeheader()
    writer.writerows(rows)
    path = Path(sweep_job.work.run_root) / "summary.csv"
    atomic_write_text(path, buf.getvalue())
    return path, rows


def summary_columns(rows: list[dict]) -> list[str]:
    """The summary's columns: the losses, and the quality figures any point measured."""
    return SUMMARY_COLUMNS + [c for c in QUALITY_COLUMNS if any(c in r for r in rows)]


def format_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
