"""The benchmarks run in their smoke mode (``--smoke``: the fewest steps and images that still
print every row), which proves each script and its table work. Their figures are not asserted:
speed is not a test here, and smoke sizes measure nothing; the real runs (full, or ``--quick``)
are for humans and docs/benchmarks.md's tables. One exception: the chaos smoke's count of
trials lost, which must be 0 (a property, not a speed).

bench_requeue.py's smoke starts no cluster: it reads the log of a job that Slurm requeued at
its walltime. tests/system/test_slurm.py's requeue test, which has such a log, runs it through
:func:`check_requeue_smoke`; here the same table is checked on a log made to order, whose
figures are known."""
from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench import bench_requeue
from bench.table import NO_RATIO
from tests.conftest import QUIET_ENV, ROOT

REQUEUE_BENCH = ROOT / "bench" / "bench_requeue.py"


def table_rows(proc: subprocess.CompletedProcess, rows: int) -> list[str]:
    """The rows of the table a benchmark printed last: at least ``rows``, and every figure
    with a finite ratio to a baseline that is not zero."""
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = proc.stdout.split("benchmark")[-1].strip().splitlines()[1:]
    assert len(table) >= rows, proc.stdout
    for line in table:
        if NO_RATIO in line:  # a share that was 0 in the baseline: no ratio to give
            assert re.search(r"\s0(\.0+)?( ± [0-9.]+)? \S*\s+" + re.escape(NO_RATIO), line), line
            continue
        ratio = re.search(r"\s(\S+)x( \(lower is better\))?$", line.rstrip())
        assert ratio, line
        assert math.isfinite(float(ratio.group(1))) and float(ratio.group(1)) >= 0, line
    return table


def seconds(table: list[str], what: str) -> float:
    """The figure, in seconds, of the row that starts with ``what``."""
    found = [re.match(rf"{re.escape(what)}.*?\s{{2,}}([0-9.]+) s\s", line) for line in table]
    found = [m for m in found if m]
    assert len(found) == 1, f"no single row {what!r} in:\n" + "\n".join(table)
    return float(found[0].group(1))


def requeue_table(log: Path, walltime_s: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REQUEUE_BENCH), "--smoke", "--log", str(log),
                           "--walltime-s", str(walltime_s)], env=QUIET_ENV, cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def check_requeue_smoke(log: Path, walltime_s: float, requeues: int) -> list[str]:
    """bench_requeue.py's table of a real requeued job's log: one latency row per figure,
    each over every requeue Slurm recorded, the first training step no sooner than the job's
    restart; the rows, for the caller."""
    table = table_rows(requeue_table(log, walltime_s), 3)
    running = seconds(table, f"walltime signal -> job running again (mean of {requeues} "
                             "requeues)")
    step = seconds(table, f"walltime signal -> first new training step (mean of {requeues})")
    assert 0 <= running <= step, table
    assert seconds(table, "checkpoint save (mean of ") >= 0, table
    return table


SHELL, TRAINER = "2025-01-02 03:{} [rq]", "2025-01-02 03:{} INFO gan.training.{}:"
MADE_LOG = "\n".join([  # each line as slurm/common.sh and the trainer print it
    f"{SHELL.format('00:00')} job 7 start: restart 0 (requeue limit 8)",
    f"{TRAINER.format('00:20', 'loop')} epoch 1/3 done: d_real=0.5 d_fake=0.5 g=0.7 "
    "acc_real=0.50 acc_fake=0.50 secs=20.0 rollbacks=0 saves=1",
    f"{TRAINER.format('00:20', 'checkpoint')} checkpoint ckpt-28 (epoch 1, 0.10 s)",
    f"{SHELL.format('00:30')} walltime signal: asking the job to checkpoint",
    f"{TRAINER.format('00:31', 'checkpoint')} checkpoint ckpt-30 (stop signal, 0.30 s)",
    f"{SHELL.format('00:32')} checkpointed; requeueing 7 (restart 1)",
    "slurmstepd: error: a line without a stamp is not read",
    f"{SHELL.format('00:40')} job 7 start: restart 1 (requeue limit 8)",
    f"{TRAINER.format('00:50', 'loop')} resumed from ckpt-30: epoch 2, step 2 of 28 in it "
    "(global step 30)",
    f"{TRAINER.format('00:54', 'loop')} epoch 2/3 it 7/28 d_real=0.50 d_fake=0.50 g=0.70 "
    "secs=4.0 rollbacks=0 saves=1",
    f"{TRAINER.format('01:00', 'loop')} epoch 2/3 done: d_real=0.5 d_fake=0.5 g=0.7 "
    "acc_real=0.50 acc_fake=0.50 secs=10.0 rollbacks=0 saves=2",
    f"{TRAINER.format('01:00', 'checkpoint')} checkpoint ckpt-56 (epoch 2, 0.20 s)",
    f"{TRAINER.format('01:04', 'loop')} epoch 3/3 done: d_real=0.5 d_fake=0.5 g=0.7 "
    "acc_real=0.50 acc_fake=0.50 secs=14.0 rollbacks=0 saves=3",
    f"{SHELL.format('01:05')} job finished", ""])


