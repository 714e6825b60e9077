"""Reading photos into RGB uint8 arrays, with a clear message for every way it can fail."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from vidx.configs.errors import ImageReadError  # noqa: F401 - defined there, raised here

# Refuse decompression bombs with a clear message instead of PIL's warning (about 180 MP).
MAX_PIXELS = 180_000_000


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as (H, W, 3) uint8 RGB, applying its EXIF orientation."""
    p = Path(path)
    if not p.exists():
        raise ImageReadError(f"{p}: no such file")
    if p.is_dir():
        raise ImageReadError(f"{p}: is a folder, not a photo")
    if not os.access(p, os.R_OK):
        raise ImageReadError(f"{p}: permission denied")
    try:
        with Image.open(p) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ImageReadError(f"{p}: {im.width}x{im.height} is too large (limit {MAX_PIXELS} pixels)")
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except UnidentifiedImageError:
        raise ImageReadError(f"{p}: not an image (format not recognised)") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageReadError):
            raise
        raise ImageReadError(f"{p}: unreadable or truncated image ({e})") from None
