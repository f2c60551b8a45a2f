"""The scaling formula (gan/scaling.py) on known values, and the parameter counts and FLOPs it
reads from the layer shapes against the models gan/models/builders.py really builds."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from gan import families, scaling
from gan.models import builders
from jobs.core.loader import load_spec, parse_set_args
from tests.conftest import ROOT

GIGABYTE_LINK = scaling.Link(gbit_s=8.0, latency_s=0.0, overhead_s=0.0)  # 1e9 bytes/s


def test_ring_allreduce_sends_2_n_minus_1_over_n_of_the_bytes():
    assert scaling.ring_allreduce_s(1e9, 1, GIGABYTE_LINK) == 0.0  # one rank sends nothing
    assert scaling.ring_allreduce_s(1e9, 2, GIGABYTE_LINK) == pytest.approx(1.0)
    assert scaling.ring_allreduce_s(1e9, 4, GIGABYTE_LINK) == pytest.approx(1.5)
    # bandwidth-optimal: the time per byte never exceeds 2 B/W, however many ranks
    assert scaling.ring_allreduce_s(1e9, 1024, GIGABYTE_LINK) == pytest.approx(2 * 1023 / 1024)


def test_latency_is_paid_per_hop_and_overhead_per_collective():
    link = scaling.Link(gbit_s=8.0, latency_s=1e-3, overhead_s=0.5)
    # no bytes: k collectives x (2(n-1) hops x a + c)
    assert scaling.ring_allreduce_s(0, 3, link, collectives=2) == pytest.approx(
        2 * (2 * 2 * 1e-3 + 0.5))


def test_efficiency_is_compute_over_compute_plus_averaging():
    assert scaling.efficiency(1.0, 0.0) == 1.0
    assert scaling.efficiency(0.3, 0.1) == pytest.approx(0.75)


def test_horovods_published_inception_v3_figure_is_reproduced():
    """90% at 512 GPUs (25 Gb/s RoCE): Inception V3's 23.8M trainable parameters, batch 64 at
    142 images/s per P100, one fused allreduce, the default latency and Horovod cycle."""
    link = scaling.Link(25.0, scaling.LATENCY_US * 1e-6, scaling.CYCLE_MS * 1e-3)
    comm = scaling.ring_allreduce_s(23_817_352 * 4, 512, link)
    assert scaling.efficiency(64 / 142, comm) == pytest.approx(0.90, abs=0.05)


def _spec(example: str, *sets: str):
    return load_spec(ROOT / "jobs/examples" / example, parse_set_args(list(sets))).work.model


SMALL = {  # every family, small enough to build in a moment
    "cgan": _spec("train_cgan_digits.yaml", "train.model.generator_filters=[32, 16]",
                  "train.model.discriminator_filters=[16, 32]"),
    "dcgan": _spec("train_dcgan_faces.yaml", "train.model.image_size=32",
                   "train.model.generator_filters=[32, 16, 8]",
                   "train.model.discriminator_filters=[8, 16, 32]"),
    "aeacgan": _spec("train_aeacgan_faces.yaml", "train.model.image_size=16",
                     "train.model.generator_filters=[16, 8]",
                     "train.model.discriminator_filters=[8, 16]"),
}

# and each in the residual networks (gan/models/residual.py)
CASES = {**SMALL, **{f"{name}-residual": dataclasses.replace(spec, architecture="residual")
                     for name, spec in SMALL.items()}}


def test_every_family_has_a_step_profile():
    assert SMALL.keys() == families.FAMILIES.keys()
    for name, fam in families.FAMILIES.items():
        assert fam.step in scaling.UPDATES and fam.step in scaling.PASSES, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_parameter_counts_match_the_built_models(name):
    spec, channels, classes, attributes = CASES[name], 3, 7, 40
    nets = builders.build(spec, classes, channels, attributes)
    counted = scaling.networks(spec, channels, classes, attributes)
    for net in ("generator", "discriminator", "encoder"):
        model = getattr(nets, net)
        assert (model is None) == (net not in counted), net
        if model is not None:
            built = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
            assert counted[net].params == built, net


@pytest.mark.parametrize("name", sorted(CASES))
def test_forward_flops_match_tensorflows_count_within_a_percent(name):
    """TensorFlow's profiler also counts bias adds and activations: a fraction of a percent."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec, side = CASES[name], CASES[name].image_size
    nets = builders.build(spec, 7, 3, 40)
    counted = scaling.networks(spec, 3, 7, 40)
    attributes = spec.name == "aeacgan"
    condition = tf.TensorSpec((1, 40)) if attributes else tf.TensorSpec((1,), tf.int32)
    image = [tf.TensorSpec((1, side, side, 3))] + ([] if attributes else [condition])
    for net, inputs in (("generator", [tf.TensorSpec((1, spec.latent_dim)), condition]),
                        ("discriminator", image)):
        model = getattr(nets, net)
        fn = tf.function(lambda *x, m=model: m(list(x) if len(x) > 1 else x[0]))
        graph = convert_variables_to_constants_v2(fn.get_concrete_function(*inputs)).graph
        options = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(),
                   "output": "none"}
        flops = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
        assert math.isclose(counted[net].flops, flops, rel_tol=0.01), (net, flops)


def test_a_step_averages_each_update_once_and_fp16_halves_the_bytes():
    adversarial = scaling.profile(SMALL["cgan"], 1, 10)
    assert adversarial.gradient_values == sum(adversarial.params.values())
    assert adversarial.collectives == 3  # D, G, the metrics
    assert adversarial.gradient_bytes("fp16") * 2 == adversarial.gradient_bytes("none")
    ae = scaling.profile(SMALL["aeacgan"])
    p = ae.params  # the autoencoder update averages E's and G's gradients again
    assert ae.gradient_values == p["discriminator"] + 2 * p["generator"] + p["encoder"]
    assert ae.collectives == 4


def test_defaults_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("FACEGAN_LINK_GBPS", "100")
    monkeypatch.setenv("HOROVOD_CYCLE_TIME", "5")
    link = scaling.default_link(nodes=2)
    assert link.gbit_s == 100 and link.overhead_s == pytest.approx(5e-3)
    assert scaling.default_link(nodes=1).gbit_s == scaling.NODE_GBIT_S  # the node's own bus
    for bad in ("fast", "0", "-3", "nan"):  # a zero would divide by zero
        monkeypatch.setenv("FACEGAN_GPU_TFLOPS", bad)
        with pytest.raises(ValueError, match="FACEGAN_GPU_TFLOPS"):
            scaling.gpu_tflops()


def test_the_relativistic_loss_and_its_penalties_add_ds_passes():
    """D on the reals in G's update (1 pass), and R1 and R2 each about 9 passes on one step
    in r1_interval: 1 + 2 x 9 / 4 = 5.5 more of D's forward FLOPs per image."""
    from jobs.core.train_schema import LossSpec

    spec = SMALL["cgan"]
    plain = scaling.profile(spec, 1, 10)
    modern = scaling.profile(spec, 1, 10, loss=LossSpec(name="relativistic", r1_gamma=1.0,
                                                          r2_gamma=1.0, r1_interval=4))
    d = scaling.networks(spec, 1, 10)["discriminator"].flops
    assert modern.flops_per_image - plain.flops_per_image == round(5.5 * d)
    assert scaling.profile(spec, 1, 10, loss=LossSpec()).flops_per_image == \
        plain.flops_per_image
