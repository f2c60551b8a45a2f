"""The stall watchdog's logic in-process (jobs/core/watchdog.py, heartbeats.py, faults.py,
watchdog_spec.py): its bound, the peer it names, the pauses it allows, the evidence it
leaves. The processes it ends are in tests/system/test_watchdog.py."""
from __future__ import annotations

import threading
import time

import pytest

from jobs.core import events, exitcodes, faults, heartbeats
from jobs.core.loader import SpecError, parse_spec
from jobs.core.watchdog import MEASURED_STEPS, Progress, Watchdog, stall_bound
from jobs.core.watchdog_spec import CAP_FLOORS, WatchdogSpec


def test_the_bound_is_the_floor_until_steps_are_measured_then_follows_the_slow_ones():
    auto = WatchdogSpec(floor_s=60, step_factor=50)
    assert stall_bound(auto, [0.1] * (MEASURED_STEPS - 1)) == 60  # the compile's steps
    assert stall_bound(auto, [0.1] * 100) == 60  # 50 x 0.1 s is under the floor
    slow = [2.0] * 90 + [3.0] * 10  # the 95th percentile is 3 s
    assert stall_bound(auto, slow) == 150
    assert stall_bound(auto, [100.0] * 20) == CAP_FLOORS * 60  # capped
    assert stall_bound(WatchdogSpec(stall_s=7), [100.0] * 20) == 7  # set: used as is


def test_horovods_stall_check_warns_first_and_shuts_down_after_the_watchdog():
    for spec in (WatchdogSpec(), WatchdogSpec(stall_s=20, pause_s=40)):
        least, most = spec.bounds()
        env = spec.horovod_environment()
        assert int(env["HOROVOD_STALL_CHECK_TIME_SECONDS"]) < least
        assert int(env["HOROVOD_STALL_SHUTDOWN_TIME_SECONDS"]) > spec.pause_s + most


def beat(rank, step, inside=False, paused="", moved=100.0, written=200.0, attempt="7/0"):
    return heartbeats.Beat(rank, f"node{rank}", 1000 + rank, attempt, step, inside, paused,
                           moved, written)


def test_the_culprit_is_the_rank_behind_or_the_one_that_fell_silent():
    now, alive = 200.0, 10.0
    behind = heartbeats.culprit({0: beat(0, 6, inside=True), 1: beat(1, 6)}, 2, now, alive)
    assert (behind.rank, behind.host) == (1, "node1") and "outside step 7" in behind.why
    silent = heartbeats.culprit({0: beat(0, 6, inside=True), 1: beat(1, 6, True, written=150)},
                                2, now, alive)
    assert silent.rank == 1 and "frozen or gone" in silent.why
    missing = heartbeats.culprit({0: beat(0, 6, inside=True)}, 2, now, alive)
    assert missing.rank == 1 and missing.host == ""
    level = heartbeats.culprit({0: beat(0, 6, True), 1: beat(1, 6, True)}, 2, now, alive)
    assert level.rank is None and "same place" in level.why
    only = heartbeats.culprit({0: beat(0, 6, True)}, 1, now, alive)
    assert (only.rank, only.host) == (0, "node0")
    stuck = heartbeats.culprit({0: beat(0, 6, paused="checkpoint"), 1: beat(1, 6)}, 2, now,
                               alive)  # rank 0 in a checkpoint that never ended
    assert stuck.rank == 0 and "'checkpoint' never ended" in stuck.why


def test_heartbeats_of_another_attempt_are_ignored(tmp_path):
    heartbeats.write(tmp_path, beat(0, 3, attempt="7/0"))
    heartbeats.write(tmp_path, beat(1, 3, attempt="7/1"))  # a requeue's
    assert set(heartbeats.read_all(tmp_path, "7/0", 2)) == {0}
    heartbeats.path_of(tmp_path, 1).write_text("{torn")
    assert set(heartbeats.read_all(tmp_path, "7/1", 2)) == set()


def quiet_watchdog(tmp_path, progress, rank=0, size=2, **settings) -> Watchdog:
    dog = Watchdog(WatchdogSpec(**{"stall_s": 1.0, "pause_s": 3.0, **settings}), progress,
                   rank, size, tmp_path)
    dog.attempt, dog.not_before = "7/0", float("-inf")  # quiet counted from the progress
    return dog


def test_a_rank_waits_while_a_peer_moves_or_pauses_and_names_the_one_that_stopped(tmp_path):
    progress = Progress()
    progress.entering(6)
    progress.moved -= 5  # this rank has waited inside step 7 for 5 s (bound 1 s)
    dog = quiet_watchdog(tmp_path, progress)
    now = time.time()
    heartbeats.write(tmp_path, beat(1, 6, moved=now - 0.2, written=now))  # it moves
    assert dog.check() is None
    heartbeats.write(tmp_path, beat(1, 6, paused="checkpoint", moved=now - 2, written=now))
    assert dog.check() is None  # a pause within pause_s
    heartbeats.write(tmp_path, beat(1, 6, moved=now - 5, written=now))  # stopped before 7
    stall = dog.check()
    assert stall is not None and stall.culprit.rank == 1 and stall.bound_s == 1.0
    assert stall.quiet_s >= 5


