"""Offline experiment tracking (``train.tracking``): rank 0 mirrors the run's own events into
MLflow or W&B (offline mode), as they are written.

What is logged: the spec as params (flattened dotted keys, every ``env:`` value as
``***``), each epoch's losses and the quality figures measured in it (the step is the global
training step), each epoch's sample grid as an artifact, and tags: job id, host, ranks,
device, run directory, the best snapshot, and how the job ended.

**One tracked run per run directory, across requeues.** The tracked run's id is written to
the run's own record as a ``tracking`` event. A requeued or resubmitted job finds it there
and continues that run. It skips each epoch whose step the tracker already holds, so an
epoch redone after a kill is never logged twice.

**Why MLflow's file store.** Recent MLflow defaults to SQLite, which relies on POSIX
locks that NFS does not reliably provide: a sweep's array tasks writing one database at
once risk a corrupt or locked file. The file store gives each tracked run its own
directory of append-only files, so each run has exactly one writer (its job's rank 0). The
one shared write, creating the experiment, is made exclusive with an ``O_EXCL`` marker.
MLflow keeps the file store in maintenance mode, and since 3.13 it refuses one unless
``MLFLOW_ALLOW_FILE_STORE=true``, which this sets for its own process.
``mlflow migrate-filestore`` turns a store into SQLite on a laptop.

Tracking is a view, so it never costs the job. The first failure (a missing extra, a full
disk) is logged once as a warning, and tracking stops for the rest of the job.
"""
from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from jobs.core import events, exitcodes, files
from jobs.core.rundir import sample_grid
from jobs.core.schema import JobSpec

log = logging.getLogger(__name__)
MARKER_STALE_S = 120.0  # an experiment marker this old without its experiment: maker died
# how the job's exit code closes the tracked run: a requeue continues it later
STATUS = {exitcodes.OK: "FINISHED", exitcodes.EARLY_STOPPED: "FINISHED",
          exitcodes.REQUEUE: "SCHEDULED"}


