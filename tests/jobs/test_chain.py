"""Resubmit chains: a later link reads how the run directory's last job ended and exits at
once when the run is over, resumes otherwise; the field is refused where nothing resumes;
plan prints the chain's sbatch lines; submitit gets the successors' dependencies."""
from __future__ import annotations

import json
import shlex

import pytest

from jobs.core import chain, events, exitcodes, runlock
from jobs.core.chain import Link, link_exit, parse_link
from jobs.core.loader import load_spec, parse_set_args
from jobs.kinds import deep_problems
from jobs.pipeline import render_plan as pipeline_plan
from jobs.scheduler import render_plan
from jobs.submit import make_executor
from tests.conftest import ROOT, record_run, run_cli
from tests.jobs.test_scheduler import preprocess, train  # noqa: F401 - fixtures


@pytest.mark.parametrize("last, expected", [
    ("none", None), (None, None),  # never started / killed outright: resume
    (exitcodes.REQUEUE, None),  # checkpointed: resume
    (exitcodes.OK, exitcodes.OK), (exitcodes.GUARD_STOPPED, exitcodes.GUARD_STOPPED),
    (exitcodes.NOT_RUNNABLE, exitcodes.NOT_RUNNABLE), (exitcodes.FAILED, exitcodes.FAILED),
])
def test_a_later_link_exits_at_once_unless_the_run_can_go_on(tmp_path, last, expected):
    if last != "none":
        record_run(tmp_path, last)
    assert link_exit(tmp_path, Link("77", 1)) == expected
    assert link_exit(tmp_path, Link()) is None  # the first job, or no chain: always runs


def test_the_outcome_names_the_job_and_its_meaning(tmp_path):
    record_run(tmp_path, exitcodes.GUARD_STOPPED, "77_2")
    outcome = chain.read_outcome(tmp_path)
    assert outcome["job"] == "77_2" and outcome["exit"] == 79
    assert outcome["meaning"] == exitcodes.DESCRIPTIONS[79]


def test_a_job_refused_on_the_way_leaves_the_last_real_outcome(tmp_path):
    """A job refused before it trained (the lock held, --fresh) records its outcome but no
    start: the chain still reads the run's last real one, and a torn line is no event."""
    record_run(tmp_path, exitcodes.REQUEUE, "77")
    events.emit(tmp_path, "outcome", job="78", kind="train", exit=exitcodes.NOT_RUNNABLE,
                meaning="refused")
    with open(tmp_path / events.EVENTS_NAME, "a") as f:
        f.write('{"v": 1, "type": "outcome", "exit": 0')  # a writer killed mid-line
    assert chain.read_outcome(tmp_path)["exit"] == exitcodes.REQUEUE
    assert link_exit(tmp_path, Link("77", 1)) is None
    assert events.outcome_of(events.read(tmp_path), "78")["exit"] == exitcodes.NOT_RUNNABLE


def test_a_run_directory_from_before_run_events_keeps_its_outcome(tmp_path):
    """outcome.json, as versions before run events wrote it: a chain across the upgrade
    neither retries a finished run nor resumes one the guard stopped."""
    (tmp_path / "outcome.json").write_text(json.dumps(
        {"exit": exitcodes.GUARD_STOPPED, "meaning": "guard", "job": "70", "host": "n1",
         "time": "2026-12-01 10:00:00"}))
    assert link_exit(tmp_path, Link("70", 1)) == exitcodes.GUARD_STOPPED
    record_run(tmp_path, exitcodes.REQUEUE, "71")  # a job since: the events speak
    assert link_exit(tmp_path, Link("70", 2)) is None


def test_parse_link():
    assert parse_link("123:2") == Link("123", 2) and str(Link("123", 2)) == "123:2"
    for bad in ("123", "a:1", "1:-1", ""):
        with pytest.raises(ValueError, match="FIRST_JOB_ID:LINK"):
            parse_link(bad)


