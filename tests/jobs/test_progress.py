"""What a waiting submission shows of its training: the epochs its job records as run
events, never its log."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from jobs import progress
from jobs.core import events

METRICS = {"d_real": 0.6114, "d_fake": 0.402, "g": 1.2, "rollbacks": 0, "secs": 3.0}


def epoch(n: int, job: str = "7") -> dict:
    return events.make("epoch_done", job=job, epoch=n, epochs=40, step=8 * n,
                       metrics={**METRICS, "g": 1.2 + n / 100})


def quality(n: int, job: str = "7") -> dict:
    return events.make("quality", job=job, epoch=n, kimg=n * 0.5, seconds=4.2,
                       figures={"kid": 0.0123, "face_rate": 0.4, "fid": float("nan")})


def test_only_complete_lines_are_read_and_each_once(tmp_path):
    tail = events.Tail(tmp_path)
    assert tail.new() == []  # not created yet
    line = events.EVENTS_NAME
    events.emit(tmp_path, "requeue", by="submitit")
    with open(tmp_path / line, "a") as f:
        f.write('{"v": 1, "type": "requeue", "by"')  # half a line: waits
    assert [e["type"] for e in tail.new()] == ["requeue"]
    with open(tmp_path / line, "a") as f:
        f.write(': "slurm"}\n')
    assert tail.new() == [] and tail.new() == []  # not an event of the schema: skipped


def test_each_epoch_once_with_the_latest_quality_figures():
    shown = []
    lines = progress.EpochEvents(lambda *args: shown.append(args))
    lines.read([epoch(1), events.make("checkpoint", epoch=1, step=8, reason="epoch 1",
                                      name="ckpt-8"),
                quality(2), epoch(2), epoch(2), epoch(3)])
    assert shown == [(1, 40, "d_real=0.611 d_fake=0.402 g=1.210"),
                     (2, 40, "d_real=0.611 d_fake=0.402 g=1.220 kid=0.0123 face_rate=0.4 "
                             "fid=nan"),
                     (3, 40, "d_real=0.611 d_fake=0.402 g=1.230 kid=0.0123 face_rate=0.4 "
                             "fid=nan (epoch 2)")]
    nan = events.make("epoch_done", epoch=4, epochs=40, step=32,
                      metrics={**METRICS, "g": float("nan")})
    assert nan["metrics"]["g"] is None  # a NaN loss is recorded as null, shown as nan
    lines.read(events.parse(json.dumps(nan).encode() + b"\n"))
    assert shown[-1][2].startswith("d_real=0.611 d_fake=0.402 g=nan")


class FakeJob:
    """A submitit job whose rank 0 records ``new`` events, one per poll, then ends."""

    def __init__(self, run_dir: Path, new: list[dict], job_id: str = "7"):
        self.run_dir, self.new, self.job_id = run_dir, new, job_id

    def done(self) -> bool:
        if self.new:
            event = self.new.pop(0)
            fields = {k: v for k, v in event.items() if k in events.TYPES[event["type"]]}
            events.emit(self.run_dir, event["type"], job=event["job"], **fields)
            return False
        return True


def test_a_batch_log_gets_one_plain_line_per_epoch(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(progress.runtime, "show_progress", lambda: False)
    earlier = epoch(9, job="6")  # a job before this one, in the same run directory
    job = FakeJob(tmp_path, [earlier, epoch(1), quality(1), epoch(2)])
    with caplog.at_level(logging.INFO, logger="jobs.progress"):
        progress.follow(job, tmp_path, poll_seconds=0)
    assert [r.getMessage() for r in caplog.records] == [
        "training: epoch 1/40 d_real=0.611 d_fake=0.402 g=1.210",
        "training: epoch 2/40 d_real=0.611 d_fake=0.402 g=1.220 kid=0.0123 face_rate=0.4 "
        "fid=nan (epoch 1)"]


def test_a_terminal_gets_a_bar_over_the_epochs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress.runtime, "show_progress", lambda: True)
    job = FakeJob(tmp_path, [epoch(1), epoch(2)])
    progress.follow(job, tmp_path, poll_seconds=0)
    bar = capsys.readouterr().err
    assert "training:" in bar and "2/40" in bar and "g=1.22" in bar, bar
