"""Judge a conditional generator with a classifier trained on real data.

Conditional accuracy = the share of generated images that the real-data classifier assigns to
the class they were generated for (10% is chance for 10 classes).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from gan import sampling


def generate(generator, num_classes: int, per_class: int, latent_dim: int, seed: int = 123,
             distribution: str = "normal") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N×S×S×C, labels) with ``per_class`` images of every class."""
    labels = np.repeat(np.arange(num_classes, dtype=np.int32), per_class)
    z = sampling.latent(distribution, len(labels), latent_dim,
                        sampling.seed_for(seed, 0, 0, "grid"))
    images = generator([z, tf.constant(labels)], training=False)
    images = tf.clip_by_value((tf.cast(images, tf.float32) + 1) * 127.5, 0, 255)
    return tf.cast(tf.round(images), tf.uint8).numpy(), labels


def conditional_accuracy(generator, judge, num_classes: int, per_class: int,
                         latent_dim: int) -> float:
    images, labels = generate(generator, num_classes, per_class, latent_dim)
    return judge.accuracy(images, labels)


def classifier_score(generator, images: np.ndarray, labels: np.ndarray, latent_dim: int,
                     per_class: int, seed: int = 0) -> dict:
    """The classification accuracy score: a classifier trained only on generated images,
    tested on held-out *real* images, beside the same classifier trained on real images.
    Near 1.0 as a ratio means the generator's classes look like the real classes."""
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x = images.reshape(len(images), -1) / 255.0
    x_train, x_test, y_train, y_test = train_test_split(
        x, labels, test_size=0.25, random_state=seed, stratify=labels)
    classes = int(labels.max()) + 1
    fake, fake_labels = generate(generator, classes, per_class, latent_dim, seed=seed + 1)

    def fit(features, targets) -> float:
        model = MLPClassifier(hidden_layer_sizes=(128,), max_iter=300, random_state=seed)
        model.fit(features, targets)
        return float(model.score(x_test, y_test))

    real_acc = fit(x_train, y_train)
    synthetic_acc = fit(fake.reshape(len(fake), -1) / 255.0, fake_labels)
    return {"real_trained_accuracy": real_acc, "synthetic_trained_accuracy": synthetic_acc,
            "ratio": synthetic_acc / real_acc if real_acc else float("nan"),
            "synthetic_images": int(len(fake)), "real_test_images": int(len(y_test))}
