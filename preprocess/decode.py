"""Decode one photo to RGB uint8, or say precisely why it can't be used.

A photo collection always has a few broken files; one of them must never stop a shard. Photos
that are merely unusual (greyscale, CMYK, alpha, 16-bit, palette, EXIF-rotated) are converted
and the conversion is noted; unusable ones raise :class:`Skip` with a reason the report counts.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 100_000_000  # far above any photo; guards against decompression bombs
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class Skip(Exception):
    """This photo is skipped; ``reason`` is a short key counted in the shard report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def load_rgb(path: Path, min_side: int) -> tuple[np.ndarray, str | None]:
    """Return (H×W×3 uint8 array, conversion note or None)."""
    try:
        if path.stat().st_size == 0:
            raise Skip("empty_file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # decode now: truncated files fail here, not later
                note = _conversion_note(img)
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except Skip:
        raise
    except UnidentifiedImageError:
        raise Skip("not_an_image", "not a format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise Skip("too_large", str(exc)) from None
    except (OSError, ValueError, SyntaxError) as exc:  # Pillow's errors for damaged data
        raise Skip("corrupt", str(exc)) from None
    if min(rgb.shape[:2]) < min_side:
        raise Skip("too_small", f"{rgb.shape[1]}x{rgb.shape[0]} < {min_side} px")
    return rgb, note


def _conversion_note(img: Image.Image) -> str | None:
    mode = img.mode
    if mode == "RGB":
        return None
    if mode in ("L", "LA", "1"):
        return "greyscale"
    if mode.startswith("I;16") or mode in ("I", "F"):
        return "16-bit"
    if mode == "CMYK":
        return "cmyk"
    if mode in ("RGBA", "PA") or (mode == "P" and "transparency" in img.info):
        return "alpha"
    return mode.lower()


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        grey = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")  # composite on white, as a viewer shows it
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
