"""Quality during training: measured when due, written to metrics.csv (precision and recall
too when asked), the best snapshot kept apart and loadable, and measuring changes nothing
about the training itself; generate's metrics task gives the same figures from the run."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import tensorflow as tf

from gan import generate
from gan.models.sampler import Sampler
from gan.quality.meter import is_due
from gan.training.checkpoint import BestSnapshot
from gan.training.outputs import read_metrics
from jobs.core.figures import best_row, quality_summary
from jobs.core.loader import load_spec, parse_set_args
from jobs.core.schema import MetricsSpec
from jobs.core.signals import StopSignals
from tests.gan.training.test_checkpoint import trainer, weights

MEASURED = ["train.metrics.every_epochs=1", "train.metrics.count=40",
            "train.metrics.face_rate=false", "train.checkpoint.keep_best=kid",
            "train.checkpoint.keep=5"]
MANIFOLD = ("precision", "recall", "density", "coverage")


def test_due_by_epochs_or_by_thousands_of_images():
    by_epochs = MetricsSpec(every_epochs=2)
    assert [is_due(by_epochs, e, 0, 0) for e in (1, 2, 3, 4)] == [False, True, False, True]
    by_images = MetricsSpec(every_kimg=1.0)
    assert is_due(by_images, 1, 900, 1100) and not is_due(by_images, 2, 1100, 1900)
    assert is_due(by_images, 3, 1900, 4100)  # several thousands crossed: measured once
    assert not is_due(MetricsSpec(), 5, 0, 10 ** 6)


def test_best_and_last_values_follow_the_figure_direction():
    rows = [{"epoch": "1", "kid": "0.3", "face_rate": "0.1"},
            {"epoch": "2", "kid": "", "face_rate": ""},
            {"epoch": "3", "kid": "0.1", "face_rate": "0.5"},
            {"epoch": "4", "kid": "0.2", "face_rate": "0.4"}]
    assert best_row(rows, "kid")["epoch"] == "3" and best_row(rows, "fid") is None
    q = quality_summary(rows)
    assert (q["kid"], q["kid_epoch"], q["best_kid"], q["best_kid_epoch"]) == \
        ("0.2", "4", "0.1", "3")
    assert (q["best_face_rate"], q["best_face_rate_epoch"]) == ("0.5", "3")
    assert "fid" not in q


def snapshot(run_dir, v, figure="kid", lower=True, resumed=True) -> BestSnapshot:
    return BestSnapshot(run_dir, tf.train.Checkpoint(v=v), figure, lower, True, resumed)


def test_best_snapshot_is_written_only_when_better(tmp_path):
    v = tf.Variable(1.0)
    best = snapshot(tmp_path, v)
    assert best.offer({"kid": 0.5}, 1, 10)
    v.assign(2.0)
    assert not best.offer({"kid": 0.5}, 2, 20)  # equal is not better
    assert best.offer({"kid": 0.4}, 3, 30)
    v.assign(3.0)
    assert not best.offer({"kid": 0.45}, 4, 40)
    record = json.loads((tmp_path / "best" / "best.json").read_text())
    assert record == {"figure": "kid", "value": 0.4, "epoch": 3, "step": 30,
                      "checkpoint": "ckpt-30"}
    assert sorted(p.name for p in (tmp_path / "best").glob("ckpt-*.index")) == ["ckpt-30.index"]
    tf.train.Checkpoint(v=v).read(str(tmp_path / "best" / "ckpt-30"))
    assert float(v) == 2.0
    assert not best.offer({"kid": float("nan")}, 5, 50)  # never a best, never deletes one
    assert not snapshot(tmp_path, v).offer({"kid": 0.41}, 5, 50)  # it survives a resume
    higher = snapshot(tmp_path / "h", v, "face_rate", lower=False)
    assert higher.offer({"face_rate": 0.2}, 1, 1) and not higher.offer({"face_rate": 0.1}, 2, 2)


def test_a_best_of_another_figure_or_an_earlier_run_is_set_aside(tmp_path, caplog):
    v = tf.Variable(1.0)
    assert snapshot(tmp_path, v).offer({"kid": 0.01}, 1, 10)
    assert snapshot(tmp_path, v, "fid").offer({"fid": 80.0}, 2, 20)  # not compared with KID
    assert "best kid of another setting" in caplog.text
    assert snapshot(tmp_path, v, "fid", resumed=False).offer({"fid": 90.0}, 1, 10)
    assert "an earlier run" in caplog.text
    assert json.loads((tmp_path / "best" / "best.json").read_text())["value"] == 90.0


@pytest.fixture(scope="module")
def measured_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("quality")
    t = trainer(tmp, "train.epochs=3", *MEASURED, "train.metrics.precision_recall=true",
                "train.metrics.nearest_k=3")
    assert t.run(StopSignals()) == 0
    return tmp, weights(t.G)


def test_figures_each_epoch_and_the_best_snapshot_loads(measured_run):
    tmp, _ = measured_run
    rows = read_metrics(tmp / "run", "epoch")
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    kids = [float(r["kid"]) for r in rows]
    assert all(np.isfinite(kids)) and all(float(r["fid"]) > 0 for r in rows)
    assert "face_rate" not in rows[0]  # face_rate: false
    for figure in MANIFOLD:  # precision_recall: true
        assert all(0 <= float(r[figure]) <= (40 / 3 if figure == "density" else 1)  # N / k
                   for r in rows), (figure, rows)
    record = json.loads((tmp / "run" / "best" / "best.json").read_text())
    assert record["value"] == pytest.approx(min(kids), rel=1e-5)
    assert record["epoch"] == 1 + int(np.argmin(kids))
    best = Sampler.load(tmp / "run", "best")
    same_step = Sampler.load(tmp / "run", record["step"])
    assert best.checkpoint.endswith(record["checkpoint"])
    for a, b in zip(weights(best.G), weights(same_step.G)):
        np.testing.assert_array_equal(a, b)


def test_generate_metrics_gives_the_same_figures_for_the_generated_and_the_reference(
        measured_run, write_spec):
    """``generate.task: metrics`` with precision_recall on the run: every figure for the
    generator, the untrained one and real against real; halves of one real set reach each
    other (recall well above 0) where the untrained generator's near-constant images do not."""
    tmp, _ = measured_run
    spec = load_spec(write_spec(f"""\
        kind: generate
        name: m
        generate: {{run_dir: {tmp / 'run'}, output_dir: {tmp / 'figures'}, task: metrics}}
        """), parse_set_args(["generate.count=40", "generate.precision_recall=true",
                              "generate.nearest_k=3"]))
    assert generate.run(spec) == 0
    figures = json.loads((tmp / "figures" / "figures.json").read_text())
    for figure in MANIFOLD:
        assert set(figures[figure]) == {"real_vs_real", "generated", "untrained"}, figures
    recall = figures["recall"]
    assert recall["real_vs_real"] > 0.3 and recall["untrained"] < recall["real_vs_real"], recall


def test_measuring_does_not_change_the_training(measured_run, tmp_path):
    _, measured = measured_run
    plain = trainer(tmp_path, "train.epochs=3")
    assert plain.run(StopSignals()) == 0
    for a, b in zip(weights(plain.G), measured):
        np.testing.assert_array_equal(a, b)


def test_a_pending_stop_skips_the_measurement(tmp_path, caplog):
    """Near the walltime the next step must checkpoint, not wait minutes for the figures."""
    t = trainer(tmp_path, "train.epochs=1", *MEASURED)
    stop = StopSignals()
    assert t._measure(0, stop)["kid"] > 0
    stop.signum = signal.SIGUSR1
    assert t._measure(0, stop) == {} and "stop requested, quality not measured" in caplog.text
