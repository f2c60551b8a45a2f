"""Expand a sweep spec into its points: one validated train spec per Slurm array task.

Each point is the base train spec plus a few dotted overrides (the same syntax as ``--set``);
its run directory is ``run_root/<overrides>`` so every task resumes independently.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from gan.families import READS
from jobs.core import events, exitcodes
from jobs.core.chain import read_outcome
from jobs.core.figures import QUALITY, quality_summary
from jobs.core.files import atomic_write_text
from jobs.core.loader import SpecError, expect_kind, load_spec
from jobs.core.schema import JobSpec, SweepSpec
from jobs.early_stop import stop_reasons


def expand_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    """The points in array order: the grid's combinations (in key order), or the random
    trials, then the explicit points."""
    points = random_trials(sweep) if sweep.search == "random" else [
        dict(zip(sweep.grid, combo)) for combo in itertools.product(*sweep.grid.values())
    ] if sweep.grid else []
    points.extend(dict(p) for p in sweep.points)
    return points


def random_trials(sweep: SweepSpec) -> list[dict[str, Any]]:
    """``sweep.trials`` draws from ``sweep.space`` (and ``sweep.grid``'s lists, as choices).
    Trial k's values come from its own stream, seeded by (seed, k): the same whatever the
    number of trials, the machine or the order the tasks run in. Floats keep 4 significant
    digits, which also keeps the run directories' names short."""
    space = {**{key: {"choice": values} for key, values in sweep.grid.items()},
             **sweep.space}
    trials = []
    for k in range(sweep.trials):
        rng = np.random.default_rng([sweep.seed, k])
        trials.append({key: _draw(rng, *dist.popitem()) for key, dist in
                       ((key, dict(dist)) for key, dist in space.items())})
    return trials


def _draw(rng: np.random.Generator, name: str, args: list[Any]) -> Any:
    if name == "choice":
        value = args[int(rng.integers(len(args)))]
        return value.item() if isinstance(value, np.generic) else value
    if name == "int_uniform":
        return int(rng.integers(int(args[0]), int(args[1]) + 1))
    lo, hi = float(args[0]), float(args[1])
    x = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if name == "log_uniform" \
        else float(rng.uniform(lo, hi))
    return float(f"{x:.4g}")


def point_name(overrides: dict[str, Any]) -> str:
    """A readable, filesystem-safe directory name, e.g. ``learning_rate=0.0001,batch_size=32``."""
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", ",".join(parts)) or "base"


def point_names(sweep: SweepSpec) -> list[str]:
    """Every point's directory name under run_root. Random trials are numbered first
    (``trial03,learning_rate=0.0002``): two draws may pick the same values."""
    points = expand_points(sweep)
    drawn = sweep.trials if sweep.search == "random" else 0
    return [(f"trial{k:02d}," if k < drawn else "") + point_name(p)
            for k, p in enumerate(points)]


def point_spec(sweep_job: JobSpec, index: int) -> JobSpec:
    """The train spec of array task ``index``."""
    points = expand_points(sweep_job.work)
    if not 0 <= index < len(points):
        raise SpecError([f"{sweep_job.source}: sweep has {len(points)} points; "
                         f"index {index} is out of range"])
    overrides = points[index]
    run_dir = Path(sweep_job.work.run_root) / point_names(sweep_job.work)[index]
    items = list(overrides.items()) + [("train.run_dir", str(run_dir))]
    spec = load_spec(sweep_job.work.base, items)
    expect_kind(spec, "train", f"{sweep_job.source}: sweep.base: {sweep_job.work.base}",
                "a sweep")
    spec.resources = sweep_job.resources  # the sweep's resources apply to every point
    if spec.work.tracking.experiment is None:  # tracked, the points are grouped by sweep
        spec.work.tracking.experiment = sweep_job.name
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


SUMMARY_COLUMNS = ["point", "run_dir", "status", "epoch", "step", *READS["sweep_summary"]]
QUALITY_COLUMNS = ["kid", "best_kid", "fid", "best_fid", "face_rate", "best_face_rate"]
STATUS = {exitcodes.OK: "done", exitcodes.EARLY_STOPPED: "stopped",
          exitcodes.REQUEUE: "interrupted"}


POINTS_FILE = "points.json"  # in run_root: which point is which, for readers without the spec


def points_record(sweep_job: JobSpec) -> dict[str, Any]:
    """What a view of the sweep needs without its spec (which names a base spec that may
    have moved): each array index's point name and overrides, the swept keys and the
    figure its early-stopping rule judges."""
    return {"metric": sweep_job.work.early_stop.metric, "quality": quality_columns(sweep_job),
            "keys": swept_keys(sweep_job),
            "points": [{"index": i, "name": name, "overrides": overrides}
                       for i, (name, overrides) in enumerate(zip(
                           point_names(sweep_job.work), expand_points(sweep_job.work)))]}


def write_points(sweep_job: JobSpec) -> Path:
    """``run_root/points.json`` (every array task writes the same, atomically)."""
    path = Path(sweep_job.work.run_root) / POINTS_FILE
    atomic_write_text(path, json.dumps(points_record(sweep_job), indent=1) + "\n")
    return path


def read_points(run_root: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(run_root) / POINTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "points" in record else None


def summary(sweep_job: JobSpec) -> tuple[Path, list[dict]]:
    """The last epoch's metrics of every point, its status (done, stopped early and why,
    interrupted, failed, in progress) and its swept values, as rows and as
    run_root/summary.csv."""
    root = Path(sweep_job.work.run_root)
    rows = summary_rows(root, points_record(sweep_job))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=summary_columns(rows) + swept_keys(sweep_job),
                            restval="")
    writer.writeheader()
    writer.writerows(rows)
    path = root / "summary.csv"
    atomic_write_text(path, buf.getvalue())
    return path, rows


def summary_rows(root: Path, record: dict[str, Any]) -> list[dict]:
    """One row per point of ``record`` (``points_record``), from its run events."""
    reasons, columns = stop_reasons(root), record["quality"]
    rows = []
    for point in record["points"]:
        name, run_dir = point["name"], root / point["name"]
        story = events.read(run_dir)
        row = {"point": name, "run_dir": str(run_dir), "status": point_status(run_dir)}
        row.update(_last_epoch(story))
        quality = [{"epoch": e["epoch"], **e["figures"]}
                   for e in story if e["type"] == "quality"]
        row.update({k: _shown(v) for k, v in quality_summary(quality).items() if k in columns})
        if name in reasons:
            row["stopped_because"] = reasons[name]
        row.update(point["overrides"])
        rows.append(row)
    return rows


def _last_epoch(story: list[dict]) -> dict[str, str]:
    """The summary's columns from a point's last ``epoch_done`` event ({} before one)."""
    last = next((e for e in reversed(story) if e["type"] == "epoch_done"), None)
    if last is None:
        return {}
    return {"epoch": str(last["epoch"]), "step": str(last["step"]),
            **{k: _shown(last["metrics"].get(k)) for k in SUMMARY_COLUMNS[5:]}}


def _shown(value: Any) -> str:
    """A figure as the summary prints it: 6 significant digits, '' if not measured."""
    if value is None:
        return ""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def quality_columns(sweep_job: JobSpec) -> list[str]:
    """The quality figures a summary shows: KID, FID, the face rate, and the figure the
    early-stopping rule judges (recall, say)."""
    judged = sweep_job.work.early_stop.metric
    return QUALITY_COLUMNS + [c for c in (judged, f"best_{judged}") if c not in QUALITY_COLUMNS]


def point_status(run_dir: Path) -> str:
    """How the point's last job ended (its run events), or whether it started."""
    outcome = read_outcome(run_dir)
    if outcome is None:
        return "not started"
    code = outcome.get("exit")
    return "in progress" if code is None else STATUS.get(code, f"failed (exit {code})")


def swept_keys(sweep_job: JobSpec) -> list[str]:
    """Every dotted key some point sets, in first-seen order."""
    return list(dict.fromkeys(k for p in expand_points(sweep_job.work) for k in p))


def summary_columns(rows: list[dict]) -> list[str]:
    """The summary's columns: the losses, the quality figures any point measured, and why
    points were stopped early, if any was."""
    held = dict.fromkeys(k for r in rows for k in r)  # in first-seen order
    judged = [k for k in held if k.removeprefix("best_") in QUALITY
              and k not in QUALITY_COLUMNS]  # the early-stopping rule's figure
    return SUMMARY_COLUMNS + [c for c in QUALITY_COLUMNS + judged + ["stopped_because"]
                              if c in held]


def format_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
