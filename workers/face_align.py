"""Face chips exactly as dlib's ``get_face_chip(img, shape, size=150, padding=0.25)``.

dlib maps five reference points (eye corners, nose) onto the landmarks with a least-squares
similarity transform, which gives a rotated square in the image.  When that square is much
larger than the chip, dlib first shrinks a crop around it with ``pyramid_down<2>`` (a 5x5
binomial filter in integers) until bilinear sampling no longer aliases, then samples it
bilinearly (values truncated to uint8; outside pixels are black).

All chips are sampled in one batched gather from a flat buffer of source images.  Faces
that need the pyramid (square side above ~300 px) first get their own shrunken crop, which
is the one per-face step; small faces, the common case in video, skip it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidx.workers.face_detector import lround
from vidx.workers.face_landmarks import similarity_2d
from vidx.workers.pixels import PixelSource

# dlib's 5-point chip template (interpolation.h, get_face_chip_details), unit square
_TEMPLATE_5 = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])


@dataclass
class ChipDetails:
    """dlib's chip_details for a batch: rects (F, 4) l, t, r, b (double) and angles (F,)."""

    rects: np.ndarray
    angles: np.ndarray
    size: int


def chip_details(landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> ChipDetails:
    """dlib's get_face_chip_details for 5-point shapes (F, 5, 2)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape[1:] != (5, 2):
        raise ValueError(f"expected (F, 5, 2) landmarks, got {lm.shape}")
    tpl = (padding + _TEMPLATE_5) / (2 * padding + 1) * size
    m, t = (x.numpy() for x in similarity_2d(torch.from_numpy(np.broadcast_to(tpl, lm.shape).copy()),
                                             torch.from_numpy(lm)))
    p = m[:, :, 0]  # tform.get_m() * (1, 0)
    angle = np.arctan2(p[:, 1], p[:, 0])
    scale = np.hypot(p[:, 0], p[:, 1])
    c = np.einsum("fij,j->fi", m, np.array([size / 2.0, size / 2.0])) + t
    w = size * scale - 1  # centered_drect: width--, height--
    rects = np.stack([c[:, 0] - w / 2, c[:, 1] - w / 2, c[:, 0] + w / 2, c[:, 1] + w / 2], 1)
    return ChipDetails(rects, angle, size)


def _area(r: np.ndarray) -> np.ndarray:
    """drectangle area with dlib's inclusive width (r - l + 1); 0 when empty.  r: (..., 4)."""
    w, h = r[..., 2] - r[..., 0] + 1, r[..., 3] - r[..., 1] + 1
    return np.where((r[..., 0] > r[..., 2]) | (r[..., 1] > r[..., 3]), 0.0, w * h)


def _rect_down(r: np.ndarray) -> np.ndarray:
    """pyramid_down<2>.rect_down: p / 2 - (1.25, 0.75) for both corners."""
    return r / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])


def _corners(r: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """tl, tr, bl, br of drectangles (F, 4) rotated about their centres: (F, 4, 2)."""
    c = np.stack([(r[:, 0] + r[:, 2]) / 2.0, (r[:, 1] + r[:, 3]) / 2.0], 1)[:, None]
    pts = np.stack([r[:, [0, 1]], r[:, [2, 1]], r[:, [0, 3]], r[:, [2, 3]]], 1) - c
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([ca * pts[..., 0] - sa * pts[..., 1], sa * pts[..., 0] + ca * pts[..., 1]], -1) + c


def pyramid_down2(img: torch.Tensor) -> torch.Tensor:
    """dlib's pyramid_down<2> for an RGB uint8 (H, W, 3) image: 5-tap binomial, integer maths."""
    h, w = img.shape[:2]
    if h <= 8 or w <= 8:
        return img.new_zeros((0, 0, 3))
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=img.device)
    x = img.permute(2, 0, 1)[:, None].float()  # (3, 1, H, W); sums < 2**24 stay exact in float32
    x = F.conv2d(x, k.view(1, 1, 1, 5), stride=(1, 2))
    x = F.conv2d(x, k.view(1, 1, 5, 1), stride=(2, 1))
    x = torch.div(x, 256, rounding_mode="floor")
    return x[:, 0].permute(1, 2, 0).to(torch.uint8)


