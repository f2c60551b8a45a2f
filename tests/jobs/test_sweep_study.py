"""Sweeps an Optuna study searches (``jobs/study.py``): each array task asks once and gets
its point back after a requeue, ranks other than 0 wait for rank 0's answer, tasks starting
together draw different start-up points, the study is told only what is final, finished
trials are never trained again, and the views read the journal (with the trial numbers)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import optuna
import pytest

from jobs import study
from jobs.core import events, exitcodes
from jobs.core.launch import Launch
from jobs.core.loader import SpecError, load_spec, parse_set_args
from jobs.kinds import run
from jobs.sweep import (
    point_count,
    point_overrides,
    point_spec,
    points_record,
    read_points,
    summary,
    summary_columns,
    swept_keys,
    write_points,
)
from tests.conftest import record_epoch, record_run, run_cli
from tests.jobs.test_sweep_search import write_sweep

SWEEP = """\
kind: sweep
name: s
sweep:
  base: {base}
  run_root: {root}
  search: tpe
  trials: 4
  seed: 3
  grid: {{train.batch_size: [32, 64]}}
  space:
    train.optimizer.learning_rate: {{log_uniform: [1.0e-5, 1.0e-3]}}
    train.epochs: {{int_uniform: [2, 4]}}
  points: [{{train.optimizer.learning_rate: 0.0002}}]
  advanced: {{startup_trials: 2}}
