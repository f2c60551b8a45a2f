"""Step outputs the host has not read yet, read together every ``train.read_every_steps``.

A GPU runs a step's kernels asynchronously: the Python loop launches step after step while the
device works through them. Reading a result on the host (``.numpy()``, ``float()``) waits for
every launched kernel, so a per-step read empties the queue after every step, and for steps of
a few milliseconds that idles the GPU for most of its time. So the loop keeps each step's
metrics and stop flag as device tensors and reads all of them in one transfer every N steps;
nothing else between reads touches the host (``tests/gan/training/test_loop.py`` counts).
On a CPU, TensorFlow runs each step synchronously and N changes nothing measurable.
"""
from __future__ import annotations

import tensorflow as tf


class PendingSteps:
    def __init__(self, metric_names: tuple[str, ...]):
        self.metric_names = metric_names
        self._steps: list[tuple[tf.Tensor, tf.Tensor]] = []

    def __len__(self) -> int:
        return len(self._steps)

    def add(self, metrics: tf.Tensor, stops: tf.Tensor) -> None:
        """One step's (rank-averaged metrics, summed stop flags), still on the device."""
        self._steps.append((metrics, stops))

    def read(self) -> tuple[list[dict[str, float]], bool]:
        """Every pending step's metrics by name, in step order, and whether any rank asked
        to stop at any of them: one device-to-host transfer, then nothing is pending."""
        table = tf.concat([tf.stack([m for m, _ in self._steps]),
                           tf.reshape(tf.stack([s for _, s in self._steps]), [-1, 1])],
                          axis=1).numpy()
        self._steps = []
        rows = [dict(zip(self.metric_names, row[:-1].tolist())) for row in table]
        return rows, bool((table[:, -1] > 0).any())


def read_due(done: int, steps_per_epoch: int, read_every: int, global_step: int,
             checkpoint_every: int) -> bool:
    """Whether the host reads after the epoch's ``done``-th step (global step
    ``global_step``): every ``read_every`` steps of the epoch, at its end, and at a
    ``checkpoint.every_steps`` checkpoint. A function of the step alone, so a run resumed
    from any checkpoint reads, and so decides, exactly where the uninterrupted run did."""
    return (done % read_every == 0 or done == steps_per_epoch
            or bool(checkpoint_every and global_step % checkpoint_every == 0))
