"""The mode-collapse guard snapshots healthy weights and restores only the network that failed."""
from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from gan.training.guard import Guard, GuardStop
from jobs.core.schema import GuardSpec

EVERY = 10  # snapshot_every_steps of the spec below
HEALTHY = (0.6, 0.6, 1.0)          # every loss inside its band
OFF_BAND = (1.5, 0.6, 1.0)         # D real loss outside its band, inside the hard bounds
D_OUT = (3.0, 0.6, 1.0)            # D real loss above its hard bound
D_FAKE_OUT = (0.6, 0.0001, 1.0)    # D fake loss below its hard bound
G_OUT = (0.6, 0.6, 10.0)           # G loss above its hard bound


def spec(**changes) -> GuardSpec:
    fields = dict(enabled=True, d_real_band=[0.3, 0.95], d_fake_band=[0.25, 0.95],
                  g_band=[0.4, 1.5], d_bounds=[0.001, 2.0], g_bounds=[0.01, 4.5],
                  snapshot_every_steps=EVERY, max_failures=3)
    return GuardSpec(**{**fields, **changes})


def tiny() -> keras.Model:
    return keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])


def set_all(model: keras.Model, value: float) -> None:
    for v in model.weights:
        v.assign(np.full(v.shape, value, dtype="float32"))


def value_of(model: keras.Model) -> float:
    """The single value every weight of ``model`` holds (asserts that they agree)."""
    values = np.concatenate([np.ravel(np.asarray(v.numpy())) for v in model.weights])
    assert np.all(values == values[0]), values
    return float(values[0])


@pytest.fixture
def nets():
    g, d, enc = tiny(), tiny(), tiny()
    for m, value in ((g, 1.0), (d, 1.0), (enc, 1.0)):
        set_all(m, value)
    return g, d, enc


def slot_steps(guard: Guard) -> list[int]:
    return [int(s) for s in guard.slot_step.numpy()]


def test_healthy_steps_snapshot_at_most_every_n_steps(nets):
    g, d, _ = nets
    guard = Guard(spec(), g, d)
    assert slot_steps(guard) == [-1, -1]
    first = guard.observe(0, *HEALTHY)
    assert (first.action, first.snapshot_step) == ("snapshot", 0)
    assert slot_steps(guard) == [0, -1]
    for step in range(1, EVERY):  # healthy, but the last snapshot is too recent
        assert guard.observe(step, *HEALTHY).action == "ok"
    assert slot_steps(guard) == [0, -1]
    set_all(g, 2.0)
    second = guard.observe(EVERY, *HEALTHY)
    assert (second.action, second.snapshot_step) == ("snapshot", EVERY)
    assert slot_steps(guard) == [EVERY, 0]  # newer slot first, the previous one moved down
    assert np.all(guard.slots[0]["generator"][0].numpy() == 2.0)
    assert np.all(guard.slots[1]["generator"][0].numpy() == 1.0)


def test_no_snapshot_outside_the_healthy_band(nets):
    g, d, _ = nets
    guard = Guard(spec(), g, d)
    decision = guard.observe(0, *OFF_BAND)  # within bounds: no rollback, but not healthy
    assert decision.action == "ok"
    assert slot_steps(guard) == [-1, -1]
    assert guard.observe(1, *HEALTHY).action == "snapshot"
    assert guard.observe(1 + EVERY, *OFF_BAND).action == "ok"
    assert slot_steps(guard) == [1, -1]


def test_d_out_of_bounds_restores_only_d_from_the_older_snapshot(nets):
    g, d, _ = nets
    guard = Guard(spec(), g, d)
    guard.observe(0, *HEALTHY)              # snapshot of weights 1.0
    set_all(g, 2.0)
    set_all(d, 2.0)
    guard.observe(EVERY, *HEALTHY)          # snapshot of weights 2.0
    set_all(g, 3.0)
    set_all(d, 3.0)
    decision = guard.observe(EVERY + 5, *D_OUT)
    assert decision.action == "rollback"
    assert decision.models == ("discriminator",)
    assert decision.snapshot_step == 0     # the older snapshot, not the newer one
    assert value_of(d) == 1.0
    assert value_of(g) == 3.0               # G untouched
    assert slot_steps(guard) == [0, 0]      # the suspect newer snapshot is forgotten
    assert int(guard.failures) == 1 and int(guard.rollbacks) == 1
    assert int(guard.last_rollback) == EVERY + 5


def test_d_fake_loss_out_of_bounds_also_rolls_back_d(nets):
    g, d, _ = nets
    guard = Guard(spec(), g, d)
    guard.observe(0, *HEALTHY)
    set_all(d, 5.0)
    decision = guard.observe(3, *D_FAKE_OUT)
    assert decision.models == ("discriminator",)
    assert value_of(d) == 1.0


