"""dlib's MMOD CNN face detector (``mmod_human_face_detector.dat``) in PyTorch, batched.

What dlib does, step by step, and what this module reproduces:

1. Optional upsampling (``pyramid_up`` with ``pyramid_down<2>``): a bilinear, align-corners
   resize to (2H + 1, 2W + 2), truncated to uint8.
2. ``input_rgb_image_pyramid<pyramid_down<6>>``: normalise ((v - mean) / 256), then tile an image
   pyramid (each level floor(5/6) of the previous, down to 5 rows) into one image, the first
   column downwards from the outer padding, the rest upwards along the right edge.
3. One pass of a small fully convolutional net (3 stride-2 convs, 4 more convs) over the tiled
   image; every output cell scoring > 0 is a candidate 80x80 window.
4. Windows are mapped back to image coordinates through the tile that holds them, sorted by
   score and suppressed greedily (overlap = intersection / bounding box of both > 0.338).

Frames of the same size are stacked into one batch; the network runs on any torch device.
Boxes are dlib rectangles: [left, top, right, bottom], inclusive integer pixel coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidx.workers import dlib_format, face_weights
from vidx.workers.face_embedder import Affine, conv_from
from vidx.workers.pixels import as_image_tensor


@dataclass
class Detections:
    """Faces found in one image: boxes (K, 4) [l, t, r, b] inclusive, scores (K,), and where the
    detector gives them (RetinaFace), its 5 points (K, 5, 2): eye centres, nose tip, mouth corners."""

    boxes: np.ndarray
    scores: np.ndarray
    points: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> "Detections":
        return Detections(np.zeros((0, 4), np.float64), np.zeros((0,), np.float64))


def lround(x: np.ndarray) -> np.ndarray:
    """C's lround: halves away from zero (dlib's drectangle -> rectangle conversion)."""
    x = np.asarray(x, dtype=np.float64)
    return np.where(x >= 0, np.floor(x + 0.5), -np.floor(-x + 0.5))


def tiled_pyramid_rects(nr: int, nc: int, padding: int, outer_padding: int, rate_num: int = 5,
                        rate_den: int = 6, min_height: int = 5) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """dlib's compute_tiled_image_pyramid_details: tile rects (l, t, r, b) and the canvas size."""
    if nr * nc == 0:
        return [], 0, 0
    rate = rate_num / rate_den
    sizes = [(nr, nc)]
    while True:
        nr, nc = math.floor(rate * nr), math.floor(rate * nc)
        if nr * nc == 0 or nr < min_height:
            break
        sizes.append((nr, nc))
    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height, prev_width = 0, 0
    H0, W0 = sizes[0]
    for h, w in sizes:
        if w <= W0 - prev_width - padding and (height - H0) * 2 >= (total_height - H0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    width = W0
    canvas_nr, canvas_nc = height + 2 * outer_padding, width + 2 * outer_padding
    rects: list[tuple[int, int, int, int]] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = rects[0]
    while i < len(sizes):
        h, w = sizes[i]
        x2, y2 = outer_padding + width - 1, y - 1
        r = (x2 - (w - 1), y2 - (h - 1), x2, y2)
        # stop if this tile would overlap the full-size image
        if not (r[0] > first[2] or r[2] < first[0] or r[1] > first[3] or r[3] < first[1]):
            break
        rects.append(r)
        y -= h + padding
        i += 1
    return rects, canvas_nr, canvas_nc


def _rect_area(l, t, r, b):
    return np.where((r >= l) & (b >= t), (r - l + 1) * (b - t + 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float, covered: float) -> np.ndarray:
    """dlib's greedy NMS (test_box_overlap) on integer rectangles; returns kept indices by score.

    overlap when inter / area(bounding box of both) > iou, or inter covers more than
    ``covered`` of either box.  The overlap matrix is computed at once; the greedy pass is a
    loop over candidates (tens per frame).
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    l, t, r, bt = (b[:, i] for i in range(4))
    il = np.maximum(l[:, None], l[None, :])
    it = np.maximum(t[:, None], t[None, :])
    ir = np.minimum(r[:, None], r[None, :])
    ib = np.minimum(bt[:, None], bt[None, :])
    inter = _rect_area(il, it, ir, ib)
    outer = _rect_area(np.minimum(l[:, None], l[None, :]), np.minimum(t[:, None], t[None, :]),
                       np.maximum(r[:, None], r[None, :]), np.maximum(bt[:, None], bt[None, :]))
    area = _rect_area(l, t, r, bt)
    with np.errstate(divide="ignore", invalid="ignore"):
        over = (inter > 0) & ((inter / outer > iou) | (inter / area[:, None] > covered)
                              | (inter / area[None, :] > covered))
    keep: list[int] = []
    suppressed = np.zeros(len(order), bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[np.asarray(keep, dtype=np.int64)]


class FaceDetector(nn.Module):
    """Batched MMOD face detector with dlib's exact pyramid, decoding and NMS."""

    name = "dlib_mmod"

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        path = Path(path) if path else face_weights.model_path(face_weights.DETECTOR_FILE)
        try:
            net = dlib_format.read_dnn(path)
            if net.loss != "loss_mmod_" or not net.input.startswith("input_rgb_image_pyramid"):
                raise dlib_format.DlibFormatError(f"not an MMOD detector ({net.loss}, {net.input})")
            mods: list[nn.Module] = []
            self._strides: list[tuple[int, int, int]] = []  # (stride, kernel//2, pad) per conv
            for layer in net.layers:
                if layer.kind == "con":
                    conv = conv_from(layer)
                    mods.append(conv)
                    self._strides.append((conv.stride[0], conv.kernel_size[0] // 2, conv.padding[0]))
                elif layer.kind in ("bn_con", "affine"):
                    mods.append(Affine.from_layer(layer))
                elif layer.kind == "relu":
                    mods.append(nn.ReLU())
                else:
                    raise dlib_format.DlibFormatError(f"unexpected layer {layer.tag} in a detector")
        except dlib_format.DlibFormatError as e:
            raise face_weights.corrupt(path, e) from e
        self.net = nn.Sequential(*mods)
        o = net.loss_options
        self.window = (o["window_width"], o["window_height"])
        self.nms_iou = o["nms_iou"]
        self.nms_covered = o["nms_percent_covered"]
        self.padding = net.input_options["padding"]
        self.outer_padding = net.input_options["outer_padding"]
        self.register_buffer("mean", torch.tensor(net.input_options["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.eval().requires_grad_(False)

    # ------------------------------------------------------------------ geometry helpers
    def _out_to_in(self, p: np.ndarray) -> np.ndarray:
        """dlib's output_tensor_to_input_tensor through the conv stack (output -> input)."""
        for stride, half, pad in reversed(self._strides):
            p = p * stride + half - pad
        return p

    @staticmethod
    def upsampled_size(h: int, w: int) -> tuple[int, int]:
        """pyramid_up with pyramid_down<2>: rect_up of the image rect, rounded."""
        return h * 2 + 1, w * 2 + 2

    # ------------------------------------------------------------------ forward
    def _tiled(self, x: torch.Tensor, rects, canvas_nr: int, canvas_nc: int) -> torch.Tensor:
        n = x.shape[0]
        canvas = x.new_zeros((n, 3, canvas_nr, canvas_nc))
        l, t, r, b = rects[0]
        canvas[:, :, t : b + 1, l : r + 1] = (x - self.mean) / 256.0
        prev = canvas[:, :, t : b + 1, l : r + 1]
        for l, t, r, b in rects[1:]:
            level = F.interpolate(prev, size=(b - t + 1, r - l + 1), mode="bilinear", align_corners=True)
            canvas[:, :, t : b + 1, l : r + 1] = level
            prev = level
        return canvas

    @torch.inference_mode()
    def detect_batch(self, frames: torch.Tensor, upsample: int = 0) -> list[Detections]:
        """Detect faces in (N, H, W, 3) uint8 RGB frames of one size (any device)."""
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"expected (N, H, W, 3) RGB frames, got {tuple(frames.shape)}")
        dev = self.mean.device
        x = frames.to(dev).permute(0, 3, 1, 2).float()
        for _ in range(upsample):
            h, w = self.upsampled_size(x.shape[2], x.shape[3])
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=True).floor_()
        rects, cnr, cnc = tiled_pyramid_rects(x.shape[2], x.shape[3], self.padding, self.outer_padding)
        if not rects:
            return [Detections.empty() for _ in range(frames.shape[0])]
        scores = self.net(self._tiled(x, rects, cnr, cnc))[:, 0]
        idx = torch.nonzero(scores > 0)
        vals = scores[idx[:, 0], idx[:, 1], idx[:, 2]].double().cpu().numpy()
        idx = idx.cpu().numpy()
        return self._decode(idx, vals, rects, frames.shape[0], upsample)

    def _decode(self, idx: np.ndarray, vals: np.ndarray, rects, n: int, upsample: int) -> list[Detections]:
        R = np.asarray(rects, dtype=np.float64)  # (L, 4) l, t, r, b
        cy = self._out_to_in(idx[:, 1].astype(np.float64))
        cx = self._out_to_in(idx[:, 2].astype(np.float64))
        # centered_drect(p, w, h): half-extent (w - 1) / 2
        hw, hh = (self.window[0] - 1) / 2.0, (self.window[1] - 1) / 2.0
        # the tile holding the (rounded) centre, else the nearest one (first on ties)
        px, py = np.floor(cx + 0.5), np.floor(cy + 0.5)
        inside = (px[:, None] >= R[None, :, 0]) & (px[:, None] <= R[None, :, 2]) & \
                 (py[:, None] >= R[None, :, 1]) & (py[:, None] <= R[None, :, 3])
        nx = np.clip(px[:, None], R[None, :, 0], R[None, :, 2])
        ny = np.clip(py[:, None], R[None, :, 1], R[None, :, 3])
        dist = np.hypot(nx - px[:, None], ny - py[:, None])
        level = np.where(inside.any(1), inside.argmax(1), dist.argmin(1)) if len(px) else np.zeros(0, int)
        ox, oy = R[level, 0], R[level, 1]
        box = np.stack([cx - hw - ox, cy - hh - oy, cx + hw - ox, cy + hh - oy], axis=1)
        # rect_up through `level` pyramid_down<6> levels: p -> p * 6/5 + 0.3 per level
        for k in range(int(level.max()) if len(level) else 0):
            m = level > k
            box[m] = box[m] * (6.0 / 5.0) + 0.3
        box = lround(box)
        out: list[Detections] = []
        for i in range(n):
            sel = idx[:, 0] == i
            b, s = box[sel], vals[sel]
            keep = nms(b, s, self.nms_iou, self.nms_covered)
            b, s = b[keep], s[keep]
            for _ in range(upsample):
                # pyramid_down<2>.rect_down: p / 2 - (1.25, 0.75), then back to integers
                b = lround(b / 2.0 - np.array([1.25, 0.75, 1.25, 0.75]))
            out.append(Detections(b, s))
        return out

    def detect(self, images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor, upsample: int = 0,
               batch_size: int = 8) -> list[Detections]:
        """Detect faces in RGB uint8 images of any sizes; same-size images share a batch."""
        if upsample not in (0, 1, 2):
            raise ValueError(f"upsample must be 0, 1 or 2, got {upsample}")
        if isinstance(images, torch.Tensor) and images.ndim == 4:  # a batch of frames
            out: list[Detections] = []
            for s in range(0, images.shape[0], batch_size):
                out += self.detect_batch(images[s : s + batch_size], upsample)
            return out
        imgs = [as_image_tensor(im) for im in images]
        res: list[Detections | None] = [None] * len(imgs)
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, im in enumerate(imgs):
            groups.setdefault(tuple(im.shape), []).append(i)
        for ids in groups.values():
            for s in range(0, len(ids), batch_size):
                part = ids[s : s + batch_size]
                found = self.detect_batch(torch.stack([imgs[i] for i in part]), upsample)
                for i, r in zip(part, found):
                    res[i] = r
        return res  # type: ignore[return-value]