def flatten(data: Any, prefix: str = "", text: bool = True) -> dict[str, Any]:
    """Nested spec data under dotted keys, ``train.optimizer.learning_rate`` -> ``'7e-05'``:
    as text for MLflow's params, as values (``text=False``) for W&B's config."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}.", text))
        return out
    return {prefix.rstrip("."): str(data) if text else data}


def previous_run_id(story: list[dict], backend: str, store: Path) -> str | None:
    """The tracked run an earlier job of this run directory logged to, in this store."""
    for event in reversed(story):
        if event["type"] == "tracking" and event["backend"] == backend \
                and event["store"] == str(store):
            return event["run_id"]
    return None


class Tracker:
    """What both backends share: the job's facts (tags or summary), the quality figures
    held for their epoch's step, and the rule that a step already logged is never logged
    again. A backend starts or continues its run (``start``, which sets ``logged_step``),
    logs an epoch, notes a new best, and closes (``end``) or abandons its run."""

    def __init__(self, spec: JobSpec, ranks: int, device: str):
        self.spec, self.run_dir = spec, Path(spec.work.run_dir)
        self.store = spec.work.tracking.store_for(spec.work.run_dir)
        self.project = spec.work.tracking.experiment or spec.name
        self.facts = {"facegan.job": events.job_id() or "-",
                      "facegan.host": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                      "facegan.ranks": str(ranks), "facegan.device": device,
                      "facegan.run_dir": str(self.run_dir.resolve())}
        self.logged_step, self.quality = -1, {}

    def record(self, event_type: str, fields: dict[str, Any]) -> None:
        """A run event just written (``gan/training/loop.py`` ``Trainer.event``)."""
        if event_type == "quality":  # logged with its epoch's step, at the epoch's end
            self.quality = {k: v for k, v in fields["figures"].items() if v is not None}
        elif event_type == "best":
            self.note_best(f"{fields['figure']}={fields['value']:.6g} at epoch "
                           f"{fields['epoch']} ({fields['name']})")
        elif event_type == "epoch_done":
            step, figures, self.quality = fields["step"], self.quality, {}
            if step <= self.logged_step:  # logged by the job before a kill: never twice
                return
            values = {**{k: v for k, v in fields["metrics"].items() if v is not None},
                      **figures, "epoch": fields["epoch"]}
            grid = sample_grid(self.run_dir, fields["epoch"])
            self.log_epoch(step, values, grid if grid.exists() else None)
            self.logged_step = step

    def start(self) -> None:
        raise NotImplementedError

    def log_epoch(self, step: int, values: dict[str, float], grid: Path | None) -> None:
        raise NotImplementedError

    def note_best(self, text: str) -> None:
        raise NotImplementedError

    def end(self, code: int, meaning: str) -> None:
        raise NotImplementedError

    def abandon(self) -> None:
        """Close the run after a failure, if the backend holds it open."""


class MlflowTracker(Tracker):
    """Rank 0's tracked run in an MLflow file store."""

    def __init__(self, spec: JobSpec, ranks: int, device: str):
        super().__init__(spec, ranks, device)
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # see the module's docstring
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.store.resolve().as_uri())
        self.run_id = ""

    def start(self) -> None:
        experiment = self._experiment(self.project)
        old = previous_run_id(events.read(self.run_dir), "mlflow", self.store)
        if old is not None:  # the steps it holds are its own history's
            self.run_id = old
            self.client.update_run(old, status="RUNNING")
            history = self.client.get_metric_history(old, "epoch")
            self.logged_step = max((m.step for m in history), default=-1)
        else:
            run = self.client.create_run(experiment, run_name=self.run_dir.name)
            self.run_id = run.info.run_id
            self._params(flatten(self.spec.to_dict(env_values=False)))
            events.emit(self.run_dir, "tracking", backend="mlflow", store=str(self.store),
                        run_id=self.run_id, experiment=experiment)
        for key, value in self.facts.items():
            self.client.set_tag(self.run_id, key, value)

    def _experiment(self, name: str) -> str:
        """The experiment's id, made once: the first array task to claim the marker makes
        it, the others wait for it (never two experiments of one name). A maker that fails
        removes its marker; one older than ``MARKER_STALE_S`` (its maker died) is taken
        over."""
        self.store.mkdir(parents=True, exist_ok=True)
        marker = self.store / f".facegan-experiment-{name}"
        deadline = time.monotonic() + MARKER_STALE_S
        while True:
            found = self._existing(name)
            if found is not None:
                return found
            if files.create_first(marker) or files.take_stale(marker, MARKER_STALE_S):
                try:
                    return self._existing(name) or self.client.create_experiment(name)
                except Exception:
                    marker.unlink(missing_ok=True)
                    raise
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.store}: experiment {name!r} was claimed by "
                                   f"{marker.name} but never made")
            time.sleep(0.5)

    def _existing(self, name: str) -> str | None:
        """The experiment's id if it exists; None also while another writer's meta.yaml is
        half written (MLflow writes it in place)."""
        try:
            found = self.client.get_experiment_by_name(name)
        except Exception:  # noqa: BLE001 - a half-written file: ask again
            return None
        return found.experiment_id if found is not None else None

    def _params(self, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_epoch(self, step: int, values: dict[str, float], grid: Path | None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step)
                                                    for k, v in values.items()])
        if grid is not None:
            self.client.log_artifact(self.run_id, str(grid), "samples")

    def note_best(self, text: str) -> None:
        self.client.set_tag(self.run_id, "facegan.best", text)

    def end(self, code: int, meaning: str) -> None:
        self.client.set_tag(self.run_id, "facegan.outcome", f"exit {code}: {meaning}")
        self.client.set_terminated(self.run_id, STATUS.get(code, "FAILED"))