def test_g_out_of_bounds_restores_only_g_and_what_trains_with_it(nets):
    g, d, enc = nets
    guard = Guard(spec(), g, d, enc)
    guard.observe(0, *HEALTHY)              # the only snapshot: weights 1.0
    for m in (g, d, enc):
        set_all(m, 3.0)
    decision = guard.observe(4, *G_OUT)
    assert (decision.action, decision.models, decision.snapshot_step) == \
        ("rollback", ("generator",), 0)
    assert value_of(g) == 1.0
    assert value_of(enc) == 1.0             # the encoder stays matched with G
    assert value_of(d) == 3.0               # D untouched
    assert slot_steps(guard) == [0, -1]     # the only snapshot stays


def test_both_out_of_bounds_restore_both(nets):
    g, d, _ = nets
    guard = Guard(spec(), g, d)
    guard.observe(0, *HEALTHY)
    set_all(g, 3.0)
    set_all(d, 3.0)
    decision = guard.observe(2, 3.0, 0.6, 10.0)
    assert set(decision.models) == {"discriminator", "generator"}
    assert value_of(g) == 1.0 and value_of(d) == 1.0


@pytest.mark.parametrize("losses", [(2.0, 0.6, 1.0), (0.6, 0.001, 1.0), (0.6, 0.6, 4.5),
                                    (0.6, 0.6, math.nan), (math.inf, 0.6, 1.0)])
def test_bounds_are_exclusive_and_nan_is_out(nets, losses):
    g, d, _ = nets
    guard = Guard(spec(), g, d)
    guard.observe(0, *HEALTHY)
    assert guard.observe(1, *losses).action == "rollback"


def test_out_of_bounds_before_any_snapshot_carries_on(nets):
    g, d, _ = nets
    set_all(g, 4.0)
    set_all(d, 5.0)
    guard = Guard(spec(max_failures=1), g, d)
    for step in range(3):  # max_failures=1 would stop at once if these counted
        decision = guard.observe(step, 3.0, 0.6, 10.0)
        assert decision.action == "ok"
    assert value_of(g) == 4.0 and value_of(d) == 5.0
    assert int(guard.failures) == 0 and int(guard.rollbacks) == 0
    assert slot_steps(guard) == [-1, -1]


def test_max_failures_without_a_healthy_stretch_stops(nets):
    g, d, _ = nets
    guard = Guard(spec(max_failures=3), g, d)
    guard.observe(0, *HEALTHY)
    assert guard.observe(5, *D_OUT).action == "rollback"            # failure 1
    assert guard.observe(10, *HEALTHY).action == "snapshot"         # 5 steps after: no reset
    assert int(guard.failures) == 1
    assert guard.observe(12, *G_OUT).action == "rollback"           # failure 2
    assert guard.observe(22, *HEALTHY).action == "snapshot"         # 10 < 2*EVERY: no reset
    assert int(guard.failures) == 2
    with pytest.raises(GuardStop, match="3 rollbacks"):
        guard.observe(25, *D_OUT)                                    # failure 3: stop


def test_a_long_healthy_stretch_resets_the_failure_count(nets):
    g, d, _ = nets
    guard = Guard(spec(max_failures=2), g, d)
    guard.observe(0, *HEALTHY)
    guard.observe(5, *D_OUT)                                         # failure 1
    assert int(guard.failures) == 1
    assert guard.observe(5 + 2 * EVERY - 1, *HEALTHY).action == "snapshot"
    assert int(guard.failures) == 1                                  # one step short
    assert guard.observe(5 + 3 * EVERY, *HEALTHY).action == "snapshot"
    assert int(guard.failures) == 0                                  # >= 2*EVERY after it
    decision = guard.observe(5 + 3 * EVERY + 1, *D_OUT)              # counts as failure 1 again
    assert decision.action == "rollback" and int(guard.failures) == 1
    assert int(guard.rollbacks) == 2                                 # the total is kept


def test_disabled_guard_never_acts(nets):
    g, d, _ = nets
    guard = Guard(spec(enabled=False, max_failures=1), g, d)
    assert guard.observe(0, *HEALTHY).action == "ok"
    set_all(g, 7.0)
    set_all(d, 8.0)
    for step in range(1, 4):
        assert guard.observe(step, 3.0, 0.0, 10.0).action == "ok"
    assert value_of(g) == 7.0 and value_of(d) == 8.0
    assert slot_steps(guard) == [-1, -1] and int(guard.failures) == 0


def test_snapshots_and_counters_travel_in_a_checkpoint(nets, tmp_path):
    g, d, _ = nets
    guard = Guard(spec(), g, d)
    guard.observe(0, *HEALTHY)
    set_all(d, 2.0)
    guard.observe(3, *D_OUT)
    path = tf.train.Checkpoint(guard=guard).write(str(tmp_path / "ckpt"))
    g2, d2 = tiny(), tiny()
    fresh = Guard(spec(), g2, d2)
    tf.train.Checkpoint(guard=fresh).read(path).expect_partial()
    assert slot_steps(fresh) == [0, -1]
    assert int(fresh.failures) == 1 and int(fresh.last_rollback) == 3
    assert np.all(fresh.slots[0]["discriminator"][0].numpy() == 1.0)
