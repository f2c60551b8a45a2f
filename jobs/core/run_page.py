"""A training run's page, ``RUN_DIR/report.html``: what a researcher looks at to judge a run,
in one self-contained file that any browser opens from the shared filesystem.

Everything on it comes from what the run directory already holds, never a second
bookkeeping: the run's events (``events.jsonl``: the jobs that ran, their spec, device and
ranks, each epoch's losses, each quality measurement, the best snapshot, how each job
ended), the sample grids the trainer draws each epoch (``samples/``) and the figures of any
``kind: generate`` measurement written inside the run (``*/figures.json``). The trainer
rewrites the page after each quality measurement and the runner when the job ends, so it
stays current while the job runs; ``python -m jobs report RUN_DIR`` writes it any time.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from jobs.core import events, pages
from jobs.core.figures import QUALITY, RANKED, best_row
from jobs.core.rundir import SPEC_FILE, sample_grid, sample_grids

NOTABLE = ("job_started", "stop_signal", "requeue", "stall", "early_stop", "best", "outcome")
NOT_CURVES = ("secs", "rollbacks", "saves")


def latest_by_epoch(story: list[dict], event_type: str) -> list[dict]:
    """The events of a type, one per epoch: an epoch redone after a kill appears twice in
    the record, and the later one is right."""
    by_epoch = {e["epoch"]: e for e in story if e["type"] == event_type}
    return [by_epoch[k] for k in sorted(by_epoch)]


def job_rows(story: list[dict]) -> list[dict[str, Any]]:
    """One row per job that started training here: when, where, on what, and how it ended
    (its own outcome: same host and process), oldest first."""
    rows = []
    for i, started in enumerate(story):
        if started["type"] != "job_started":
            continue
        later = story[i + 1:]
        end = next((e for e in later if e["type"] == "outcome" and e["rank"] == 0
                    and events.same_process(e, started)), None)
        rows.append({"time": started["time"], "job": started["job"] or "-",
                     "host": started["host"], "ranks": started["ranks"],
                     "device": started["device"], "restart": started["restart"],
                     "link": started["link"],
                     "ended": f"exit {end['exit']}: {end['meaning']}" if end else
                     "no outcome: still running, or killed outright"})
    return rows


def timeline(story: list[dict]) -> list[dict[str, str]]:
    """The events a person reads a run's story by (starts, signals, requeues, stalls, new
    bests, outcomes), with what each says; the per-epoch ones are the curves."""
    shown = []
    for e in story:
        if e["type"] not in NOTABLE:
            continue
        said = {k: v for k, v in e.items() if k not in (*events.COMMON, "spec")}
        shown.append({"time": e["time"], "type": e["type"], "job": e["job"] or "-",
                      "rank": e["rank"], "host": e["host"],
                      "what": ", ".join(f"{k}={v}" for k, v in said.items())})
    return shown


def spec_text(run_dir: Path, story: list[dict]) -> tuple[str, str]:
    """The spec the last job ran with (its ``job_started`` event: the whole spec, secrets
    already masked) and where it came from; a run from before that event shows its
    ``train_spec.yaml`` (the train section, which holds no secrets)."""
    started = next((e for e in reversed(story) if e["type"] == "job_started"
                    and e.get("spec")), None)
    if started is not None:
        return (yaml.safe_dump(started["spec"], sort_keys=False),
                f"the spec of the last job ({started['time']}), env: values shown as ***")
    path = run_dir / SPEC_FILE
    if path.exists():
        return path.read_text(), f"{SPEC_FILE} (the train section)"
    return "", "no spec recorded yet"


def curves(story: list[dict]) -> dict[str, str | None]:
    """The losses and the discriminator's accuracies per epoch, and each quality figure
    against kimg, as inline PNGs."""
    done = latest_by_epoch(story, "epoch_done")
    names = list(dict.fromkeys(k for e in done for k in e["metrics"] if k not in NOT_CURVES))

    def series(keys):
        return {k: [(e["epoch"], e["metrics"][k]) for e in done
                    if e["metrics"].get(k) is not None] for k in keys}

    quality = latest_by_epoch(story, "quality")
    figures = dict.fromkeys(f for e in quality for f in e["figures"]
                            if f in QUALITY and not f.endswith("_std"))  # KID's error
    return {
        "losses": pages.overlay(series([k for k in names if "acc" not in k]), "epoch",
                                "loss (epoch mean)"),
        "accuracy": pages.overlay(series([k for k in names if "acc" in k]), "epoch",
                                  "D accuracy (epoch mean)"),
        "quality": pages.line_panels({f: [(e["kimg"], e["figures"][f]) for e in quality
                                          if e["figures"].get(f) is not None]
                                      for f in figures}, "kimg"),
    }


def best_snapshot(story: list[dict]) -> dict[str, Any] | None:
    """The best snapshot: the last ``best`` event (``checkpoint.keep_best``), else the
    measured epoch best by the first ranked figure measured (KID before FID ...), with the
    figures measured at its epoch."""
    quality = latest_by_epoch(story, "quality")
    kept = next((e for e in reversed(story) if e["type"] == "best"), None)
    if kept is not None:
        epoch, how = kept["epoch"], (f"kept by checkpoint.keep_best ({kept['figure']}), "
                                     f"best/{kept['name']}")
    else:
        rows = [{"epoch": e["epoch"], **e["figures"]} for e in quality]
        figure = next((f for f in RANKED if any(r.get(f) is not None for r in rows)), None)
        row = best_row(rows, figure) if figure else None
        if row is None:
            return None
        epoch, how = row["epoch"], f"the measured epoch with the best {figure} (none kept)"
    figures = next((e["figures"] for e in quality if e["epoch"] == epoch), {})
    return {"epoch": epoch, "how": how,
            "figures": [(k, f"{v:.4g}" if isinstance(v, float) else v)
                        for k, v in figures.items()]}


def sample_strip(run_dir: Path, best_epoch: int | None) -> list[dict[str, Any]]:
    """The sample grids over the epochs (at most ``pages.STRIP_MAX``, the first, the last
    and the best's among them), each as an inline JPEG with its epoch."""
    found = sample_grids(run_dir)
    keep = [item for item in found if item[0] == best_epoch]
    strip = []
    for epoch, path in pages.spread(found, pages.STRIP_MAX, keep):
        uri = pages.image_uri(path, jpeg=True)
        if uri:
            strip.append({"epoch": epoch, "uri": uri})
    return strip


def offline_figures(run_dir: Path) -> list[dict[str, Any]]:
    """The figures of ``kind: generate`` measurements written inside the run directory
    (``RUN_DIR/*/figures.json``: KID beside real images and the untrained generator,
    classifier scores, ...), each as rows of (figure, {column: value})."""
    found = []
    for path in sorted(run_dir.glob("*/figures.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows = [(k, _cells(v)) for k, v in record.items() if _cells(v)]
        found.append({"path": str(path.relative_to(run_dir)), "task": record.get("task", ""),
                      "checkpoint": Path(str(record.get("checkpoint", ""))).name,
                      "rows": rows,
                      "columns": list(dict.fromkeys(c for _, cells in rows for c in cells))})
    return found


def _cells(value: Any) -> dict[str, str]:
    """A figure's values by column: a number alone, or {real, generated, ...}: a number or
    [mean, std]."""
    def shown(v):
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f"{v:.4g}"
        if isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
            return f"{v[0]:.4g} ± {v[1]:.2g}"
        return None

    if isinstance(value, dict):
        return {k: s for k, v in value.items() if (s := shown(v)) is not None}
    s = shown(value)
    return {"value": s} if s is not None else {}


def context(run_dir: Path) -> dict[str, Any]:
    story = events.read(run_dir)
    jobs = job_rows(story)
    best = best_snapshot(story)
    spec, spec_source = spec_text(run_dir, story)
    done = latest_by_epoch(story, "epoch_done")
    best_grid = sample_grid(run_dir, best["epoch"]) if best else None
    return {"title": run_dir.name, "run_dir": str(run_dir.resolve()), "jobs": jobs,
            "last": jobs[-1] if jobs else None, "timeline": timeline(story),
            "progress": f"epoch {done[-1]['epoch']} of {done[-1]['epochs']}, step "
                        f"{done[-1]['step']}" if done else "no epoch finished yet",
            "spec": spec, "spec_source": spec_source, "curves": curves(story),
            "best": best, "best_grid": pages.image_uri(best_grid)
            if best_grid and best_grid.exists() else None,
            "strip": sample_strip(run_dir, best["epoch"] if best else None),
            "offline": offline_figures(run_dir)}


def write_run_page(run_dir: str | Path) -> Path:
    """``RUN_DIR/report.html``, rewritten whole."""
    run_dir = Path(run_dir)
    return pages.write_page(run_dir / pages.PAGE_NAME, "run.html.j2", context(run_dir))
