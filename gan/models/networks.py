"""What every builder returns (``gan/models/builders.py``, ``gan/models/residual.py``)."""
from __future__ import annotations

from dataclasses import dataclass

import keras


@dataclass
class Networks:
    generator: keras.Model
    discriminator: keras.Model
    encoder: keras.Model | None = None