def test_run_with_chain_exits_at_once_on_a_finished_run(write_spec, tmp_path):
    """The sbatch route: ``python -m jobs run SPEC --chain FIRST:K``, decided before any
    training starts: nothing is written into the run directory."""
    data = tmp_path / "x.h5"
    data.write_bytes(b"")
    run_dir = tmp_path / "run"
    spec = write_spec(f"kind: train\nname: t\ntrain: {{data: {data}, run_dir: {run_dir}}}\n")
    record_run(run_dir, exitcodes.OK, "41")
    proc = run_cli("run", str(spec), "--chain", "41:2")
    assert proc.returncode == exitcodes.OK, proc.stderr
    assert "resubmit chain 41:2: the run finished in job 41: nothing to do" in proc.stderr
    # nothing but the record and its page (rewritten with this outcome)
    assert sorted(p.name for p in run_dir.iterdir()) == [events.EVENTS_NAME, "report.html"]
    assert [e["type"] for e in events.read(run_dir)] == ["job_started", "outcome", "outcome"]
    proc = run_cli("run", str(spec), "--chain", "41")
    assert proc.returncode == exitcodes.INVALID_SPEC
    assert "--chain '41': expected FIRST_JOB_ID:LINK" in proc.stderr


def test_resubmit_is_refused_where_nothing_resumes(train, preprocess, write_spec):  # noqa: F811
    assert deep_problems(train("resources.resubmit=3")) == []
    (problem,) = deep_problems(preprocess("resources.resubmit=1"))
    assert "resources.resubmit: only train and sweep jobs resume, not a preprocess job" \
        in problem
    proc = run_cli("validate", str(write_spec(
        "kind: train\nname: t\nresources: {resubmit: -1}\n"
        "train: {data: /x.h5, run_dir: /r}\n")))
    assert proc.returncode == exitcodes.INVALID_SPEC and "resources.resubmit" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_plan_prints_the_chain_and_submitit_waits_afterany(train):  # noqa: F811
    spec = train("resources.resubmit=2")
    plan = render_plan(spec)
    loop = plan.splitlines()[-1]
    assert loop.startswith("for k in $(seq 1 2); do prev=$(sbatch --parsable "
                           "--dependency=afterany:${prev%%;*} --kill-on-invalid-dep=yes ")
    assert loop.endswith(' --chain "${first%%;*}:$k"); done')
    assert shlex.split(loop)  # a line a shell can parse
    assert "resources.resubmit" not in render_plan(train())
    params = make_executor(spec, "slurm", after="500", condition="afterany")._executor
    assert params.parameters["additional_parameters"]["dependency"] == "afterany:500"


def test_an_array_tasks_chain_is_its_first_array_and_the_task(monkeypatch):
    """The chain of an array task is the array's first job and the task."""
    monkeypatch.setenv("SLURM_JOB_ID", "911")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "910")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    first = runlock.this_process(Link())
    monkeypatch.setenv("SLURM_JOB_ID", "931")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "930")
    later = runlock.this_process(Link("910", 1))
    assert first.chain == later.chain == "910_1" and later.link == 1


def test_load_spec_keeps_resubmit(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("kind: train\nname: t\ntrain: {data: /x.h5, run_dir: /r}\n")
    assert load_spec(path, parse_set_args(["resources.resubmit=4"])).resources.resubmit == 4


def test_a_pipelines_plan_chains_its_train_stage(write_spec, tmp_path):
    base = write_spec(f"kind: train\nname: t\nresources: {{resubmit: 2}}\n"
                      f"train: {{data: {tmp_path / 'x.h5'}, run_dir: {tmp_path / 'run'}}}\n",
                      "train.yaml")
    pipeline = write_spec(f"""\
        kind: pipeline
        name: p
        pipeline:
          preprocess: {ROOT / 'jobs/examples/preprocess_faces.yaml'}
          train: {base}
        """, "pipeline.yaml")
    lines = pipeline_plan(load_spec(pipeline)).splitlines()
    assert lines[-3].startswith("first=$(sbatch --parsable --dependency=afterok:$merge ")
    assert lines[-2] == "prev=$first" and lines[-1].startswith("for k in $(seq 1 2); do ")
