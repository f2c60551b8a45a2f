"""The offline metrics on inputs whose answer is known: a real face is a face and noise is
not; KID and FID are about 0 for two samples of one distribution and grow with the distance;
the features are the same for the same images (no randomness, no download)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from scipy import linalg
from skimage import data as skdata

from gan.quality.metrics import FEATURE_DIM, FaceFeatures, FaceRate, InceptionFeatures, fid, kid
from jobs.core.files import sha256_of


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    """The astronaut's head (public domain, NASA) as a 64x64 crop, as preprocessing makes."""
    return np.asarray(Image.fromarray(skdata.astronaut()[20:220, 150:330]).resize((64, 64)))


def test_face_rate_finds_the_real_face_and_not_noise(face):
    rate = FaceRate()
    noise = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    assert rate(np.stack([face, face[:, ::-1]])) == 1.0
    assert rate(noise) == 0.0
    grey = np.full((2, 32, 32, 1), 128, np.uint8)  # grey one-channel images are taken too
    assert rate(grey) == 0.0


def test_features_are_deterministic_and_tell_a_face_from_noise(face):
    features = FaceFeatures()
    noise = np.random.default_rng(1).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    a, b = features(face[None]), features(face[None])
    assert a.shape == (1, FEATURE_DIM)
    np.testing.assert_array_equal(a, b)
    assert np.linalg.norm(a - features(noise)) > 0.1 * np.linalg.norm(a)


def test_kid_and_fid_are_about_zero_for_one_distribution_and_grow_with_distance():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    near, far = rng.normal(0.3, size=(400, 16)), rng.normal(1.0, size=(400, 16))
    same, std = kid(x, y, subsets=30)
    assert abs(same) < 3 * std + 1e-3 and std > 0
    assert same < kid(x, near, subsets=30)[0] < kid(x, far, subsets=30)[0]
    assert fid(x, y) < fid(x, near) < fid(x, far)


def write_inception_weights(path) -> tuple[object, str]:
    """Random Inception-v3 weights in the legacy Keras HDF5 layout of the file users fetch
    (inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5): no download here, and random
    weights prove the file is what gets loaded."""
    import h5py
    import tensorflow as tf
    from keras.src.legacy.saving import legacy_h5_format

    tf.keras.utils.set_random_seed(3)
    model = tf.keras.applications.InceptionV3(include_top=False, weights=None, pooling="avg",
                                              input_shape=(299, 299, 3))
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return model, sha256_of(path)


@pytest.mark.slow
def test_inception_features_come_from_the_users_file_checked_first(tmp_path, face):
    path = tmp_path / "inception_notop.h5"
    model, sha = write_inception_weights(path)
    with pytest.raises(ValueError, match=r"train.metrics.inception.weights: .* SHA-256"):
        InceptionFeatures(str(path), "0" * 64, "train.metrics.inception")
    features = InceptionFeatures(str(path), sha, "train.metrics.inception")(face[None])
    expected = model(tf.image.resize(face[None].astype(np.float32), (299, 299)) / 127.5 - 1)
    assert features.shape == (1, 2048)
    np.testing.assert_allclose(features, np.asarray(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("count, dim", [(40, 256), (300, 32)])
def test_fid_is_the_frechet_distance_of_the_textbook_formula(count, dim):
    """Fewer images than dimensions (the n-space form) and more (the d-space one): both give
    ‖μa − μb‖² + tr(Σa + Σb − 2 √(Σa Σb)) with √ the general matrix square root."""
    rng = np.random.default_rng(4)
    a = rng.normal(size=(count, dim)) @ rng.normal(size=(dim, dim)) / np.sqrt(dim)
    b = rng.normal(0.2, size=(count + 7, dim))
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = np.real(linalg.sqrtm(cov_a @ cov_b))
    textbook = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root)
    np.testing.assert_allclose(fid(a, b), textbook, rtol=1e-6)