def _bilinear(flat: torch.Tensor, base: torch.Tensor, stride: torch.Tensor, nr: torch.Tensor,
              nc: torch.Tensor, amat: np.ndarray, size: int) -> torch.Tensor:
    """dlib's transform_image + interpolate_bilinear for F chips at once.

    flat: (M, 3) uint8 pixels; per chip: base offset of its sub-image's top-left pixel, row
    stride, sub-image rows / cols (the bounds check), and the 2x3 chip -> sub-image map.
    Maths in float64 and truncation to uint8, as dlib does."""
    dev = flat.device
    A = torch.as_tensor(amat, device=dev)
    ys, xs = torch.meshgrid(torch.arange(size, device=dev, dtype=torch.float64),
                            torch.arange(size, device=dev, dtype=torch.float64), indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(size * size, device=dev, dtype=torch.float64)])
    p = A @ grid  # (F, 2, size*size)
    left, top = torch.floor(p[:, 0]), torch.floor(p[:, 1])
    lr, tb = (p[:, 0] - left)[..., None], (p[:, 1] - top)[..., None]
    left, top = left.long(), top.long()
    ok = (left >= 0) & (top >= 0) & (left + 1 < nc[:, None]) & (top + 1 < nr[:, None])
    i00 = (base[:, None] + top.clamp(min=0) * stride[:, None] + left.clamp(min=0)).clamp(0, max(flat.shape[0] - 2, 0))
    st = stride[:, None]
    hi = max(flat.shape[0] - 1, 0)
    at = lambda i: flat[i.clamp(max=hi)].double()  # noqa: E731
    tl, tr, bl, br = at(i00), at(i00 + 1), at(i00 + st), at(i00 + st + 1)
    val = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    val = torch.where(ok[..., None], val, torch.zeros((), dtype=val.dtype, device=dev))
    return val.to(torch.uint8).reshape(-1, size, size, 3)


def _start(images, image_index, size: int, device) -> tuple[PixelSource, np.ndarray, torch.Tensor | None]:
    """(pixel source, image indices, an empty chip batch when there are no faces else None)."""
    src = images if isinstance(images, PixelSource) else PixelSource(images, device)
    image_index = np.asarray(image_index, np.int64)
    empty = torch.zeros((0, size, size, 3), dtype=torch.uint8, device=src.device) if len(image_index) == 0 else None
    return src, image_index, empty


