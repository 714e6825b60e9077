"""The two face embedders' models (their distance spaces and thresholds: ``vidx.configs.spaces``).

``sface`` (the default for video): OpenCV Zoo's SFace on 112x112 chips aligned on RetinaFace's own
five points.  ``dlib``: dlib's ResNet on dlib's 150x150 chips (its 5-point predictor).
"""

from __future__ import annotations

import torch

from vidx.configs.spaces import NAMES


def make_embedder(name: str, device: str | torch.device = "cpu"):
    """The embedder model for a config name; weights are read from installed packages (no download)."""
    if name == "sface":
        from vidx.workers.sface import SFace

        return SFace(device)
    if name == "dlib":
        from vidx.workers.face_embedder import FaceEmbedder

        return FaceEmbedder().to(device)
    raise ValueError(f"unknown face embedder {name!r} (choose from {', '.join(NAMES)})")
