"""train.schedule (gan/training/schedules.py): each value a function of the step alone."""
from __future__ import annotations

import pytest
import tensorflow as tf

from gan.training import schedules
from jobs.core.train_schema import ScheduleSpec


def test_a_half_cosine_from_start_to_end_then_the_end():
    values = [float(schedules.cosine(2.0, 0.2, p)) for p in (0.0, 0.5, 1.0, 3.0)]
    assert values == pytest.approx([2.0, 1.1, 0.2, 0.2])


def test_the_learning_rate_follows_the_optimizers_update_count():
    spec = ScheduleSpec(kimg=1.0, learning_rate=[2e-4, 1e-4])
    rate = schedules.learning_rate(spec, 7e-5, 0.5, images_per_step=100)  # 10 updates
    assert float(rate(0)) == pytest.approx(1e-4) and float(rate(10)) == pytest.approx(5e-5)
    assert float(rate(5)) == pytest.approx(0.5 * 1.5e-4)
    assert schedules.learning_rate(ScheduleSpec(), 7e-5, 0.5, 100) == pytest.approx(3.5e-5)
    opt = tf.keras.optimizers.Adam(learning_rate=rate, beta_2=schedules.beta_2(
        ScheduleSpec(kimg=1.0, beta_2=[0.9, 0.99]), 0.999))
    assert isinstance(opt.beta_2, tf.Variable)


def test_scheduled_variables_are_set_from_the_step_alone():
    """What a resumed run relies on: the value for step N never depends on the steps run."""
    beta, gamma = tf.Variable(0.0), tf.Variable(0.0)
    sched = schedules.Schedules(ScheduleSpec(kimg=1.0), 100, [(beta, [0.9, 0.99]),
                                                             (gamma, [2.0, 0.2]), (None, [1, 2])])
    for step in (7, 3, 5):  # any order: a function of the step
        sched.apply(tf.constant(step, tf.int64))
    assert float(beta) == pytest.approx(float(schedules.cosine(0.9, 0.99, 0.5)))
    assert float(gamma) == pytest.approx(1.1)
    sched.apply(tf.constant(40, tf.int64))
    assert float(gamma) == pytest.approx(0.2)
    half = schedules.half_life_kimg(ScheduleSpec(kimg=2.0, ema_half_life_kimg=[0.0, 10.0]),
                                    99.0, 1000)
    assert float(half) == pytest.approx(5.0)
    assert float(schedules.half_life_kimg(ScheduleSpec(), 3.0, 1000)) == 3.0
