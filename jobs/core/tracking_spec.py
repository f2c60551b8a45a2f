"""``train.tracking``: where a run is also tracked, offline (``jobs/core/tracking.py`` acts).

Compute nodes have no network, so the tracker writes to the shared filesystem and the user
looks later: ``mlflow ui --backend-store-uri STORE`` on a login node or a laptop, or
``wandb sync STORE/wandb/offline-run-*`` from a node with the network. Neither is needed to
train: each is an optional extra (``./run setup --with mlflow``, ``--with wandb``), never
imported unless a spec asks for it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from jobs.core.fields import opt

STORE_NAMES = {"mlflow": "mlruns", "wandb": "wandb"}  # a store's default folder name


@dataclass
class TrackingSpec:
    backend: Literal["none", "mlflow", "wandb"] = opt(
        "none", "Also log the run to a tracker, offline: mlflow (a file store on the shared "
                "filesystem, one directory per run, read later by mlflow ui) or wandb "
                "(offline mode, uploaded later by wandb sync); ./run setup --with NAME "
                "installs either. Rank 0 logs the spec (env: values "
                "masked), each epoch's losses, the quality figures, the sample grids and the "
                "job's tags; a requeued job continues the same tracked run")
    store: str | None = opt(None, "Where the tracker writes (default: mlruns, or wandb, "
                                  "beside the run directory, so a sweep's points share "
                                  "their run_root's)",
                            path="output",
                            example="/scratch/$USER/mlruns")
    experiment: str | None = opt(None, "MLflow experiment or W&B project (default: the job's "
                                       "name; a sweep's points: the sweep's name)")

    def store_for(self, run_dir: str) -> Path:
        """The store, its default resolved beside ``run_dir``."""
        if self.store:
            return Path(self.store)
        return Path(run_dir).parent / STORE_NAMES[self.backend]
