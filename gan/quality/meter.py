"""Quality measured during training: KID, FID (and, if asked, precision, recall, density,
coverage) and the face rate every N epochs or K kimg.

The figures are those of ``generate.task: metrics`` (``gan.quality.metrics``: O-Net features
that need no network, Inception-v3 from a user's weights file), of the generator users get
(the moving average with ``train.ema``), on a fixed set of latents and a fixed set of real
images chosen once per run from its seed: successive figures differ by G alone, not by the draw.

All ranks share the work: each generates and embeds its slice of the latents (and, once, of
the real images); Horovod gathers the features and adds up the face counts; every rank then
computes the same figures from the same numbers, so all agree on the best snapshot without
another message. Nothing here draws from the training's random streams: resume stays exact.
"""
from __future__ import annotations

import logging

import numpy as np
import tensorflow as tf

from gan.models.sampler import Sampler
from gan.parallel.distributed import World
from gan.quality import metrics
from gan.training.data import ImageSet
from jobs.core.schema import MetricsSpec

log = logging.getLogger(__name__)
LATENT_DRAW = 7  # the random_inputs draw the measurement's latents come from (grids use 0)


def is_due(spec: MetricsSpec, epochs_done: int, images_before: int, images_after: int) -> bool:
    """At the end of epoch ``epochs_done`` (counted from 1): every ``every_epochs`` epochs, or
    when the images seen crossed a multiple of ``every_kimg`` thousand during the epoch."""
    by_epochs = spec.every_epochs and epochs_done % spec.every_epochs == 0
    per = spec.every_kimg * 1000
    by_images = per and int(images_after // per) > int(images_before // per)
    return bool(by_epochs or by_images)


def enabled(spec: MetricsSpec) -> bool:
    return bool(spec.every_epochs or spec.every_kimg)


class QualityMeter:
    """Measures the generator of ``sampler`` against ``data`` on every rank of ``world``."""

    def __init__(self, spec: MetricsSpec, seed: int, world: World, data: ImageSet,
                 sampler: Sampler):
        self.spec, self.seed, self.world, self.sampler = spec, seed, world, sampler
        self.extractors = metrics.extractors(spec.inception, "train.metrics.inception")
        self.face_rate = metrics.FaceRate() if spec.face_rate else None
        self.nearest_k = spec.nearest_k if spec.precision_recall else None
        chosen = metrics.real_indices(data.num, spec.count, seed)
        self._real_images = lambda: np.asarray(data.images[self._mine(chosen)])
        self._real: dict[str, np.ndarray] | None = None

    def columns(self) -> tuple[str, ...]:
        """The figures :meth:`measure` returns, in metrics.csv's order."""
        names = [f"{p}{k}" for p in self.extractors for k in metrics.figures(self.nearest_k)]
        return tuple(names + (["face_rate"] if self.face_rate else []))

    def measure(self) -> dict[str, float]:
        """The figures now (every rank gets the same dict)."""
        if self._real is None:
            self._real = self._reference()
        z, conditions = self.sampler.random_inputs(self.spec.count, self.seed, LATENT_DRAW)
        mine = self._mine(np.arange(self.spec.count))
        images = self.sampler.draw(tf.gather(z, mine), tf.gather(conditions, mine))
        values = {}
        for prefix, extract in self.extractors.items():
            gathered = self._gather(extract(images), f"gen_{prefix}")
            values.update(metrics.compare(gathered, self._real[prefix], self.seed, prefix,
                                          self.nearest_k))
        if self.face_rate is not None:
            values["face_rate"] = self._share(self.face_rate.found(images), self.spec.count,
                                              "gen")
        return values

    def _reference(self) -> dict[str, np.ndarray]:
        """Features of the fixed real images (once per process), and what a generator
        indistinguishable from them would score: logged as the yardstick."""
        images = self._real_images()
        real = {prefix: self._gather(extract(images), f"real_{prefix}")
                for prefix, extract in self.extractors.items()}
        f = real[""]
        halves = metrics.compare(f[:len(f) // 2], f[len(f) // 2:], self.seed, "",
                                 self.nearest_k)
        rate = self._share(self.face_rate.found(images), len(f), "real") \
            if self.face_rate else None
        log.info("quality yardstick, %d real images: KID x1000 of one half against the "
                 "other %.2f%s%s", len(f), 1000 * halves["kid"],
                 "" if self.nearest_k is None else ", precision {precision:.2f} recall "
                 "{recall:.2f} density {density:.2f} coverage {coverage:.2f}".format(**halves),
                 "" if rate is None else f", face rate {rate:.2f}")
        return real

    def _mine(self, items: np.ndarray) -> np.ndarray:
        """This rank's contiguous share: gathered in rank order, the shares are the whole in
        its single-process order, so the figures do not depend on the number of ranks."""
        return np.array_split(items, self.world.size)[self.world.rank]

    def _gather(self, features: np.ndarray, name: str) -> np.ndarray:
        if self.world.size == 1:
            return features
        return self.world.gather(tf.constant(features), name=f"quality_{name}").numpy()

    def _share(self, found: int, total: int, name: str) -> float:
        """Faces found by all ranks together, as a share of ``total`` images."""
        found = int(self.world.sum(tf.constant(found, tf.int64), name=f"quality_faces_{name}"))
        return found / total
