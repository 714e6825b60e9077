"""The face engine: detect -> 5-point landmarks -> aligned chips -> 128-d embeddings, batched.

    engine = FaceEngine(device="cpu")           # loads dlib's CC0 weights once
    faces = engine([img1, img2])                # RGB uint8 arrays, any sizes
    faces.boxes, faces.embeddings, faces.image_index ...

Each stage is its own module with a small interface, so another detector (anything with
``detect(images) -> list[Detections]``) or embedder (``embed(chips) -> (N, D)``) can replace
dlib's without touching callers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch

from vidx.workers.face_align import extract_chips
from vidx.workers.face_detector import Detections, FaceDetector
from vidx.workers.face_embedder import CHIP_SIZE, DISTANCE_THRESHOLD, FaceEmbedder
from vidx.workers.face_landmarks import LandmarkPredictor
from vidx.workers.pixels import PixelSource, as_image_tensor

CHIP_PADDING = 0.25


class Detector(Protocol):
    name: str

    def detect(self, images: Sequence[np.ndarray | torch.Tensor]) -> list[Detections]: ...


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, chips: torch.Tensor | np.ndarray) -> np.ndarray: ...


@dataclass
class Faces:
    """Every face found in a batch of images, column by column (F rows)."""

    image_index: np.ndarray  # (F,) int64: which input image
    boxes: np.ndarray  # (F, 4) float64: [left, top, right, bottom], inclusive pixels
    scores: np.ndarray  # (F,) float64: detector confidence
    landmarks: np.ndarray  # (F, 5, 2) float64: dlib's 5 points (eye corners, nose base)
    embeddings: np.ndarray  # (F, D) float32: raw descriptors (dlib: euclidean < 0.6 = same)
    chips: np.ndarray | None = field(default=None, repr=False)  # (F, 150, 150, 3) uint8

    def __len__(self) -> int:
        return len(self.image_index)


class DlibMMOD:
    """dlib's CNN detector behind the Detector interface (upsample fixed at construction)."""

    name = "dlib_mmod"

    def __init__(self, upsample: int = 0, device: str | torch.device = "cpu", batch_size: int | None = None):
        if upsample not in (0, 1):
            raise ValueError(f"upsample must be 0 or 1, got {upsample!r}")
        self.net = FaceDetector().to(device)
        self.upsample = upsample
        # bench/bench_faces.py: on the CPU one frame at a time is fastest (cache); GPUs want batches
        self.batch_size = batch_size or (8 if torch.device(device).type == "cuda" else 1)

    def detect(self, images: Sequence[np.ndarray | torch.Tensor]) -> list[Detections]:
        return self.net.detect(images, upsample=self.upsample, batch_size=self.batch_size)


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    d = torch.device(device)
    if d.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but no CUDA GPU is available to torch")
    return d


class FaceEngine:
    """Loads the face models once; each call maps a batch of images to :class:`Faces`."""

    def __init__(self, device: str | torch.device | None = "cpu", upsample: int = 0,
                 detector: Detector | None = None, embedder: Embedder | None = None,
                 embed_batch: int = 64):
        self.device = resolve_device(device)
        self.detector = detector or DlibMMOD(upsample, self.device)
        self.landmarks = LandmarkPredictor().to(self.device)
        self.embedder = embedder or FaceEmbedder().to(self.device)
        self.embed_batch = embed_batch
        self.threshold = DISTANCE_THRESHOLD

    def __call__(self, images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor,
                 keep_chips: bool = False) -> Faces:
        """Faces in RGB uint8 images: a list (any sizes) or an (N, H, W, 3) batch of frames."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            if images.shape[-1] != 3 or images.dtype != torch.uint8:
                raise ValueError(f"expected (N, H, W, 3) uint8 RGB frames, got {tuple(images.shape)} {images.dtype}")
            imgs = images.to(self.device)
        else:
            imgs = [as_image_tensor(im) for im in images]
            for i, im in enumerate(imgs):
                if im.ndim != 3 or im.shape[2] != 3 or im.dtype != torch.uint8:
                    raise ValueError(f"image {i}: expected (H, W, 3) uint8 RGB, got {tuple(im.shape)} {im.dtype}")
        dets = self.detector.detect(imgs)
        image_index = np.concatenate([np.full(len(d), i, np.int64) for i, d in enumerate(dets)] or [np.zeros(0, np.int64)])
        boxes = np.concatenate([d.boxes for d in dets] or [np.zeros((0, 4))]).reshape(-1, 4)
        scores = np.concatenate([d.scores for d in dets] or [np.zeros(0)])
        return self.describe(imgs, image_index, boxes, scores, keep_chips)

    def describe(self, images: PixelSource | Sequence[np.ndarray | torch.Tensor] | torch.Tensor, image_index: np.ndarray,
                 boxes: np.ndarray, scores: np.ndarray | None = None, keep_chips: bool = False) -> Faces:
        """Landmarks, chips and embeddings for given boxes (e.g. from another detector)."""
        src = images if isinstance(images, PixelSource) else PixelSource(images, self.device)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64)
        lm = self.landmarks.predict(src, image_index, boxes)
        chips = extract_chips(src, image_index, lm, CHIP_SIZE, CHIP_PADDING)
        emb = self.embedder.embed(chips, batch_size=self.embed_batch)
        return Faces(np.asarray(image_index, np.int64), boxes, scores, lm, emb,
                     chips.cpu().numpy() if keep_chips else None)
