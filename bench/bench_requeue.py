"""Requeue latency on a real (private, single-node) Slurm cluster.

A training job with a 1-minute walltime and a 30 s early signal requeues itself until done
(slurm/train.sbatch). From its log: the time from the walltime signal to the job running
again, and to its first new training step, against the walltime; and the checkpoint save
time against an epoch.

    ./run python bench/bench_requeue.py                    # needs root (starts a testcluster)
    ./run python bench/bench_requeue.py --log RUN_DIR/logs/NAME-JOB.out [--walltime-s 120]
    ./run python bench/bench_requeue.py --smoke --log LOG  # the suite's check: no cluster

``--log`` reads the log of a train job that already ran through slurm/train.sbatch instead of
starting a cluster. ``--smoke`` is that and nothing else, for the test suite: starting a
cluster and waiting out walltimes takes minutes, and tests/system/test_slurm.py's requeue
test has just written such a log (``test_sbatch_training_requeues_itself_at_walltime``).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.table import Table  # noqa: E402
from gan.quality.digits import write_digits  # noqa: E402
from jobs.core.loader import load_spec  # noqa: E402
from jobs.scheduler import sbatch_argv  # noqa: E402

JOB_MINUTES = 1
POLL_S = 2
# a hang guard, not a speed limit: 40 epochs take minutes, each requeue waits for its
# walltime (up to 9 runs of a minute, and the pending time between them); 90 minutes of polls
MAX_POLLS = 2700

# The log's lines, as their writers print them. The batch shell (slurm/common.sh, ``log``):
# "%F %T [NAME] text"; the job (jobs/core/runtime.py, LOG_FORMAT): "%Y-%m-%d %H:%M:%S LEVEL
# logger: text". Lines without a stamp (Slurm's own, tracebacks) are not read.
STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) ")
SIGNALLED = "walltime signal: asking the job to checkpoint"           # common.sh's USR1 trap
STARTED = re.compile(r"job \S+ start: restart \d+ ")                   # run_requeueable
RESTART = re.compile(r"job \S+ start: restart [1-9]\d* ")              # ... once requeued
RESUMED = re.compile(r"\bresumed from ckpt-\d+")                       # Trainer.run
STEP = re.compile(r"\bepoch \d+/\d+ it \d+/\d+ ")                      # Trainer._log_interval
SAVED = re.compile(r"\bcheckpoint ckpt-\d+ \([^,()]+, ([0-9.]+) s\)")   # RunCheckpoints.save
EPOCH_DONE = re.compile(r"\bepoch (\d+)/\d+ done: .*\bsecs=([0-9.]+)")  # secs: since run start
FINISHED = "job finished"                                              # run_requeueable, exit 0
ENDED = re.compile(r"\bnot requeue(?:d|ing)\b")                        # every other way out


class LogProblem(RuntimeError):
    """The log does not hold what a figure needs; the message names the log."""


def when(line: str) -> dt.datetime:
    return dt.datetime.strptime(STAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S")


def first(lines: list[str], start: int, pattern: re.Pattern) -> int | None:
    """The index of the first line from ``start`` on that ``pattern`` finds, or None."""
    return next((i for i in range(start, len(lines)) if pattern.search(lines[i])), None)


def requeue_latencies(lines: list[str]) -> tuple[list[float], list[float]]:
    """For each walltime signal that was followed by a restart: seconds to the restart's
    first line, and to its first logged training step. A signal without a restart after it
    (the requeue limit, a failure) measures nothing and is left out."""
    to_running, to_step = [], []
    for i, line in enumerate(lines):
        if SIGNALLED not in line:
            continue
        start = first(lines, i, RESTART)
        if start is None:
            continue
        to_running.append((when(lines[start]) - when(line)).total_seconds())
        resumed = first(lines, start, RESUMED)
        step = None if resumed is None else first(lines, resumed, STEP)
        if step is not None:
            to_step.append((when(lines[step]) - when(line)).total_seconds())
    return to_running, to_step


def epoch_seconds(lines: list[str]) -> list[float]:
    """Each epoch's seconds: between two consecutive epochs' ends in the same run (``secs``
    counts from the run's start; a run's first epoch may be a resumed part and is not
    counted, but the next one holds the step's compilation if that part was empty: the
    table takes the median)."""
    ends, run = [], 0
    for line in lines:
        run += bool(STARTED.search(line))
        found = EPOCH_DONE.search(line)
        if found:
            ends.append((run, int(found.group(1)), float(found.group(2))))
    return [b - a for (r, e, a), (s, f, b) in zip(ends, ends[1:]) if s == r and f == e + 1]


def analyse(log: Path, walltime_s: float) -> Table:
    """The table of one train job's log (slurm/train.sbatch, requeued at least once)."""
    if not log.is_file():
        raise LogProblem(f"{log}: no such log")
    lines = [line for line in log.read_text(errors="replace").splitlines() if STAMP.match(line)]
    to_running, to_step = requeue_latencies(lines)
    saves = [float(m.group(1)) for m in map(SAVED.search, lines) if m]
    epochs = epoch_seconds(lines)
    missing = [what for what, found in (("a walltime signal followed by a restart", to_running),
                                        ("a training step after a resume", to_step),
                                        ("a checkpoint save", saves),
                                        ("two consecutive epochs in one run", epochs)) if not found]
    if missing:
        raise LogProblem(f"{log} lacks {'; '.join(missing)}: is it the log of a train job "
                         "that slurm/train.sbatch requeued at its walltime?")
    table = Table()
    table.add(f"walltime signal -> job running again (mean of {len(to_running)} requeues)",
              statistics.mean(to_running), walltime_s, "s", ".1f", higher_is_better=False)
    table.add(f"walltime signal -> first new training step (mean of {len(to_step)})",
              statistics.mean(to_step), walltime_s, "s", ".1f", higher_is_better=False)
    table.add(f"checkpoint save (mean of {len(saves)}) vs one epoch (median)",
              statistics.mean(saves), statistics.median(epochs), "s", ".3f",
              higher_is_better=False)
    return table