def extract_chips(images: PixelSource | Sequence[np.ndarray | torch.Tensor] | torch.Tensor,
                  image_index: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(F, size, size, 3) uint8 chips, equal to dlib.get_face_chip for each face on its own.

    Geometry is vectorised over faces; faces whose square needs dlib's pyramid (side above
    about 2 * size) get their own shrunken crop first, then all chips are sampled in one or
    two batched gathers."""
    src, image_index, empty = _start(images, image_index, size, device)
    if empty is not None:
        return empty
    dev, n = src.device, len(image_index)
    det = chip_details(landmarks, size, padding)
    r, ang = det.rects, det.angles
    H, W = src.height[image_index], src.width[image_index]
    # pyramid depth: how often rect_down keeps the rect larger than the chip (dlib's loop)
    depth = np.zeros(n, np.int64)
    grow = np.full(n, 2.0)
    rd = _rect_down(r)
    for _ in range(32):
        more = _area(rd) > size * size
        if not more.any():
            break
        depth += more
        grow = np.where(more, grow * 2 + 2, grow)
        rd = np.where(more[:, None], _rect_down(rd), rd)
    cs = _corners(r, ang)
    g = np.stack([cs[..., 0].min(1) - grow, cs[..., 1].min(1) - grow, cs[..., 0].max(1) + grow,
                  cs[..., 1].max(1) + grow], 1)
    inter = np.stack([np.maximum(g[:, 0], 0), np.maximum(g[:, 1], 0), np.minimum(g[:, 2], W - 1),
                      np.minimum(g[:, 3], H - 1)], 1)
    bb = lround(inter).astype(np.int64)  # drectangle -> rectangle: the crop around the chip
    empty = (bb[:, 0] > bb[:, 2]) | (bb[:, 1] > bb[:, 3])  # chip wholly outside: stays black
    rr = r - np.stack([bb[:, 0], bb[:, 1], bb[:, 0], bb[:, 1]], 1).astype(np.float64)
    for k in range(int(depth.max())):
        rr = np.where((depth > k)[:, None], _rect_down(rr), rr)
    c = _corners(rr, ang)  # tl, tr, bl in the (possibly shrunken) crop
    amat = np.stack([(c[:, 1] - c[:, 0]) / (size - 1), (c[:, 2] - c[:, 0]) / (size - 1), c[:, 0]], -1)
    out = torch.zeros((n, size, size, 3), dtype=torch.uint8, device=dev)
    direct = np.flatnonzero((depth == 0) & ~empty)
    if len(direct):
        base, _, width = src.tensors(image_index[direct])
        o = torch.as_tensor(bb[direct, 1] * W[direct] + bb[direct, 0], device=dev)
        nr = torch.as_tensor(bb[direct, 3] - bb[direct, 1] + 1, device=dev)
        ncol = torch.as_tensor(bb[direct, 2] - bb[direct, 0] + 1, device=dev)
        out[torch.as_tensor(direct, device=dev)] = _bilinear(src.flat, base + o, width, nr, ncol, amat[direct], size)
    big = np.flatnonzero((depth > 0) & ~empty)
    if len(big):  # large faces: shrink their own crop (the one per-face step)
        views = src.images()
        levels = []
        for i in big:
            lv = views[image_index[i]][bb[i, 1] : bb[i, 3] + 1, bb[i, 0] : bb[i, 2] + 1]
            for _ in range(depth[i]):
                lv = pyramid_down2(lv)
            levels.append(lv)
        lsrc = PixelSource(levels)
        ids = np.arange(len(big))
        base, nr, ncol = lsrc.tensors(ids)
        out[torch.as_tensor(big, device=dev)] = _bilinear(lsrc.flat, base, ncol, nr, ncol, amat[big], size)
    return out


# ArcFace's 5-point template for 112x112 chips (insightface; OpenCV's FaceRecognizerSF uses the
# same): eye centres (left, right in the image), nose tip, mouth corners (left, right).
ARCFACE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
])


def arcface_transform(points: np.ndarray, size: int = 112) -> tuple[np.ndarray, np.ndarray]:
    """Similarity transforms (least squares, Umeyama) taking each face's 5 points (F, 5, 2) onto
    the ArcFace template scaled to ``size``: (M (F, 2, 2), t (F, 2)) with chip = M @ image + t."""
    pts = np.asarray(points, np.float64)
    if pts.ndim != 3 or pts.shape[1:] != (5, 2):
        raise ValueError(f"expected (F, 5, 2) points, got {pts.shape}")
    tpl = np.broadcast_to(ARCFACE_112 * (size / 112.0), pts.shape).copy()
    m, t = similarity_2d(torch.from_numpy(pts), torch.from_numpy(tpl))
    return m.numpy(), t.numpy()


def arcface_chips(images: PixelSource | Sequence[np.ndarray | torch.Tensor] | torch.Tensor,
                  image_index: np.ndarray, points: np.ndarray, size: int = 112,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(F, size, size, 3) uint8 chips aligned on the ArcFace template, as OpenCV's
    ``FaceRecognizerSF.alignCrop`` makes them (a similarity warp, bilinear, black outside the
    image), for all faces in one batched gather."""
    src, image_index, empty = _start(images, image_index, size, device)
    if empty is not None:
        return empty
    m, t = arcface_transform(points, size)
    inv = np.linalg.inv(m)  # chip -> image: p = inv @ (q - t)
    amat = np.concatenate([inv, -(inv @ t[..., None])], -1)  # (F, 2, 3)
    base, height, width = src.tensors(image_index)
    return _bilinear(src.flat, base, width, height, width, amat, size)
