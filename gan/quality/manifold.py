"""Precision, recall, density and coverage: where generated features lie against real ones.

KID and FID fold fidelity (are the samples like real ones?) and diversity (do they cover what
real ones do?) into one number; a generator that draws a few good faces over and over can
score well on both. These four figures separate the two, from the same features (O-Net's,
Inception's), by the k-nearest-neighbour balls around each sample:

* precision (Kynkäänniemi et al. 2019): the share of generated samples inside the ball of at
  least one real sample — fidelity;
* recall (ibid.): the share of real samples inside the ball of at least one generated sample
  — diversity: it falls as the generator drops modes, and is ≈ 0 for a collapsed one;
* density (Naeem et al. 2020): how many real balls hold each generated sample, over k,
  averaged — ≈ 1 for two samples of one distribution, above 1 where fakes crowd the real
  modes, robust to real outliers that inflate precision;
* coverage (ibid.): the share of real samples whose ball holds at least one generated sample
  — diversity measured by the real balls only, which (unlike recall's generated balls) do not
  grow around generated outliers.

A ball is centred on a sample with the distance to its k-th nearest neighbour in its own set
as radius (strictly inside counts, as in the authors' code). Distances are Euclidean, computed
in blocks of rows so that memory stays at one block × the other set, however long the
features: no randomness, the same figures for the same features.
"""
from __future__ import annotations

import numpy as np

FIGURES = ("precision", "recall", "density", "coverage")
BLOCK_ELEMENTS = 2 ** 22  # distances held at once: 32 MB of float64


def distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and of ``b`` (len(a) × len(b)), from
    ‖a‖² + ‖b‖² − 2 a·b: one matrix product, never an (n, m, d) array."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
    return np.sqrt(np.clip(squared, 0, None))


def blocks(rows: int, others: int):
    """Row slices of at most ``BLOCK_ELEMENTS`` distances each (a fixed split of the rows:
    the figures do not depend on anything but the features)."""
    step = max(1, BLOCK_ELEMENTS // max(1, others))
    return (slice(i, min(i + step, rows)) for i in range(0, rows, step))


def radii(x: np.ndarray, k: int) -> np.ndarray:
    """Each row's distance to its k-th nearest other row of ``x`` (itself, at 0, is the 0th)."""
    out = np.empty(len(x))
    for rows in blocks(len(x), len(x)):
        out[rows] = np.partition(distances(x[rows], x), k, axis=1)[:, k]
    return out


def prdc(fake: np.ndarray, real: np.ndarray, k: int = 5, prefix: str = "") -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake`` features against ``real`` ones,
    with k-nearest-neighbour balls; the keys carry ``prefix`` (``inception_``)."""
    fake, real = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    if min(len(fake), len(real)) <= k:
        raise ValueError(f"precision and recall with k = {k} need more than {k} samples in "
                         f"each set, got {len(fake)} generated and {len(real)} real")
    real_radii, fake_radii = radii(real, k), radii(fake, k)
    in_real_balls = np.zeros(len(fake), np.int64)  # how many real balls hold each fake
    covered = np.zeros(len(real), bool)  # a real ball holds a fake
    recalled = np.zeros(len(real), bool)  # a real sample is inside a fake ball
    for rows in blocks(len(fake), len(real)):
        d = distances(fake[rows], real)
        inside = d < real_radii[None, :]
        in_real_balls[rows] = inside.sum(1)
        covered |= inside.any(0)
        recalled |= (d < fake_radii[rows, None]).any(0)
    values = ((in_real_balls > 0).mean(), recalled.mean(), in_real_balls.mean() / k,
              covered.mean())
    return {prefix + name: float(v) for name, v in zip(FIGURES, values)}
