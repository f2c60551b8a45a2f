"""The learning floors of the 32x32 digits DCGAN, kept honest in CI: the example is trained once per
suite run (``tests/system/conftest.py``: at half width, for the epochs its floors were measured
at) and every test here reads that run directory. The floors sit well below what the benchmark
(``bench/bench_models.py``) measures. One file per model: the suite's workers train them side
by side."""
from __future__ import annotations

from tests.system.training import figures


def test_dcgan_covers_every_digit_and_its_arithmetic_moves_towards_one(trained_dcgan,
                                                                      tmp_path):
    """The unconditional DCGAN at 32x32, trained for its epochs without the guard stopping
    it: no mode collapse (every digit among its samples, none above 25%), and z + alpha*v
    along the "1" direction makes more ones."""
    from gan.models.sampler import Sampler
    from gan.quality.digits import DigitJudge
    from gan.quality.evaluate import generate

    sampler = Sampler.load(trained_dcgan)
    judge = DigitJudge(size=32)
    images, _ = generate(sampler, 100)
    shares = judge.class_shares(images)
    assert (shares > 0).all() and shares.max() <= 0.25, shares
    assert judge.confidence(images) > 0.7
    arith = figures(trained_dcgan, tmp_path / "arith", "generate_arithmetic",
                    "generate.attribute='1'", "generate.samples=1000", "generate.steps=5")
    shares = arith["share_with_attribute"]  # alpha -2, -1, 0, 1, 2
    assert arith["judge"].startswith("logistic") and shares[-1] > shares[2] + 0.3, arith
