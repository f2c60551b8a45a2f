"""Sweeps that search and stop early: random trials drawn reproducibly from the seed, every
bad field named (exit 2), the median and ASHA rules' answers, a decision that survives a
requeue, stopped points skipped when the sweep runs again, and the summary's status, reasons
and plot."""
from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from jobs.core import exitcodes
from jobs.core.launch import Launch
from jobs.core.loader import load_spec, parse_set_args
from jobs.core.schema import EarlyStopSpec
from jobs.early_stop import Judge, decide, stop_reasons
from jobs.kinds import run
from jobs.sweep import expand_points, point_names, summary, summary_columns, swept_keys
from jobs.sweep_plot import plot_summary
from tests.conftest import record_epoch, record_run, run_cli

BASE = """\
kind: train
name: b
train:
  data: {data}
  run_dir: {run}
  metrics: {{every_epochs: 1, count: 100, face_rate: false}}
"""
SWEEP = """\
kind: sweep
name: s
sweep:
  base: {base}
  run_root: {root}
  search: random
  trials: 5
  seed: 7
  grid: {{train.batch_size: [32, 64]}}
  space:
    train.optimizer.learning_rate: {{log_uniform: [1.0e-5, 1.0e-3]}}
    train.epochs: {{int_uniform: [2, 4]}}
    train.optimizer.beta_1: {{uniform: [0.0, 0.9]}}
  early_stop: {{rule: median, rungs: [1, 2]}}
"""


