"""What a waiting submission shows of its training: the epochs of the job's own log."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

from jobs import progress

EPOCH = ("2026-12-06 10:00:0{n} INFO gan.training.loop: epoch {n}/40 done: d_real=0.61{n} "
         "d_fake=0.402 g=1.2{n} acc_real=0.71 acc_fake=0.80 secs=3.{n} rollbacks=0 saves={n}")
QUALITY = ("2026-12-06 10:00:02 INFO gan.training.loop: epoch 2 quality: kid=0.0123 "
           "face_rate=0.4 (4.2 s)")


def test_only_complete_lines_are_read_and_each_once(tmp_path):
    log_file = tmp_path / "job.err"
    tail = progress.LogTail(log_file)
    assert tail.new_lines() == []  # not created yet
    log_file.write_text("first\nsec")
    assert tail.new_lines() == ["first"]
    with open(log_file, "a") as f:
        f.write("ond\nthird\n")
    assert tail.new_lines() == ["second", "third"] and tail.new_lines() == []


def test_each_epoch_once_with_the_latest_quality_figures():
    shown = []
    lines = progress.EpochLines(lambda *args: shown.append(args))
    lines.read([EPOCH.format(n=1), "2026 INFO gan.training.loop: epoch 2/40 it 7/8 d_real=0.5",
                QUALITY, EPOCH.format(n=2), EPOCH.format(n=2), EPOCH.format(n=3)])
    assert shown == [(1, 40, "d_real=0.611 d_fake=0.402 g=1.21"),
                     (2, 40, "d_real=0.612 d_fake=0.402 g=1.22 kid=0.0123 face_rate=0.4"),
                     (3, 40, "d_real=0.613 d_fake=0.402 g=1.23 kid=0.0123 face_rate=0.4 "
                             "(epoch 2)")]


class FakeJob:
    """A submitit job whose rank 0 writes ``lines`` to its log, one per poll, then ends."""

    def __init__(self, stderr: Path, lines: list[str]):
        self.paths = SimpleNamespace(stderr=stderr)
        self.lines = lines

    def done(self) -> bool:
        if self.lines:
            with open(self.paths.stderr, "a") as f:
                f.write(self.lines.pop(0) + "\n")
            return False
        return True


def test_a_batch_log_gets_one_plain_line_per_epoch(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(progress.runtime, "show_progress", lambda: False)
    job = FakeJob(tmp_path / "0_log.err", [EPOCH.format(n=1), QUALITY, EPOCH.format(n=2)])
    with caplog.at_level(logging.INFO, logger="jobs.progress"):
        progress.follow(job, poll_seconds=0)
    assert [r.getMessage() for r in caplog.records] == [
        "training: epoch 1/40 d_real=0.611 d_fake=0.402 g=1.21",
        "training: epoch 2/40 d_real=0.612 d_fake=0.402 g=1.22 kid=0.0123 face_rate=0.4"]


def test_a_terminal_gets_a_bar_over_the_epochs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(progress.runtime, "show_progress", lambda: True)
    job = FakeJob(tmp_path / "0_log.err", [EPOCH.format(n=1), EPOCH.format(n=2)])
    progress.follow(job, poll_seconds=0)
    bar = capsys.readouterr().err
    assert "training:" in bar and "2/40" in bar and "g=1.22" in bar, bar
