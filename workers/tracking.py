"""Face tracks: link detections across sampled frames by box overlap and embedding distance.

Online and greedy: each sampled frame's detections are matched to the open tracks in order of
cost (embedding distance minus a bonus for overlap) under two gates, a link distance in the
embedder's metric (euclidean for dlib, cosine for SFace) and a maximum time gap.  The cost
matrix of a frame is computed at once; the loop is over sampled frames and matches (a few per
frame).  A hard cut (:meth:`Tracker.cut`, from ``workers.shots``) closes every open track.

Every detection gets a quality in [0, 1] (:func:`face_quality`: size, detector score, sharpness,
how frontal); a track's embedding is the mean of its detections weighted by quality squared, so it
leans on its best faces, and the track keeps a JPEG thumbnail of its best detection and the mean
quality of its best three (:func:`track_quality` adds how many detections it has).
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
    iou_bonus: float = 0.3  # cost = distance - iou_bonus * IoU (with its last box or where its motion puts it)
    # a face that stays in place (IoU >= overlap_iou with the track's last box) may continue the
    # track up to overlap_distance: in soft or compressed video one face's consecutive embeddings
    # were measured 0.59 apart at IoU 0.8 (shd_obama.mp4), which split one face into three tracks
    overlap_iou: float = 0.5
    overlap_distance: float = 0.7
    # cost += motion_weight x (distance from where the track's velocity puts the face, in face widths):
    # when embeddings cannot tell two faces apart (dlib on 50 px faces hugging in mma_demo_skeleton.mp4:
    # 0.51-0.56 both ways), where each face was heading can; it only orders candidates, never gates them
    motion_weight: float = 0.1
    # a weak face (a detector score under the gate) continues an open track it overlaps this much
    # (its last box, or where its motion puts it), after the confident faces are matched
    extend_iou: float = 0.3
    # embedding only what identity needs (``follow`` in Tracker.update): a face that one open track
    # alone overlaps (IoU >= overlap_iou, nothing else within claim_iou) continues it without an
    # embedding, unless the track has fewer than embed_best embedded faces, the face beats the
    # worst of its best embed_best, or its last embedding is embed_refresh_s old
    claim_iou: float = 0.1
    embed_best: int = 1
    embed_refresh_s: float = 2.0  # also the longest a track goes on without an embedding (then it is checked)
    # one track, one person: an embedded face continues a track only within this distance of the
    # track's own faces (its quality-weighted mean embedding); a face continued unembedded that a later
    # check finds farther splits the track there (0: no check).  The embedder's (configs/spaces.py).
    verify_distance: float = 0.0
    # ...judged only by faces of at least this quality (people.min_quality's bar: a poorer face's
    # embedding is too far from its own person to veto; measured on the shared clips' small faces)
    verify_quality: float = 0.25
    thumb_size: int = 112
    metric: str = "euclidean"  # the embedder's: euclidean (dlib) | cosine (SFace)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) x (M, 4), [x1, y1, x2, y2] inclusive."""
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = lambda r: (r[:, 2] - r[:, 0] + 1) * (r[:, 3] - r[:, 1] + 1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def yaw(points: np.ndarray | None, landmarks: np.ndarray | None) -> np.ndarray:
    """How far each face is turned: the nose's horizontal offset from the eyes' midpoint over the
    distance between the eyes (0 frontal, ~0.5 half turned, >1 profile).  From the detector's 5
    points (RetinaFace: eyes, nose, mouth corners), else dlib's 5 landmarks (eye corners, nose);
    NaN when neither is known."""
    if points is not None and len(points) and not np.isnan(points).all():
        p = np.asarray(points, np.float64).reshape(-1, 5, 2)
        le, re, nose = p[:, 0], p[:, 1], p[:, 2]
    elif landmarks is not None and len(landmarks):
        p = np.asarray(landmarks, np.float64).reshape(-1, 5, 2)
        le, re, nose = p[:, 0:2].mean(1), p[:, 2:4].mean(1), p[:, 4]
    else:
        n = 0 if points is None else len(points)
        return np.full(n, np.nan)
    eye_d = np.linalg.norm(re - le, axis=1)
    return np.abs(nose[:, 0] - (le[:, 0] + re[:, 0]) / 2) / np.maximum(eye_d, 1e-6)


def outside(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """The fraction of each box outside a width x height image (a face cut off at the edge)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = np.maximum(b[:, 2] - b[:, 0] + 1, 1) * np.maximum(b[:, 3] - b[:, 1] + 1, 1)
    iw = np.clip(np.minimum(b[:, 2], width - 1) - np.maximum(b[:, 0], 0) + 1, 0, None)
    ih = np.clip(np.minimum(b[:, 3], height - 1) - np.maximum(b[:, 1], 0) + 1, 0, None)
    return 1.0 - iw * ih / area


def face_quality(boxes: np.ndarray, scores: np.ndarray, sharpness: np.ndarray | None = None,
                 points: np.ndarray | None = None, landmarks: np.ndarray | None = None,
                 frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Quality of each detection in [0, 1]: the product of four factors, each 1 for a good face.

    On the shared clips' labelled tracks each predicts how far a detection's SFace embedding lies
    from its own person (Spearman with the margin to the nearest other person: sharpness 0.62,
    score 0.41, size 0.38, turn -0.31; bench/calibrate_embedders.py's labels):
    size 20 px -> 0.1, 80 px and up -> 1; score 0.5 -> 0.1, 1.0 -> 1; sharpness (variance of the
    Laplacian of the aligned chip) 10 -> 0.33, 100 and up -> 1; turn (:func:`yaw`) up to 0.15 -> 1,
    0.9 and beyond (profile) -> 0.2; with ``frame_size`` (width, height), times the part of the box
    inside the picture (a face cut off at the edge).  A factor that cannot be measured counts 1."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
    q = np.clip((side - 20.0) / 60.0, 0.1, 1.0)
    q *= np.clip((np.asarray(scores, np.float64) - 0.5) / 0.5, 0.1, 1.0)
    if sharpness is not None:
        sh = np.asarray(sharpness, np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            f = np.clip((np.log10(np.maximum(sh, 1e-3)) - 0.5) / 1.5, 0.1, 1.0)
        q *= np.where(np.isfinite(sh), f, 1.0)
    t = yaw(points, landmarks) if points is not None or landmarks is not None else np.full(len(q), np.nan)
    q *= np.where(np.isfinite(t), np.clip(1.0 - (t - 0.15) / 0.9375, 0.2, 1.0), 1.0)
    if frame_size is not None:
        q *= np.clip(1.0 - outside(boxes, *frame_size), 0.1, 1.0)
    return q


TOP = 3  # a track's quality is the mean of its best TOP detections' ...


def track_quality(top_mean: np.ndarray | float, detections: np.ndarray | int) -> np.ndarray:
    """... times a factor for how many detections it has (1: 0.5, 2: 0.75, 3 or more: 1)."""
    return np.asarray(top_mean, np.float64) * np.minimum(1.0, (np.asarray(detections, np.float64) + 1) / 4)


def top_mean(qs: list[float]) -> float:
    return float(np.mean(sorted(qs, reverse=True)[:TOP])) if qs else 0.0


def _jpeg(img: np.ndarray, size: int) -> bytes:
    """A JPEG of ``img`` fitted into size x size."""
    im = Image.fromarray(np.ascontiguousarray(img))
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def thumbnail(frame: np.ndarray, box: np.ndarray, size: int) -> bytes:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = box
    pad = 0.2 * (x2 - x1)
    crop = frame[max(0, int(y1 - pad)) : min(h, int(y2 + pad) + 1), max(0, int(x1 - pad)) : min(w, int(x2 + pad) + 1)]
    return _jpeg(crop, size)


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
    qs: list = field(default_factory=list)  # its detections' qualities
    thumb: bytes = b""
    thumb_t: float = 0.0
    det_rows: list = field(default_factory=list)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # box centre, pixels per second
    hist_t: list = field(default_factory=list)  # every detection's time and box (person tubes)
    hist_b: list = field(default_factory=list)
    emb_qs: list = field(default_factory=list)  # qualities of the faces that carry an embedding
    emb_t: float = 0.0  # time of its last embedded face
    last_chip: np.ndarray | None = None  # its latest face's aligned chip when that face went unembedded
    # every face it holds, in order: (row, t, box, q or None for a weak face, embedding or None)
    log: list = field(default_factory=list)
    # faces continued unembedded since its last embedded one: (position in log, chip)
    pending: list = field(default_factory=list)
    thumbs: list = field(default_factory=list)  # (t, q, JPEG) each time its best face improved

    def mean(self) -> np.ndarray:
        return self.emb_sum / max(self.weight, 1e-12)


class Tracker:
    """Feed sampled frames in time order with :meth:`update`; read :attr:`tracks` at the end."""

    def __init__(self, params: TrackParams | None = None):
        self.p = params or TrackParams()
        self.open: list[_Track] = []
        self.tracks: list[_Track] = []
        self._next = 0
        self.moved: dict[int, int] = {}  # row -> track number, for faces a split moved to a new track

    def track(self, k: int) -> _Track:
        return next(tr for tr in self.tracks if tr.k == k)

    def far(self, tr: _Track, embs: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
        """Whether each embedding is farther from the track's own faces than verify_distance (with
        ``q``, the faces' qualities: only faces of at least verify_quality count)."""
        embs = np.asarray(embs, np.float64).reshape(-1, tr.emb_sum.shape[-1])
        if not self.p.verify_distance or not len(embs) or tr.weight <= 0:
            return np.zeros(len(embs), bool)
        out = pairwise(tr.mean()[None], embs, self.p.metric)[0] > self.p.verify_distance
        return out if q is None else out & (np.asarray(q, np.float64) >= self.p.verify_quality)

    def close(self, k: int) -> None:
        """End track k now (its face became someone else's, and nothing it holds needs moving)."""
        self.open = [tr for tr in self.open if tr.k != k]

    def split(self, k: int, at: int, embs: np.ndarray | None = None) -> int | None:
        """Move track k's pending faces from the ``at``-th on (``embs``: every pending face's
        embedding, now computed) to a new open track, and close track k; returns the new track's
        number (None when nothing moves: track k is only closed)."""
        tr = self.track(k)
        pend = tr.pending
        if embs is not None:  # the pending faces are embedded now: they count as such
            for (pos, _), e in zip(pend, np.asarray(embs)):
                row, t, b, q, _ = tr.log[pos]
                tr.log[pos] = (row, t, b, q, np.asarray(e, np.float32))
        self.close(k)
        if at >= len(pend):
            self._rebuild(tr, tr.log)
            tr.pending = []
            return None
        cut = pend[at][0]
        moved, chips = tr.log[cut:], {pos - cut: c for pos, c in pend[at:]}
        self._rebuild(tr, tr.log[:cut])
        tr.pending = []
        new = _Track(self._next, 0.0, 0.0, moved[0][2], moved[0][2], None, None, None, 0.0)
        self._next += 1
        self._rebuild(new, moved)
        best = max(chips, key=lambda i: moved[i][3] or 0.0, default=None)
        if best is not None:
            new.best_q, new.thumb_t = float(moved[best][3] or 0.0), moved[best][1]
            new.thumb = _jpeg(chips[best], self.p.thumb_size)
            new.thumbs = [(new.thumb_t, new.best_q, new.thumb)]
        for row, *_ in moved:
            self.moved[row] = new.k
        self.tracks.append(new)
        self.open.append(new)
        return new.k

    @staticmethod
    def _rebuild(tr: _Track, log: list) -> None:
        """A track's summary recomputed from the faces it holds (after a split)."""
        faces = [x for x in log if x[3] is not None]
        embedded = [x for x in faces if x[4] is not None]
        tr.log = list(log)
        tr.start, tr.end = log[0][1], log[-1][1]
        tr.first_box, tr.last_box = log[0][2], log[-1][2]
        dim = len(embedded[0][4]) if embedded else (len(tr.emb_sum) if tr.emb_sum is not None else 0)
        tr.emb_sum = sum((x[4] * x[3] ** 2 for x in embedded), np.zeros(dim, np.float32))
        tr.weight = float(sum(x[3] ** 2 for x in embedded))
        if embedded:
            tr.first_emb, tr.last_emb = embedded[0][4], embedded[-1][4]
        tr.n = len(faces)
        tr.qs = [x[3] for x in faces]
        tr.emb_qs = [x[3] for x in embedded]
        tr.emb_t = embedded[-1][1] if embedded else tr.start
        tr.hist_t, tr.hist_b = [x[1] for x in log], [x[2] for x in log]
        if len(log) > 1 and log[-1][1] > log[-2][1]:
            a, b = log[-2][2], log[-1][2]
            tr.velocity = ((b[:2] + b[2:]) - (a[:2] + a[2:])) / 2 / (log[-1][1] - log[-2][1])
        else:
            tr.velocity = np.zeros(2)
        kept = [x for x in tr.thumbs if x[0] <= tr.end]
        tr.thumbs = kept
        if kept:
            tr.thumb_t, tr.best_q, tr.thumb = kept[-1]
        tr.last_chip = None

    def cut(self) -> None:
        """A shot change: every open track ends here (the next face starts a new one)."""
        self.open = []

    def _predicted(self, t: float, tracks: list[_Track]) -> tuple[np.ndarray, np.ndarray]:
        """(last boxes, boxes where each track's velocity puts its face at t)."""
        last_b = np.stack([tr.last_box for tr in tracks])
        gap = np.array([t - tr.end for tr in tracks])
        return last_b, last_b + np.tile(np.stack([tr.velocity for tr in tracks]) * gap[:, None], 2)

    def _overlaps(self, t: float, tracks: list[_Track], boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(last boxes, predicted boxes, IoU tracks x boxes with whichever is larger: the face
        stayed, or moved on as its track was moving)."""
        last_b, pred_b = self._predicted(t, tracks)
        return last_b, pred_b, np.maximum(iou_matrix(last_b, boxes), iou_matrix(pred_b, boxes))

    def live(self, t: float) -> list[_Track]:
        """Open tracks that a face at time t may still continue."""
        return [tr for tr in self.open if t - tr.end <= self.p.max_gap_s]

    def predict(self, t: float) -> np.ndarray:
        """(K, 4) where each live track's face should be at t (last box moved by its velocity)."""
        live = self.live(t)
        return self._predicted(t, live)[1] if live else np.zeros((0, 4))

    def overlap(self, t: float, boxes: np.ndarray) -> np.ndarray:
        """Each box's largest IoU with a live track's last or predicted box (0: none near)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        live = self.live(t)
        if not len(boxes) or not live:
            return np.zeros(len(boxes))
        return self._overlaps(t, live, boxes)[2].max(0)

    def claims(self, t: float, boxes: np.ndarray) -> np.ndarray:
        """For each box, the live track that alone overlaps it, and it alone (IoU >= overlap_iou
        with the track's last or predicted box, every other pair under claim_iou), or -1: such a
        face can continue its track on overlap alone (``follow``)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        out = np.full(len(boxes), -1, np.int64)
        live = self.live(t)
        if not len(boxes) or not live:
            return out
        iou = self._overlaps(t, live, boxes)[2]
        near = iou >= self.p.claim_iou
        ok = (iou.max(0) >= self.p.overlap_iou) & (near.sum(0) == 1)
        best = iou.argmax(0)
        ok &= near[best].sum(1) == 1  # that track overlaps no other face either
        ks = np.array([tr.k for tr in live])
        out[ok] = ks[best[ok]]
        return out

    def wants(self, t: float, ks: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Whether each face claimed by track ks[i] (-1: unclaimed, always) should be embedded."""
        by_k = {tr.k: tr for tr in self.open}
        out = np.ones(len(ks), bool)
        for i, (k, qi) in enumerate(zip(np.asarray(ks).tolist(), np.asarray(q).tolist())):
            tr = by_k.get(k)
            if tr is None:
                continue
            best = sorted(tr.emb_qs, reverse=True)[: self.p.embed_best]
            out[i] = (len(best) < self.p.embed_best or qi > best[-1] or t - tr.emb_t >= self.p.embed_refresh_s)
        return out

    def update(self, t: float, frame: np.ndarray, boxes: np.ndarray, embs: np.ndarray, q: np.ndarray,
               thumb_scale: tuple[float, float] = (1.0, 1.0), weak: np.ndarray | None = None,
               follow: np.ndarray | None = None, chips: np.ndarray | None = None, rows: np.ndarray | None = None,
               weak_rows: np.ndarray | None = None, weak_embs: np.ndarray | None = None
               ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Assign this frame's detections to tracks; returns each detection's track number.

        boxes are in the coordinates of ``frame`` divided by ``thumb_scale`` (video pixels).
        ``weak``: boxes of faces the detector was less sure of (not embedded): after the others,
        each may continue an open track not continued in this frame whose box it overlaps
        (IoU >= ``extend_iou``), as ByteTrack's second association does; it starts no track and
        adds nothing to the track's embedding, quality or thumbnail, only its time and box.
        Then returns (track numbers, weak faces' track numbers or -1).
        ``follow``: per face, the track (from :meth:`claims`) it continues without an embedding
        (its row of ``embs`` is not used), or -1: linked by embedding and overlap as above; with
        ``chips`` (per face), a track continued unembedded keeps its face's chip (``last_chip``) for
        the caller to embed when a later face must be linked by embedding, and in its ``pending``
        list for the check that may split it (:meth:`split`).  ``rows`` / ``weak_rows``: the caller's
        numbers for the faces (a split reports the moved ones in :attr:`moved`).
        With ``verify_distance``, a face linked by embedding must also be that close to the track's
        own faces (its mean), not only to its last face; ``weak_embs`` (per weak face; NaN where the
        chip is too blurred to embed): a weak face whose embedding is farther from a track does not
        continue it."""
        self.open = self.live(t)
        assign = np.full(len(boxes), -1, np.int64)
        if follow is not None:
            follow = np.asarray(follow, np.int64)
            assign[follow >= 0] = follow[follow >= 0]
        free = np.flatnonzero(assign < 0)
        taken = set(assign[assign >= 0].tolist())
        cand = [i for i, tr in enumerate(self.open) if tr.k not in taken]
        if len(free) and cand:
            tracks = [self.open[i] for i in cand]
            sub_b = boxes[free]
            last_b, pred_b, iou = self._overlaps(t, tracks, sub_b)
            last_e = np.stack([tr.last_emb for tr in tracks])
            dist = pairwise(last_e, embs[free], self.p.metric)
            cost = dist - self.p.iou_bonus * iou
            if self.p.motion_weight:
                width = np.maximum(last_b[:, 2] - last_b[:, 0] + 1, 1.0)
                off = np.linalg.norm((pred_b[:, None, :2] + pred_b[:, None, 2:]) / 2
                                     - (sub_b[None, :, :2] + sub_b[None, :, 2:]) / 2, axis=-1)
                cost = cost + self.p.motion_weight * off / width[:, None]
            cost[(dist >= self.p.link_distance) & ~((iou >= self.p.overlap_iou) & (dist < self.p.overlap_distance))] = np.inf
            if self.p.verify_distance:  # only a face good enough to tell people apart can veto
                means = np.stack([tr.mean() for tr in tracks])
                veto = pairwise(means, embs[free], self.p.metric) > self.p.verify_distance
                cost[veto & (np.asarray(q, np.float64)[free] >= self.p.verify_quality)[None]] = np.inf
            while np.isfinite(cost).any():
                i, j = np.unravel_index(np.argmin(cost), cost.shape)
                assign[free[j]] = tracks[i].k
                cost[i, :] = np.inf
                cost[:, j] = np.inf
        by_k = {tr.k: tr for tr in self.open}
        sx, sy = thumb_scale
        for j in range(len(boxes)):
            e, b, qj = embs[j], boxes[j], float(q[j])
            w = qj * qj  # the embedding leans on the track's best faces
            has_e = follow is None or follow[j] < 0 or bool(np.isfinite(e).all())
            row = -1 if rows is None else int(rows[j])
            if assign[j] < 0:
                tr = _Track(self._next, t, t, b, b, e, e, e * w, w)
                self._next += 1
                self.open.append(tr)
                self.tracks.append(tr)
                assign[j] = tr.k
            else:
                tr = by_k[int(assign[j])]
                if t > tr.end:
                    tr.velocity = ((b[:2] + b[2:]) - (tr.last_box[:2] + tr.last_box[2:])) / 2 / (t - tr.end)
                tr.end, tr.last_box = t, b
                if has_e:
                    tr.last_emb = e
                    tr.emb_sum = tr.emb_sum + e * w
                    tr.weight += w
                tr.n += 1
            tr.log.append((row, t, b, qj, np.asarray(e, np.float32) if has_e else None))
            if has_e:
                tr.emb_qs.append(qj)
                tr.emb_t = t
                tr.last_chip = None
                tr.pending = []  # checked: it joined by embedding, or the caller checked it (Tracker.far)
            elif chips is not None:
                tr.last_chip = chips[j]
                tr.pending.append((len(tr.log) - 1, chips[j]))
            tr.qs.append(qj)
            tr.hist_t.append(t)
            tr.hist_b.append(b)
            if qj > tr.best_q:
                tr.best_q, tr.thumb_t = qj, t
                tr.thumb = thumbnail(frame, b * np.array([sx, sy, sx, sy]), self.p.thumb_size)
                tr.thumbs.append((t, qj, tr.thumb))
        if weak is None:
            return assign
        return assign, self._extend(t, np.asarray(weak, np.float64).reshape(-1, 4), set(assign.tolist()), weak_rows,
                                    weak_embs)

    def _extend(self, t: float, weak: np.ndarray, taken: set[int], rows: np.ndarray | None = None,
                embs: np.ndarray | None = None) -> np.ndarray:
        out = np.full(len(weak), -1, np.int64)
        free = [tr for tr in self.open if tr.k not in taken and tr.end < t]
        if not len(weak) or not free:
            return out
        iou = self._overlaps(t, free, weak)[2]
        iou[iou < self.p.extend_iou] = 0.0
        if embs is not None and self.p.verify_distance:  # one track, one person: weak faces too
            e = np.asarray(embs, np.float64)
            # no quality bar here: weak faces are poor by definition, and with one (people.min_quality)
            # a swapped-in face of the make-up clip continued Obama's track (cuts set: 1 transfer)
            known = np.isfinite(e).all(1)
            if known.any():
                d = pairwise(np.stack([tr.mean() for tr in free]), e[known], self.p.metric)
                sub = iou[:, known]
                sub[d > self.p.verify_distance] = 0.0
                iou[:, known] = sub
        while iou.max(initial=0.0) > 0:
            i, j = np.unravel_index(np.argmax(iou), iou.shape)
            tr, b = free[i], weak[j]
            tr.velocity = ((b[:2] + b[2:]) - (tr.last_box[:2] + tr.last_box[2:])) / 2 / (t - tr.end)
            tr.end, tr.last_box = t, b
            tr.hist_t.append(t)
            tr.hist_b.append(b)
            tr.log.append((-1 if rows is None else int(rows[j]), t, b, None, None))
            out[j] = tr.k
            iou[i, :] = 0.0
            iou[:, j] = 0.0
        return out
