"""Expand a sweep spec into its points: one validated train spec per Slurm array task.

Each point is the base train spec plus a few dotted overrides (the same syntax as ``--set``);
its run directory is ``run_root/<overrides>`` so every task resumes independently.
"""
from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import re
from pathlib import Path
from typing import Any

from gan.families import READS
from jobs.core import events, exitcodes
from jobs.core.chain import read_outcome
from jobs.core.figures import QUALITY, quality_summary
from jobs.core.files import atomic_write_text
from jobs.core.loader import SpecError, expect_kind, load_spec
from jobs.core.schema import JobSpec, SweepSpec
from jobs.core.sweep_schema import DRAWN, STUDIED, search_space
from jobs.early_stop import stop_reasons

log = logging.getLogger(__name__)


class StudyError(RuntimeError):
    """A TPE or CMA-ES study that could not be asked: rank 0 never asked, an asking marker
    was never freed, the journal could not be read."""


def expand_points(sweep: SweepSpec) -> list[dict[str, Any]]:
    """The points fixed up front, in array order: the grid's combinations (in key order), or
    the random trials, then the explicit points. A TPE or CMA-ES sweep's trials are asked
    for as its tasks start (``point_overrides``): only its explicit points are fixed."""
    if sweep.search == "random":
        from jobs import study  # Optuna: only for the searches that draw

        points = study.random_points(sweep)
    elif sweep.search in STUDIED or not sweep.grid:
        points = []
    else:
        points = [dict(zip(sweep.grid, combo)) for combo in itertools.product(*sweep.grid.values())]
    points.extend(dict(p) for p in sweep.points)
    return points


def drawn_count(sweep: SweepSpec) -> int:
    """How many points are drawn trials, numbered in their names (the first ones)."""
    return sweep.trials if sweep.search in DRAWN else 0


def asked_count(sweep: SweepSpec) -> int:
    """How many points are asked of a study as their tasks start (the first ones): a TPE or
    CMA-ES sweep's trials; the rest are fixed up front (``expand_points``)."""
    return sweep.trials if sweep.search in STUDIED else 0


def point_count(sweep: SweepSpec) -> int:
    """The sweep's points: its array's size."""
    return asked_count(sweep) + len(expand_points(sweep))


def point_name(overrides: dict[str, Any]) -> str:
    """A readable, filesystem-safe directory name, e.g. ``learning_rate=0.0001,batch_size=32``."""
    parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in overrides.items()]
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", ",".join(parts)) or "base"


def indexed_name(sweep: SweepSpec, index: int, overrides: dict[str, Any] | None) -> str:
    """Point ``index``'s directory name. Drawn trials are numbered first
    (``trial03,learning_rate=0.0002``): two draws may pick the same values. A TPE or CMA-ES
    trial not asked for yet is just ``trial03``."""
    if index >= drawn_count(sweep):
        return point_name(overrides or {})
    return trial_name(index, overrides)


def trial_name(index: int, overrides: dict[str, Any] | None) -> str:
    """A drawn trial's directory name: ``trial03,<its values>``, or ``trial03`` before a
    study asked for its values."""
    return f"trial{index:02d}" + ("" if overrides is None else "," + point_name(overrides))


def point_names(sweep: SweepSpec) -> list[str]:
    """Every fixed point's directory name under run_root (grid and random sweeps)."""
    return [indexed_name(sweep, k, p) for k, p in enumerate(expand_points(sweep))]