def write_sweep(write_spec, tmp_path, sweep_text: str, folder: str = "") -> Path:
    """``folder/sweep.yaml`` from ``sweep_text``, over BASE on an empty data file (the
    points are loaded and checked, never trained), its run_root ``folder/sweep``."""
    (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    data = tmp_path / folder / "d.h5"
    data.write_bytes(b"")
    base = write_spec(BASE.format(data=data, run=tmp_path / "unused"),
                      str(Path(folder, "base.yaml")))
    return write_spec(sweep_text.format(base=base, root=tmp_path / folder / "sweep"),
                      str(Path(folder, "sweep.yaml")))


@pytest.fixture
def sweep_file(write_spec, tmp_path):
    return write_sweep(write_spec, tmp_path, SWEEP)


def test_random_trials_are_reproducible_from_the_seed_and_in_range(sweep_file):
    spec = load_spec(sweep_file)
    trials = expand_points(spec.work)
    assert trials == expand_points(load_spec(sweep_file).work)  # same seed, same trials
    fewer = expand_points(load_spec(sweep_file, parse_set_args(["sweep.trials=3"])).work)
    assert fewer == trials[:3]  # trial k depends on the seed and k only
    other = expand_points(load_spec(sweep_file, parse_set_args(["sweep.seed=8"])).work)
    assert other != trials
    for t in trials:
        assert t["train.batch_size"] in (32, 64)
        assert 1e-5 <= t["train.optimizer.learning_rate"] <= 1e-3
        assert t["train.epochs"] in (2, 3, 4) and isinstance(t["train.epochs"], int)
        assert 0.0 <= t["train.optimizer.beta_1"] <= 0.9
    rates = [t["train.optimizer.learning_rate"] for t in trials]
    assert len(set(rates)) == 5 and all(r == float(f"{r:.4g}") for r in rates)
    names = point_names(spec.work)
    assert names[0].startswith("trial00,batch_size=") and names[4].startswith("trial04,")
    assert swept_keys(spec)[0] == "train.batch_size"


@pytest.mark.parametrize("sets, says", [
    (["sweep.search=bayes"], "sweep.search"),
    (["sweep.trials=0"], "sweep.trials: search: random needs the number of trials"),
    (["sweep.search=grid"], "sweep.space: only for search: random"),
    (["sweep.space={train.epochs: {normal: [1, 2]}}"], "sweep.space.train.epochs: one of"),
    (["sweep.space={train.epochs: {uniform: [3, 2]}}"], "uniform needs [lo, hi] with lo < hi"),
    (["sweep.space={train.epochs: {log_uniform: [0, 2]}}"], "and lo > 0"),
    (["sweep.space={train.epochs: {choice: []}}"], "choice needs at least one value"),
    (["sweep.space={train.epochs: {int_uniform: [1.5, 4]}}"], ", both integers"),
    (["sweep.early_stop.rungs=[2, 1]"], "sweep.early_stop.rungs: give positive, increasing"),
    (["sweep.early_stop.rungs=[]"], "sweep.early_stop.rungs"),
    (["sweep.early_stop.reduction_factor=1"], "sweep.early_stop.reduction_factor"),
    (["sweep.early_stop.min_trials=0"], "sweep.early_stop.min_trials"),
    (["sweep.early_stop.metric=loss"], "sweep.early_stop.metric"),
    (["sweep.early_stop.metric=face_rate"],
     "never measures face_rate: set train.metrics.every_epochs (or every_kimg) and "
     "train.metrics.face_rate"),
    (["sweep.early_stop.metric=recall"], "and train.metrics.precision_recall"),
])
def test_every_bad_search_field_is_named_exit_2(sweep_file, sets, says):
    proc = run_cli("validate", str(sweep_file), *[a for s in sets for a in ("--set", s)])
    assert proc.returncode == exitcodes.INVALID_SPEC and says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def rule(**kw) -> EarlyStopSpec:
    return EarlyStopSpec(**{"rule": "median", "rungs": [1.0], **kw})


def test_the_median_rule():
    assert decide(rule(), 0.5, [], True, 1) is None  # alone at the rung: min_trials 2
    assert decide(rule(), 0.5, [0.2], True, 1).startswith("kid 0.5 at rung 1 epochs is worse "
                                                          "than the median 0.2 of the 1 other")
    assert decide(rule(), 0.3, [0.2, 0.4], True, 1) is None  # the median itself goes on
    assert decide(rule(), 0.31, [0.2, 0.4], True, 1) is not None
    assert decide(rule(min_trials=4), 0.9, [0.2, 0.4], True, 1) is None
    assert decide(rule(metric="recall"), 0.1, [0.5], False, 1) is not None  # higher is better
    assert decide(rule(metric="recall"), 0.6, [0.5], False, 1) is None
    assert decide(rule(), math.nan, [0.2], True, 1) is not None  # a NaN figure is the worst
    assert decide(rule(), 0.9, [0.1, math.nan, 0.2], True, 1) is not None  # ... in others too
    assert decide(rule(rule="asha", reduction_factor=2), 0.3, [math.nan, 0.1, 0.2], True,
                  1) is not None


def test_asha_keeps_the_best_share():
    asha = rule(rule="asha", reduction_factor=3)
    others = [0.1, 0.2, 0.3, 0.4, 0.5]  # 6 trials with this one: the best 2 go on
    assert decide(asha, 0.15, others, True, 2) is None
    assert "not among the best 2 of the 6 trials" in decide(asha, 0.25, others, True, 2)
    assert decide(asha, 0.05, [0.1], True, 2) is None  # 2 trials: the better 1 goes on
    assert decide(asha, 0.2, [0.1], True, 2) is not None


def test_a_judge_records_its_decision_and_keeps_it_after_a_requeue(tmp_path):
    board = tmp_path  # the sweep's run_root: each point records in its own run directory
    (board / "a").mkdir(), (board / "b").mkdir()
    first, second = (Judge(rule(rungs=[2.0, 4.0]), board, name) for name in ("a", "b"))
    assert first(1, 1.0, {"kid": 0.9}) is None  # before the first rung: not judged
    assert first(2, 2.0, {"kid": 0.2}) is None  # alone at rung 2
    reason = second(3, 3.0, {"kid": 0.5})  # rung 2, at its first measurement past it
    assert "kid 0.5 at rung 2 epochs is worse than the median 0.2" in reason
    assert Judge(rule(rungs=[2.0, 4.0]), board, "b")(3, 3.0, {"kid": 0.01}) == reason
    assert stop_reasons(board) == {"b": reason}
    assert first(3, 3.0, {"face_rate": 0.2}) is None  # the judged figure not measured
    kimg = Judge(rule(unit="kimg", rungs=[5.0]), tmp_path / "k", "c")
    assert kimg(9, 4.9, {"kid": 1.0}) is None and not (tmp_path / "k").exists()


def test_a_stopped_point_is_not_run_again(sweep_file, tmp_path):
    spec = load_spec(sweep_file)
    points = point_names(spec.work)
    for name in points[1:]:  # stopped before: nothing to train
        record_run(spec.work.run_root + "/" + name, exitcodes.EARLY_STOPPED, "9")
    # the first one's job died after its record said stop, before it could exit 80
    for name in ("other", points[0]):
        (tmp_path / "sweep" / name).mkdir(exist_ok=True)
    Judge(rule(), tmp_path / "sweep", "other")(1, 1.0, {"kid": 0.1})
    Judge(rule(), tmp_path / "sweep", points[0])(1, 1.0, {"kid": 0.5})
    assert run(spec, Launch(index=1)) == exitcodes.EARLY_STOPPED  # the array task
    assert run(spec, Launch(index=0)) == exitcodes.EARLY_STOPPED
    assert run(spec) == exitcodes.OK  # in turn: stopped points are not failures


def test_the_summary_shows_status_reasons_and_a_plot(sweep_file, tmp_path):
    spec = load_spec(sweep_file)
    root = tmp_path / "sweep"
    names = point_names(spec.work)
    for k, (name, code) in enumerate(zip(names[:4], (exitcodes.OK, exitcodes.EARLY_STOPPED,
                                                     exitcodes.NOT_RUNNABLE, None))):
        record_run(root / name, code, str(k))  # the last one still trains
        record_epoch(root / name, 1, {"kid": 0.1 * (k + 1), "kid_std": 0.01, "fid": 1.0})
    Judge(rule(), root, names[0])(1, 1.0, {"kid": 0.1})
    Judge(rule(), root, names[1])(1, 1.0, {"kid": 0.2})
    path, rows = summary(spec)
    with open(path, newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["status"] for r in table] == ["done", "stopped", "failed (exit 3)",
                                            "in progress", "not started"]
    assert "worse than the median 0.1" in table[1]["stopped_because"]
    assert table[0]["train.optimizer.learning_rate"] == str(
        expand_points(spec.work)[0]["train.optimizer.learning_rate"])
    png = plot_summary(rows, swept_keys(spec), "kid", root / "summary.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert plot_summary(rows, swept_keys(spec), "fid_nowhere", root / "x.png") is None
    proc = run_cli("summary", str(sweep_file))
    assert proc.returncode == 0 and "kid against each swept value ->" in proc.stdout


def test_the_summary_shows_and_plots_the_judged_figure(sweep_file, tmp_path):
    """A rule judging recall: the summary holds recall and its best, and plots it."""
    spec = load_spec(sweep_file, parse_set_args(["sweep.early_stop.metric=recall"]))
    root = tmp_path / "sweep"
    for k, name in enumerate(point_names(spec.work)):
        record_epoch(root / name, 1, {"kid": 0.1, "recall": 0.1 * k})
    _, rows = summary(spec)
    assert {"recall", "best_recall"} <= set(summary_columns(rows))
    assert plot_summary(rows, swept_keys(spec), "recall", root / "r.png") is not None
