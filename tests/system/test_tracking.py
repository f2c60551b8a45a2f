"""``train.tracking: mlflow``, read back with MLflow's own client: one tracked run across a
requeue (a stop signal, exit 75, resumed) and across a kill whose epoch the tracker had
already logged (redone, never logged twice); the spec as params with its secret masked
everywhere in the store; the samples and the page as artifacts; the job's tags."""
from __future__ import annotations

import contextlib
import signal
import subprocess
from pathlib import Path

from jobs.core import events, exitcodes, faults
from tests.conftest import QUIET_ENV, ROOT
from tests.system.training import (
    STEPS,
    killed_after_epoch,
    run_train,
    spec_for,
    train_cmd,
)
from tests.system.wandb_records import read_run

SECRET = "s3cr3t-never-logged"


def tracked_args(tmp_path, data, run_dir, backend="mlflow"):
    return spec_for(tmp_path, data, run_dir, "train.epochs=2",
                    f"train.tracking.backend={backend}",
                    f"train.tracking.store={tmp_path / 'store'}",
                    "train.tracking.experiment=digits", f"env.WANDB_API_KEY={SECRET}",
                    f"env.HF_TOKEN={SECRET}")


def requeued_then_killed(tmp_path, data, backend, after_stop=lambda run_dir: None) -> Path:
    """One run stopped in epoch 2 (exit 75) and resumed; then a copy of it as a kill after
    epoch 1's checkpoint left it, once the tracker had logged epoch 2, resumed too. The
    run directory."""
    run_dir = tmp_path / "run"
    args = tracked_args(tmp_path, data, run_dir, backend)
    first = stopped_in_epoch_2(args, run_dir)
    assert first.returncode == exitcodes.REQUEUE, first.stderr[-3000:]
    after_stop(run_dir)
    resumed = run_train(*args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(events.read(run_dir, "tracking")) == 1  # continued, not a second run
    killed_after_epoch(run_dir, tmp_path / "killed", 1, STEPS)
    again = run_train(*tracked_args(tmp_path, data, tmp_path / "killed", backend))
    assert again.returncode == 0, again.stderr[-3000:]
    return run_dir


def assert_secret_nowhere(store: Path) -> None:
    for path in store.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


def stopped_in_epoch_2(args, run_dir) -> subprocess.CompletedProcess:
    """The run, its steps of epoch 2 slowed to a second each (a test fault), stopped by
    SIGUSR1 once its record shows epoch 1 done: a checkpoint in epoch 2, exit 75. Its
    output goes to a file (a pipe nobody reads could fill and block it)."""
    log = run_dir.parent / f"{run_dir.name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(train_cmd(*args), env={**QUIET_ENV, faults.VARIABLE:
                                                       f"slow@0:{STEPS}:1.0"},
                                cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
        tail = events.Tail(run_dir)
        for _ in range(1800):  # a hang guard of 15 min in polls, not a speed bound
            if proc.poll() is not None or any(e["type"] == "epoch_done" for e in tail.new()):
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.5)
        proc.send_signal(signal.SIGUSR1)
        proc.wait(timeout=900)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "", log.read_text())


def test_one_tracked_run_across_a_requeue_and_a_kill(digits16, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as a reader must (docs/reports.md)
    client = MlflowClient(tracking_uri=(tmp_path / "store").as_uri())

    def after_the_stop(run_dir):  # the tracked run waits to be continued
        run_id = events.read(run_dir, "tracking")[0]["run_id"]
        assert client.get_run(run_id).info.status == "SCHEDULED"

    run_dir = requeued_then_killed(tmp_path, digits16, "mlflow", after_the_stop)
    run_id = events.read(run_dir, "tracking")[0]["run_id"]
    experiment = client.get_experiment_by_name("digits")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run_id, "epoch")] == [STEPS, 2 * STEPS]
    assert [m.step for m in client.get_metric_history(run_id, "d_real")] == [STEPS, 2 * STEPS]
    assert run.data.params["train.epochs"] == "2" and run.data.params["kind"] == "train"
    assert run.data.params["env.WANDB_API_KEY"] == "***"
    assert_secret_nowhere(tmp_path / "store")
    tags = run.data.tags
    assert tags["facegan.outcome"] == "exit 0: success" and tags["facegan.ranks"] == "1"
    assert tags["facegan.device"].startswith("device: CPU")
    artifacts = [a.path for a in client.list_artifacts(run_id, "samples")]
    assert artifacts == ["samples/epoch_0001.png", "samples/epoch_0002.png"], artifacts


def test_wandb_offline_one_run_id_across_a_requeue_and_a_kill(digits16, tmp_path):
    """W&B's offline mode: one folder per job, all of one run id (``wandb sync`` makes them
    one run), each epoch's step logged once across them, read back from the run files."""
    run_dir = requeued_then_killed(tmp_path, digits16, "wandb")
    [tracking] = events.read(run_dir, "tracking")
    folders = sorted((tmp_path / "store" / "wandb").glob("offline-run-*"))
    runs = [read_run(folder) for folder in folders]
    assert len(runs) == 3 and {r["id"] for r in runs} == {tracking["run_id"]}, folders
    rows = [row for r in runs for row in r["history"].values() if "epoch" in row]
    assert sorted(row["_step"] for row in rows) == [STEPS, 2 * STEPS]
    assert all("d_real" in row and row["samples/_type"] == "image-file" for row in rows)
    assert runs[0]["config"]["train.epochs"] == 2
    assert runs[0]["config"]["env.WANDB_API_KEY"] == "***"
    assert_secret_nowhere(tmp_path / "store")