def test_requeue_table_of_a_log_whose_figures_are_known(tmp_path):
    """Signal at :30, the job again at :40 and its first step at :54; the only whole epoch
    in one run is 4 s (20 s -> 10 s is a requeue, not an epoch); saves 0.1, 0.3, 0.2 s."""
    log = tmp_path / "rq-7.out"
    log.write_text(MADE_LOG)
    table = table_rows(requeue_table(log, 60), 3)
    assert seconds(table, "walltime signal -> job running again (mean of 1 requeues)") == 10
    assert seconds(table, "walltime signal -> first new training step (mean of 1)") == 24
    assert re.search(r"checkpoint save \(mean of 3\) vs one epoch \(median\)\s+0\.200 s\s+"
                     r"4\.000 s\s", "\n".join(table)), table
    # a log without a requeue: exit 2, naming the log and what it lacks, no traceback
    log.write_text(MADE_LOG.split("walltime signal")[0])
    proc = requeue_table(log, 60)
    assert proc.returncode == 2 and str(log) in proc.stderr, proc.stderr
    assert "lacks a walltime signal followed by a restart; a training step" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_requeue_bench_stops_waiting_with_an_error_naming_the_log(tmp_path, monkeypatch):
    """Its full run waits for the job's last line: a hang guard in polls, and a job that ended
    some other way stops the wait at once."""
    monkeypatch.setattr(bench_requeue, "POLL_S", 0)
    log = tmp_path / "rq-7.out"
    with pytest.raises(bench_requeue.LogProblem, match=re.escape(
            f"{log}: the job has not logged 'job finished' after 3 polls")):
        bench_requeue.wait_finished(log, polls=3)
    log.write_text(MADE_LOG.replace("job finished", "job failed with exit code 1 (failed with "
                                    "an error (see the log)): not requeued"))
    with pytest.raises(bench_requeue.LogProblem, match=re.escape(
            f"{log}: the job ended without finishing")):
        bench_requeue.wait_finished(log, polls=3)
    log.write_text(MADE_LOG)
    bench_requeue.wait_finished(log, polls=1)  # finished: returns at the first poll

@pytest.mark.slow
@pytest.mark.parametrize("bench, rows", [("bench_preprocess.py", 21), ("bench_train.py", 2),
                                         ("bench_step.py", 4),
                                         ("bench_models.py", 10),
                                         ("bench_faces.py", 4), ("scaling.py", 7),
                                         ("bench_recipes.py", 4),
                                         ("bench_loader.py", 10), ("chaos.py", 7)])
def test_benchmark_runs_and_prints_its_table(bench, rows):
    """chaos.py's smoke exits 0 only if every planned fault landed and every trial survived
    its faults bitwise; its table's last row counts the trials lost."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / bench), "--smoke"],
                          env=QUIET_ENV, cwd=ROOT, capture_output=True, text=True,
                          timeout=1200)  # a hang guard: the chaos smoke caps itself at 15 min
    table = table_rows(proc, rows)
    if bench == "chaos.py":
        assert re.search(r"^trials lost .*\s0 trials\s", table[-1]), table
