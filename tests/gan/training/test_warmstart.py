"""``train.init_from`` and ``train.freeze_d``: a fresh run starts from another run's networks
with fresh optimizers and counters; a run with a checkpoint of its own resumes from it and
never reads the source; a model of other shapes stops with one line naming the variable; the
first K blocks of D stay as they are while the rest trains."""
from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import tensorflow as tf

from gan.models import builders
from gan.training.checkpoint import SpecMismatch
from jobs.core.schema import ModelSpec
from jobs.core.signals import StopSignals
from tests.gan.training.test_checkpoint import trainer, weights

EMA = "train.ema.enabled=true"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """One epoch of a tiny cGAN with G's average (28 steps; checkpoints ckpt-10, 20, 28), and
    its networks as they ended."""
    folder = tmp_path_factory.mktemp("source")
    t = trainer(folder, "train.epochs=1", EMA, "train.checkpoint.every_steps=10")
    assert t.run(StopSignals()) == 0
    return folder, {name: weights(m) for name, m in
                    (("G", t.G), ("D", t.D), ("G_ema", t.state.G_ema))}


def same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def started(folder, tmp_path, which: str, *sets: str):
    return trainer(folder, f"train.run_dir={tmp_path / 'b'}",
                   f"train.init_from={folder / 'run'}{which}", *sets)


def test_a_fresh_run_takes_the_sources_networks_and_starts_afresh(source, tmp_path):
    folder, ended = source
    b = started(folder, tmp_path, "", EMA, "train.seed=5")
    assert b.resumed_from is None and b.started_from["checkpoint"].endswith("ckpt-28")
    assert same(weights(b.G), ended["G"]) and same(weights(b.D), ended["D"])
    assert same(weights(b.state.G_ema), ended["G_ema"])
    assert not same(ended["G"], ended["G_ema"])  # the average itself, not a copy of G
    assert all(int(o.iterations) == 0 for o in b.state.optimizers)
    assert (int(b.state.global_step), int(b.state.epoch), int(b.state.step_in_epoch)) == (0,) * 3
    record = json.loads((tmp_path / "b" / "init_from.json").read_text())
    assert record["checkpoint"] == b.started_from["checkpoint"]


def test_an_older_checkpoint_and_a_source_without_an_average(source, tmp_path):
    folder, ended = source
    b = started(folder, tmp_path, ":ckpt-10", EMA)
    assert b.started_from["checkpoint"].endswith("ckpt-10")
    assert not same(weights(b.G), ended["G"])  # ten steps in, not the end
    assert not same(weights(b.state.G_ema), weights(b.G))  # the source's average
    c = trainer(folder, f"train.run_dir={tmp_path / 'c'}", "train.ema.enabled=false")
    c.save("a source without an average")
    d = trainer(folder, f"train.run_dir={tmp_path / 'd'}", EMA,
                f"train.init_from={tmp_path / 'c'}")
    assert same(weights(d.state.G_ema), weights(d.G)) and same(weights(d.G), weights(c.G))


def test_a_run_with_its_own_checkpoint_resumes_and_ignores_the_source(source, tmp_path,
                                                                      caplog):
    folder, ended = source
    b = started(folder, tmp_path, ":latest")
    b.G.weights[0].assign(tf.zeros_like(b.G.weights[0]))  # not the source's any more
    b.save("own")
    caplog.set_level(logging.INFO)
    again = started(folder, tmp_path, ":latest")
    assert again.resumed_from.endswith("ckpt-0") and again.started_from is None
    assert not np.any(again.G.weights[0].numpy())
    assert "not read: the run resumes from its own ckpt-0" in caplog.text
    with pytest.raises(SpecMismatch, match="trained with train.freeze_d 0: D's optimizer"):
        started(folder, tmp_path, ":latest", "train.freeze_d=1")


@pytest.mark.parametrize("sets, variable", [
    (["train.model.latent_dim=16"], "generator g_project/kernel"),
    (["train.model.discriminator_filters=[8, 4]"], "discriminator d_down1/"),
])
def test_a_model_of_other_shapes_is_refused_naming_the_variable(source, tmp_path, sets,
                                                                variable):
    folder, _ = source
    with pytest.raises(SpecMismatch) as exc:
        started(folder, tmp_path, "", *sets)
    message = str(exc.value)
    assert "\n" not in message and message.startswith("train.init_from: ")
    assert re.search(rf"{variable}\S*: the source holds shape \(.*\), this model \(", message)


@pytest.mark.parametrize("k", [1, 2])
def test_freeze_d_keeps_the_first_k_blocks_and_trains_the_rest(tmp_path, k):
    """dcgan: block 1 has a BatchNorm, whose statistics stay too once frozen."""
    t = trainer(tmp_path, "train.model.name=dcgan", f"train.freeze_d={k}")
    frozen = [v for block in builders.discriminator_blocks(t.D)[:k] for layer in block
              for v in layer.weights]
    assert {id(v) for v in frozen} == {id(v) for v in t.state.frozen}
    assert not {id(v) for v in frozen} & {id(v) for v in t.D.trainable_variables}
    before = {id(v): v.numpy().copy() for v in t.D.weights}
    images, labels, _ = next(iter(t.data.batches(0, 0, t.split)))
    t.step_fn(images, labels, t.state.global_step.read_value(), tf.constant(0.0))
    for v in t.D.weights:
        unchanged = np.array_equal(before[id(v)], v.numpy())
        assert unchanged == any(v is f for f in frozen), v.path


def test_every_family_has_one_d_block_per_filter_entry():
    for name in ("cgan", "dcgan", "aeacgan"):
        spec = ModelSpec(name=name, image_size=16, latent_dim=4, generator_filters=[4, 4],
                         discriminator_filters=[4, 4, 4])
        d = builders.build(spec, 3, 3, 5).discriminator
        assert [len(b) for b in builders.discriminator_blocks(d)] == \
            ([1, 2, 2] if name == "dcgan" else [1, 1, 1])