class WandbTracker(Tracker):
    """Rank 0's run in W&B's offline mode: ``STORE/wandb/offline-run-*-ID``, one folder per
    job, uploaded later by ``wandb sync`` from a node with the network (the folders of one
    run id become one W&B run). W&B cannot be asked offline which steps it holds, so an
    epoch counts as logged when the record shows it done before this job started: an epoch
    redone after a kill is not logged twice (one killed between its event and its upload is
    missing instead)."""

    def __init__(self, spec: JobSpec, ranks: int, device: str):
        super().__init__(spec, ranks, device)
        self.run = None

    def start(self) -> None:
        import wandb

        story = events.read(self.run_dir)
        old = previous_run_id(story, "wandb", self.store)
        self.logged_step = max((e["step"] for e in story if e["type"] == "epoch_done"),
                               default=-1)
        self.store.mkdir(parents=True, exist_ok=True)
        # offline needs no key, and W&B writes the key it finds into the run's file; wandb
        # sync later uploads with the login of whoever runs it
        os.environ.pop("WANDB_API_KEY", None)
        self.run = wandb.init(
            mode="offline", dir=str(self.store), project=self.project, group=self.project,
            id=old or uuid.uuid4().hex[:12], resume="allow",
            reinit="create_new",  # a sweep run in one process: one run per point
            name=self.run_dir.name,
            config=flatten(self.spec.to_dict(env_values=False), text=False),
            settings=wandb.Settings(
                silent=True, console="off", save_code=False, disable_git=True,
                # no system metadata: it holds the command line, which may carry a --set
                # env.X=secret (the job's host and device go to the summary below)
                x_disable_meta=True, x_disable_stats=True))
        self.run.summary.update(self.facts)
        if old is None:
            events.emit(self.run_dir, "tracking", backend="wandb", store=str(self.store),
                        run_id=self.run.id, experiment=self.project)

    def log_epoch(self, step: int, values: dict[str, float], grid: Path | None) -> None:
        import wandb

        images = {"samples": wandb.Image(str(grid))} if grid is not None else {}
        self.run.log({**values, **images}, step=step)

    def note_best(self, text: str) -> None:
        self.run.summary["facegan.best"] = text

    def end(self, code: int, meaning: str) -> None:
        self.run.summary["facegan.outcome"] = f"exit {code}: {meaning}"
        self.run.finish(exit_code=0 if code in STATUS else code)

    def abandon(self) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1)


BACKENDS = {"mlflow": MlflowTracker, "wandb": WandbTracker}


class Tracking:
    """The job's tracker behind a guard: a failure is one warning, then tracking stops."""

    def __init__(self, spec: JobSpec, ranks: int, device: str):
        self.tracker, self.where = None, f"train.tracking ({spec.work.tracking.backend})"
        self._guarded(lambda: self._open(spec, ranks, device))

    def _open(self, spec: JobSpec, ranks: int, device: str) -> None:
        self.tracker = BACKENDS[spec.work.tracking.backend](spec, ranks, device)
        self.tracker.start()  # (a failure here abandons it: _guarded)

    def _guarded(self, call) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - any failure of the tracker, never the job's
            log.warning("%s: tracking stopped: %s: %s", self.where, type(exc).__name__, exc)
            tracker, self.tracker = self.tracker, None
            if tracker is not None:
                with contextlib.suppress(Exception):
                    tracker.abandon()  # a W&B run left open would take the next point's

    def record(self, event_type: str, fields: dict[str, Any]) -> None:
        if self.tracker is not None:
            self._guarded(lambda: self.tracker.record(event_type, fields))

    def end(self, code: int, meaning: str) -> None:
        if self.tracker is not None:
            self._guarded(lambda: self.tracker.end(code, meaning))


def open_tracking(spec: JobSpec, ranks: int, device: str) -> Tracking | None:
    """Rank 0's tracking for the job, or None when the spec asks for none."""
    if spec.work.tracking.backend == "none":
        return None
    return Tracking(spec, ranks, device)
