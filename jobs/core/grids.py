"""Image grids with a caption stamped under every tile (sample sheets, GAN sample grids).

Pure NumPy + Pillow, so preprocessing can use it without importing TensorFlow.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from jobs.core.files import atomic_path

MIN_TILE = 96      # small faces are enlarged (nearest neighbour) so captions stay readable
CAPTION_PX = 14


def image_grid(images: np.ndarray, captions: list[str] | None = None,
               columns: int | None = None) -> Image.Image:
    """Tile N×H×W×3 uint8 images (row-major), each with its caption underneath."""
    n, h, w = images.shape[:3]
    columns = columns or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / columns))
    scale = max(1, math.ceil(MIN_TILE / max(h, w)))
    tw, th = w * scale, h * scale
    strip = CAPTION_PX if captions else 0
    sheet = Image.new("RGB", (columns * tw, rows * (th + strip)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font()
    for i in range(n):
        r, c = divmod(i, columns)
        x, y = c * tw, r * (th + strip)
        tile = Image.fromarray(images[i]).resize((tw, th), Image.Resampling.NEAREST)
        sheet.paste(tile, (x, y))
        if captions:
            draw.text((x + 2, y + th + 1), str(captions[i])[: max(4, tw // 6)], fill=(0, 0, 0),
                      font=font)
    return sheet


def save_grid(path: str | Path, images: np.ndarray, captions: list[str] | None = None,
              columns: int | None = None) -> Path:
    with atomic_path(path) as tmp:
        image_grid(images, captions, columns).save(tmp, format="PNG")
    return Path(path)


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()
