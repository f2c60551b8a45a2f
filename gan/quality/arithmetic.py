"""Attribute arithmetic in the latent space: find the direction ``v`` along which generated
faces gain an attribute, then draw ``z + α·v`` rows (more smiling; male → female with α < 0).

``v`` is the mean latent of generated images judged *with* the attribute minus the mean of
those judged *without*. The judge is the model's own encoder when it has one (aeacgan),
otherwise a logistic regression fitted on the real images of the training data — on a CelebA
attribute (the data's ``attributes``) or on a class (one class against the rest).
"""
from __future__ import annotations

import logging

import numpy as np

from gan.quality.evaluate import pixel_features as _features
from jobs.core.images import to_signed_unit

log = logging.getLogger(__name__)
JUDGE_TRAIN_MAX = 20_000  # real images the fallback judge is fitted on


def attribute_targets(data, attribute: str) -> np.ndarray:
    """0/1 per real image: the named CelebA attribute, or membership of the named class."""
    if attribute in data.attribute_names:
        return data.attributes[:, data.attribute_names.index(attribute)].astype(np.int32)
    if attribute in data.class_names:
        return (data.labels == data.class_names.index(attribute)).astype(np.int32)
    raise ValueError(f"attribute {attribute!r} is neither an attribute of {data.path} "
                     f"({', '.join(data.attribute_names) or 'none'}) nor a class "
                     f"({', '.join(data.class_names)})")


class Judge:
    """Says whether images (uint8, N×S×S×C) show the attribute."""

    def __init__(self, sampler, data, attribute: str, seed: int = 0):
        """``sampler``: a sampler; ``data``: real images (an ImageSet), needed unless the
        model's own encoder judges the attribute."""
        self.channels = sampler.channels
        names = sampler.conditioning.attribute_names
        if sampler.E is not None and attribute in names:
            self.kind, self.column, self.encoder = "encoder", names.index(attribute), sampler.E
            return
        if data is None:
            raise ValueError(f"judging {attribute!r} needs real images: set generate.data")
        targets = attribute_targets(data, attribute)
        from sklearn.linear_model import LogisticRegression

        rng = np.random.default_rng(seed)
        idx = np.sort(rng.choice(data.num, min(JUDGE_TRAIN_MAX, data.num), replace=False))
        if targets[idx].min() == targets[idx].max():
            raise ValueError(f"every training image has {attribute}={targets[idx][0]}: "
                             "nothing to learn the attribute from")
        self.kind = "logistic regression on real images"
        self.model = LogisticRegression(max_iter=2000, C=0.1)
        self.model.fit(_features(np.asarray(data.images[idx])), targets[idx])
        self.train_accuracy = float(self.model.score(_features(np.asarray(data.images[idx])),
                                                     targets[idx]))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = images[..., :self.channels]
        if self.kind == "encoder":
            logits = self.encoder(to_signed_unit(images.astype(np.float32)), training=False)[0]
            return np.asarray(logits)[:, self.column] > 0
        return self.model.predict(_features(images)).astype(bool)


def _inputs(sampler, n: int, seed: int, first: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(points w, separate conditions): the space the direction lives in. For an attribute
    model the attributes are part of it (they are where "smiling" is); for a class model the
    class stays fixed per image and w is the latent alone."""
    z, cond = (np.asarray(v) for v in sampler.random_inputs(n, seed, first))
    if sampler.condition == "attributes":
        return np.concatenate([z, cond], axis=1), None
    return z, cond


def _draw(sampler, w: np.ndarray, cond: np.ndarray | None) -> np.ndarray:
    if cond is not None:
        return sampler.draw(w, cond)
    # the attributes were 0/1 labels in training: beyond [0, 1] they mean nothing to G (the
    # latent is not clipped, as for every model)
    dim = sampler.spec.model.latent_dim
    return sampler.draw(w[:, :dim], np.clip(w[:, dim:], 0.0, 1.0))


def _judge_all(sampler, judge: Judge, w: np.ndarray, cond: np.ndarray | None) -> np.ndarray:
    return np.concatenate([judge(_draw(sampler, w[i:i + 256],
                                       None if cond is None else cond[i:i + 256]))
                           for i in range(0, len(w), 256)])


def arithmetic(sampler, data, attribute: str, samples: int, rows: int, steps: int, strength: float,
               seed: int = 0) -> tuple[np.ndarray, list[str], dict]:
    """The figure's images (``rows`` × ``steps``, α from −strength to +strength) and
    captions, and the numbers: how often the judge sees the attribute at each α (over a
    larger set of base points), which must rise with α if ``v`` means anything. For an
    attribute model ``v`` spans latent and attributes; the share along its latent part alone
    is reported too."""
    judge = Judge(sampler, data, attribute, seed)
    w, cond = _inputs(sampler, samples, seed, 2)
    has = _judge_all(sampler, judge, w, cond)
    if has.all() or not has.any():
        raise ValueError(f"the judge ({judge.kind}) sees {attribute} in {int(has.sum())} of "
                         f"{samples} generated images: no direction to take")
    v = w[has].mean(axis=0) - w[~has].mean(axis=0)
    alphas = np.linspace(-strength, strength, steps)
    base, base_cond = _inputs(sampler, max(rows, 256), seed, 4)
    def shares_along(direction: np.ndarray) -> list[float]:
        return [float(_judge_all(sampler, judge, base + a * direction, base_cond).mean())
                for a in alphas]

    shares = shares_along(v)
    dim = sampler.spec.model.latent_dim
    parts = {"direction_norm_latent": float(np.linalg.norm(v[:dim]))}
    if base_cond is None:  # an attribute model: what is the latent part of v worth alone?
        parts["direction_norm_attributes"] = float(np.linalg.norm(v[dim:]))
        parts["share_with_attribute_latent_only"] = shares_along(
            np.concatenate([v[:dim], np.zeros_like(v[dim:])]))
    pts = np.concatenate([base[r] + alphas[:, None] * v for r in range(rows)])
    images = _draw(sampler, pts.astype(np.float32),
                   None if base_cond is None else np.repeat(base_cond[:rows], steps, axis=0))
    captions = [f"{attribute}: {a:+.1f}" for _ in range(rows) for a in alphas]
    log.info("%s: direction from %d/%d generated images with it (judge: %s); share with "
             "it at alpha %+.1f .. %+.1f: %.2f .. %.2f", attribute, int(has.sum()), samples,
             judge.kind, alphas[0], alphas[-1], shares[0], shares[-1])
    return images, captions, {
        "attribute": attribute, "judge": judge.kind, "generated": samples,
        "judged_with": int(has.sum()), "direction_norm": float(np.linalg.norm(v)),
        "alphas": [float(a) for a in alphas], "share_with_attribute": shares, **parts}
