"""``status``: sacct's rows summed per job (restarts = REQUEUED rows), and the progress read
from the run's events (checkpoint, epoch, quality, best snapshot, outcome)."""
from __future__ import annotations

import csv

from jobs.core import events, runlock
from jobs.core.loader import load_spec
from jobs.status import _progress, sacct_table, status
from jobs.sweep import expand_points, point_name, summary, summary_columns
from tests.conftest import record_epoch, record_run

SACCT = """\
101|train-a|REQUEUED|00:00:31|0:0
101|train-a|REQUEUED|00:00:29|0:0
101|train-a|COMPLETED|00:01:02|0:0
102_0|pre|COMPLETED|00:00:10|0:0
102_1|pre|FAILED|00:00:03|1:0
bad line
"""


def test_sacct_rows_become_latest_state_and_restart_count():
    lines = sacct_table(SACCT).splitlines()
    assert lines[0].split()[:3] == ["job", "name", "state"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"101", "102_0", "102_1"}
    assert rows["101"][2] == "COMPLETED" and rows["101"][-1] == "2"
    assert rows["102_1"][2] == "FAILED" and rows["102_1"][-1] == "0"


def checkpoint(run_dir, step: int) -> None:
    events.emit(run_dir, "checkpoint", epoch=step // 28, step=step, reason="epoch",
                name=f"ckpt-{step}")


def test_progress_reads_the_last_checkpoint_and_epoch(tmp_path):
    assert _progress(tmp_path) == []
    checkpoint(tmp_path, 56)
    record_epoch(tmp_path, 2)
    checkpoint(tmp_path, 84)
    record_epoch(tmp_path, 3, d_real=0.45, d_fake=0.68, g=0.71, rollbacks=1)
    out = "\n".join(_progress(tmp_path))
    assert "ckpt-84 (global step 84)" in out
    record_epoch(tmp_path, 4, g=float("nan"))  # a loss gone to NaN is recorded as null
    assert "last epoch done: 4 (d_real=0.5 d_fake=0.7 g=nan" in "\n".join(_progress(tmp_path))
    assert "last epoch done: 3 (d_real=0.45 d_fake=0.68 g=0.71, rollbacks=1)" in out
    assert "no submissions recorded" in status(tmp_path)


QUALITY = [(1, {"kid": 0.030, "kid_std": 0.001, "fid": 3.0, "face_rate": 0.2}), (2, {}),
           (3, {"kid": 0.012, "kid_std": 0.001, "fid": 1.5, "face_rate": 0.55}),
           (4, {"kid": 0.020, "kid_std": 0.001, "fid": 2.0, "face_rate": 0.5})]


def test_progress_shows_last_and_best_quality_and_the_best_snapshot(tmp_path):
    for epoch, figures in QUALITY:
        record_epoch(tmp_path, epoch, figures)
    checkpoint(tmp_path, 112)
    events.emit(tmp_path, "best", figure="kid", value=0.012, epoch=3, step=84, name="ckpt-84")
    out = "\n".join(_progress(tmp_path))
    assert "kid: last 0.02 (epoch 4), best 0.012 (epoch 3)" in out
    assert "face_rate: last 0.5 (epoch 4), best 0.55 (epoch 3)" in out
    assert f"best snapshot: {tmp_path / 'best' / 'ckpt-84'} (kid 0.012, epoch 3)" in out


def test_sweep_summary_gains_the_quality_columns_its_points_measured(write_spec, tmp_path):
    spec = load_spec(write_spec(f"""\
        kind: sweep
        name: s
        sweep:
          base: {tmp_path / 'base.yaml'}
          run_root: {tmp_path / 'sweep'}
          grid: {{train.batch_size: [32, 64]}}
        """))
    measured, plain = (tmp_path / "sweep" / point_name(p) for p in expand_points(spec.work))
    for epoch, figures in QUALITY:
        record_epoch(measured, epoch, figures)
    record_epoch(plain, 1)
    path, rows = summary(spec)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert summary_columns(rows)[-6:] == ["kid", "best_kid", "fid", "best_fid", "face_rate",
                                          "best_face_rate"]
    assert (table[0]["kid"], table[0]["best_kid"], table[0]["best_face_rate"]) == \
        ("0.02", "0.012", "0.55")
    assert table[1]["epoch"] == "1" and table[1]["kid"] == ""


def test_status_names_the_lock_holder_and_the_last_outcome(tmp_path):
    lock = runlock.RunLock(tmp_path, runlock.this_process())
    lock.acquire()
    record_run(tmp_path, 75, "88")
    text = status(tmp_path)
    lock.release()
    assert f"held by: a run outside Slurm on host {lock.me.host} (pid {lock.me.pid})" in text
    assert "last job to end here: 88, exit 75 (checkpointed after a stop signal" in text
    assert "held by" not in status(tmp_path)
