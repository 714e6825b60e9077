"""The face engine: detect -> 5 points -> aligned chips -> 128-d embeddings, batched.

    engine = FaceEngine(device="cpu")                                  # dlib's CC0 models
    engine = FaceEngine(detector="retinaface", embedder="sface")       # the video default
    faces = engine([img1, img2])                # RGB uint8 arrays, any sizes
    faces.boxes, faces.embeddings, faces.image_index ...
    engine.space.pairwise(a, b)                 # distances in the embedder's own metric

Two pipelines share the interface.  ``dlib``: dlib's 5-point predictor on the box, dlib's
150x150 chip, dlib's ResNet (raw descriptors, euclidean).  ``sface``: the detector's own five
points (RetinaFace: eye centres, nose tip, mouth corners), a 112x112 chip warped onto the
ArcFace template, SFace (unit vectors, cosine).  SFace needs a detector that gives those points.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidx.configs.spaces import space
from vidx.workers import embedders
from vidx.workers.face_align import arcface_chips, extract_chips
from vidx.workers.face_detector import Detections, FaceDetector
from vidx.workers.face_embedder import CHIP_SIZE
from vidx.workers.face_landmarks import LandmarkPredictor
from vidx.workers.pixels import PixelSource, as_image_tensor

CHIP_PADDING = 0.25


class Detector(Protocol):
    name: str

    def detect(self, images: Sequence[np.ndarray | torch.Tensor]) -> list[Detections]: ...


class Embedder(Protocol):
    name: str
    dim: int
    chip_size: int

    def embed(self, chips: torch.Tensor | np.ndarray) -> np.ndarray: ...


@dataclass
class Faces:
    """Every face found in a batch of images, column by column (F rows).  With quality gates,
    rejected faces stay in the columns with the reason; their embeddings (and, when rejected
    before alignment, landmarks) are NaN."""

    image_index: np.ndarray  # (F,) int64: which input image
    boxes: np.ndarray  # (F, 4) float64: [left, top, right, bottom], inclusive pixels
    scores: np.ndarray  # (F,) float64: detector confidence
    landmarks: np.ndarray  # (F, 5, 2) float64: dlib's 5 points (eye corners, nose base); NaN: not computed
    embeddings: np.ndarray  # (F, D) float32: dlib raw descriptors (euclidean) or SFace unit vectors (cosine)
    chips: np.ndarray | None = field(default=None, repr=False)  # (F, S, S, 3) uint8: 150 (dlib) or 112 (sface)
    sharpness: np.ndarray | None = None  # (F,) variance of the Laplacian of the grey chip (NaN: not aligned)
    rejected: np.ndarray | None = None  # (F,) "" kept, or the gate that refused it: score | size | blur
    points: np.ndarray | None = None  # (F, 5, 2) float64: the detector's own 5 points (NaN: none given)

    def __len__(self) -> int:
        return len(self.image_index)

    @property
    def kept(self) -> np.ndarray:
        return np.ones(len(self), bool) if self.rejected is None else self.rejected == ""


@dataclass
class Gates:
    """Quality gates before embedding and tracking (0 = off).  Blurred background faces were
    the only source of wrong-person matches seen with RetinaFace on real video."""

    min_score: float = 0.0  # detector confidence
    min_size: float = 0.0  # shorter side of the box, pixels of the image given to the engine
    min_sharpness: float = 0.0  # variance of the Laplacian of the aligned grey chip


_LAPLACE = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


def sharpness(chips: torch.Tensor) -> np.ndarray:
    """Variance of the Laplacian of each (N, S, S, 3) uint8 chip's grey image (0-255 scale):
    aligned chips share one scale, so the measure compares across face sizes."""
    if len(chips) == 0:
        return np.zeros(0)
    grey = chips.float().mean(-1, keepdim=True).permute(0, 3, 1, 2)
    lap = F.conv2d(grey, _LAPLACE.to(grey.device))
    return lap.flatten(1).var(1).cpu().numpy().astype(np.float64)


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


DETECTORS = ("retinaface", "dlib")
PHOTO_SIDE = 640  # RetinaFace on photos: faces up to about 600 px fit its largest anchors (512 px)


def make_detector(name: str, device: str | torch.device = "cpu", upsample: int = 0,
                  score_threshold: float = 0.8, max_side: int = 0) -> Detector:
    """``retinaface`` (RetinaFace-MNet0.25: finds small and turned faces, ~20x faster per frame on
    a CPU) or ``dlib`` (dlib's MMOD CNN, exact to dlib, fully CC0)."""
    if name == "dlib":
        return DlibMMOD(upsample, device)
    if name == "retinaface":
        from vidx.workers.retinaface import RetinaFace

        return RetinaFace(device, score_threshold=score_threshold, max_side=max_side)
    raise ValueError(f"unknown face detector {name!r} (choose from {', '.join(DETECTORS)})")


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
                 detector: Detector | str | None = None, embedder: Embedder | str | None = None,
                 embed_batch: int | None = None, gates: Gates | None = None, photo_side: int = 0):
        """detector: a Detector, or a name from DETECTORS (default dlib).  embedder: an Embedder, or
        a name from embedders.NAMES (default dlib; sface needs RetinaFace's points).  gates: quality
        gates (none by default: every detected face is embedded).  photo_side: RetinaFace searches
        images larger than this at this size (photos, whose faces can outgrow its anchors; 0 = off)."""
        self.device = resolve_device(device)
        self.gates = gates
        emb_name = embedder if isinstance(embedder, str) else None
        if emb_name == "sface" and (detector == "dlib" or isinstance(detector, DlibMMOD)):
            raise ValueError("the sface embedder aligns faces on the detector's own 5 points, which dlib's detector "
                             "does not give: use the retinaface detector, or the dlib embedder")
        if detector is None or isinstance(detector, str):
            # with a score gate, RetinaFace reports weaker faces too, so they are kept as rejected
            thr = min(0.5, gates.min_score) if gates and gates.min_score else 0.8
            detector = make_detector(detector or ("retinaface" if emb_name == "sface" else "dlib"), self.device,
                                     upsample, thr, photo_side)
        self.detector = detector
        if embedder is None or isinstance(embedder, str):
            embedder = embedders.make_embedder(embedder or "dlib", self.device)
        self.embedder = embedder
        self.space = space(embedder.name)
        # dlib's chips need dlib's landmarks; SFace's come from the detector's points
        self.landmarks = LandmarkPredictor().to(self.device) if self.space.name == "dlib" else None
        self.embed_batch = embed_batch
        self.threshold = self.space.same_person

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
        points = np.concatenate([d.points if d.points is not None else np.full((len(d), 5, 2), np.nan)
                                 for d in dets] or [np.zeros((0, 5, 2))]).reshape(-1, 5, 2)
        return self.describe(imgs, image_index, boxes, scores, keep_chips, points)

    def _chips(self, src: PixelSource, image_index: np.ndarray, boxes: np.ndarray,
               points: np.ndarray) -> tuple[np.ndarray, torch.Tensor]:
        """(dlib landmarks or NaN, aligned chips) for the embedder in use."""
        if self.landmarks is not None:
            lm = self.landmarks.predict(src, image_index, boxes)
            return lm, extract_chips(src, image_index, lm, CHIP_SIZE, CHIP_PADDING)
        if np.isnan(points).any():
            raise ValueError(f"the {self.embedder.name} embedder needs the detector's 5 points for every face")
        return np.full((len(boxes), 5, 2), np.nan), arcface_chips(src, image_index, points, self.embedder.chip_size)

    def describe(self, images: PixelSource | Sequence[np.ndarray | torch.Tensor] | torch.Tensor, image_index: np.ndarray,
                 boxes: np.ndarray, scores: np.ndarray | None = None, keep_chips: bool = False,
                 points: np.ndarray | None = None, embed: bool = True) -> Faces:
        """Landmarks, chips and embeddings for given boxes (and, for SFace, the detector's 5 points).
        ``embed=False`` (with gates): everything but the embeddings (NaN), chips kept, for a caller
        that embeds only the faces it needs (:meth:`embed`)."""
        src = images if isinstance(images, PixelSource) else PixelSource(images, self.device)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        image_index = np.asarray(image_index, np.int64)
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, np.float64)
        points = np.full((len(boxes), 5, 2), np.nan) if points is None else np.asarray(points, np.float64).reshape(-1, 5, 2)
        if self.gates is None:
            lm, chips = self._chips(src, image_index, boxes, points)
            emb = self.embedder.embed(chips, batch_size=self.embed_batch)
            return Faces(image_index, boxes, scores, lm, emb, chips.cpu().numpy() if keep_chips else None,
                         points=points)
        g, n = self.gates, len(boxes)
        rejected = np.full(n, "", dtype=object)
        side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
        rejected[scores < g.min_score] = "score"
        rejected[(rejected == "") & (side < g.min_size)] = "size"
        ok = np.flatnonzero(rejected == "")
        lm = np.full((n, 5, 2), np.nan)
        sharp = np.full(n, np.nan)
        emb = np.full((n, self.embedder.dim), np.nan, np.float32)
        cs = self.embedder.chip_size
        keep_chips = keep_chips or not embed
        all_chips = np.zeros((n, cs, cs, 3), np.uint8) if keep_chips else None
        if len(ok):
            lm[ok], chips = self._chips(src, image_index[ok], boxes[ok], points[ok])
            sharp[ok] = sharpness(chips)
            blurred = sharp[ok] < g.min_sharpness
            rejected[ok[blurred]] = "blur"
            sharp_ok = np.flatnonzero(~blurred)
            if len(sharp_ok) and embed:
                emb[ok[sharp_ok]] = self.embedder.embed(chips[torch.from_numpy(sharp_ok).to(chips.device)],
                                                        batch_size=self.embed_batch)
            if keep_chips:
                all_chips[ok] = chips.cpu().numpy()
        return Faces(image_index, boxes, scores, lm, emb, all_chips, sharp, rejected, points)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Embeddings of (F, S, S, 3) uint8 chips (from ``describe(..., embed=False)``)."""
        if len(chips) == 0:
            return np.zeros((0, self.embedder.dim), np.float32)
        return self.embedder.embed(torch.from_numpy(np.ascontiguousarray(chips)).to(self.device),
                                   batch_size=self.embed_batch)
