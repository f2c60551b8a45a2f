"""``train.tracking`` (``jobs/core/tracking.py``) in-process: the spec flattened for params
and config, the tracked run found again in the record, and a tracker that fails once costs a
warning and stops, never the job. (Real MLflow and W&B read back: tests/system/
test_tracking.py.)"""
from __future__ import annotations

import logging
from pathlib import Path

from jobs.core import events, tracking
from jobs.core.loader import load_spec, parse_set_args
from tests.conftest import ROOT


def spec(tmp_path: Path, *sets: str):
    return load_spec(ROOT / "jobs/examples/train_cgan_digits.yaml", parse_set_args(
        [f"train.run_dir={tmp_path / 'run'}", *sets]))


def test_the_spec_flattens_to_dotted_keys_with_secrets_masked(tmp_path):
    flat = tracking.flatten(spec(tmp_path, "env.HF_TOKEN=abc").to_dict(redact=True))
    assert flat["train.optimizer.learning_rate"] == "0.0002"
    assert flat["env.HF_TOKEN"] == "***" and "abc" not in flat.values()
    values = tracking.flatten({"train": {"epochs": 2, "f": [1, 2]}}, text=False)
    assert values == {"train.epochs": 2, "train.f": [1, 2]}


def test_the_tracked_run_is_the_one_recorded_for_this_backend_and_store(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    for backend, store, run_id in (("mlflow", "/a", "r1"), ("wandb", "/a", "w1"),
                                   ("mlflow", "/b", "r2")):
        events.emit(run_dir, "tracking", backend=backend, store=store, run_id=run_id,
                    experiment="e")
    story = events.read(run_dir)
    assert tracking.previous_run_id(story, "mlflow", Path("/a")) == "r1"
    assert tracking.previous_run_id(story, "wandb", Path("/a")) == "w1"
    assert tracking.previous_run_id(story, "wandb", Path("/b")) is None


def test_no_tracker_unless_asked_and_the_default_store_is_beside_the_run(tmp_path):
    assert tracking.open_tracking(spec(tmp_path), 1, "cpu") is None
    work = spec(tmp_path, "train.tracking.backend=mlflow").work
    assert work.tracking.store_for(work.run_dir) == tmp_path / "mlruns"


def test_a_failing_tracker_warns_once_and_stops_never_the_job(tmp_path, caplog,
                                                               monkeypatch):
    calls = []

    class Broken:
        def __init__(self, *args):
            pass

        def start(self):
            calls.append("start")

        def record(self, event_type, fields):
            calls.append(event_type)
            raise OSError(28, "No space left on device")

    monkeypatch.setitem(tracking.BACKENDS, "mlflow", Broken)
    with caplog.at_level(logging.WARNING):
        guarded = tracking.open_tracking(spec(tmp_path, "train.tracking.backend=mlflow"), 1,
                                         "cpu")
        for _ in range(3):
            guarded.record("epoch_done", {})
        guarded.end(0, "success")
    assert calls == ["start", "epoch_done"]
    assert caplog.text.count("tracking stopped: OSError") == 1
