"""The learning floors of the digits AE-AC-GAN, kept honest in CI: the example is trained once per
suite run (``tests/system/conftest.py``: at half width, for the epochs its floors were measured
at) and every test here reads that run directory. The floors sit well below what the benchmark
(``bench/bench_models.py``) measures. One file per model: the suite's workers train them side
by side."""
from __future__ import annotations

from pathlib import Path

from tests.system.training import copy_run_without_its_data, figures


def test_aeacgan_learns_its_attributes(trained_aeacgan, digits16, tmp_path):
    """The AE-AC-GAN on digits (one-hot digit = its attribute vector): ≥ 90% conditional
    accuracy by the real-data judge, the attribute heads' F1, and the arithmetic figure's
    direction really adds the attribute. The figures come from a copy of the run whose
    training data has gone: F1 reads real images from ``generate.data`` alone, and the
    arithmetic's judge is the model's own encoder, which needs none."""
    from gan.models.sampler import Sampler
    from gan.quality.digits import DigitJudge
    from gan.quality.evaluate import conditional_accuracy

    accuracy = conditional_accuracy(Sampler.load(trained_aeacgan), DigitJudge(), 100)
    assert accuracy >= 0.90, f"conditional accuracy {accuracy:.3f}"
    run = copy_run_without_its_data(trained_aeacgan, tmp_path / "run")
    scores = figures(run, tmp_path / "f1", "generate_grid", "generate.task=attribute_f1",
                     "generate.samples=1000", f"generate.data={digits16}")
    f1 = scores["mean_f1"]
    assert len(scores["attributes"]) == 10
    assert f1["d_real"] > 0.8 and f1["e_real"] > 0.8 and f1["d_generated"] > 0.8, f1
    arith = figures(run, tmp_path / "arith", "generate_arithmetic",
                    "generate.attribute=digit_1", "generate.samples=1000", "generate.steps=5")
    shares = arith["share_with_attribute"]  # alpha -2, -1, 0, 1, 2
    assert arith["judge"] == "encoder" and shares[-1] > shares[2] + 0.3, arith
    assert shares[0] <= shares[2], arith
    assert Path(arith["arithmetic"]).exists()
