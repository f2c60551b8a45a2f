"""``status``: sacct's rows summed per job (restarts = REQUEUED rows), and the progress read
from the run directory (the checkpoint index file and metrics.csv)."""
from __future__ import annotations

from jobs.status import _progress, sacct_table, status

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
