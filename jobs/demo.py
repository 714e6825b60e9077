"""Self-contained demo media, made from what installed packages ship.

scikit-image bundles NASA's public-domain portrait of astronaut Eileen Collins; from it we
make a few photos with known answers: the portrait, the same face mirrored and turned on a
wider canvas (same person), and a blank frame (no face).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

log = logging.getLogger(__name__)


def astronaut() -> np.ndarray:
    try:
        from skimage import data
    except ImportError:
        raise SystemExit("vidx demo needs scikit-image: pip install 'vidx[demo]'") from None
    return data.astronaut()


def make_demo_media(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(astronaut())
    paths = []
    p = out / "astronaut.jpg"
    img.save(p, quality=92)
    paths.append(p)
    turned = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).rotate(
        12, resample=Image.BILINEAR, fillcolor=(90, 90, 90))
    canvas = Image.new("RGB", (800, 560), (90, 90, 90))
    canvas.paste(turned, (250, 30))
    p = out / "astronaut_turned.jpg"
    canvas.save(p, quality=92)
    paths.append(p)
    p = out / "blank.png"
    Image.new("RGB", (320, 240), (128, 128, 128)).save(p)
    paths.append(p)
    for p in paths:
        log.info("wrote %s", p)
    return paths
