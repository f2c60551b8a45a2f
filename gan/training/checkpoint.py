"""The run directory's checkpoints: save, restore with fallback, and the compatibility check.

``tf.train.CheckpointManager`` writes each checkpoint under temporary names and only then points
``checkpoints/checkpoint`` (the index file) at it, so a kill at any instant leaves the previous
one in force. On restore the newest one that reads back cleanly wins; an older one is used, with
a warning naming the skipped file and why, if the newest is damaged. ``train_spec.yaml`` is kept
with the run: a run made for another model is refused instead of resumed into nonsense.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
import socket
import time
from pathlib import Path

import tensorflow as tf
import yaml

from gan.parallel import distributed
from gan.training.outputs import BEST_DIR, BEST_RECORD
from jobs.core.fields import to_plain
from jobs.core.figures import better
from jobs.core.files import atomic_write_json, atomic_write_text, why
from jobs.core.rundir import CHECKPOINTS, SPEC_FILE
from jobs.core.schema import TrainSpec

log = logging.getLogger(__name__)


def restore_newest(paths: list[str], restore) -> str | None:
    """Call ``restore(path)`` on the newest path first, then older ones, until one works; a
    damaged file fails in many ways (OpError, IndexError from a truncated index...), each is
    logged with the file's name and the run goes on with an older one. None: none restored."""
    for path in reversed(paths):
        try:
            restore(path)
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.warning("checkpoint %s does not restore (%s); trying an older one", path,
                        why(exc))
            continue
        return path
    return None


class SpecMismatch(Exception):
    """The run directory cannot be resumed here: it was made by a spec with another model or
    data, or this rank cannot read the checkpoint rank 0 chose."""


class RunCheckpoints:
    def __init__(self, spec: TrainSpec, objects: dict, world: distributed.World):
        self.spec = spec
        self.run_dir = Path(spec.run_dir)
        self.dir = self.run_dir / CHECKPOINTS
        self.world = world
        self.is_chief = world.is_chief
        self.ckpt = tf.train.Checkpoint(**objects)
        self.manager = tf.train.CheckpointManager(self.ckpt, str(self.dir),
                                                  max_to_keep=spec.checkpoint.keep)

    def restore(self) -> str | None:
        """Newest checkpoint that restores cleanly; older ones if it does not. None: a new run.

        Rank 0 alone decides, from the index file it wrote, and sends its choice to the other
        ranks, which restore exactly that one: a node whose view of the shared directory is
        stale must not resume from an older checkpoint, and a rank that cannot read rank 0's
        choice fails the job instead of training from another state. Call on every rank."""
        self._check_spec_file()
        self.discard_partial()
        chosen = restore_newest(list(self.manager.checkpoints), self._restore) \
            if self.is_chief else None
        chosen = distributed.broadcast_object(self.world, chosen, "restore_choice")
        if not self.is_chief:
            if self.manager.latest_checkpoint != chosen:
                log.warning("rank %d: the newest checkpoint here is %s, rank 0 chose %s (a "
                            "stale view of the shared directory, or rank 0 could not read "
                            "the newest): restoring rank 0's choice",
                            self.world.rank, self.manager.latest_checkpoint, chosen)
            if chosen is not None:
                self._restore_choice(chosen)
        return chosen

    def _restore_choice(self, chosen: str) -> None:
        """Restore rank 0's choice here, or fail the job with one line: training from any
        other state would split the ranks."""
        try:
            self._restore(chosen)
        except Exception as exc:  # noqa: BLE001 - TensorFlow raises several kinds
            raise SpecMismatch(f"rank {self.world.rank} on {socket.gethostname()} cannot "
                               f"read {chosen}, the checkpoint rank 0 resumes from ({why(exc)})"
                               ": does every node see the same run directory?") from None

    def discard_partial(self) -> None:
        """Remove what an interrupted save left (TensorFlow writes ``ckpt-N_temp/`` and
        renames it only when complete): never a valid checkpoint, only used space."""
        if self.is_chief:
            for partial in self.dir.glob("*_temp"):
                shutil.rmtree(partial, ignore_errors=True)

    def _restore(self, path: str) -> None:
        self.ckpt.restore(path).assert_existing_objects_matched()

    def save(self, step: int, reason: str) -> str:
        """Rank 0 writes; the others only count. The checkpoint's name (rank 0's)."""
        name = f"ckpt-{step}"
        if self.is_chief:
            t = time.perf_counter()
            name = Path(self.manager.save(checkpoint_number=step)).name
            log.info("checkpoint %s (%s, %.2f s)", name, reason, time.perf_counter() - t)
        return name

    def _check_spec_file(self) -> None:
        """Keep the spec with the run; refuse to resume a run made for another model."""
        path = self.run_dir / SPEC_FILE
        current = to_plain(self.spec)
        if path.exists() and self.manager.checkpoints:
            saved = yaml.safe_load(path.read_text())
            if saved.get("model") != current["model"]:
                raise SpecMismatch(f"{self.run_dir} was trained with another train.model "
                                   f"({saved.get('model')}); use a new run_dir")
            was = saved.get("precision", "float32")
            if (was == "float16") != (current["precision"] == "float16"):
                raise SpecMismatch(f"{self.run_dir} was trained with train.precision {was}: "
                                   "float16's loss scale changes what a checkpoint holds, so "
                                   f"it cannot resume as {current['precision']}; use a new "
                                   "run_dir or the run's precision")
            if saved.get("freeze_d", 0) != current["freeze_d"]:
                raise SpecMismatch(f"{self.run_dir} was trained with train.freeze_d "
                                   f"{saved.get('freeze_d', 0)}: D's optimizer holds only the "
                                   "unfrozen blocks, so it cannot resume with "
                                   f"{current['freeze_d']}; use a new run_dir (init_from this "
                                   "one)")
        if self.is_chief:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, yaml.safe_dump(current, sort_keys=False))


