"""Whether a stalled job is retried, and which nodes it leaves out (jobs/core/stall.py): read
from the run's events, bounded by the retries, the requeue limit and the partition's size;
and the command the sbatch scripts ask."""
from __future__ import annotations

from jobs.core import events, stall
from jobs.core.stall import Limits
from jobs.core.watchdog_spec import WatchdogSpec
from tests.conftest import run_cli

ROOM = Limits(restarts=0, max_requeues=10, nodes_needed=1, nodes=("node1", "node2"))


def started(job="7", restart=0):
    return events.make("job_started", rank=0, job=job, kind="train", ranks=2, device="cpu",
                       link="", restart=restart, spec={})


def stalled(host="node1", rank=1, job="7"):
    return events.make("stall", rank=0, job=job, step=6, quiet_s=30.0, bound_s=20.0,
                       paused="", culprit_rank=rank, culprit_host=host, why="behind")


def test_a_stall_in_the_jobs_last_run_is_retried_without_the_node_that_stopped():
    said = stall.verdict([started(), stalled()], "7", WatchdogSpec(), ROOM)
    assert said.retry and said.exclude == ("node1",) and said.line() == "retry node1"
    # no single rank stood out: retried, nothing left out
    level = stall.verdict([started(), stalled(host="", rank=None)], "7", WatchdogSpec(), ROOM)
    assert level.retry and level.exclude == () and level.line() == "retry -"


def test_no_stall_in_the_last_run_or_another_jobs_is_not_a_retry():
    assert not stall.verdict([], "7", WatchdogSpec(), ROOM).retry
    ok_now = [started(), stalled(), started(restart=1)]  # the requeued run did not stall
    assert stall.verdict(ok_now, "7", WatchdogSpec(), ROOM).line() == "no"
    assert not stall.verdict([started(job="8"), stalled(job="8")], "7", WatchdogSpec(),
                             ROOM).retry
    # the retry failed before it started training (a lock, a missing mount): its run is not
    # the one that stalled, so it is not retried again and again
    later = Limits(restarts=1, max_requeues=10, nodes_needed=1, nodes=("node1", "node2"))
    assert not stall.verdict([started(), stalled()], "7", WatchdogSpec(), later).retry
    # a host Slurm does not know by that name (a full domain name): nothing left out
    stranger = stall.verdict([started(), stalled("node1.example.org")], "7", WatchdogSpec(),
                             ROOM)
    assert stranger.retry and stranger.exclude == ()


def test_retries_and_the_requeue_limit_bound_it():
    three = [e for r in range(3) for e in (started(restart=r), stalled())]
    at_2 = Limits(restarts=2, max_requeues=10, nodes_needed=1, nodes=("node1", "node2"))
    assert stall.verdict(three, "7", WatchdogSpec(retries=3), at_2).retry
    said = stall.verdict(three, "7", WatchdogSpec(retries=2), at_2)
    assert not said.retry and "train.watchdog.advanced.retries (2)" in said.why
    limit = Limits(restarts=10, max_requeues=10, nodes_needed=1, nodes=("node1", "node2"))
    assert not stall.verdict([started(), stalled()], "7", WatchdogSpec(), limit).retry


def test_never_more_nodes_left_out_than_the_limit_or_the_job_can_spare():
    both = [started(), stalled("node1"), started(restart=1), stalled("node2")]  # requeued

    def room(needed, *nodes):
        return Limits(restarts=1, max_requeues=10, nodes_needed=needed, nodes=nodes or None)

    three = room(1, "node1", "node2", "node3")
    assert stall.verdict(both, "7", WatchdogSpec(), three).exclude == ("node1", "node2")
    assert stall.verdict(both, "7", WatchdogSpec(exclude_max=1), three).exclude == ("node1",)
    said = stall.verdict(both, "7", WatchdogSpec(), room(1, "node1", "node2"))  # 1 spare
    assert said.exclude == ("node1",) and "1 of the partition's 2 nodes must remain" in said.why
    whole = room(2, "node1", "node2")  # a 2-node job on 2 nodes: none to spare
    assert stall.verdict(both, "7", WatchdogSpec(), whole).line() == "retry -"
    assert stall.verdict(both, "7", WatchdogSpec(), room(1)).exclude == ()  # nodes unknown


def test_one_rank_claims_an_attempts_retry(tmp_path):
    assert stall.claim(tmp_path, "7/0") is False  # no heartbeats folder: not claimed
    (tmp_path / "heartbeats").mkdir()
    assert stall.claim(tmp_path, "7/0") and not stall.claim(tmp_path, "7/0")
    assert stall.claim(tmp_path, "7/1")


def test_the_scripts_command_reads_the_runs_record(write_spec, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = write_spec(f"""
        kind: train
        name: s
        train: {{data: {tmp_path / 'd.h5'}, run_dir: {run_dir}}}
        """)
    env = {"SLURM_JOB_ID": "7", "FACEGAN_PARTITION_NODES": "node1 node2"}
    proc = run_cli("stalled", str(spec), "--set", "train.epochs=3", "--chain", "7:1", env=env)
    assert proc.returncode == 0 and proc.stdout == "no\n", proc.stderr
    for event in (started(), stalled("node2")):
        events.emit(run_dir, event["type"], rank=0, job="7",
                    **{k: event[k] for k in events.TYPES[event["type"]]})
    proc = run_cli("stalled", str(spec), env=env)
    assert proc.returncode == 0 and proc.stdout == "retry node2\n", proc.stderr
    assert "leaving out node2" in proc.stderr
