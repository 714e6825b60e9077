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

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from vidx.workers.face_detector import as_image_tensor, lround

# dlib's 5-point chip template (interpolation.h, get_face_chip_details), unit square
_TEMPLATE_5 = np.array([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
])


def similarity_np(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched least-squares similarity transform src -> dst (float64), see face_landmarks."""
    ms, md = src.mean(-2, keepdims=True), dst.mean(-2, keepdims=True)
    s, d = src - ms, dst - md
    n = src.shape[-2]
    var = (s * s).sum((-1, -2)) / n
    a = (s * d).sum((-1, -2)) / n
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(-1) / n
    var = np.where(var == 0, 1.0, var)
    m = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2) / var[..., None, None]
    t = md[..., 0, :] - np.einsum("...ij,...j->...i", m, np.broadcast_to(ms[..., 0, :], md[..., 0, :].shape))
    return m, t


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
    m, t = similarity_np(np.broadcast_to(tpl, lm.shape), lm)
    p = m[:, :, 0]  # tform.get_m() * (1, 0)
    angle = np.arctan2(p[:, 1], p[:, 0])
    scale = np.hypot(p[:, 0], p[:, 1])
    c = np.einsum("fij,j->fi", m, np.array([size / 2.0, size / 2.0])) + t
    w = size * scale - 1  # centered_drect: width--, height--
    rects = np.stack([c[:, 0] - w / 2, c[:, 1] - w / 2, c[:, 0] + w / 2, c[:, 1] + w / 2], 1)
    return ChipDetails(rects, angle, size)


def _area(r: np.ndarray) -> float:
    w, h = r[2] - r[0] + 1, r[3] - r[1] + 1
    return 0.0 if (r[0] > r[2] or r[1] > r[3]) else w * h


def _rect_down(r: np.ndarray) -> np.ndarray:
    return r / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])


def _rotate(center: np.ndarray, p: np.ndarray, angle: float) -> np.ndarray:
    ca, sa = math.cos(angle), math.sin(angle)
    d = p - center
    return np.array([ca * d[0] - sa * d[1], sa * d[0] + ca * d[1]]) + center


def _corners(r: np.ndarray, angle: float) -> np.ndarray:
    """tl, tr, bl, br of a drectangle rotated about its centre."""
    c = np.array([(r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0])
    pts = [(r[0], r[1]), (r[2], r[1]), (r[0], r[3]), (r[2], r[3])]
    return np.stack([_rotate(c, np.array(p, np.float64), angle) for p in pts])


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


class _Sources:
    """Flat buffer of several RGB images, so one gather samples from all of them."""

    def __init__(self, device: torch.device):
        self.parts: list[torch.Tensor] = []
        self.offsets: list[int] = []
        self.device = device
        self.n = 0

    def add(self, img: torch.Tensor) -> int:
        self.parts.append(img.reshape(-1, 3))
        self.offsets.append(self.n)
        self.n += img.shape[0] * img.shape[1]
        return len(self.parts) - 1

    def flat(self) -> torch.Tensor:
        if not self.parts:
            return torch.zeros((1, 3), dtype=torch.uint8, device=self.device)
        return torch.cat(self.parts).to(self.device)


def extract_chips(images: Sequence[np.ndarray | torch.Tensor], image_index: np.ndarray,
                  landmarks: np.ndarray, size: int = 150, padding: float = 0.25,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(F, size, size, 3) uint8 chips, equal to dlib.get_face_chip for each face on its own."""
    image_index = np.asarray(image_index, np.int64)
    n = len(image_index)
    imgs = [as_image_tensor(im) for im in images]
    dev = torch.device(device) if device is not None else (imgs[0].device if imgs else torch.device("cpu"))
    if n == 0:
        return torch.zeros((0, size, size, 3), dtype=torch.uint8, device=dev)
    det = chip_details(landmarks, size, padding)
    src = _Sources(dev)
    img_src = [src.add(im.to(dev)) for im in imgs]
    # per face: source id, source origin in the image's pixel grid, source bounds, affine map
    face_src = np.zeros(n, np.int64)
    origin = np.zeros((n, 2), np.int64)  # top-left of the sub-image inside its source buffer
    bounds = np.zeros((n, 2), np.int64)  # (nr, nc) of the sub-image
    src_w = np.zeros(n, np.int64)  # row stride of the source buffer
    amat = np.zeros((n, 2, 3), np.float64)
    for i in range(n):  # per-face geometry is a few scalars; the pixel work below is batched
        r, ang = det.rects[i], float(det.angles[i])
        im = imgs[image_index[i]]
        H, W = im.shape[:2]
        depth, grow = 0, 2.0
        rd = _rect_down(r)
        while _area(rd) > size * size:
            rd = _rect_down(rd)
            depth += 1
            grow = grow * 2 + 2
        cs = _corners(r, ang)
        rot = np.array([cs[:, 0].min(), cs[:, 1].min(), cs[:, 0].max(), cs[:, 1].max()])
        g = np.array([rot[0] - grow, rot[1] - grow, rot[2] + grow, rot[3] + grow])
        inter = np.array([max(g[0], 0), max(g[1], 0), min(g[2], W - 1), min(g[3], H - 1)])
        bb = lround(inter).astype(np.int64)  # drectangle -> rectangle
        if bb[0] > bb[2] or bb[1] > bb[3]:  # the chip lies wholly outside the image: black
            face_src[i], bounds[i] = -1, (0, 0)
            continue
        rr = r - np.array([bb[0], bb[1], bb[0], bb[1]], np.float64)
        if depth == 0:
            face_src[i] = img_src[image_index[i]]
            origin[i] = bb[:2]
            bounds[i] = (bb[3] - bb[1] + 1, bb[2] - bb[0] + 1)
            src_w[i] = W
        else:
            level = im[bb[1] : bb[3] + 1, bb[0] : bb[2] + 1].to(dev)
            for _ in range(depth):
                level = pyramid_down2(level)
                rr = _rect_down(rr)
            face_src[i] = src.add(level)
            origin[i] = (0, 0)
            bounds[i] = level.shape[:2]
            src_w[i] = level.shape[1]
        c = _corners(rr, ang)  # tl, tr, bl
        amat[i, :, 0] = (c[1] - c[0]) / (size - 1)
        amat[i, :, 1] = (c[2] - c[0]) / (size - 1)
        amat[i, :, 2] = c[0]
    flat = src.flat()
    offs = torch.tensor(src.offsets + [0], dtype=torch.long, device=dev)
    fs = torch.as_tensor(face_src, device=dev)
    base = offs[fs.clamp(min=0)] + torch.as_tensor(origin[:, 1] * src_w + origin[:, 0], device=dev)
    stride = torch.as_tensor(src_w, device=dev)
    nr = torch.as_tensor(bounds[:, 0], device=dev)
    nc = torch.as_tensor(bounds[:, 1], device=dev)
    A = torch.as_tensor(amat, device=dev)  # float64
    ys, xs = torch.meshgrid(torch.arange(size, device=dev, dtype=torch.float64),
                            torch.arange(size, device=dev, dtype=torch.float64), indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(size * size, device=dev, dtype=torch.float64)])
    p = A @ grid  # (F, 2, S*S): x, y in sub-image coordinates
    px, py = p[:, 0], p[:, 1]
    left, top = torch.floor(px), torch.floor(py)
    lr, tb = (px - left)[..., None], (py - top)[..., None]
    left, top = left.long(), top.long()
    ok = (left >= 0) & (top >= 0) & (left + 1 < nc[:, None]) & (top + 1 < nr[:, None]) & (fs[:, None] >= 0)
    lc, tc = left.clamp(min=0), top.clamp(min=0)
    i00 = base[:, None] + tc * stride[:, None] + lc
    hi = flat.shape[0] - 1

    def px_at(idx: torch.Tensor) -> torch.Tensor:
        return flat[idx.clamp(0, hi)].double()

    tl, tr = px_at(i00), px_at(i00 + 1)
    bl, br = px_at(i00 + stride[:, None]), px_at(i00 + stride[:, None] + 1)
    val = (1 - tb) * ((1 - lr) * tl + lr * tr) + tb * ((1 - lr) * bl + lr * br)
    val = torch.where(ok[..., None], val, torch.zeros((), dtype=val.dtype, device=dev))
    return val.to(torch.uint8).reshape(n, size, size, 3)  # truncation, as dlib's double -> uchar