class BestSnapshot:
    """``run_dir/best``: the checkpoint with the best value of one quality figure
    (``checkpoint.keep_best``), kept apart from the rolling ones so that a later collapse
    cannot rotate it away. ``best.json`` is the one pointer to it (figure, value, epoch, step,
    checkpoint): a new best is written under its own name first, then ``best.json`` is
    replaced atomically, and only then are older files removed — a kill at any instant leaves
    ``best.json`` naming a complete checkpoint.

    A record from another figure, or left by an earlier run in this directory (nothing was
    resumed), is set aside with a warning. The best may come from an epoch a killed run later
    redid: it is still a generator that truly measured that value."""

    def __init__(self, run_dir: Path, ckpt: tf.train.Checkpoint, figure: str, lower: bool,
                 is_chief: bool, resumed: bool):
        self.dir = Path(run_dir) / BEST_DIR
        self.ckpt, self.figure, self.lower, self.is_chief = ckpt, figure, lower, is_chief
        self.record = read_best(run_dir)
        if self.record is not None and (self.record["figure"] != figure or not resumed):
            log.warning("%s holds the best %s of %s; this run keeps its own best %s",
                        self.dir / BEST_RECORD, self.record["figure"],
                        "another setting" if resumed else "an earlier run", figure)
            self.record = None

    def offer(self, values: dict[str, float], epoch: int, step: int) -> bool:
        """Keep the current state if ``values[figure]`` beats the best so far (a value that is
        not a finite number never does)."""
        value = values[self.figure]
        if not math.isfinite(value) or (self.record is not None and not better(
                value, self.record["value"], self.lower)):
            return False
        name = f"ckpt-{step}"
        self.record = {"figure": self.figure, "value": value, "epoch": epoch, "step": step,
                       "checkpoint": name}
        if self.is_chief:
            self.ckpt.write(str(self.dir / name))
            atomic_write_json(self.dir / BEST_RECORD, self.record)
            for old in self.dir.glob("ckpt-*"):
                if not old.name.startswith(name + "."):
                    old.unlink()
            log.info("best %s so far (%.6g at epoch %d) -> %s", self.figure, value, epoch,
                     self.dir / name)
        return True


def read_best(run_dir: Path) -> dict | None:
    """The run's best-snapshot record (``best.json``), None if it has none."""
    path = Path(run_dir) / BEST_DIR / BEST_RECORD
    return json.loads(path.read_text()) if path.exists() else None