def point_overrides(sweep_job: JobSpec, index: int, ask: str = "look") -> dict[str, Any] | None:
    """Array task ``index``'s overrides. A TPE or CMA-ES trial's come from the study: asked
    for (``ask="ask"``, rank 0 as its task starts), waited for (``"wait"``, the other ranks)
    or only looked up (``"look"``: None if not asked for yet)."""
    sweep = sweep_job.work
    count = point_count(sweep)
    if not 0 <= index < count:
        raise SpecError([f"{sweep_job.source}: sweep has {count} points; "
                         f"index {index} is out of range"])
    if is_asked(sweep, index):
        from jobs import study  # Optuna: only for the searches that draw

        try:
            return study.trial_point(sweep_job, index, ask)
        except (RuntimeError, OSError, ValueError) as exc:  # a journal it could not use
            raise StudyError(f"{type(exc).__name__}: {exc}") from exc
    return expand_points(sweep)[index - asked_count(sweep)]


def point_spec(sweep_job: JobSpec, index: int, ask: str = "look") -> JobSpec | None:
    """The train spec of array task ``index`` (None: a study's trial not asked for yet)."""
    overrides = point_overrides(sweep_job, index, ask)
    if overrides is None:
        return None
    return overrides_spec(sweep_job, indexed_name(sweep_job.work, index, overrides), overrides)


def study_exit(sweep_job: JobSpec, index: int) -> int | None:
    """The exit code of point ``index``'s trial if its study holds it finished (never
    trained again), else None (and always for grid and random sweeps)."""
    if not is_asked(sweep_job.work, index):
        return None
    from jobs import study  # Optuna: only for the searches that draw

    return study.told_exit(sweep_job, index)


def tell_study(sweep_job: JobSpec, index: int, code: int, run_dir: Path | None) -> None:
    """Tell point ``index``'s trial how it ended (TPE, CMA-ES). A study that cannot be told
    is a warning: the trial stays running, and is told when the sweep runs again."""
    if not is_asked(sweep_job.work, index):
        return
    from jobs import study  # Optuna: only for the searches that draw

    try:
        study.tell(sweep_job, index, code, run_dir)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        log.warning("sweep study: point %d not told (%s: %s); it is told when the sweep "
                    "runs again", index, type(exc).__name__, exc)


def is_asked(sweep: SweepSpec, index: int) -> bool:
    """Whether point ``index`` is a trial its task asks the study for (TPE, CMA-ES)."""
    return index < asked_count(sweep)


def overrides_spec(sweep_job: JobSpec, name: str, overrides: dict[str, Any]) -> JobSpec:
    """The base train spec with ``overrides``, training in ``run_root/name``."""
    run_dir = Path(sweep_job.work.run_root) / name
    items = list(overrides.items()) + [("train.run_dir", str(run_dir))]
    spec = load_spec(sweep_job.work.base, items)
    expect_kind(spec, "train", f"{sweep_job.source}: sweep.base: {sweep_job.work.base}",
                "a sweep")
    spec.resources = sweep_job.resources  # the sweep's resources apply to every point
    if spec.work.tracking.experiment is None:  # tracked, the points are grouped by sweep
        spec.work.tracking.experiment = sweep_job.name
    return spec


def checked_points(sweep_job: JobSpec) -> list[tuple[str, str, dict[str, Any]]]:
    """(label, directory name, overrides) of what validation loads: every fixed point, and
    for TPE or CMA-ES, whose trials are not known before they are asked for, the space's two
    corners (every key at its low end, then its high) and each choice's other values."""
    sweep = sweep_job.work
    offset = asked_count(sweep)
    out = [(f"sweep point {offset + k}", indexed_name(sweep, offset + k, p), p)
           for k, p in enumerate(expand_points(sweep))]
    if sweep.search not in STUDIED:
        return out
    space = search_space(sweep)
    low = {key: args[0] for key, dist in space.items() for args in dist.values()}
    high = {key: args[-1] for key, dist in space.items() for args in dist.values()}
    out += [("sweep space, every key at its low end", "space-low", low),
            ("sweep space, every key at its high end", "space-high", high)]
    for key, dist in space.items():
        for value in dist.get("choice", [])[1:-1]:
            out.append((f"sweep space, {key}={value}", "space-choice", {**low, key: value}))
    return out


