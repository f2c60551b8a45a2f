"""Offline quality metrics: KID and FID over features no download provides, and the face rate.

Every FID package fetches Inception-v3 weights at run time, which compute nodes without internet
cannot do. The features here come from MTCNN's O-Net, whose weights ship inside the ``mtcnn``
wheel this project already needs: its 256-d penultimate layer (``fc5`` after PReLU), the layer
from which O-Net decides "face or not" and places the box and the five landmarks. So KID and
FID in that space measure how far generated images are from real ones *in what a face detector
looks at* — faces' layout, parts and contrast — not ImageNet's object categories; numbers are
comparable within this project, not with published Inception FIDs.

* KID (Bińkowski et al. 2018): the unbiased MMD² with the cubic polynomial kernel
  ``(x·y / d + 1)³``, averaged over random subsets, with its standard deviation over them. Near
  0 (and sometimes slightly negative) for two samples of one distribution.
* FID: the Fréchet distance between Gaussians fitted to the two feature sets.
* Precision, recall, density and coverage (``gan.quality.manifold``), optionally: fidelity
  and diversity apart, from k-nearest-neighbour balls in the same feature spaces.
* Face rate: the share of images in which MTCNN finds a face with confidence ≥ 0.9, the image
  upscaled to 80 px on a 160×195 canvas (MTCNN's smallest pyramid scales need the room).
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import tensorflow as tf
from mtcnn import MTCNN
from mtcnn.network.onet import ONet
from mtcnn.utils.tensorflow import load_weights

from gan.quality import manifold
from jobs.core.files import wrong_checksum
from jobs.core.images import to_rgb

FEATURE_DIM = 256
ONET_SIDE = 48


class FaceFeatures:
    """O-Net's penultimate features of uint8 images (N, S, S, C)."""

    NAME = "MTCNN O-Net fc5 (256-d)"

    def __init__(self):
        self.net = ONet()
        self.net.build()
        path = resources.files("mtcnn.assets.weights") / "onet.lz4"
        self.net.set_weights(load_weights(str(path)))  # never a file of the same name in cwd

    def __call__(self, images: np.ndarray, batch: int = 256) -> np.ndarray:
        return np.concatenate([self._features(images[i:i + batch])
                               for i in range(0, len(images), batch)])

    def _features(self, images: np.ndarray) -> np.ndarray:
        x = tf.cast(to_rgb(images), tf.float32)
        x = tf.image.resize(x, (ONET_SIDE, ONET_SIDE), antialias=True)
        x = (x - 127.5) / 128.0  # MTCNN's own normalisation
        n = self.net
        for conv, prelu, pool in ((n.conv1, n.prelu1, n.maxpool1), (n.conv2, n.prelu2, n.maxpool2),
                                  (n.conv3, n.prelu3, n.maxpool3)):
            x = pool(prelu(conv(x)))
        x = n.prelu4(n.conv4(x))
        return np.asarray(n.prelu5(n.fc5(n.flatten(n.permute(x)))), np.float64)


class InceptionFeatures:
    """Inception-v3's 2048-d pooled features, from Keras's ImageNet weights in a file the user
    fetched once (``inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5``, the file
    ``keras.applications.InceptionV3`` would download). The file's SHA-256 is checked first:
    a missing or different file is an error, never a download. Figures from it are comparable
    with other Keras-InceptionV3 FIDs; published FIDs use the 2015 TF graph, whose weights
    differ, so expect the same ranking, not the same numbers."""

    SIDE = 299
    NAME = "Keras Inception-v3 ImageNet, average pool (2048-d)"

    def __init__(self, weights: str, sha256: str, where: str):
        problem = wrong_checksum(weights, sha256, where)
        if problem:
            raise ValueError(problem)
        self.net = tf.keras.applications.InceptionV3(
            include_top=False, weights=weights, pooling="avg",
            input_shape=(self.SIDE, self.SIDE, 3))

    def __call__(self, images: np.ndarray, batch: int = 64) -> np.ndarray:
        return np.concatenate([self._features(images[i:i + batch])
                               for i in range(0, len(images), batch)])

    def _features(self, images: np.ndarray) -> np.ndarray:
        x = tf.image.resize(tf.cast(to_rgb(images), tf.float32), (self.SIDE, self.SIDE))
        x = x / 127.5 - 1.0  # keras.applications.inception_v3.preprocess_input
        return np.asarray(self.net(x, training=False), np.float64)


