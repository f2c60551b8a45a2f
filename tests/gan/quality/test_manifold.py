"""Precision, recall, density and coverage on inputs whose answer is known: exact values on a
1-D set worked out by hand; on features of a known distribution, about 1 for two samples of it,
recall about 0 for a generator that repeats one sample, recall the share of modes kept for
one that drops modes, and low precision for a shifted one."""
from __future__ import annotations

import numpy as np
import pytest

from gan.quality import manifold
from gan.quality.manifold import prdc, radii

REAL = np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])  # 10 is an outlier with a wide ball
FAKE = np.array([[0.5], [2.5], [5.0], [20.0]])


def test_radii_are_the_distance_to_the_kth_other_sample():
    np.testing.assert_array_equal(radii(REAL, 1), [1, 1, 1, 1, 7])
    np.testing.assert_array_equal(radii(REAL, 2), [2, 1, 1, 2, 8])


@pytest.mark.parametrize("k, expected", [
    # k = 1. precision: 0.5, 2.5 and 5 (in the outlier 10's ball of radius 7) of 4 -> 3/4;
    # recall: every real, 10 inside 20's ball (radius 15) -> 1; density: real balls holding
    # each fake 2, 2, 1, 0 over 4 x 1 -> 5/4; coverage: every real ball holds a fake -> 1
    (1, {"precision": 0.75, "recall": 1.0, "density": 1.25, "coverage": 1.0}),
    # k = 2: the same but density, real balls 2, 3 (2, 3 and 10's), 1, 0 over 4 x 2 -> 3/4
    (2, {"precision": 0.75, "recall": 1.0, "density": 0.75, "coverage": 1.0}),
])
def test_exact_values_on_a_set_worked_out_by_hand(k, expected):
    assert prdc(FAKE, REAL, k) == expected


def test_far_fakes_lower_precision_and_leave_reals_uncovered():
    """Fakes 0.5, 2.5, 20, 21 (k = 1): two of four in a real ball (1/2); 10 is in no fake ball
    (20's radius is 1) and its ball (7) holds no fake (2.5 is 7.5 away): recall and coverage
    4/5; density 2 + 2 balls over 4 -> 1."""
    fake = np.array([[0.5], [2.5], [20.0], [21.0]])
    assert prdc(fake, REAL, 1, prefix="inception_") == {
        "inception_precision": 0.5, "inception_recall": 0.8, "inception_density": 1.0,
        "inception_coverage": 0.8}


def features(latents: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Features like a network's: a low-dimensional cause seen through a rectified 256-d
    layer (O-Net's fc5 is 256-d after PReLU)."""
    return np.maximum(latents @ weights, 0)


@pytest.fixture(scope="module")
def world():
    """The features' layer and 1000 real samples; each test draws its own from its seed."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(8, 256))
    return weights, features(rng.normal(size=(1000, 8)), weights)


def test_two_samples_of_one_distribution_score_about_one(world):
    weights, real = world
    rng = np.random.default_rng(1)
    other = features(rng.normal(size=(1000, 8)), weights)
    found = prdc(other, real)
    assert found["precision"] > 0.85 and found["recall"] > 0.85, found
    assert 0.85 < found["density"] < 1.15 and found["coverage"] > 0.9, found


def test_a_generator_repeating_one_sample_has_no_recall(world):
    weights, real = world
    rng = np.random.default_rng(2)
    one = features(rng.normal(size=(1, 8)), weights)
    found = prdc(np.repeat(one, 1000, axis=0), real)
    assert found["recall"] < 0.05 and found["coverage"] < 0.05, found
    assert found["precision"] > 0.9, found  # the one sample is a good one


def test_recall_and_coverage_are_the_share_of_modes_kept_precision_stays(world):
    """Ten clusters in the data, the generator draws two of them: recall and coverage ≈ 0.2."""
    weights, _ = world
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=6, size=(10, 8))
    real = features(centres[rng.integers(0, 10, 1000)] + rng.normal(size=(1000, 8)),
                    weights)
    fake = features(centres[rng.integers(0, 2, 1000)] + rng.normal(size=(1000, 8)),
                    weights)
    found = prdc(fake, real)
    assert 0.1 < found["recall"] < 0.3 and 0.1 < found["coverage"] < 0.3, found
    assert found["precision"] > 0.85, found


def test_a_shifted_distribution_has_low_precision(world):
    weights, real = world
    rng = np.random.default_rng(4)
    shifted = features(rng.normal(size=(1000, 8)) + 1.5, weights)
    found = prdc(shifted, real)
    assert found["precision"] < 0.4 and found["density"] < 0.2, found


def test_blocks_change_nothing_and_too_few_samples_are_refused(world, monkeypatch):
    weights, real = world
    rng = np.random.default_rng(5)
    fake = features(rng.normal(size=(300, 8)), weights)
    whole = prdc(fake, real[:400], k=3)
    monkeypatch.setattr(manifold, "BLOCK_ELEMENTS", 7 * 400)  # 7-row blocks, a ragged last
    assert prdc(fake, real[:400], k=3) == whole
    with pytest.raises(ValueError, match="k = 5 need more than 5 samples in each set, got 5 "
                                         "generated"):
        prdc(fake[:5], real)
