"""Face tracks: link detections across sampled frames by box overlap and embedding distance.

Online and greedy: each sampled frame's detections are matched to the open tracks in order of
cost (embedding distance minus a bonus for overlap) under two gates, a link distance in the
embedder's metric (euclidean for dlib, cosine for SFace) and a maximum time gap.  The cost
matrix of a frame is computed at once; the loop is over sampled frames and matches (a few per
frame).  A track keeps a quality-weighted sum of
its embeddings and a JPEG thumbnail of its best detection.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from vidx.configs.spaces import pairwise


@dataclass
class TrackParams:
    link_distance: float = 0.55  # max embedding distance to continue a track (dlib's values by default)
    max_gap_s: float = 1.5  # a track not seen for longer is closed
    iou_bonus: float = 0.3  # cost = distance - iou_bonus * IoU
    # a face that stays in place (IoU >= overlap_iou with the track's last box) may continue the
    # track up to overlap_distance: in soft or compressed video one face's consecutive embeddings
    # were measured 0.59 apart at IoU 0.8 (shd_obama.mp4), which split one face into three tracks
    overlap_iou: float = 0.5
    overlap_distance: float = 0.7
    thumb_size: int = 112
    metric: str = "euclidean"  # the embedder's: euclidean (dlib) | cosine (SFace)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) x (M, 4), [x1, y1, x2, y2] inclusive."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0] + 1) * (r[:, 3] - r[:, 1] + 1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def quality(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Detection quality weight: detector confidence times a size factor (small faces embed worse)."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    return np.clip(scores, 0.05, None) * np.clip(w / 100.0, 0.2, 1.0)


def thumbnail(frame: np.ndarray, box: np.ndarray, size: int) -> bytes:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    pad = 0.2 * (x2 - x1)
    crop = frame[max(0, int(y1 - pad)) : min(h, int(y2 + pad) + 1), max(0, int(x1 - pad)) : min(w, int(x2 + pad) + 1)]
    im = Image.fromarray(np.ascontiguousarray(crop))
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


@dataclass
class _Track:
    k: int
    start: float
    end: float
    first_box: np.ndarray
    last_box: np.ndarray
    first_emb: np.ndarray
    last_emb: np.ndarray
    emb_sum: np.ndarray
    weight: float
    n: int = 1
    best_q: float = -1.0
    thumb: bytes = b""
    thumb_t: float = 0.0
    det_rows: list = field(default_factory=list)


class Tracker:
    """Feed sampled frames in time order with :meth:`update`; read :attr:`tracks` at the end."""

    def __init__(self, params: TrackParams | None = None):
        self.p = params or TrackParams()
        self.open: list[_Track] = []
        self.tracks: list[_Track] = []
        self._next = 0

    def update(self, t: float, frame: np.ndarray, boxes: np.ndarray, embs: np.ndarray, q: np.ndarray,
               thumb_scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
        """Assign this frame's detections to tracks; returns each detection's track number.

        boxes are in the coordinates of ``frame`` divided by ``thumb_scale`` (video pixels)."""
        self.open = [tr for tr in self.open if t - tr.end <= self.p.max_gap_s]
        assign = np.full(len(boxes), -1, np.int64)
        if len(boxes) and self.open:
            last_b = np.stack([tr.last_box for tr in self.open])
            last_e = np.stack([tr.last_emb for tr in self.open])
            dist = pairwise(last_e, embs, self.p.metric)
            iou = iou_matrix(last_b, boxes)
            cost = dist - self.p.iou_bonus * iou
            cost[(dist >= self.p.link_distance) & ~((iou >= self.p.overlap_iou) & (dist < self.p.overlap_distance))] = np.inf
            while np.isfinite(cost).any():
                i, j = np.unravel_index(np.argmin(cost), cost.shape)
                assign[j] = i
                cost[i, :] = np.inf
                cost[:, j] = np.inf
            assign = np.where(assign >= 0, [self.open[i].k if i >= 0 else -1 for i in assign], -1)
        by_k = {tr.k: tr for tr in self.open}
        sx, sy = thumb_scale
        for j in range(len(boxes)):
            e, b, w = embs[j], boxes[j], float(q[j])
            if assign[j] < 0:
                tr = _Track(self._next, t, t, b, b, e, e, e * w, w)
                self._next += 1
                self.open.append(tr)
                self.tracks.append(tr)
                assign[j] = tr.k
            else:
                tr = by_k[int(assign[j])]
                tr.end, tr.last_box, tr.last_emb = t, b, e
                tr.emb_sum = tr.emb_sum + e * w
                tr.weight += w
                tr.n += 1
            if w > tr.best_q:
                tr.best_q, tr.thumb_t = w, t
                tr.thumb = thumbnail(frame, b * np.array([sx, sy, sx, sy]), self.p.thumb_size)
        return assign
