"""The loop never makes the host wait on a step: the steps' results stay device tensors and are
read together every ``train.read_every_steps`` (and at the epoch's end), at steps that depend
on the step alone; the guard judges each window as the per-step guard would have."""
from __future__ import annotations

import tensorflow as tf

from gan.training.guard import Guard
from gan.training.pending import PendingSteps, read_due
from jobs.core.schema import GuardSpec
from jobs.core.signals import StopSignals
from tests.gan.training.test_checkpoint import trainer


class Watched:
    """A step's output that counts every way the host could read it by itself; TensorFlow's
    own ops (``tf.stack``) still take it, through the conversion registered below."""
    host_reads = 0

    def __init__(self, tensor: tf.Tensor):
        self.tensor = tensor

    def _read(self, *_):
        Watched.host_reads += 1
        return self.tensor.numpy()

    numpy = __array__ = _read

    def __float__(self):
        return float(self._read())

    __bool__ = __int__ = __index__ = __float__


tf.register_tensor_conversion_function(
    Watched, lambda value, dtype=None, name=None, as_ref=False: value.tensor)


def test_the_loop_reads_the_device_only_every_n_steps_and_at_the_epochs_end(tmp_path):
    t = trainer(tmp_path, "train.epochs=1", "train.read_every_steps=4")
    real_step, reads = t.step_fn, []
    t.step_fn = lambda *args: tuple(Watched(x) for x in real_step(*args))
    observe = t.guard.observe_window
    t.guard.observe_window = lambda step, losses: reads.append((step, len(losses))) or \
        observe(step, losses)
    Watched.host_reads = 0
    assert t.run(StopSignals()) == 0
    n = t.steps_per_epoch  # 1797 digits at 64 a step: 28
    assert Watched.host_reads == 0
    expected = [(k, 4) for k in range(4, n + 1, 4)] + ([(n, n % 4)] if n % 4 else [])
    assert reads == expected
    assert int(t.state.global_step) == n


def test_reads_fall_on_steps_alone_so_a_resumed_run_reads_where_the_first_did():
    due = [d for d in range(1, 29) if read_due(d, 28, 8, 100 + d, 0)]
    assert due == [8, 16, 24, 28]
    # a checkpoint every 10 global steps is a read too (resume starts at a read)
    due = [d for d in range(1, 29) if read_due(d, 28, 8, 100 + d, 10)]
    assert due == [8, 10, 16, 20, 24, 28]
    assert [d for d in range(1, 5) if read_due(d, 28, 1, d, 0)] == [1, 2, 3, 4]


def test_pending_steps_are_read_in_one_transfer_with_any_stop():
    pending = PendingSteps(("a", "b"))
    for k in range(3):
        pending.add(tf.constant([k, 10.0 * k]), tf.constant(1.0 if k == 1 else 0.0))
    rows, stopped = pending.read()
    assert rows == [{"a": 0.0, "b": 0.0}, {"a": 1.0, "b": 10.0}, {"a": 2.0, "b": 20.0}]
    assert stopped and len(pending) == 0
    pending.add(tf.constant([0.0, 0.0]), tf.constant(0.0))
    assert pending.read()[1] is False


def make_guard(**spec) -> tuple[Guard, tf.keras.Model, tf.keras.Model]:
    g = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
    d = tf.keras.Sequential([tf.keras.Input((1,)), tf.keras.layers.Dense(1)])
    bands = dict(d_bounds=[0.1, 5.0], g_bounds=[0.1, 5.0], d_real_band=[0.2, 2.0],
                 d_fake_band=[0.2, 2.0], g_band=[0.2, 2.0], snapshot_every_steps=1)
    return Guard(GuardSpec(**{**bands, **spec}), g, d), g, d


def test_a_window_rolls_back_every_network_that_failed_in_it():
    guard, g, d = make_guard()
    for step in (1, 2):
        assert guard.observe(step, 1.0, 1.0, 1.0).action == "snapshot"
    d.layers[0].kernel.assign([[7.0]])
    g.layers[0].kernel.assign([[9.0]])
    # D's loss broke at step 4, G's at step 5; the host read both at step 6
    decision = guard.observe_window(6, [(1.0, 1.0, 1.0), (9.0, 1.0, 1.0), (1.0, 1.0, 9.0),
                                        (1.0, 1.0, 1.0)])
    assert decision.action == "rollback" and decision.snapshot_step == 1
    assert set(decision.models) == {"discriminator", "generator"}
    assert float(d.layers[0].kernel[0, 0]) != 7.0 and float(g.layers[0].kernel[0, 0]) != 9.0
    assert int(guard.last_rollback) == 6


def test_a_window_snapshots_only_when_its_last_step_is_healthy():
    guard, _, _ = make_guard()
    # healthy bands broken at the window's end (inside the hard bounds): no snapshot
    assert guard.observe_window(4, [(1.0, 1.0, 1.0), (3.0, 1.0, 1.0)]).action == "ok"
    decision = guard.observe_window(8, [(3.0, 1.0, 1.0), (1.0, 1.0, 1.0)])
    assert decision.action == "snapshot" and decision.snapshot_step == 8
