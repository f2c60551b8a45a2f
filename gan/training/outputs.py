"""What a training run leaves for its user (rank 0 only): metrics, curves, samples, logs.

``run_dir/metrics.csv``  one row per log interval and per epoch (losses, D accuracy, time;
                        the epoch rows also KID, FID, face rate, ... when ``train.metrics``
                        measured)
``run_dir/loss_curve.png``  the losses over steps, redrawn every epoch
``run_dir/samples/epoch_NNNN.png``  a fixed latent per column, one row per class, labelled
``run_dir/tensorboard/``  the same scalars for TensorBoard
``run_dir/best/``  the ``checkpoint.keep_best`` snapshot and ``best.json``
                  (``gan.training.checkpoint``)

On resume, rows past the checkpoint's step are dropped (they will be recomputed), so a
restarted run's CSV has every step exactly once.
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from jobs.core.files import atomic_path, atomic_write_text
from jobs.core.grids import save_grid
from jobs.core.rundir import BEST_DIR, BEST_RECORD, sample_grid  # noqa: F401 - BEST_*: re-exported

log = logging.getLogger(__name__)
EXTRA = ["secs", "rollbacks", "saves", "ranks_in_sync"]
METRICS_FILE = "metrics.csv"
def read_metrics(run_dir: str | Path, kind: str | None = None) -> list[dict]:
    """The rows of a run's ``metrics.csv`` (all, or one ``kind``: interval or epoch), as
    dicts of strings; [] before the first row is written. The one reader of the file."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f) if kind is None or r["kind"] == kind]


class RunOutputs:
    def __init__(self, run_dir: Path, class_names: list[str], resume_step: int,
                 metrics: tuple[str, ...], tensorboard: bool = True,
                 more: tuple[str, ...] = ()):
        self.dir = run_dir
        self.class_names = class_names
        self.metrics = metrics  # the family's step metrics (gan/families.py)
        self.columns = ["kind", "epoch", "step", *metrics, *EXTRA, *more]  # more: quality, ADA
        self.csv_path = run_dir / METRICS_FILE
        self.rows = self._load_rows(resume_step)
        self._interval: dict[str, list[float]] = {k: [] for k in metrics}
        self._epoch: dict[str, list[float]] = {k: [] for k in metrics}
        self.writer = None
        if tensorboard:
            import tensorflow as tf

            self.writer = tf.summary.create_file_writer(str(run_dir / "tensorboard"))

    def _load_rows(self, resume_step: int) -> list[dict]:
        return [r for r in read_metrics(self.dir) if int(r["step"]) <= resume_step]

    def add_step(self, values: dict[str, float]) -> None:
        for key in self.metrics:
            self._interval[key].append(values[key])
            self._epoch[key].append(values[key])

    def _flush(self, bucket: dict[str, list[float]], kind: str, epoch: int, step: int,
               extra: dict) -> dict:
        means = {k: float(np.mean(v)) if v else float("nan") for k, v in bucket.items()}
        row = {"kind": kind, "epoch": epoch, "step": step,
               **{k: f"{v:.5f}" for k, v in means.items()}, **extra}
        self.rows.append(row)
        for v in bucket.values():
            v.clear()
        if self.writer is not None and kind == "interval":
            import tensorflow as tf

            with self.writer.as_default(step=step):
                for key, value in means.items():
                    tf.summary.scalar(key, value)
            self.writer.flush()
        return means

    def interval(self, epoch: int, step: int, extra: dict) -> dict:
        means = self._flush(self._interval, "interval", epoch, step, extra)
        self._write_csv()
        return means

    def epoch_end(self, epoch: int, step: int, extra: dict, samples: np.ndarray,
                  per_class: int, more: dict[str, float] | None = None) -> dict:
        """The epoch's row (with the quality figures when measured, ADA's p), curve, grid."""
        means = self._flush(self._epoch, "epoch", epoch, step,
                            {**extra, **{k: f"{v:.6g}" for k, v in (more or {}).items()}})
        if more and self.writer is not None:
            import tensorflow as tf

            with self.writer.as_default(step=step):
                for key, value in more.items():
                    tf.summary.scalar(f"epoch/{key}", value)
            self.writer.flush()
        self._write_csv()
        self._loss_curve()
        self._samples(epoch, samples, per_class)
        return means

    def write_ranks(self, epoch: int, ranks: list[list[int]]) -> None:
        """Per rank: weights digest, images seen, and sums of their indices (ranks.csv)."""
        path = self.dir / "ranks.csv"
        keep = []
        if path.exists():
            with open(path, newline="") as f:
                keep = [r for r in csv.DictReader(f) if int(r["epoch"]) < epoch]
        fields = ["epoch", "rank", "weights_digest", "images", "index_sum", "index_sq_sum"]
        keep += [dict(zip(fields, [epoch, rank, *row])) for rank, row in enumerate(ranks)]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(keep)
        atomic_write_text(path, buf.getvalue())

    def _write_csv(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_text(self.csv_path, buf.getvalue())

    def _loss_curve(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = [r for r in self.rows if r["kind"] == "interval"]
        if not rows:
            return
        steps = [int(r["step"]) for r in rows]
        fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
        for key in ("d_real", "d_fake", "g"):
            ax.plot(steps, [float(r[key]) for r in rows], label=key)
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        with atomic_path(self.dir / "loss_curve.png") as tmp:
            fig.savefig(tmp, format="png")
        plt.close(fig)

    def _samples(self, epoch: int, images: np.ndarray, per_class: int) -> None:
        captions = [self.class_names[i // per_class] for i in range(len(images))]
        save_grid(sample_grid(self.dir, epoch), images, captions,
                  columns=per_class)
