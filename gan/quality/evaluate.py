"""Judge a conditional generator with a classifier trained on real data.

Conditional accuracy = the share of generated images that the real-data classifier assigns to
the class they were generated for (10% is chance for 10 classes).
"""
from __future__ import annotations

import numpy as np

from gan.models import latents
from jobs.core.images import to_signed_unit, to_uint8_keep_channels


def generate(sampler, per_class: int, seed: int = 123) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N×S×S×C, labels) with ``per_class`` images of every class, from a
    sampler's generator (its latent distribution, its way of conditioning)."""
    labels = np.repeat(np.arange(sampler.num_classes, dtype=np.int32), per_class)
    z = sampler.figure_latent(len(labels), latents.seed_for(seed, 0, 0, "grid"))
    images = sampler.generate(z, labels)
    return images[..., :sampler.channels], labels  # grey data: one channel back


def pixel_features(images: np.ndarray, max_side: int = 32) -> np.ndarray:
    """Flattened pixels in [0, 1], subsampled to at most ``max_side``: what the small
    scikit-learn judges see (64×64 RGB raw would be 12,288 features and minutes to fit)."""
    step = max(1, images.shape[1] // max_side)
    small = images[:, ::step, ::step].astype(np.float32) / 255.0
    return small.reshape(len(small), -1)


def conditional_accuracy(sampler, judge, per_class: int) -> float:
    images, labels = generate(sampler, per_class)
    return judge.accuracy(images, labels)


def classifier_score(sampler, images: np.ndarray, labels: np.ndarray, per_class: int,
                     seed: int = 0) -> dict:
    """The classification accuracy score: a classifier trained only on generated images,
    tested on held-out *real* images, beside the same classifier trained on real images.
    Near 1.0 as a ratio means the generator's classes look like the real classes."""
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x = pixel_features(images)
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=0.25, random_state=seed, stratify=labels)
    fake, fake_labels = generate(sampler, per_class, seed=seed + 1)

    def fit(features, targets) -> float:
        model = MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=seed)
        model.fit(features, targets)
        return float(model.score(x_test, y_test))

    real_acc = fit(x_train, y_train)
    synthetic_acc = fit(pixel_features(fake), fake_labels)
    return {"real_trained_accuracy": real_acc, "synthetic_trained_accuracy": synthetic_acc,
            "ratio": synthetic_acc / real_acc if real_acc else float("nan"),
            "synthetic_images": int(len(fake)), "real_test_images": int(len(y_test))}


def _f1_per_column(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    from sklearn.metrics import f1_score

    return np.array([f1_score(truth[:, j], predicted[:, j], zero_division=0)
                     for j in range(truth.shape[1])])


def _batched(model, images: np.ndarray, batch: int = 256) -> list[np.ndarray]:
    """A multi-output model over uint8 images in batches; outputs concatenated."""
    outs = [model(to_signed_unit(images[i:i + batch].astype(np.float32)), training=False)
            for i in range(0, len(images), batch)]
    return [np.concatenate([np.asarray(o[k]) for o in outs]) for k in range(len(outs[0]))]


def attribute_f1(sampler, data, samples: int, seed: int = 0) -> dict:
    """Per-attribute F1 of an attribute model's heads: D's and the encoder's attribute
    predictions on real photos (up to ``samples`` of them) against the data's attributes, and
    D's predictions on generated images against the attributes they were conditioned on.
    ``sampler``: a sampler with D and E loaded; ``data``: the real images (an ImageSet)."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(data.num, min(samples, data.num), replace=False))
    real, truth = np.asarray(data.images[idx]), data.attributes[idx]
    d_real = _batched(sampler.D, real)[1] > 0
    e_real = _batched(sampler.E, real)[0] > 0
    z, conditions = sampler.random_inputs(samples, seed)
    d_fake = _batched(sampler.D, to_uint8_keep_channels(sampler.raw(z, conditions)))[1] > 0
    asked = conditions.numpy().astype(np.uint8)
    per = {"d_real": _f1_per_column(truth, d_real), "e_real": _f1_per_column(truth, e_real),
           "d_generated": _f1_per_column(asked, d_fake)}
    names = data.attribute_names or [str(j) for j in range(truth.shape[1])]
    return {"attributes": {name: {k: round(float(v[j]), 4) for k, v in per.items()}
                           for j, name in enumerate(names)},
            # attributes no image has (or was asked for) have no F1 to speak of
            "mean_f1": {k: float(v[(asked if k == "d_generated" else truth).any(axis=0)].mean())
                        for k, v in per.items()},
            "real_images": int(len(idx)), "generated_images": int(samples)}
