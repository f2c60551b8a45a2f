"""``status``: sacct's rows summed per job (restarts = REQUEUED rows), and the progress read
from the run directory (the checkpoint index file and metrics.csv)."""
from __future__ import annotations

import csv
import json

from jobs.core import runlock
from jobs.core.chain import record_outcome
from jobs.core.loader import load_spec
from jobs.status import _progress, sacct_table, status
from jobs.sweep import expand_points, point_name, summary, summary_columns

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


def test_progress_reads_the_index_file_and_the_last_epoch(tmp_path):
    assert _progress(tmp_path) == []
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint").write_text(
        'model_checkpoint_path: "ckpt-84"\nall_model_checkpoint_paths: "ckpt-56"\n')
    (tmp_path / "metrics.csv").write_text(
        "kind,epoch,step,d_real,d_fake,g,rollbacks\n"
        "epoch,2,56,0.5,0.7,0.6,0\ninterval,3,63,0.4,0.7,0.7,0\nepoch,3,84,0.45,0.68,0.71,1\n")
    out = "\n".join(_progress(tmp_path))
    assert "ckpt-84 (global step 84)" in out
    assert "last epoch done: 3 (d_real=0.45 d_fake=0.68 g=0.71, rollbacks=1)" in out
    assert "no submissions recorded" in status(tmp_path)


QUALITY_CSV = ("kind,epoch,step,d_real,d_fake,g,rollbacks,kid,kid_std,fid,face_rate\n"
               "epoch,1,28,0.5,0.7,0.6,0,0.030,0.001,3.0,0.2\n"
               "epoch,2,56,0.5,0.7,0.6,0,,,,\n"
               "epoch,3,84,0.45,0.68,0.71,1,0.012,0.001,1.5,0.55\n"
               "epoch,4,112,0.45,0.68,0.71,1,0.020,0.001,2.0,0.5\n")


def test_progress_shows_last_and_best_quality_and_the_best_snapshot(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-112"\n')
    (tmp_path / "metrics.csv").write_text(QUALITY_CSV)
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "best.json").write_text(json.dumps(
        {"figure": "kid", "value": 0.012, "epoch": 3, "step": 84, "checkpoint": "ckpt-84"}))
    out = "\n".join(_progress(tmp_path))
    assert "kid: last 0.020 (epoch 4), best 0.012 (epoch 3)" in out
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
    for run_dir, text in ((measured, QUALITY_CSV), (plain, QUALITY_CSV.split("\n")[0]
                                                    .replace(",kid,kid_std,fid,face_rate", "")
                                                    + "\nepoch,1,28,0.5,0.7,0.6,0\n")):
        run_dir.mkdir(parents=True)
        (run_dir / "metrics.csv").write_text(text)
    path, rows = summary(spec)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert summary_columns(rows)[-6:] == ["kid", "best_kid", "fid", "best_fid", "face_rate",
                                          "best_face_rate"]
    assert (table[0]["kid"], table[0]["best_kid"], table[0]["best_face_rate"]) == \
        ("0.020", "0.012", "0.55")
    assert table[1]["epoch"] == "1" and table[1]["kid"] == ""


def test_status_names_the_lock_holder_and_the_last_outcome(tmp_path):
    lock = runlock.RunLock(tmp_path, runlock.this_process())
    lock.acquire()
    record_outcome(tmp_path, 75, "88", "n3")
    text = status(tmp_path)
    lock.release()
    assert f"held by: a run outside Slurm on host {lock.me.host} (pid {lock.me.pid})" in text
    assert "last job to end here: 88, exit 75 (checkpointed after a stop signal" in text
    assert "held by" not in status(tmp_path)
