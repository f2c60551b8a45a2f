"""Decode one photo to RGB uint8, or say precisely why it can't be used.

A photo collection always has a few broken files; one of them must never stop a shard. Photos
that are merely unusual (greyscale, CMYK, alpha, 16-bit, palette, EXIF-rotated, the first frame
of an animated GIF or a multi-page TIFF) are converted and the conversion is noted; unusable
ones raise :class:`Skip` with a reason the report counts: a symlink loop or a file that cannot
be read (``unreadable``), a FIFO or device with a photo's name (``not_a_file``: opening a FIFO
would block the shard forever), HTML saved as .jpg (``not_an_image``), a header claiming
10^10 pixels (``too_large``, refused before any pixel is decoded), a truncated file
(``corrupt``).
"""
from __future__ import annotations

import errno
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_PIXELS = 100_000_000  # far above any photo; guards against decompression bombs
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
EXIF_ORIENTATION = 0x0112  # 1 = upright; 2-8 = mirrored and/or rotated


class Skip(Exception):
    """This photo is skipped; ``reason`` is a short key counted in the shard report."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_regular_file(path: Path) -> None:
    """Skip what is not a readable regular file, before anything opens it."""
    try:
        info = path.stat()  # follows a symlink: a loop or a dangling link fails here
    except OSError as exc:
        loop = " (a symlink loop)" if exc.errno == errno.ELOOP else ""
        raise Skip("unreadable", f"{exc.strerror}{loop}") from None
    if not stat.S_ISREG(info.st_mode):
        raise Skip("not_a_file", "a FIFO, socket or device, not a photo: never opened")
    if info.st_size == 0:
        raise Skip("empty_file")


def load_rgb(path: Path, min_side: int) -> tuple[np.ndarray, str | None]:
    """Return (H×W×3 uint8 array, conversion note or None)."""
    check_regular_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()  # decode now: truncated files fail here, not later
                note = _conversion_note(img)
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except PermissionError as exc:
        raise Skip("unreadable", exc.strerror or "permission denied") from None
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
    """What was done to make an RGB photo of it (one key, the most telling), None if nothing."""
    if getattr(img, "n_frames", 1) > 1:
        return "first_frame"  # of an animation or a multi-page file: the rest is ignored
    if img.getexif().get(EXIF_ORIENTATION, 1) != 1:
        return "exif_rotated"
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
