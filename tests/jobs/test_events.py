"""Run events: typed, one line each, torn or foreign lines skipped, a refused job's directory
never created, and the pairing every "how did it end" view relies on."""
from __future__ import annotations

import json

import numpy as np
import pytest

from jobs.core import events


def test_an_event_has_exactly_its_fields_and_plain_json(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "40")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    monkeypatch.setenv("SLURM_PROCID", "1")
    event = events.make("quality", epoch=2, kimg=np.float32(1.5), seconds=0.5,
                        figures={"kid": float("nan"), "fid": np.float64(3.0)})
    assert (event["job"], event["rank"], event["v"]) == ("40_3", 1, events.SCHEMA_VERSION)
    assert event["figures"] == {"kid": None, "fid": 3.0} and event["kimg"] == 1.5
    json.dumps(event, allow_nan=False)  # what any reader parses
    with pytest.raises(ValueError, match="no event type 'epoch_end'"):
        events.make("epoch_end", epoch=1)
    with pytest.raises(ValueError, match="event outcome: fields"):
        events.make("outcome", kind="train", exit=0)  # meaning missing


def test_the_job_is_the_schedulers_id(monkeypatch):
    for name in ("SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_ID",
                 "SUBMITIT_LOCAL_JOB_ID", *events.RANK_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    assert (events.job_id(), events.env_rank()) == ("", 0)
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_PROCID", "0")  # srun's, under another launcher's rank
    monkeypatch.setenv("PMIX_RANK", "3")
    assert (events.job_id(), events.env_rank()) == ("77", 3)


def test_no_directory_no_event(tmp_path):
    """A job refused before its directory exists leaves none behind."""
    missing = tmp_path / "run"
    assert not events.emit(missing, "requeue", by="submitit")
    assert not missing.exists()
    assert events.emit(tmp_path, "requeue", by="submitit")
    assert [e["by"] for e in events.read(tmp_path)] == ["submitit"]


def test_a_reader_skips_what_is_not_an_event_of_its_schema(tmp_path):
    events.emit(tmp_path, "requeue", by="submitit")
    newer = {**events.make("requeue", by="x"), "v": events.SCHEMA_VERSION + 1}
    lacking = {k: v for k, v in events.make("requeue", by="y").items() if k != "host"}
    with open(tmp_path / events.EVENTS_NAME, "a") as f:
        f.write("not json\n" + json.dumps(newer) + "\n" + json.dumps(lacking) + "\n"
                + '["a list"]\n' + json.dumps({"type": "mystery", "v": 1}) + "\n")
    events.emit(tmp_path, "requeue", by="slurm")
    with open(tmp_path / events.EVENTS_NAME, "a") as f:
        f.write(json.dumps(events.make("requeue", by="torn"))[:30])  # killed mid-line
    assert [e["by"] for e in events.read(tmp_path)] == ["submitit", "slurm"]
    assert events.read(tmp_path, "outcome") == []


def started(job: str, pid: int) -> dict:
    return {**events.make("job_started", job=job, kind="train", ranks=2, device="cpu",
                          link="0:0", restart=0, spec={}), "pid": pid}


def ended(job: str, pid: int, code: int, rank: int = 0) -> dict:
    return {**events.make("outcome", job=job, rank=rank, kind="train", exit=code,
                          meaning="m"), "pid": pid}


def test_a_run_ends_with_the_outcome_of_the_process_that_started_it():
    first, second = started("1", 10), started("2", 20)
    refused = ended("3", 30, 3)  # a job the lock turned away: never started
    assert events.last_run([]) == (None, None)
    assert events.last_run([first, ended("1", 10, 75), second]) == (second, None)  # killed
    story = [first, ended("1", 10, 75), second, refused, ended("2", 20, 0, rank=1),
             ended("2", 20, 0)]
    assert events.last_run(story) == (second, story[5])  # rank 0 of that process
    assert events.outcome_of(story, "3") == refused
    assert events.outcome_of(story, "2") == story[5]  # rank 0's
    assert events.outcome_of(story, "9") is None


def test_a_requeued_job_killed_in_its_next_run_has_no_outcome():
    """submitit requeues a job under the same id: the 75 of its first run is not how its
    second run, killed outright, ended."""
    story = [started("5", 10), ended("5", 10, 75),
             {**events.make("requeue", job="5", by="submitit"), "pid": 10}]
    assert events.outcome_of(story, "5") is None
    assert events.outcome_of(story[:2], "5")["exit"] == 75
    assert events.outcome_of([*story, started("5", 11)], "5") is None


def test_a_submitit_local_job_inside_an_allocation_is_named_by_submitit(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "900")  # the allocation the local executor runs in
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")
    assert events.job_id() == "4242"


def test_an_event_after_a_torn_line_is_kept(tmp_path):
    torn = json.dumps(events.make("requeue", by="torn"))[:25]  # no newline: killed mid-write
    with open(tmp_path / events.EVENTS_NAME, "w") as f:
        f.write(torn)
    events.emit(tmp_path, "outcome", kind="train", exit=0, meaning="success")
    assert [e["type"] for e in events.read(tmp_path)] == ["outcome"]


def test_a_value_json_cannot_hold_costs_the_event_not_the_job(tmp_path):
    assert not events.emit(tmp_path, "requeue", by=object())
    assert events.read(tmp_path) == []


def test_a_job_started_written_before_the_spec_field_still_reads(tmp_path):
    """A run directory from before ``job_started`` carried the spec: its starts still count
    (the chain, status, the stall verdict and the pages read them)."""
    old = {k: v for k, v in started("5", 42).items() if k != "spec"}
    (tmp_path / events.EVENTS_NAME).write_text(json.dumps(old) + "\n")
    [event] = events.read(tmp_path)
    assert event["type"] == "job_started" and "spec" not in event
    assert events.last_run(events.read(tmp_path))[0] == event
    with pytest.raises(ValueError, match="spec"):  # writers still give it
        events.make("job_started", kind="train", ranks=1, device="cpu", link="", restart=0)
