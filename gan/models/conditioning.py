"""What a generator is fed besides its latent: class labels, nothing, or attribute rows.

The facts come from the training data (class names and frequencies, each class's typical
attribute row, the real attribute rows fakes are conditioned on) and are saved beside the
checkpoints as ``conditioning.npz``: a run directory alone is enough to sample, export or
score its generator, with the data file moved away.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from gan.models import latents
from jobs.core.files import atomic_path

FILE = "conditioning.npz"


class ConditioningError(ValueError):
    """The data cannot condition this model, or a run directory lacks its conditioning."""


@dataclass
class Conditioning:
    kind: str                           # label | none | attributes (the model family's)
    class_names: list[str]
    class_probs: np.ndarray             # (C,) float: how training draws fake labels
    image_shape: tuple[int, int, int]   # (S, S, channels) of the data
    attribute_names: list[str]
    attribute_rows: np.ndarray | None   # (N, A) uint8: real rows fakes are conditioned on
    prototypes: np.ndarray | None       # (C, A) float: each class's typical attribute row

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_attributes(self) -> int:
        return 0 if self.attribute_rows is None else int(self.attribute_rows.shape[1])

    @property
    def conditional(self) -> bool:
        return self.kind != "none"

    @classmethod
    def from_data(cls, data, kind: str, num_classes: int | None,
                  class_probabilities: list[float] | None) -> Conditioning:
        """From an ``ImageSet``; ``num_classes``/``class_probabilities`` from the spec (None:
        the data's own)."""
        count = num_classes or data.num_classes
        names = data.class_names if count == data.num_classes else [str(i) for i in
                                                                     range(count)]
        probs = np.asarray(class_probabilities or data.class_frequencies(), np.float32)
        if len(probs) != count:
            raise ConditioningError(f"train.latent.class_probabilities has {len(probs)} "
                                    f"entries for {count} classes")
        rows = data.attributes
        if kind == "attributes" and rows is None:
            raise ConditioningError(f"train.model.name: this model family is conditioned on "
                                    f"attributes, but {data.path} has no 'attributes' dataset")
        prototypes = data.class_prototypes(count) if rows is not None else None
        return cls(kind, names, probs, tuple(data.shape), list(data.attribute_names),
                   None if rows is None else np.asarray(rows, np.uint8), prototypes)

    def save(self, run_dir: Path) -> Path:
        path = Path(run_dir) / FILE
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, kind=self.kind, class_names=np.array(self.class_names, str),
                         class_probs=self.class_probs, image_shape=np.array(self.image_shape),
                         attribute_names=np.array(self.attribute_names, str),
                         **({} if self.attribute_rows is None else {
                             "attribute_rows": self.attribute_rows,
                             "prototypes": self.prototypes}))
        return path

    @classmethod
    def load(cls, run_dir: Path) -> Conditioning:
        path = Path(run_dir) / FILE
        if not path.exists():
            raise ConditioningError(f"{run_dir}: no {FILE} (not a training run directory, or "
                                    "one made by an older version whose data is gone: re-run "
                                    "its train spec to add it)")
        try:
            with np.load(path, allow_pickle=False) as z:
                rows = z["attribute_rows"] if "attribute_rows" in z else None
                return cls(str(z["kind"]), [str(c) for c in z["class_names"]],
                           z["class_probs"], tuple(int(v) for v in z["image_shape"]),
                           [str(a) for a in z["attribute_names"]], rows,
                           z["prototypes"] if rows is not None else None)
        except Exception as exc:  # noqa: BLE001 - a damaged zip fails in many ways
            raise ConditioningError(f"{path}: unreadable ({type(exc).__name__}: {exc}); "
                                    "re-run the train spec to rewrite it") from None

    # ------------------------------------------------------------------ what G is fed
    def tensors(self) -> dict[str, tf.Tensor]:
        """The tables as tensors, made once outside any ``tf.function`` (inside one, each
        call would copy a CelebA-sized attribute table into the step's graph)."""
        if not hasattr(self, "_tensors"):
            with tf.init_scope():
                self._tensors = {"probs": tf.constant(self.class_probs, tf.float32)}
                if self.attribute_rows is not None:
                    self._tensors["rows"] = tf.constant(self.attribute_rows, tf.float32)
                    self._tensors["prototypes"] = tf.constant(self.prototypes, tf.float32)
        return self._tensors

    def sample(self, n: int, seed: tf.Tensor) -> tf.Tensor:
        """Conditions for n fakes: labels by ``class_probs`` (ignored by an unconditional
        model), or attribute rows of random real images."""
        if self.kind == "attributes":
            rows = tf.random.stateless_uniform((n,), seed, 0, len(self.attribute_rows),
                                               dtype=tf.int32)
            return tf.gather(self.tensors()["rows"], rows)
        return latents.class_labels(self.tensors()["probs"], n, seed)

    def for_labels(self, labels) -> tf.Tensor:
        """What G takes for these class labels (an attribute model: each class's typical
        attribute row)."""
        labels = tf.convert_to_tensor(labels, tf.int32)
        if self.kind == "attributes":
            return tf.gather(self.tensors()["prototypes"], labels)
        return labels
