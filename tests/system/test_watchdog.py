"""The stall watchdog in real ranks under a local ``horovodrun`` (no cluster): a read-ahead
thread that hangs mid-epoch ends the job with every thread's stack and a ``stall`` event
naming its rank; a slow but healthy job, a quality measurement twice the bound long and rank
0's figures while rank 1 waits are never taken for a stall. The frozen training thread on
the 2-node cluster, its retry on the other node and its exact end: test_multinode.py."""
from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess
import sys
from pathlib import Path

from jobs.core import events, faults
from tests.conftest import QUIET_ENV, ROOT
from tests.system.training import spec_for, train_cmd

STALL_S = 8  # configured seconds; the steps, not the machine's speed, decide where it hangs
# from the hang to the stall event: the bound, the watchdog's poll (under a second at this
# bound), the stack dump and the event. A hang guard for a loaded machine, not a speed test
MARGIN_S = 90


def horovodrun(tmp_path: Path, data: Path, run_dir: Path, fault: str, *sets: str
               ) -> subprocess.CompletedProcess:
    tool = shutil.which("horovodrun", path=str(Path(sys.executable).parent))
    return subprocess.run([tool, "-np", "2", "-H", "localhost:2", "--gloo", *train_cmd(
        *spec_for(tmp_path, data, run_dir, "train.batch_size=32", *sets))],
        env={**QUIET_ENV, faults.VARIABLE: fault}, cwd=ROOT, capture_output=True, text=True,
        timeout=900)


def stamp(line: str) -> dt.datetime:
    """The time a log line was written (horovodrun puts ``[R]<stderr>:`` before it)."""
    found = re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", line)
    assert found, line
    return dt.datetime.strptime(found.group(0), "%Y-%m-%d %H:%M:%S")


def test_a_hung_read_ahead_thread_ends_the_job_with_stacks_naming_its_rank(digits_tiny,
                                                                             tmp_path):
    """256 digits, 2 ranks of 32: 4 steps an epoch. Rank 1's reader hangs fetching step 7's
    batch (epoch 2): rank 1 waits for a batch, rank 0 waits inside step 7 for rank 1."""
    run_dir = tmp_path / "run"
    proc = horovodrun(tmp_path, digits_tiny, run_dir, "hang_read@1:6",
                      f"train.watchdog.stall_s={STALL_S}", "train.epochs=3")
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0, text[-3000:]
    assert "test fault: rank 1's read-ahead thread hangs reading step 7's batch" in text
    assert "made no progress for" in text and "rank 1 on " in text, text[-3000:]
    assert "stopped first: it stopped outside step 7" in text
    # faulthandler's stacks: the hung reader in the fault hook, the training thread waiting
    assert "most recent call first" in text and 'faults.py", line' in text, text[-5000:]
    assert "in before_read" in text and "in read_ahead" in text, text[-5000:]
    stalls = events.read(run_dir, "stall")
    assert stalls and {e["culprit_rank"] for e in stalls} == {1}, stalls
    assert all(e["step"] == 6 and e["bound_s"] == STALL_S for e in stalls), stalls
    fault_at = stamp(next(line for line in text.splitlines() if "test fault:" in line))
    first = min(dt.datetime.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S") for e in stalls)
    assert (first - fault_at).total_seconds() <= STALL_S + MARGIN_S
    # ended outright by its watchdog, or (rank 0, its allreduce broken by rank 1's exit)
    # with the stall's code: either way a retry resumes
    assert all(e["exit"] == 76 for e in events.read(run_dir, "outcome")), \
        events.read(run_dir, "outcome")
    assert list((run_dir / "heartbeats").glob("rank-*.json")) != []


def test_slow_steps_long_measurements_and_rank_0s_figures_are_not_stalls(digits_tiny,
                                                                         tmp_path):
    """Rank 0 sleeps 3 s before every step from the 3rd (rank 1 waits for it inside the
    step), and 16 s, twice the bound, in each quality measurement (a named pause); rank 0
    writes the epoch's figures while rank 1 goes on to wait in the next step. Never a
    stall: the run finishes."""
    run_dir = tmp_path / "run"
    proc = horovodrun(tmp_path, digits_tiny, run_dir,
                      f"slow@0:2:3,slow_quality@0:0:{2 * STALL_S}",
                      f"train.watchdog.stall_s={STALL_S}", "train.epochs=2",
                      "train.metrics.every_epochs=1", "train.metrics.count=40")
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    assert text.count("test fault: rank 0 sleeps 16.0 s in the quality measurement") == 2
    assert "stall watchdog" not in text and not events.read(run_dir, "stall")
    assert len(events.read(run_dir, "quality")) == 2
