"""The mode-collapse guard: roll back the network whose loss left its bounds.

GAN training sometimes falls off a cliff — D wins outright (its loss → 0, G's explodes) or
G fools a broken D. The guard keeps *last good* weights, captured while every loss sits in its
healthy band, and when a loss leaves its hard bounds it restores only the network that failed
(D for the D losses, G for the G loss) and training carries on.

It keeps two snapshots and rolls back to the *older* one: the newer was taken shortly before
the collapse, when the run may already have been sliding towards it. Rollbacks are counted
until the run has stayed healthy for ``2 × snapshot_every_steps`` steps (a snapshot taken that
long after the last rollback starts the count afresh); after ``max_failures`` rollbacks with
no such healthy stretch between them, the run stops with exit code 79 (which the Slurm layer
never requeues): retrying forever would only burn the allocation.

The host reads the losses every ``train.read_every_steps`` steps, all at once, so that a GPU
never waits for it: the guard then judges that window (``observe_window``), rolling back as
soon as it reads a loss out of its bounds (at most N - 1 steps after it left them).

Snapshots and counters are ``tf.Variable``s inside a ``tf.Module``, so they are part of every
checkpoint; all ranks take the same decisions because they see the same (allreduced) losses.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import tensorflow as tf

from gan.parallel.distributed import tf_variables
from jobs.core.schema import GuardSpec

log = logging.getLogger(__name__)


class GuardStop(Exception):
    """``max_failures`` rollbacks without a healthy stretch between them."""


@dataclass
class Decision:
    action: str            # "ok", "snapshot" or "rollback"
    models: tuple = ()     # rolled back: ("discriminator",), ("generator",) or both
    snapshot_step: int = -1


def _copies(weights: list, tag: str) -> list[tf.Variable]:
    return [tf.Variable(v, trainable=False, name=f"{tag}_{i}")
            for i, v in enumerate(tf_variables(weights))]


class Guard(tf.Module):
    def __init__(self, spec: GuardSpec, generator, discriminator, *with_generator):
        """``with_generator``: networks trained together with G (the AE-AC-GAN's encoder),
        snapshotted and rolled back with it so the pair stays matched."""
        super().__init__(name="guard")
        self.spec = spec
        self.weights = {"generator": [w for m in (generator, *with_generator)
                                      for w in m.weights],
                        "discriminator": list(discriminator.weights)}
        # slot 0 = newer, slot 1 = older snapshot of both sides
        self.slots = [{name: _copies(w, f"{name}{k}") for name, w in self.weights.items()}
                      for k in range(2)]
        self.slot_step = tf.Variable([-1, -1], dtype=tf.int64, trainable=False)
        self.failures = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.rollbacks = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.last_rollback = tf.Variable(-1, dtype=tf.int64, trainable=False)

    @staticmethod
    def _inside(value: float, band) -> bool:
        return band[0] < value < band[1]

    def _failed(self, d_real: float, d_fake: float, g: float) -> tuple[str, ...]:
        s, failed = self.spec, []
        if not (self._inside(d_real, s.d_bounds) and self._inside(d_fake, s.d_bounds)):
            failed.append("discriminator")
        if not self._inside(g, s.g_bounds):
            failed.append("generator")
        return tuple(failed)

    def observe(self, step: int, d_real: float, d_fake: float, g: float) -> Decision:
        """Look at this step's (rank-averaged) losses; snapshot, roll back or do nothing."""
        return self.observe_window(step, [(d_real, d_fake, g)])

    def observe_window(self, last_step: int, losses: list[tuple[float, float, float]]
                       ) -> Decision:
        """The (d_real, d_fake, g) of consecutive steps up to ``last_step``, read together
        (``train.read_every_steps``). A loss out of its bounds at any of them rolls back now
        every network that failed in the window; a snapshot, of the weights as they are now,
        needs the last step healthy. One step's window is the per-step guard exactly."""
        if not self.spec.enabled:
            return Decision("ok")
        first = last_step - len(losses) + 1
        failing = [(first + i, self._failed(*row), row) for i, row in enumerate(losses)
                   if self._failed(*row)]
        if failing:
            failed = tuple(n for n in ("discriminator", "generator")
                           if any(n in f for _, f, _ in failing))
            step, _, row = failing[0]
            return self._rollback(step, last_step, failed, *row)
        s, (d_real, d_fake, g) = self.spec, losses[-1]
        healthy = (self._inside(d_real, s.d_real_band) and self._inside(d_fake, s.d_fake_band)
                   and self._inside(g, s.g_band))
        newest = int(self.slot_step[0])
        if healthy and (newest < 0 or last_step - newest >= s.snapshot_every_steps):
            self._snapshot(last_step)
            return Decision("snapshot", snapshot_step=last_step)
        return Decision("ok")

    def _snapshot(self, step: int) -> None:
        for name in self.weights:  # newer -> older, then current -> newer
            for older, newer in zip(self.slots[1][name], self.slots[0][name]):
                older.assign(newer)
            for copy, var in zip(self.slots[0][name], self.weights[name]):
                copy.assign(var)
        self.slot_step.assign([step, int(self.slot_step[0])])
        last = int(self.last_rollback)
        if last < 0 or step - last >= 2 * self.spec.snapshot_every_steps:
            self.failures.assign(0)  # healthy for a while: a fresh start for the count

    def _rollback(self, step: int, now: int, failed: tuple, d_real, d_fake, g) -> Decision:
        """``step``: the first step out of bounds; ``now``: the step the host read it at,
        whose weights are restored."""
        newer, older = (int(v) for v in self.slot_step.numpy())
        target = 1 if older >= 0 else 0
        target_step = older if older >= 0 else newer
        losses = f"d_real={d_real:.4f} d_fake={d_fake:.4f} g={g:.4f}"
        if target_step < 0:
            log.warning("guard: step %d %s out of bounds for %s, but no healthy snapshot "
                        "exists yet; carrying on", step, losses, "+".join(failed))
            return Decision("ok")
        self.failures.assign_add(1)
        if int(self.failures) >= self.spec.max_failures:
            raise GuardStop(
                f"mode-collapse guard: {int(self.failures)} rollbacks without "
                f"{2 * self.spec.snapshot_every_steps} healthy steps between them (last at "
                f"step {step}: {losses}; the snapshot to restore was from step {target_step}); "
                "stopping. Lower the learning rate or widen train.guard bands and bounds, then "
                "resume from the run dir")
        for name in failed:
            for var, copy in zip(self.weights[name], self.slots[target][name]):
                var.assign(copy)
        if target == 1:  # the newer snapshot is suspect: forget it
            for name in self.weights:
                for newer_copy, older_copy in zip(self.slots[0][name], self.slots[1][name]):
                    newer_copy.assign(older_copy)
            self.slot_step.assign([older, older])
        self.rollbacks.assign_add(1)
        self.last_rollback.assign(now)
        log.warning("guard: rollback %d at step %d: %s out of bounds%s, restored %s from the "
                    "snapshot of step %d (failure %d/%d)", int(self.rollbacks), step, losses,
                    f" (read at step {now})" if now != step else "", " and ".join(failed),
                    target_step, int(self.failures), self.spec.max_failures)
        return Decision("rollback", models=failed, snapshot_step=target_step)