def wait_finished(log: Path, polls: int = MAX_POLLS) -> None:
    """Until the job logs that it finished; a clear error naming the log if it ended
    otherwise, or if it has not finished after ``polls`` polls (a hang guard)."""
    for _ in range(polls):
        text = log.read_text(errors="replace") if log.exists() else ""
        if FINISHED in text:
            return
        if ENDED.search(text):
            raise LogProblem(f"{log}: the job ended without finishing:\n{text[-2000:]}")
        time.sleep(POLL_S)
    raise LogProblem(f"{log}: the job has not logged '{FINISHED}' after {polls} polls "
                     f"({polls * POLL_S // 60} min); the log says:\n"
                     + (log.read_text(errors="replace")[-2000:] if log.exists() else "nothing"))


def run_job(folder: Path, env: dict) -> Path:
    """Submit the requeueing job to the cluster ``env`` names; its log, once it finished."""
    data = write_digits(folder / "digits.h5")
    run_dir = folder / "run"
    (run_dir / "logs").mkdir(parents=True)
    spec = folder / "rq.yaml"
    spec.write_text(f"""kind: train
name: rq
resources: {{cpus_per_task: 2, mem_gb: 2, time: {JOB_MINUTES}, signal_lead_s: 30,
             max_requeues: 8}}
train:
  data: {data}
  run_dir: {run_dir}
  epochs: 40
  log_every_steps: 1
  model: {{image_size: 16, generator_filters: [128, 128], discriminator_filters: [128, 128]}}
  optimizer: {{name: adam, learning_rate: 2.0e-4, beta_1: 0.5}}
""")
    argv = sbatch_argv(load_spec(spec))
    job = subprocess.run(argv[:1] + ["--parsable"] + argv[1:], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    log = run_dir / "logs" / f"rq-{job}.out"
    wait_finished(log)
    return log


def full_run() -> None:
    """A cluster of its own, the job, the table."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        subprocess.run([str(ROOT / "slurm/testcluster/start.sh"), str(folder / "cluster")],
                       check=True, capture_output=True)
        env = {**os.environ, "SLURM_CONF": str(folder / "cluster/etc/slurm.conf"),
               "FACEGAN_PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
        try:
            log = run_job(folder, env)
        finally:
            subprocess.run([str(ROOT / "slurm/testcluster/stop.sh"), str(folder / "cluster")],
                           capture_output=True)
        table = analyse(log, JOB_MINUTES * 60)
    table.print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, help="the table of this train job's log (a "
                        "slurm/train.sbatch job requeued at least once); no cluster is started")
    parser.add_argument("--walltime-s", type=float, default=JOB_MINUTES * 60,
                        help="that job's time limit, the latency rows' baseline (default: "
                        "%(default)g, the full run's)")
    parser.add_argument("--smoke", action="store_true", help="the test suite's check that the "
                        "table works: --log's table, never a cluster; its figures are a test's")
    args = parser.parse_args()
    if args.smoke and args.log is None:
        parser.error("--smoke reads an existing log: give --log PATH (tests/system/"
                     "test_slurm.py's requeue test writes one)")
    try:
        if args.log is None:
            full_run()
        else:
            analyse(args.log, args.walltime_s).print()
    except LogProblem as exc:  # named, no traceback: 2 for a log given that does not fit
        print(f"bench_requeue: {exc}", file=sys.stderr)
        sys.exit(1 if args.log is None else 2)


if __name__ == "__main__":
    main()