def extractors(inception, where: str) -> dict[str, object]:
    """Feature extractors by figure prefix: O-Net always (``kid``, ``fid``), Inception-v3 too
    (``inception_kid``...) when ``inception`` (the InceptionSpec at ``where``) names a file."""
    found = {"": FaceFeatures()}
    if inception is not None and inception.weights:
        found["inception_"] = InceptionFeatures(inception.weights, inception.sha256, where)
    return found


FIGURES = ("kid", "kid_std", "fid")


def real_indices(num: int, count: int, seed: int) -> np.ndarray:
    """The real images a measurement compares with: ``count`` of ``num`` (all if fewer),
    chosen by ``seed``, in file order (fast to read from HDF5)."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num, min(count, num), replace=False))


def figures(nearest_k: int | None) -> tuple[str, ...]:
    """The names :func:`compare` returns (before the prefix)."""
    return FIGURES + (manifold.FIGURES if nearest_k else ())


def compare(generated: np.ndarray, real: np.ndarray, seed: int = 0, prefix: str = "",
            nearest_k: int | None = None) -> dict[str, float]:
    """KID (mean and std over subsets) and FID of generated features against real ones; with
    ``nearest_k``, also precision, recall, density and coverage with balls of that k."""
    mean, std = kid(generated, real, seed=seed)
    values = dict(zip((prefix + k for k in FIGURES), (mean, std, fid(generated, real))))
    if nearest_k:
        values.update(manifold.prdc(generated, real, nearest_k, prefix))
    return values


def kid(a: np.ndarray, b: np.ndarray, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """(mean, std) of the unbiased MMD² over ``subsets`` random subsets of both sets (of at
    most half of the smaller set, so that the subsets differ and the std means something)."""
    rng = np.random.default_rng(seed)
    m = min(subset_size, len(a) // 2, len(b) // 2)
    d = a.shape[1]
    values = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
        diag = (np.trace(kxx) + np.trace(kyy))
        values.append((kxx.sum() + kyy.sum() - diag) / (m * (m - 1)) - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def fid(a: np.ndarray, b: np.ndarray) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 √(Σa Σb)), the Fréchet distance of the two Gaussians."""
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * trace_sqrt_product(a - mu_a, b - mu_b, cov_a, cov_b))


def trace_sqrt_product(a: np.ndarray, b: np.ndarray, cov_a: np.ndarray,
                       cov_b: np.ndarray) -> float:
    """tr √(Σa Σb) of centred features, exactly, without the general matrix square root.

    The eigenvalues of Σa Σb are real and ≥ 0 (it is similar to Σa^½ Σb Σa^½), so the trace is
    the sum of their roots. With fewer images than dimensions (40 Inception features of 2048)
    they are the squared singular values of A Bᵀ / √((na−1)(nb−1)), an na × nb matrix; else
    those of the symmetric Σa^½ Σb Σa^½. Either is an SVD or eigh: scipy's ``sqrtm`` of a
    2048² product (the usual FID code) took 16 s where this takes well under one."""
    if min(len(a), len(b)) < a.shape[1]:
        cross = a @ b.T / np.sqrt((len(a) - 1) * (len(b) - 1))
        return float(np.linalg.svd(cross, compute_uv=False).sum())
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    return float(np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum())


class FaceRate:
    """The share of images MTCNN finds a face in (confidence ≥ ``threshold``)."""

    def __init__(self, threshold: float = 0.9):
        self.threshold = threshold
        self.detector = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")

    def __call__(self, images: np.ndarray) -> float:
        return self.found(images) / max(1, len(images))

    def found(self, images: np.ndarray, batch: int = 32) -> int:
        """How many of the images hold a face (ranks add their counts up)."""
        found = 0
        for i in range(0, len(images), batch):
            canvases = [self._canvas(im) for im in images[i:i + batch]]
            results = self.detector.detect_faces(canvases, threshold_onet=0.8)
            found += sum(any(f["confidence"] >= self.threshold for f in faces)
                         for faces in results)
        return found

    @staticmethod
    def _canvas(image: np.ndarray) -> np.ndarray:
        """80 px on a mid-grey 160×195 canvas (all the same size: MTCNN pads mixed sizes)."""
        face = tf.image.resize(to_rgb(image).astype(np.float32), (80, 80), antialias=True)
        canvas = np.full((195, 160, 3), 128, np.uint8)
        canvas[57:137, 40:120] = np.clip(np.asarray(face), 0, 255).astype(np.uint8)
        return canvas
