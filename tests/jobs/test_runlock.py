"""One job per run directory: the lock names its holder, survives its own job's requeue and
its chain's later links, and is taken over from a holder that is gone (a dead process here, a
job out of the queue, a stopped heartbeat) but never from one that may still write."""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from jobs.core import runlock
from jobs.core.chain import Link
from jobs.core.runlock import Holder, Probes, RunDirInUse, RunLock, stale_reason
from tests.conftest import QUIET_ENV, ROOT

HOLD = ("import sys, time\n"
        "from jobs.core import runlock\n"
        "lock = runlock.RunLock(sys.argv[1], runlock.this_process())\n"
        "lock.acquire()\n"
        "print('held', flush=True)\n"
        "time.sleep(600)\n")


@pytest.fixture
def holder_process(tmp_path):
    """A real process holding ``tmp_path/run``'s lock until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=ROOT,
                            env=QUIET_ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


def test_a_second_process_is_refused_naming_the_holder_until_it_dies(tmp_path, holder_process,
                                                                     caplog):
    run_dir = tmp_path / "run"
    with pytest.raises(RunDirInUse) as refused:
        RunLock(run_dir, runlock.this_process()).acquire()
    message = str(refused.value)
    assert f"pid {holder_process.pid}" in message and os.uname().nodename in message
    assert str(run_dir) in message and "train.run_dir" in message
    holder_process.send_signal(signal.SIGKILL)
    holder_process.wait()
    lock = RunLock(run_dir, runlock.this_process())
    with caplog.at_level(logging.WARNING):
        lock.acquire()  # the dead process's lock, taken over
    assert "its process is gone" in caplog.text
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock.path.exists()


def test_acquire_release_and_nothing_left_beside_the_lock(tmp_path):
    lock = RunLock(tmp_path, runlock.this_process())
    lock.acquire()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.lock"]
    lock.acquire()  # this process again (a sweep's points in one process): its own
    lock.release()
    assert list(tmp_path.iterdir()) == []


def test_release_leaves_a_lock_another_process_took(tmp_path):
    lock = RunLock(tmp_path, runlock.this_process())
    lock.acquire()
    other = dataclasses.replace(lock.me, pid=1, started="1")
    lock.path.write_text(json.dumps(dataclasses.asdict(other)))
    lock.release()
    assert lock.path.exists()


def write_lock(run_dir, holder: Holder, age_s: float = 0.0) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / runlock.LOCK_NAME
    path.write_text(json.dumps(dataclasses.asdict(holder)))
    then = time.time() - age_s
    os.utime(path, (then, then))


ELSEWHERE = Holder(host="node7", pid=4242, started="99", pid_ns="x", job="", since="t")


@pytest.mark.parametrize("age_s, taken", [(10, False), (runlock.STALE_AFTER_S + 60, True)])
def test_a_holder_on_another_host_without_slurm_is_judged_by_its_heartbeat(tmp_path, age_s,
                                                                          taken):
    write_lock(tmp_path, ELSEWHERE, age_s)
    lock = RunLock(tmp_path, runlock.this_process())
    if taken:
        lock.acquire()
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    else:
        with pytest.raises(RunDirInUse, match=r"node7 \(pid 4242\).*last heartbeat 1\d s"):
            lock.acquire()


def test_the_heartbeat_keeps_the_lock_fresh(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.05)
    lock = RunLock(tmp_path, runlock.this_process())
    lock.acquire()
    old = time.time() - 3600
    os.utime(lock.path, (old, old))
    deadline = time.monotonic() + 30
    while lock.path.stat().st_mtime < time.time() - 60:
        assert time.monotonic() < deadline, "no heartbeat"
        time.sleep(0.05)
    lock.keep()  # a requeue: the heartbeat stops, the lock stays
    assert lock.path.exists()


ME = Holder(host="n1", pid=10, started="500", pid_ns="ns", job="200", shown="200",
            chain="200", restart=1)


def probes(start: str = "", alive: bool | None = None) -> Probes:
    return Probes(process_start=lambda pid: start, job_alive=lambda job: alive)


@pytest.mark.parametrize("holder, probe, taken", [
    # this job before its requeue, on another node, Slurm still listing it: its own, kept
    (dataclasses.replace(ME, host="n2", pid=7, restart=0, kept=True), probes(alive=True),
     True),
    # ... not handed on (killed): not while its heartbeat goes on (a node cut off)
    (dataclasses.replace(ME, host="n2", pid=7, restart=0), probes(alive=True), False),
    # the same job, same restart, another process still running here: two at once
    (dataclasses.replace(ME, pid=11, started="400", restart=1), probes("400"), False),
    # ... that process gone; the pid now runs something else (another start time)
    (dataclasses.replace(ME, pid=11, started="400", job="150", chain="150"), probes("777"),
     True),
    # another job elsewhere that Slurm still lists (pending after its own requeue): held
    (dataclasses.replace(ME, host="n2", job="150", chain="150"), probes(alive=True), False),
    # ... that Slurm no longer lists
    (dataclasses.replace(ME, host="n2", job="150", chain="150"), probes(alive=False), True),
    # ... squeue cannot tell (inside a container): by the heartbeat (fresh here)
    (dataclasses.replace(ME, host="n2", job="150", chain="150"), probes(alive=None), False),
    # another pid namespace on this host (Docker): its pid cannot be checked from here
    (dataclasses.replace(ME, pid_ns="other", job="150", chain="150"), probes(alive=None),
     False),
    # ... but a run outside Slurm that exited to be resumed (a stopped container): done
    (dataclasses.replace(ME, pid_ns="other", job="", chain="", kept=True), probes(), True),
])
def test_stale_reason(holder, probe, taken):
    assert (stale_reason(holder, ME, heartbeat_age=5.0, probes=probe) is not None) == taken


def test_a_later_link_of_the_chain_takes_over_and_an_earlier_one_does_not():
    first = Holder(host="n2", pid=7, job="300", shown="300", chain="300", link=0, restart=3,
                   kept=True)
    link = dataclasses.replace(first, host="n1", pid=9, job="301", shown="301", link=1,
                               restart=0, kept=False)
    alive, gone = probes(alive=True), probes(alive=False)
    assert "kept for its next run" in stale_reason(first, link, 5.0, alive)
    assert stale_reason(link, first, 5.0, alive) is None
    killed = dataclasses.replace(first, kept=False)  # exited without handing it on
    assert stale_reason(killed, link, 5.0, alive) is None  # still listed: running
    assert stale_reason(killed, link, 5.0, gone) is None  # its heartbeat is fresh: wait
    assert "without handing it on" in stale_reason(killed, link, 2 * runlock.HEARTBEAT_S + 1,
                                                   gone)


def test_a_lock_on_another_cluster_is_judged_by_its_heartbeat():
    other = Holder(host="m1", pid=7, job="150", chain="150", cluster="b")
    asked = []
    probe = Probes(process_start=lambda pid: "", job_alive=lambda job: asked.append(job))
    assert stale_reason(other, dataclasses.replace(ME, cluster="a"), 5.0, probe) is None
    assert asked == []  # squeue on cluster a knows nothing of cluster b's job 150


def test_keep_marks_the_lock_handed_on_and_the_next_run_waits_for_a_killed_one(
        tmp_path, monkeypatch):
    lock = RunLock(tmp_path, dataclasses.replace(runlock.this_process(), host="n2", job="5",
                                                 chain="5"))
    lock.acquire()
    lock.keep()
    assert json.loads(lock.path.read_text())["kept"] is True
    requeued = dataclasses.replace(lock.me, host="n3", pid=lock.me.pid + 1, restart=1)
    nobody = Probes(process_start=lambda pid: "", job_alive=lambda job: None)
    RunLock(tmp_path, requeued, nobody).acquire()  # at once
    killed = dataclasses.replace(requeued, kept=False)
    write_lock(tmp_path, killed)  # the requeued run killed outright, just now
    monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.3)
    again = dataclasses.replace(requeued, host="n4", restart=2)
    RunLock(tmp_path, again, nobody).acquire()  # after its heartbeat stopped (0.6 s)
    assert json.loads((tmp_path / "job.lock").read_text())["restart"] == 2


def test_a_filesystem_without_hard_links_falls_back_to_an_exclusive_create(tmp_path,
                                                                         monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(runlock.os, "link", no_links)
    lock = RunLock(tmp_path, runlock.this_process())
    lock.acquire()
    assert json.loads(lock.path.read_text())["pid"] == os.getpid()
    with pytest.raises(RunDirInUse):
        RunLock(tmp_path, dataclasses.replace(lock.me, host="elsewhere")).acquire()
    lock.release()
    assert not lock.path.exists()


def test_this_process_reads_slurm_and_its_chain(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "512")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "500")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "2")
    me = runlock.this_process()
    assert (me.job, me.shown, me.chain, me.link, me.restart) == ("512", "500_3", "500_3", 0, 2)
    assert me.started == runlock.process_start(os.getpid()) != ""
    linked = runlock.this_process(Link("480", 2))
    assert (linked.chain, linked.link) == ("480_3", 2)
    assert "job 500_3 on host" in linked.describe()
