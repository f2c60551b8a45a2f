"""``python -m jobs status``: what happened to the jobs submitted from a spec or run directory.

The submissions recorded under ``work_dir/logs`` (by ``jobs.submit``), what Slurm's accounting
says of them (state, restarts: what only Slurm knows), the run directory's lock (who holds it
now: a live fact no record can keep) and the rest from the run's events
(``jobs/core/events.py``): last checkpoint, last epoch, quality, best snapshot, last outcome.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from jobs.core import events, runlock
from jobs.core.chain import read_outcome
from jobs.core.figures import RANKED, quality_summary
from jobs.core.rundir import BEST_DIR
from jobs.submit import RECORDS


def status(work_dir: Path) -> str:
    """Submissions recorded under ``work_dir``, what Slurm says of them (state, restarts), and
    the training progress on disk (last checkpoint, last epoch)."""
    lines = []
    records_file = work_dir / "logs" / RECORDS
    records = [json.loads(line) for line in records_file.read_text().splitlines() if line] \
        if records_file.exists() else []
    for rec in records:
        lines.append(f"{rec['time']}  {rec['executor']:<5} {rec['kind']:<10} {rec['name']}  "
                     f"jobs {', '.join(rec['job_ids'])}")
    if not records:
        lines.append(f"{work_dir}: no submissions recorded")
    slurm_ids = [i for rec in records if rec["executor"] == "slurm" for i in rec["job_ids"]]
    if slurm_ids:
        lines += ["", _sacct(slurm_ids)]
    lines += _progress(work_dir) + _holder_and_outcome(work_dir)
    return "\n".join(lines)


def _holder_and_outcome(work_dir: Path) -> list[str]:
    """Which job holds the run directory now, and how the last one there ended."""
    lock = work_dir / runlock.LOCK_NAME
    holder = runlock.read_holder(lock)
    out = [f"held by: {holder.describe()} ({lock})"] if holder else []
    outcome = read_outcome(work_dir)
    who = (outcome or {}).get("job") or "a run outside Slurm"
    if outcome and outcome.get("exit") is None:
        out.append(f"training since {outcome.get('time')}: {who} (or it was killed)")
    elif outcome:
        out.append(f"last job to end here: {who}, exit {outcome.get('exit')} "
                   f"({outcome.get('meaning')}), {outcome.get('time')}")
    return [""] + out if out else []


def _progress(work_dir: Path) -> list[str]:
    story = events.read(work_dir)
    checkpoint = _last(story, "checkpoint")
    if checkpoint is None:
        return []
    out = ["", f"latest checkpoint: {work_dir / 'checkpoints' / checkpoint['name']} (global "
               f"step {checkpoint['step']})"]
    epoch = _last(story, "epoch_done")
    if epoch is not None:
        m = epoch["metrics"]
        out.append(f"last epoch done: {epoch['epoch']} (d_real={_shown(m.get('d_real'))} "
                   f"d_fake={_shown(m.get('d_fake'))} g={_shown(m.get('g'))}, "
                   f"rollbacks={m.get('rollbacks')})")
    q = quality_summary([{"epoch": e["epoch"], **e["figures"]}
                         for e in story if e["type"] == "quality"])
    out += [f"{figure}: last {_shown(q[figure])} (epoch {q[figure + '_epoch']}), best "
            f"{_shown(q['best_' + figure])} (epoch {q['best_' + figure + '_epoch']})"
            for figure in RANKED if figure in q]
    best = _last(story, "best")
    if best is not None:
        out.append(f"best snapshot: {work_dir / BEST_DIR / best['name']} "
                   f"({best['figure']} {best['value']:.6g}, epoch {best['epoch']})")
    return out


def _shown(value: float | None) -> str:
    """A figure as status prints it; one recorded as null (NaN) as 'nan'."""
    return "nan" if value is None else f"{value:.4g}"


def _last(story: list[dict], event_type: str) -> dict | None:
    return next((e for e in reversed(story) if e["type"] == event_type), None)


def _sacct(ids: list[str]) -> str:
    """State per job, with the number of times Slurm requeued it (sacct --duplicates)."""
    if shutil.which("sacct") is None:
        return "(sacct not found: Slurm state unavailable on this machine)"
    base_ids = sorted({i.split("_")[0] for i in ids})
    cmd = ["sacct", "-X", "-n", "-P", "--duplicates", "-j", ",".join(base_ids),
           "-o", "JobID,JobName,State,Elapsed,ExitCode"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        return f"(sacct failed: {proc.stderr.strip()})"
    return sacct_table(proc.stdout)


def sacct_table(stdout: str) -> str:
    """``sacct -X -n -P --duplicates -o JobID,JobName,State,Elapsed,ExitCode`` output as a
    table: each job's latest state, and how often it was requeued (its REQUEUED rows)."""
    latest: dict[str, list[str]] = {}
    restarts: dict[str, int] = {}
    for line in stdout.splitlines():
        row = line.split("|")
        if len(row) < 5:
            continue
        restarts[row[0]] = restarts.get(row[0], 0) + (row[2] == "REQUEUED")
        latest[row[0]] = row
    out = [f"{'job':<16} {'name':<24} {'state':<12} {'elapsed':>10} {'exit':<6} restarts"]
    for job_id, r in latest.items():
        out.append(f"{r[0]:<16} {r[1]:<24} {r[2]:<12} {r[3]:>10} {r[4]:<6} "
                   f"{restarts.get(job_id, 0)}")
    return "\n".join(out)