"""
LR = "train.optimizer.learning_rate"


@pytest.fixture
def sweep_file(write_spec, tmp_path):
    return write_sweep(write_spec, tmp_path, SWEEP)


def trials(spec) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=study.STUDY_NAME,
                             storage=study._storage(spec.work.run_root)).trials


def test_a_task_asks_once_and_gets_its_point_back(sweep_file):
    spec = load_spec(sweep_file)
    assert point_count(spec.work) == 5  # four trials, then the explicit point
    assert point_spec(spec, 0) is None  # looked up before its task asked: none yet
    first = point_overrides(spec, 0, ask="ask")
    assert set(first) == {"train.batch_size", LR, "train.epochs"}
    assert first["train.batch_size"] in (32, 64) and 1e-5 <= first[LR] <= 1e-3
    assert first[LR] == float(f"{first[LR]:.4g}")
    again = [point_overrides(spec, 0, ask=a) for a in ("ask", "wait", "look")]
    assert again == [first] * 3  # a requeued task, another rank, a view: the same point
    assert len(trials(spec)) == 1  # ... and never a second trial
    name = point_spec(spec, 0).work.run_dir.rsplit("/", 1)[1]
    assert name.startswith("trial00,batch_size=")
    assert point_overrides(spec, 4) == {LR: 0.0002}  # explicit: fixed, no study
    assert len(trials(spec)) == 1


def test_tasks_starting_together_draw_different_points(sweep_file):
    """Each task's sampler is seeded by (seed, index): with one seed for all, tasks asking
    before any trial finished would all draw the same random start-up point."""
    spec = load_spec(sweep_file)
    drawn = [point_overrides(spec, k, ask="ask") for k in range(4)]
    assert len({d[LR] for d in drawn}) == 4
    assert [t.user_attrs[study.INDEX] for t in trials(spec)] == [0, 1, 2, 3]


def test_the_same_order_of_completions_asks_the_same_points(write_spec, tmp_path):
    """TPE (past its two start-up trials) and the told values: a second sweep told the
    same in the same order asks for the same points."""
    runs = []
    for copy in ("one", "two"):
        spec = load_spec(write_sweep(write_spec, tmp_path, SWEEP, copy))
        for k in range(4):
            point = point_spec(spec, k, ask="ask")
            record_run(point.work.run_dir, exitcodes.OK)
            record_epoch(point.work.run_dir, 1, {"kid": abs(point.work.optimizer.learning_rate
                                                            - 2e-4)})
            study.tell(spec, k, exitcodes.OK, point.work.run_dir)
        runs.append([point_overrides(spec, k) for k in range(4)])
    assert runs[0] == runs[1]


def test_only_a_final_outcome_is_told(sweep_file):
    spec = load_spec(sweep_file)
    dirs = [point_spec(spec, k, ask="ask").work.run_dir for k in range(4)]
    for k, figures in enumerate(({"kid": 0.3}, {"kid": 0.1}, {"kid": 0.5}, {"fid": 9.0})):
        record_epoch(dirs[k], 1, figures)
    record_epoch(dirs[0], 2, {"kid": 0.2})
    record_epoch(dirs[0], 3, {"kid": float("nan")})
    for k, code in enumerate((exitcodes.OK, exitcodes.EARLY_STOPPED, exitcodes.REQUEUE,
                              exitcodes.OK)):
        study.tell(spec, k, code, dirs[k])
    done, pruned, waiting, unmeasured = trials(spec)
    assert done.state.name == "COMPLETE" and done.value == pytest.approx(0.2)  # the best
    assert done.intermediate_values == {1: pytest.approx(0.3), 2: pytest.approx(0.2)}
    assert pruned.state.name == "PRUNED" and pruned.intermediate_values == {1: 0.1}
    assert waiting.state.name == "RUNNING"  # its requeue will finish it
    assert unmeasured.state.name == "FAIL"  # finished, but never measured kid
    study.tell(spec, 0, exitcodes.OK, dirs[0])  # told twice: no error, no change
    assert trials(spec)[0].value == pytest.approx(0.2)
    assert [study.told_exit(spec, k) for k in range(4)] == [
        exitcodes.OK, exitcodes.EARLY_STOPPED, None, exitcodes.OK]


def test_the_guard_and_a_refused_point_are_final_too(sweep_file):
    """The guard's stop ranks like a pruned trial; a point its base spec refuses fails for
    good (its task exits 2 again at once instead of being asked again)."""
    spec = load_spec(sweep_file)
    dirs = [point_spec(spec, k, ask="ask").work.run_dir for k in range(3)]
    record_epoch(dirs[0], 1, {"kid": 0.4})
    study.tell(spec, 0, exitcodes.GUARD_STOPPED, dirs[0])
    study.tell(spec, 1, exitcodes.INVALID_SPEC, None)
    study.tell(spec, 2, exitcodes.NOT_RUNNABLE, dirs[2])  # its data may come back: not final
    assert [t.state.name for t in trials(spec)] == ["PRUNED", "FAIL", "RUNNING"]
    assert [study.told_exit(spec, k) for k in range(3)] == [
        exitcodes.GUARD_STOPPED, exitcodes.INVALID_SPEC, None]
    assert run(spec, Launch(index=1)) == exitcodes.INVALID_SPEC
    assert len(trials(spec)) == 3


def test_a_point_stopped_before_is_told_when_its_task_runs_again(sweep_file):
    """The job died after its rung said stop, before it could tell the study."""
    spec = load_spec(sweep_file, parse_set_args(["sweep.early_stop.rule=median",
                                                 "sweep.early_stop.rungs=[1]"]))
    point = point_spec(spec, 0, ask="ask")
    run_dir = point.work.run_dir
    record_epoch(run_dir, 1, {"kid": 0.9})
    events.emit(run_dir, "rung", point=run_dir.rsplit("/", 1)[1], rung=1.0, unit="epochs",
                metric="kid", value=0.9, epochs=1, kimg=1.0, compared_with=2,
                stop="kid 0.9 at rung 1 epochs is worse than the median")
    assert run(spec, Launch(index=0)) == exitcodes.EARLY_STOPPED
    assert trials(spec)[0].state.name == "PRUNED"


def test_looking_never_writes_the_journal(sweep_file, tmp_path):
    spec = load_spec(sweep_file)
    journal = tmp_path / "sweep" / study.STUDY_FILE
    assert point_overrides(spec, 0) is None and not journal.exists()  # nothing made
    asked = point_overrides(spec, 0, ask="ask")
    size = journal.stat().st_size
    assert point_overrides(spec, 0, ask="wait") == point_overrides(spec, 0) == asked
    assert study.told_exit(spec, 0) is None and 0 in study.asked_points(tmp_path / "sweep")
    assert run_cli("validate", str(sweep_file)).returncode == 0
    assert journal.stat().st_size == size


def test_two_jobs_of_one_index_starting_together_ask_once(sweep_file):
    spec = load_spec(sweep_file)
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: point_overrides(spec, 2, ask="ask"), range(4)))
    assert all(a == answers[0] for a in answers) and len(trials(spec)) == 1


@pytest.mark.parametrize("sets, says", [
    (["sweep.early_stop.metric=fid"], "sweep.early_stop.metric: "),
    (["sweep.space={train.optimizer.learning_rate: {uniform: [1.0e-5, 1.0e-3]}}"],
     "sweep.space: "),
])
def test_a_study_keeps_its_objective_and_space(sweep_file, sets, says):
    point_overrides(load_spec(sweep_file), 0, ask="ask")  # the study exists
    proc = run_cli("validate", str(sweep_file), *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == exitcodes.INVALID_SPEC, proc.stderr
    assert says in proc.stderr and "use a new sweep.run_root" in proc.stderr
    with pytest.raises(SpecError, match="a study keeps its"):
        point_overrides(load_spec(sweep_file, parse_set_args(sets)), 1, ask="ask")


def test_a_finished_trial_is_never_trained_again(sweep_file):
    spec = load_spec(sweep_file)
    for k in (0, 1):
        point = point_spec(spec, k, ask="ask")
        record_epoch(point.work.run_dir, 1, {"kid": 0.1 * (k + 1)})
    study.tell(spec, 0, exitcodes.OK, point_spec(spec, 0).work.run_dir)
    study.tell(spec, 1, exitcodes.EARLY_STOPPED, point_spec(spec, 1).work.run_dir)
    # the data file is empty: a training would fail, so these exits are the study's
    assert run(spec, Launch(index=0)) == exitcodes.OK
    assert run(spec, Launch(index=1)) == exitcodes.EARLY_STOPPED
    assert len(trials(spec)) == 2


def test_other_ranks_wait_for_rank_0s_point(sweep_file, monkeypatch):
    spec = load_spec(sweep_file)
    monkeypatch.setattr(study, "RANK_WAIT_SECONDS", 0.0)
    with pytest.raises(RuntimeError, match="rank 0 asked for no point for array index 2"):
        point_overrides(spec, 2, ask="wait")
    asked = point_overrides(spec, 2, ask="ask")
    assert point_overrides(spec, 2, ask="wait") == asked


def test_views_read_the_trials_from_the_journal(sweep_file, tmp_path):
    spec = load_spec(sweep_file)
    write_points(spec)  # as the first task writes it, before asking
    later = point_overrides(spec, 1, ask="ask")  # another task asks afterwards
    record = read_points(tmp_path / "sweep")  # spec-less, as the sweep's page reads it
    names = [p["name"] for p in record["points"]]
    assert names[0] == "trial00" and names[1].startswith("trial01,batch_size=")
    assert record["points"][1]["overrides"] == later and record["points"][1]["trial"] == 0
    assert names[4] == "learning_rate=0.0002"
    assert record == points_record(spec)
    assert swept_keys(spec) == ["train.batch_size", LR, "train.epochs"]
    record_run(tmp_path / "sweep" / names[1], exitcodes.OK)
    record_epoch(tmp_path / "sweep" / names[1], 1, {"kid": 0.1})
    _, rows = summary(spec)
    assert "optuna_trial" in summary_columns(rows)
    assert [r.get("optuna_trial") for r in rows] == [None, "0", None, None, None]
    assert [r["status"] for r in rows] == ["not started", "done"] + ["not started"] * 3


@pytest.mark.parametrize("sets, says", [
    (["sweep.search=cmaes"], "sweep.grid.train.batch_size: cmaes searches numbers only"),
    (["sweep.search=tpe", "sweep.trials=0"], "sweep.trials: search: tpe needs the number"),
    (["sweep.search=grid", "sweep.space={}", "sweep.trials=0"],
     "sweep.advanced.startup_trials: only for search: tpe or cmaes"),
    (["sweep.space={train.optimizer.learning_rat: {uniform: [0.1, 0.2]}}"],
     "[sweep space, every key at its low end]"),
    (["sweep.grid={train.batch_size: [32, -5, 64]}"], "[sweep space, train.batch_size=-5]"),
])
def test_a_bad_study_sweep_is_refused_naming_the_field(sweep_file, sets, says):
    proc = run_cli("validate", str(sweep_file), *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == exitcodes.INVALID_SPEC, proc.stderr
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_a_cmaes_sweep_draws_numbers(sweep_file):
    spec = load_spec(sweep_file, parse_set_args(["sweep.search=cmaes", "sweep.grid={}"]))
    drawn = [point_overrides(spec, k, ask="ask") for k in range(3)]
    assert all(set(d) == {LR, "train.epochs"} for d in drawn)
    assert all(isinstance(d["train.epochs"], int) for d in drawn)
