"""Pixel-range conversions, in one place: uint8 [0, 255] images on disk and in the data
pipeline, [-1, 1] floats inside the networks (tanh output). Works on NumPy arrays and on
TensorFlow tensors alike (only arithmetic here; the caller casts)."""
from __future__ import annotations

import numpy as np

SCALE = 127.5


def to_signed_unit(pixels_float):
    """uint8 values (already cast to float) -> [-1, 1]."""
    return pixels_float / SCALE - 1.0


def to_uint8_keep_channels(images) -> np.ndarray:
    """[-1, 1] images -> uint8 with their own channel count (for files and judges)."""
    return np.clip((np.asarray(images, dtype=np.float32) + 1.0) * SCALE, 0, 255).astype(
        np.uint8)


def to_rgb(images) -> np.ndarray:
    """Grey images (one channel, last axis) get three equal channels; RGB ones stay."""
    images = np.asarray(images)
    return np.repeat(images, 3, axis=-1) if images.shape[-1] == 1 else images


def to_uint8(images) -> np.ndarray:
    """[-1, 1] images (array or tensor) -> uint8 RGB; grey images get three equal channels."""
    return to_rgb(to_uint8_keep_channels(images))