def test_own_pause_is_bounded_by_pause_s_not_by_the_stall_bound(tmp_path):
    progress = Progress()
    assert progress.paused == "start-up"  # until the first step: the trainer's set-up
    progress.entering(0)
    progress.finished(1)
    assert progress.paused == ""
    dog = quiet_watchdog(tmp_path, progress, size=1)
    with progress.pause("quality"):
        progress.moved -= 2  # 2 s into a quality measurement: over stall_s, under pause_s
        assert dog.check() is None
        progress.moved -= 2
        assert dog.check() is not None
    assert dog.check() is None  # the pause's end is progress


def test_the_thread_acts_once_with_stacks_and_a_stall_event(tmp_path):
    """Its real report (stacks into a file, the event), with the process exit replaced."""
    progress, acted = Progress(), []
    stacks = (tmp_path / "stacks.txt").open("w")
    dog = Watchdog(WatchdogSpec(stall_s=1.0, pause_s=1.0), progress, 0, 1, tmp_path,
                   stream=stacks)
    dog.act = lambda stall: (dog.report(stall), acted.append(stall))
    progress.finished(12)
    dog.start()
    deadline = time.monotonic() + 30  # a hang guard: it acts after 1 s of no progress
    while not acted and time.monotonic() < deadline:
        time.sleep(0.1)
    dog.stop()
    stacks.close()
    assert len(acted) == 1
    text = (tmp_path / "stacks.txt").read_text()
    assert "stall-watchdog" in text or "Thread" in text  # faulthandler's dump of each thread
    assert "test_the_thread_acts_once" in text  # this (main) thread's stack is there
    (event,) = events.read(tmp_path, "stall")
    assert event["step"] == 12 and event["rank"] == 0 and event["bound_s"] == 1.0
    assert event["culprit_rank"] == 0  # the only rank: its node is left out of the retry
    assert (tmp_path / "heartbeats" / "rank-0.json").exists()
    assert exitcodes.STALLED == 76


def test_a_moving_rank_is_never_acted_on(tmp_path):
    """Steps of 0.2 s for three times the 2 s bound: a tenth of the bound each, so a loaded
    machine's scheduling delays do not reach it."""
    progress, acted = Progress(), []
    dog = quiet_watchdog(tmp_path, progress, size=1, stall_s=2.0, pause_s=4.0)
    dog.act = acted.append
    dog.start()
    for step in range(30):
        progress.entering(step)
        time.sleep(0.2)
        progress.finished(step + 1)
    dog.stop()
    assert acted == []


def test_fault_hooks_parse_and_only_fire_for_their_rank_and_step(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="FACEGAN_TEST_FAULT: 'nap@1:2'"):
        faults.parse("nap@1:2")
    assert faults.parse("slow@1:4:0.5") == faults.Fault("slow", 1, 4, 0.5)
    assert faults.parse("freeze@0:9/3") == faults.Fault("freeze", 0, 9, 0.0, 3)
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    monkeypatch.setenv(faults.VARIABLE, "freeze@0:9/3,slow@0:1:1/2")
    faults.armed.cache_clear()
    assert [f.kind for f in faults.armed()] == ["slow"]  # only this array task's
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    faults.armed.cache_clear()
    assert [f.kind for f in faults.armed()] == ["slow"]  # a retry hangs no more
    monkeypatch.delenv("SLURM_RESTART_COUNT")
    monkeypatch.setenv(faults.VARIABLE, "freeze@1:3")
    faults.armed.cache_clear()
    try:
        faults.before_step(0, 3)  # another rank: returns
        faults.before_step(1, 2)  # another step: returns
        frozen = threading.Thread(target=faults.before_step, args=(1, 3), daemon=True)
        frozen.start()
        frozen.join(0.3)
        assert frozen.is_alive()  # blocked for good (a daemon: ends with the tests)
        monkeypatch.setenv(faults.MARKS, str(tmp_path))  # once in all: marked as it fires
        assert faults._first_time(faults.Fault("freeze", 1, 3))
        assert not faults._first_time(faults.Fault("freeze", 1, 3))
    finally:
        faults.armed.cache_clear()


@pytest.mark.parametrize("settings, where", [
    ({"stall_s": -1}, "train.watchdog.stall_s"),
    ({"stall_s": 100, "advanced": {"pause_s": 50}}, "train.watchdog.advanced.pause_s"),
    ({"advanced": {"retries": -1}}, "train.watchdog.advanced.retries"),
])
def test_bad_watchdog_settings_are_refused_naming_the_field(settings, where):
    with pytest.raises(SpecError) as caught:
        parse_spec({"kind": "train", "name": "w", "train": {
            "data": "d.h5", "run_dir": "r", "watchdog": settings}}, "w.yaml")
    assert where in str(caught.value)
