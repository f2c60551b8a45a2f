"""Latent and label sampling: the three distributions and counter-based determinism."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from gan.models import latents


def draw(kind: str, step: int = 3, rank: int = 0, batch: int = 64, dim: int = 5) -> np.ndarray:
    return latents.latent(kind, batch, dim, latents.seed_for(7, rank, step, "d_latent")).numpy()


def test_stratified_covers_minus3_to_3_evenly_in_every_dimension():
    z = draw("stratified")
    grid = np.linspace(-3, 3, 64)
    for d in range(z.shape[1]):
        np.testing.assert_allclose(np.sort(z[:, d]), grid, atol=1e-6)
    assert not np.array_equal(z[:, 0], z[:, 1])  # each dimension has its own order
    assert not np.array_equal(z[:, 0], np.sort(z[:, 0]))  # shuffled, not sorted


def test_normal_and_uniform_ranges():
    n = latents.latent("normal", 4000, 4, latents.seed_for(0, 0, 0, "g_latent")).numpy()
    assert abs(n.mean()) < 0.05 and abs(n.std() - 1) < 0.05
    u = draw("uniform", batch=4000)
    assert u.min() >= -1 and u.max() <= 1 and abs(u.mean()) < 0.05


def test_draws_depend_only_on_seed_rank_step():
    np.testing.assert_array_equal(draw("normal", step=5), draw("normal", step=5))
    assert not np.array_equal(draw("normal", step=5), draw("normal", step=6))
    assert not np.array_equal(draw("normal", rank=0), draw("normal", rank=1))


def test_labels_follow_the_class_probabilities():
    probs = tf.constant([0.7, 0.2, 0.1, 0.0])
    labels = latents.class_labels(probs, 20000, latents.seed_for(1, 0, 0, "d_labels"))
    freq = np.bincount(labels.numpy(), minlength=4) / 20000
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1, 0.0], atol=0.02)