def validate_points(sweep_job: JobSpec) -> list[str]:
    """Problems in any point checked (e.g. a misspelt grid key), each naming the point."""
    problems = []
    for label, name, overrides in checked_points(sweep_job):
        try:
            overrides_spec(sweep_job, name, overrides)
        except SpecError as exc:
            problems += [f"{p} [{label}]" for p in exc.problems]
    return problems


SUMMARY_COLUMNS = ["point", "run_dir", "status", "epoch", "step", *READS["sweep_summary"]]
QUALITY_COLUMNS = ["kid", "best_kid", "fid", "best_fid", "face_rate", "best_face_rate"]
STATUS = {exitcodes.OK: "done", exitcodes.EARLY_STOPPED: "stopped",
          exitcodes.REQUEUE: "interrupted"}


POINTS_FILE = "points.json"  # in run_root: which point is which, for readers without the spec


def points_record(sweep_job: JobSpec) -> dict[str, Any]:
    """What a view of the sweep needs without its spec (which names a base spec that may
    have moved): each array index's point name and overrides (a TPE or CMA-ES trial's as its
    study holds them, with its trial number), the swept keys and the figure judged."""
    sweep = sweep_job.work
    fixed, points = iter(expand_points(sweep)), []
    for i in range(point_count(sweep)):
        asked = is_asked(sweep, i)  # filled in by with_asked
        overrides = {} if asked else next(fixed)
        points.append({"index": i, "name": indexed_name(sweep, i, None if asked else overrides),
                       "overrides": overrides})
    record = {"metric": sweep.early_stop.metric, "quality": quality_columns(sweep_job),
              "keys": swept_keys(sweep_job), "search": sweep.search, "trials": sweep.trials,
              "points": points}
    return with_asked(record, Path(sweep.run_root))


def with_asked(record: dict[str, Any], run_root: Path) -> dict[str, Any]:
    """``record`` with the trials a TPE or CMA-ES study holds: the journal, not
    ``points.json``, is the record of which task asked for which point (two tasks starting
    together may each write ``points.json`` before seeing the other's trial)."""
    if record.get("search") not in STUDIED:
        return record
    from jobs import study  # Optuna: only for the searches that draw

    asked = study.asked_points(run_root)
    for point in record["points"]:
        if point["index"] in asked and point["index"] < record["trials"]:
            found = asked[point["index"]]
            point.update(name=trial_name(point["index"], found["overrides"]),
                         overrides=found["overrides"], trial=found["trial"])
    return record


def write_points(sweep_job: JobSpec) -> Path:
    """``run_root/points.json`` (every array task writes it, atomically, as it starts)."""
    path = Path(sweep_job.work.run_root) / POINTS_FILE
    atomic_write_text(path, json.dumps(points_record(sweep_job), indent=1) + "\n")
    return path


def read_points(run_root: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((Path(run_root) / POINTS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return with_asked(record, Path(run_root)) \
        if isinstance(record, dict) and "points" in record else None


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
        if "trial" in point:  # which trial of the study (optuna-dashboard's number)
            row["optuna_trial"] = str(point["trial"])
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
    sweep = sweep_job.work
    drawn = list(search_space(sweep)) if sweep.search in DRAWN else list(sweep.grid)
    return list(dict.fromkeys([*drawn, *(k for p in sweep.points for k in p)]))


def summary_columns(rows: list[dict]) -> list[str]:
    """The summary's columns: the losses, the quality figures any point measured, and why
    points were stopped early, if any was."""
    held = dict.fromkeys(k for r in rows for k in r)  # in first-seen order
    judged = [k for k in held if k.removeprefix("best_") in QUALITY
              and k not in QUALITY_COLUMNS]  # the early-stopping rule's figure
    return SUMMARY_COLUMNS + [c for c in ["optuna_trial", *QUALITY_COLUMNS, *judged,
                                          "stopped_because"] if c in held]


def format_table(rows: list[dict], columns: list[str]) -> str:
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(lines)
