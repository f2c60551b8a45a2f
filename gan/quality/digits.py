"""scikit-learn's handwritten digits as a labelled benchmark for conditional GANs.

Faces can't be trained to convergence on a laptop CPU, so the machinery is proven on a real,
small labelled set: 1,797 8×8 digits (10 classes) that ship inside scikit-learn, upscaled and
written in the preprocessing output format. A classifier trained on the *real* digits then
judges whether generated digits show the class they were conditioned on.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from jobs.core import facefile


def digit_images(size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """(N, size, size) uint8 images and (N,) labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    raw = (digits.images / 16.0 * 255).astype(np.uint8)
    images = np.stack([np.asarray(Image.fromarray(im).resize((size, size),
                                                             Image.Resampling.BILINEAR))
                       for im in raw])
    return images, digits.target.astype(np.int16)


def write_digits(path: str | Path, size: int = 16, count: int | None = None) -> Path:
    """An HDF5 file in the layout training reads (one grey channel); ``count``: only the first
    that many digits (all ten classes from 10 on), for runs that check mechanics, not
    learning, in fewer steps."""
    images, labels = digit_images(size)
    images, labels = images[:count], labels[:count]
    # one-hot "attributes" let the attribute-conditioned aeacgan train on digits too
    return facefile.write_arrays(path, images[..., None], labels,
                                 class_names=[str(i) for i in range(10)],
                                 attributes=np.eye(10, dtype=np.uint8)[labels],
                                 attribute_names=[f"digit_{i}" for i in range(10)])


class DigitJudge:
    """An MLP trained on real digits; scores generated ones."""

    def __init__(self, size: int = 16, seed: int = 0):
        from sklearn.model_selection import train_test_split
        from sklearn.neural_network import MLPClassifier

        images, labels = digit_images(size)
        x = images.reshape(len(images), -1) / 255.0
        x_train, x_test, y_train, y_test = train_test_split(
            x, labels, test_size=0.25, random_state=seed, stratify=labels)
        self.model = MLPClassifier(hidden_layer_sizes=(128,), max_iter=400, random_state=seed)
        self.model.fit(x_train, y_train)
        self.real_accuracy = float(self.model.score(x_test, y_test))
        self.real_confidence = float(self.model.predict_proba(x_test).max(axis=1).mean())

    @staticmethod
    def _features(images: np.ndarray) -> np.ndarray:
        return images.reshape(len(images), -1) / 255.0

    def predict(self, images: np.ndarray) -> np.ndarray:
        """The digit the judge sees in each image (uint8, N×S×S[×1])."""
        return self.model.predict(self._features(images))

    def confidence(self, images: np.ndarray) -> float:
        """Mean probability of the judge's top class: near its value on real digits means
        the samples look like digits, not like noise between classes."""
        return float(self.model.predict_proba(self._features(images)).max(axis=1).mean())

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> float:
        """Share of generated images classified as their conditioning."""
        return float((self.predict(images) == labels).mean())

    def class_shares(self, images: np.ndarray) -> np.ndarray:
        """Share of images the judge puts in each class (mode collapse: a few classes)."""
        return np.bincount(self.predict(images), minlength=10) / len(images)
