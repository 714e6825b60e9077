"""Redaction: a copy of an indexed video with faces blurred, everyone's but the people kept
(``keep``) or only the people named (``only``), on every frame.

The index samples faces at a few frames a second; a redacted copy must cover every frame. Two
passes over the file, at its full frame rate:

1. **Find faces**: RetinaFace on every frame (``every=1``; on every Nth with ``every=N``, each
   frame then taking the boxes of the detected frames within N of it), at ``max_side``. Every
   face found is given to the index track whose box, interpolated between the track's samples
   (and held for ``carry_s`` past its ends), it overlaps most (IoU >= ``ATTRIBUTE_IOU``); the
   track's person decides. A face that no track explains is blurred in either mode. Where the
   box alone cannot tell (a face near a kept track's box but blurred by the boxes: between two
   tracks' samples at one place, before the kept track's first sample, or under a redacted
   track's box held past its end), the face is embedded as the index embedded its faces and kept
   visible only when it is within ``verify_distance`` of a kept track of this video and nearer it
   than every redacted one; a redacted track's held box then gives way on that frame.
2. **Write**: every frame decoded again, the boxes of redacted faces (found in pass 1 on this
   frame or its neighbours, and the interpolated boxes of redacted people's tracks, which cover
   a turned head the detector misses) widened by ``margin`` and blurred, pixelated or filled,
   then encoded (H.264 through PyAV's FFmpeg) with the source frame's own timestamp. Audio
   packets are copied untouched. The copy is written beside the target under a temporary name,
   then renamed over it; the source is only read.

Times are seconds from the video's first frame (vidx's clock), as players show them.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from vidx.configs.errors import RedactError  # noqa: F401 - defined there, raised here
from vidx.workers.sources import Source

log = logging.getLogger(__name__)

STYLES = ("blur", "pixelate", "box")
ATTRIBUTE_IOU = 0.3  # a face found at full rate belongs to the track whose interpolated box it overlaps this much
DETECT_SCORE = 0.5  # RetinaFace's score to count as a face: lower than indexing's, a missed face leaks
BATCH = 8  # frames a detector call


@dataclass
class Redaction:
    """What a redaction did; ``timing`` in seconds (decode, detect, redact, encode)."""

    output: str
    frames: int = 0
    redacted_frames: int = 0  # frames with at least one region blurred
    regions: int = 0  # regions blurred, over every frame
    faces_found: int = 0  # faces found by the detection pass (on detected frames)
    unattributed: int = 0  # of them, faces no index track explains (blurred)
    kept: int = 0  # of them, faces of kept people (left visible)
    verified: int = 0  # of them, faces the boxes could not attribute, embedded and compared with the tracks
    verified_kept: int = 0  # of those, faces found to be a kept person's (left visible)
    seconds: float = 0.0  # the video's duration (last frame time + one frame)
    wall_s: float = 0.0
    timing: dict = field(default_factory=dict)
    boxes: dict | None = None  # frame pts -> (K, 4) regions blurred (inclusive pixels), when asked for

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0


@dataclass
class _Tracks:
    """The index's face tracks of one video, with their people and sampled boxes."""

    ids: list[str]
    redacted: np.ndarray  # (M,) bool: this track's person is to be blurred
    t: list[np.ndarray]  # per track: sample times (vidx clock), sorted
    box: list[np.ndarray]  # per track: (n, 4) boxes at those times
    start: np.ndarray  # (M,) first sample time
    end: np.ndarray  # (M,) last sample time
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the video's cuts (shots table): no box held across one
    emb: np.ndarray | None = None  # (M, D) each track's embedding (NaN where it has none)
    space: object = None  # the index's embedding space (configs.spaces.Space)
    embedder: str = ""  # its embedder's config name (to embed a face the boxes cannot attribute)


def _video(out: str, video: str) -> dict:
    """The indexed video ``video`` names (id, path or file name, as ``vidx query --video``; or a local
    path spelled another way)."""
    from vidx.indexing.query import video_keys
    from vidx.indexing.tables import read_index_table

    rows = {r["video_id"]: r for r in read_index_table(out, "videos").to_pylist()}
    ids = sorted(video_keys(rows.values()).get(video, ()))
    if not ids and os.path.exists(video):
        ids = [v for v, r in rows.items() if Source.parse(r["path"]).local_path and os.path.exists(r["path"])
               and os.path.samefile(r["path"], video)]
    if not ids:
        raise RedactError(f"no indexed video with id, path or file name {video!r} (see 'vidx query {out} --video ...')")
    if len(ids) > 1:
        raise RedactError(f"{video!r} names {len(ids)} indexed videos ({', '.join(ids)}): give the video id")
    r = rows[ids[0]]
    if r["status"] == "failed":
        raise RedactError(f"{r['path']} was not indexed ({r.get('error') or 'failed'}): index it before redacting it")
    return r


def _people(out: str, names: list[str]) -> set[str]:
    """The person ids of ``names`` (ids or names, case-insensitive)."""
    from vidx.indexing import people

    try:
        _, ppl = people.load(out)
        return {p for who in names for p in people.resolve_people(ppl, who)}
    except people.PeopleError as e:
        raise RedactError(str(e)) from None


def _tracks(out: str, video_id: str, named: set[str], keep: bool, identities: pa.Table | None = None) -> _Tracks:
    """The video's tracks with their sampled boxes (from the parts of that video only) and whether
    each is redacted: ``keep``: the ``named`` people stay and everyone else goes; else only they go."""
    from vidx.indexing import people
    from vidx.indexing.people import index_space
    from vidx.indexing.store import Store
    from vidx.indexing.tables import read_video_rows

    if identities is None:
        identities, _ = people.load(out)
    idn = identities.filter(pc.equal(identities["video_id"], video_id))
    person = dict(zip(idn["track_id"].to_pylist(), idn["person_id"].to_pylist()))
    tracks = read_video_rows(out, "face_tracks", video_id, ["track_id", "segments", "embedding"])
    segs = pa.table({"segment_id": pc.list_flatten(tracks["segments"]),
                     "track_id": pc.list_parent_indices(tracks["segments"])})
    segs = segs.set_column(1, "track_id", tracks["track_id"].take(segs["track_id"]))
    det = read_video_rows(out, "face_detections", video_id, ["t", "x1", "y1", "x2", "y2", "segment_id"])
    det = det.filter(pc.is_valid(det["segment_id"])).join(segs, "segment_id", join_type="inner")
    det = det.sort_by([("track_id", "ascending"), ("t", "ascending")])
    tid = det["track_id"].to_numpy(zero_copy_only=False)
    t = det["t"].to_numpy()
    box = np.stack([det[c].to_numpy(zero_copy_only=False).astype(np.float64) for c in ("x1", "y1", "x2", "y2")], 1) \
        if det.num_rows else np.zeros((0, 4))
    cut = np.flatnonzero(tid[1:] != tid[:-1]) + 1 if len(tid) else np.zeros(0, np.int64)
    first = np.r_[0, cut] if len(tid) else cut
    ids = tid[first].tolist()
    ts, bs = np.split(t, cut), np.split(box, cut)
    if not ids:
        ts, bs = [], []
    # a track whose person the tables do not know (indexed after the last refresh) is blurred
    red = np.array([(person.get(k) in named) != keep if person.get(k) else True for k in ids], bool)
    try:  # an index written before the shots table has no cuts to respect
        shots = read_video_rows(out, "shots", video_id, ["start_s", "score"])
        cuts = np.unique(shots.filter(pc.is_valid(shots["score"]))["start_s"].to_numpy())
    except Exception:  # noqa: BLE001 - no shots table
        cuts = np.zeros(0)
    sp = index_space(Store(out).require_manifest())
    vec = dict(zip(tracks["track_id"].to_pylist(), tracks["embedding"].to_pylist()))
    dim = next((len(e) for e in vec.values() if e is not None), 1)
    emb = np.array([vec.get(k) if vec.get(k) is not None else [np.nan] * dim for k in ids], np.float64).reshape(len(ids), dim)
    return _Tracks(ids, red, ts, bs, np.array([x[0] for x in ts]) if ids else np.zeros(0),
                   np.array([x[-1] for x in ts]) if ids else np.zeros(0), cuts, emb, sp, sp.name)


def _at(tr: _Tracks, times: np.ndarray, carry_s: float) -> np.ndarray:
    """(frames, tracks, 4) each track's box at each time, interpolated between its samples and
    held ``carry_s`` past its ends, but never across a cut (the next shot is another picture) nor
    over another track's face on screen at that place (a face that took its place in the shot);
    NaN where the track is not on screen."""
    out = np.full((len(times), len(tr.ids), 4), np.nan)
    if not len(times) or not tr.ids:
        return out
    live = np.flatnonzero((tr.start - carry_s <= times[-1]) & (tr.end + carry_s >= times[0]))
    for j in live.tolist():  # tracks on screen in this block only
        lo, hi = tr.start[j] - carry_s, tr.end[j] + carry_s
        if len(tr.cuts):  # the shot the track is in: from the last cut at or before its start to the next after its end
            k = np.searchsorted(tr.cuts, tr.start[j] + 1e-6) - 1
            lo = max(lo, tr.cuts[k]) if k >= 0 else lo
            k = np.searchsorted(tr.cuts, tr.end[j] + 1e-6)
            hi = min(hi, tr.cuts[k] - 1e-6) if k < len(tr.cuts) else hi
        m = (times >= lo) & (times <= hi)
        for c in range(4):
            out[m, j, c] = np.interp(times[m], tr.t[j], tr.box[j][:, c])
    if len(live) > 1:  # a held box gives way where another track's own face is: that face is explained
        sub = out[:, live]  # (B, L, 4)
        inside = (times[:, None] >= tr.start[live][None]) & (times[:, None] <= tr.end[live][None])
        held = ~inside & ~np.isnan(sub[..., 0])
        if held.any():
            iou = _iou(sub[:, :, None, :], sub[:, None, :, :])  # (B, L, L)
            taken = ((iou >= ATTRIBUTE_IOU) & inside[:, None, :] & ~np.eye(len(live), dtype=bool)[None]).any(2)
            sub[held & taken] = np.nan
            out[:, live] = sub
    return out


NEAR_IOU = 0.1  # a face this close to a kept track's box may be that person's: embedded when the boxes blur it
VERIFY_BATCH = 32  # faces an embedder call


class _Verifier:
    """Pass 1's check of the faces the boxes cannot attribute (module doc): each detected frame's
    faces near a kept track's box that the boxes would blur are embedded (a batch at a time, with
    the index's embedder on the redaction's own detections) and compared with this video's tracks;
    ``verdict``: frame position -> (K,) int8, 1 a kept person's face, 0 not, -1 not checked."""

    def __init__(self, tr: _Tracks, det, device: str, carry_s: float, timing: dict, res: Redaction):
        self.tr, self.det, self.device, self.carry_s, self.timing, self.res = tr, det, device, carry_s, timing, res
        self.verdict: dict[int, np.ndarray] = {}
        self.engine = None
        self.pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        has = ~np.isnan(tr.emb).any(1) if tr.emb is not None and len(tr.ids) else np.zeros(len(tr.ids), bool)
        self.kept_ids = np.flatnonzero(~tr.redacted & has)
        self.red_ids = np.flatnonzero(tr.redacted & has)
        self.on = len(self.kept_ids) > 0 and tr.space is not None

    def add(self, i: int, t: float, img: np.ndarray, boxes: np.ndarray, d, scale: np.ndarray) -> None:
        """Frame ``i`` at ``t`` s (vidx clock): its faces ``boxes`` (video pixels) and detections ``d``."""
        if not self.on or not len(boxes) or d.points is None:
            return
        tr = self.tr
        at = _at(tr, np.array([t]), self.carry_s)[0]  # (M, 4)
        iou = _iou(boxes[:, None, :], at[None])  # (K, M)
        near = (iou[:, ~tr.redacted] >= NEAR_IOU).any(1)
        if not near.any():
            return
        best = iou.argmax(1)
        hit = iou[np.arange(len(boxes)), best] >= ATTRIBUTE_IOU
        blur = ~hit | tr.redacted[best] | (t < tr.start[best]) | (iou[:, tr.redacted] >= ATTRIBUTE_IOU).any(1)
        doubt = np.flatnonzero(near & blur)
        if not len(doubt):
            return
        self.verdict[i] = np.full(len(boxes), -1, np.int8)
        self.pending.append((i, img, doubt, d.boxes[doubt].astype(np.float64), np.asarray(d.points)[doubt]))
        if sum(len(p[2]) for p in self.pending) >= VERIFY_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        t0 = time.perf_counter()
        if self.engine is None:
            from vidx.workers.faces import FaceEngine

            self.engine = FaceEngine(device=self.device, detector=self.det, embedder=self.tr.embedder)
        imgs = [p[1] for p in self.pending]
        idx = np.concatenate([np.full(len(p[2]), k, np.int64) for k, p in enumerate(self.pending)])
        faces = self.engine.describe(imgs, idx, np.concatenate([p[3] for p in self.pending]),
                                     points=np.concatenate([p[4] for p in self.pending]))
        sp, tr = self.tr.space, self.tr
        dk = sp.pairwise(faces.embeddings, tr.emb[self.kept_ids]).min(1)
        dr = sp.pairwise(faces.embeddings, tr.emb[self.red_ids]).min(1) if len(self.red_ids) else np.full(len(dk), np.inf)
        ok = ~np.isnan(dk) & (dk <= sp.verify_distance) & (dk < dr)
        k = 0
        for i, _, doubt, _, _ in self.pending:
            self.verdict[i][doubt] = ok[k:k + len(doubt)].astype(np.int8)
            k += len(doubt)
        self.res.verified += len(ok)
        self.res.verified_kept += int(ok.sum())
        self.pending.clear()
        self.timing["embed_s"] += time.perf_counter() - t0


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a (..., 4) and b (..., 4), inclusive pixels, broadcast; NaN boxes give 0."""
    iw = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ih = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    area = lambda x: (x[..., 2] - x[..., 0] + 1) * (x[..., 3] - x[..., 1] + 1)  # noqa: E731
    with np.errstate(invalid="ignore"):
        r = inter / (area(a) + area(b) - inter)
    return np.nan_to_num(r, nan=0.0)


def _widen(boxes: np.ndarray, margin: float, w: int, h: int) -> np.ndarray:
    """Boxes grown by ``margin`` of their size on each side, clipped to the frame, as ints."""
    if not len(boxes):
        return np.zeros((0, 4), np.int64)
    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    g = np.stack([boxes[:, 0] - margin * bw, boxes[:, 1] - margin * bh, boxes[:, 2] + margin * bw,
                  boxes[:, 3] + margin * bh], 1)
    g = np.floor(g).astype(np.int64)
    g[:, [0, 2]] = np.clip(g[:, [0, 2]], 0, w - 1)
    g[:, [1, 3]] = np.clip(g[:, [1, 3]], 0, h - 1)
    return g[(g[:, 2] >= g[:, 0]) & (g[:, 3] >= g[:, 1])]


def apply(frame: np.ndarray, regions: np.ndarray, style: str) -> np.ndarray:
    """Blur, pixelate or fill ``regions`` (K, 4) inclusive int pixels of an RGB frame, in place."""
    import cv2

    for x1, y1, x2, y2 in regions.tolist():  # a loop over a frame's few faces
        roi = frame[y1 : y2 + 1, x1 : x2 + 1]
        rh, rw = roi.shape[:2]
        if style == "box":
            roi[:] = 0
        elif style == "pixelate":  # about 8 blocks across the face: nothing of it survives
            small = cv2.resize(roi, (max(1, rw // max(1, rw // 8)), max(1, rh // max(1, rh // 8))),
                               interpolation=cv2.INTER_AREA)
            roi[:] = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_NEAREST)
        else:  # blur: shrink first (a cheap strong low-pass), then a Gaussian over what is left
            small = cv2.resize(roi, (max(1, rw // 6), max(1, rh // 6)), interpolation=cv2.INTER_AREA)
            small = cv2.GaussianBlur(small, (0, 0), sigmaX=max(1.0, min(small.shape[:2]) / 4))
            roi[:] = cv2.resize(small, (rw, rh), interpolation=cv2.INTER_LINEAR)
    return frame


def _detected(det, items, timing: dict | None = None, full: bool = False) -> Iterator[tuple]:
    """(key, (K, 4) boxes) for each (key, image) of ``items``, ``BATCH`` images a detector call
    (``full``: (key, image, Detections)); ``timing["detect_s"]`` adds up the detector's time."""
    keys, imgs = [], []

    def run():
        t = time.perf_counter()
        dets = det.detect(imgs)
        got = list(zip(keys, imgs, dets)) if full else \
            [(k, d.boxes.astype(np.float64) if len(d) else np.zeros((0, 4))) for k, d in zip(keys, dets)]
        if timing is not None:
            timing["detect_s"] += time.perf_counter() - t
        keys.clear()
        imgs.clear()
        return got

    for k, img in items:
        keys.append(k)
        imgs.append(img)
        if len(imgs) == BATCH:
            yield from run()
    if imgs:
        yield from run()


def _frames(path: str, size: tuple[int, int] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """(pts, seconds on the stream's clock, RGB frame) for every frame, in presentation order."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        tb = float(s.time_base)
        for f in c.decode(s):
            if f.pts is None:
                continue
            arr = f.to_ndarray(format="rgb24") if size is None else \
                f.to_ndarray(format="rgb24", width=size[0], height=size[1])
            yield int(f.pts), f.pts * tb, arr


class _Progress:
    """A progress bar on a terminal (tqdm, shown when ``progress`` is True and stderr is one) and,
    when ``progress`` is a callable, ``progress(phase, done, total)`` at each frame (a server's job)."""

    def __init__(self, total: int | None, desc: str, progress, phase: str):
        from tqdm import tqdm

        self.cb = progress if callable(progress) else None
        self.bar = tqdm(total=total, desc=desc, unit="frame", disable=None if progress is True else True, leave=False)
        self.n, self.total, self.phase = 0, total, phase

    def update(self, k: int = 1) -> None:
        self.bar.update(k)
        self.n += k
        if self.cb is not None:
            self.cb(self.phase, self.n, self.total)

    def close(self) -> None:
        self.bar.close()


def _frames_from_duration(s, c) -> int:
    """A stream's frame count guessed from its duration and rate, where its header gives none."""
    rate = float(s.average_rate or s.guessed_rate or 0)
    dur = float(s.duration * s.time_base) if s.duration else (c.duration / 1e6 if c.duration else 0.0)
    return int(round(dur * rate))


def _check_target(src: str, to: str) -> Path:
    dst = Path(to)
    if dst.suffix.lower() not in (".mp4", ".mov", ".mkv", ".m4v"):
        raise RedactError(f"{to}: write to a .mp4, .mov, .m4v or .mkv file")
    if not Source.parse(src).remote and os.path.exists(to) and os.path.exists(src) and os.path.samefile(src, to):
        raise RedactError(f"{to} is the source video itself: write the redacted copy to another file")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise RedactError(f"{to}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise RedactError(f"{to}: the folder {parent} is not writable")
    if dst.is_dir():
        raise RedactError(f"{to} is a folder: name the file to write")
    return dst


def redact(out: str, video: str, to: str, keep: list[str] | None = None, only: list[str] | None = None,
           style: str = "blur", margin: float = 0.25, every: int = 1, max_side: int = 1280, crf: int = 18,
           device: str = "cpu", carry_s: float = 0.5, keep_boxes: bool = False, progress=True) -> Redaction:
    """Write a copy of ``video`` (id, path or file name in the index ``out``) to ``to`` with faces
    blurred: everyone's but ``keep`` (person ids or names; ``keep=[]`` keeps no one) or only
    ``only``'s. See the module's docstring for how every frame is covered.  ``progress``: a bar on
    a terminal (True), none (False), or a callable ``(phase, done, total)`` called at each frame of
    each pass (phase ``"find"`` then ``"write"``; ``total`` may be None in the first)."""
    from vidx.workers.sources import SourceError, local_file

    if style not in STYLES:
        raise RedactError(f"unknown style {style!r} (choose from {', '.join(STYLES)})")
    if not 0 <= margin <= 2:
        raise RedactError(f"margin must be between 0 and 2 (a share of the face's size), not {margin}")
    if every < 1:
        raise RedactError(f"detect every N frames needs N >= 1, not {every}")
    if not 0 <= crf <= 51:
        raise RedactError(f"quality (x264 CRF) must be 0-51, not {crf}")
    if (keep is None) == (only is None):
        raise RedactError("say whose faces stay: --keep PERSON... (blur everyone else), --only PERSON... "
                          "(blur just them) or --all (blur every face), one of them")
    if only is not None and not only:
        raise RedactError("--only needs at least one person")
    v = _video(out, video)
    dst = _check_target(v["path"], to)
    named, keeping = _people(out, list(keep if keep is not None else only)), keep is not None
    tr = _tracks(out, v["video_id"], named, keeping)
    t0 = time.perf_counter()
    timing = {"decode_s": 0.0, "detect_s": 0.0, "embed_s": 0.0, "redact_s": 0.0, "encode_s": 0.0}
    try:
        with local_file(v["path"]) as path:
            return _run(path, dst, tr, v, style, margin, every, max_side, crf, device, carry_s, keep_boxes, progress,
                        timing, t0)
    except SourceError as e:
        raise RedactError(f"{v['path']}: {e}") from None


def _run(path, dst, tr, v, style, margin, every, max_side, crf, device, carry_s, keep_boxes, progress, timing,
         t0) -> Redaction:
    import av

    from vidx.workers import decode
    from vidx.workers.retinaface import RetinaFace

    try:
        with av.open(path) as c:
            s = c.streams.video[0]
            w, h = s.codec_context.width, s.codec_context.height
            n_guess = s.frames or _frames_from_duration(s, c) or None  # for the progress bar only
    except (av.error.FFmpegError, IndexError) as e:
        raise RedactError(f"{v['path']}: cannot be read as a video ({e})") from None
    first = decode.stream_start(path)
    dw, dh = decode.scaled_size(w, h, max_side) if max_side else (w, h)
    sx, sy = w / dw, h / dh
    det = RetinaFace(device, score_threshold=DETECT_SCORE)
    res = Redaction(output=str(dst))

    # pass 1: faces on every (Nth) frame (found: frame position -> (K, 4) boxes in video pixels)
    pts_all, t_all = [], []
    bar = _Progress(n_guess, "redact: finding faces", progress, "find")

    def sampled():
        for i, (pts, ts, img) in enumerate(_frames(path, (dw, dh))):
            pts_all.append(pts)
            t_all.append(ts - first)
            bar.update(1)
            if i % every == 0:
                yield i, img

    t = time.perf_counter()
    found: dict[int, np.ndarray] = {}
    check = _Verifier(tr, det, device, carry_s, timing, res)
    scale = np.array([sx, sy, sx, sy])
    try:
        for i, img, d in _detected(det, sampled(), timing, full=True):
            found[i] = d.boxes.astype(np.float64) * scale if len(d) else np.zeros((0, 4))
            check.add(i, t_all[i], img, found[i], d, scale)
        check.flush()
    except av.error.FFmpegError as e:
        raise RedactError(f"{v['path']}: decoding stopped at frame {len(pts_all)} ({e}); redacting a damaged "
                          "file is not supported") from None
    timing["decode_s"] += time.perf_counter() - t - timing["detect_s"] - timing["embed_s"]
    bar.close()
    n = len(pts_all)
    if not n:
        raise RedactError(f"{v['path']}: no frame could be decoded")
    times = np.asarray(t_all)
    regions = _regions(found, times, tr, every, carry_s, margin, w, h, res, check.verdict)

    # pass 2: every frame again, redacted, encoded with its own timestamp; audio copied
    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    try:
        _write(path, tmp, regions, pts_all, style, crf, timing, progress, n, res)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    res.frames = n
    res.seconds = float(times[-1] + (np.median(np.diff(times)) if n > 1 else 0.0))
    res.wall_s = time.perf_counter() - t0
    res.timing = {k: round(x, 3) for k, x in timing.items()}
    if keep_boxes:
        res.boxes = {p: regions[i] for i, p in enumerate(pts_all)}
    return res


def _regions(found: dict, times: np.ndarray, tr: _Tracks, every: int, carry_s: float, margin: float, w: int, h: int,
             res: Redaction, verdict: dict[int, np.ndarray] | None = None) -> list[np.ndarray]:
    """Per frame, the regions to blur (widened, inclusive int pixels), a block of frames at a time;
    ``verdict`` (:class:`_Verifier`) overrides the boxes' attribution of the faces it checked."""
    verdict = verdict or {}
    n = len(times)
    out: list[np.ndarray] = [np.zeros((0, 4), np.int64)] * n
    det_pos = np.array(sorted(found), np.int64)
    block = 256
    for b0 in range(0, n, block):
        b1 = min(n, b0 + block)
        at = _at(tr, times[b0:b1], carry_s)  # (B, M, 4)
        # each frame takes the faces found on the detected frames within `every` of it (every=1: the
        # frame and its two neighbours, so a face the detector misses on one frame stays covered)
        reach = max(1, every)
        lo, hi = np.searchsorted(det_pos, b0 - reach), np.searchsorted(det_pos, b1 + reach)
        cand_f, cand_b, cand_own, cand_v = [], [], [], []
        for p in det_pos[lo:hi].tolist():  # a loop over detected frames near the block
            bx = found[p]
            if not len(bx):
                continue
            v = verdict.get(p, np.full(len(bx), -1, np.int8))
            for f in range(max(b0, p - reach), min(b1, p + reach + 1)):
                cand_f.append(np.full(len(bx), f - b0))
                cand_b.append(bx)
                cand_own.append(np.full(len(bx), f == p))
                cand_v.append(v)
        red_b = [[] for _ in range(b1 - b0)]
        seen_kept = [[] for _ in range(b1 - b0)]  # per frame: its own faces an embedding found kept
        if cand_f:
            cf, cb, own, cv = (np.concatenate(cand_f), np.concatenate(cand_b), np.concatenate(cand_own),
                               np.concatenate(cand_v))
            iou = _iou(cb[:, None, :], at[cf])  # (C, M): each found face against the tracks at its frame
            best = iou.argmax(1) if iou.shape[1] else np.zeros(len(cf), np.int64)
            hit = iou[np.arange(len(cf)), best] >= ATTRIBUTE_IOU if iou.shape[1] else np.zeros(len(cf), bool)
            blur = ~hit | (tr.redacted[best] if len(tr.ids) else True)
            if len(tr.ids):  # not kept before the kept track's first sample: a face there that only its box,
                # held backwards, explains may be whoever had the place before (an in-shot swap); after its
                # last sample a redacted newcomer's own held box covers the place anyway
                blur |= times[b0:b1][cf] < tr.start[best]
            blur = np.where(cv == 1, False, np.where(cv == 0, True, blur))  # an embedding's verdict decides
            for f, bx in zip(cf[own & (cv == 1)].tolist(), cb[own & (cv == 1)]):
                seen_kept[f].append(bx)
            res.faces_found += int(own.sum())
            res.unattributed += int((own & ~hit).sum())
            res.kept += int((own & ~blur).sum())
            for f, bx in zip(cf[blur].tolist(), cb[blur]):
                red_b[f].append(bx)
        red_t = at[:, tr.redacted, :] if len(tr.ids) else np.zeros((b1 - b0, 0, 4))  # redacted people's tracks
        if any(seen_kept):  # a redacted track's box held past its samples gives way to a kept person's checked face
            tb = times[b0:b1]
            held = (tb[:, None] < tr.start[tr.redacted][None]) | (tb[:, None] > tr.end[tr.redacted][None])
            red_t = red_t.copy()
            for f in (f for f in range(b1 - b0) if seen_kept[f]):
                over = (_iou(red_t[f][:, None, :], np.asarray(seen_kept[f])[None]) >= ATTRIBUTE_IOU).any(1)
                red_t[f][held[f] & over] = np.nan
        for f in range(b1 - b0):  # per frame: stack its boxes (small arrays)
            parts = [np.asarray(red_b[f]).reshape(-1, 4), red_t[f][~np.isnan(red_t[f]).any(1)]]
            g = _widen(np.concatenate(parts), margin, w, h)
            out[b0 + f] = g
            if len(g):
                res.redacted_frames += 1
                res.regions += len(g)
    return out


def _write(path: str, tmp: Path, regions: list[np.ndarray], pts_all: list[int], style: str, crf: int, timing: dict,
           progress: bool, n: int, res: Redaction) -> None:
    import av

    pos = {p: i for i, p in enumerate(pts_all)}
    with av.open(path) as i, av.open(str(tmp), "w") as o:
        iv = i.streams.video[0]
        iv.thread_type = "AUTO"
        ias = list(i.streams.audio)
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        ov = o.add_stream(codec, rate=iv.average_rate or iv.guessed_rate or 25)
        ov.width, ov.height = iv.codec_context.width, iv.codec_context.height
        ov.pix_fmt = "yuv420p" if ov.width % 2 == 0 and ov.height % 2 == 0 else "yuv444p"
        ov.time_base = iv.time_base
        ov.codec_context.time_base = iv.time_base
        if codec == "libx264":
            ov.options = {"crf": str(crf), "preset": "fast"}
        try:
            oas = {a.index: o.add_stream_from_template(a) for a in ias}
        except (ValueError, av.error.FFmpegError) as e:
            raise RedactError(f"{tmp.suffix} cannot hold this video's audio ({e}); write to a .mkv file") from None
        bar = _Progress(n, "redact: writing", progress, "write")
        t = time.perf_counter()
        for pkt in i.demux(iv, *ias):
            if pkt.stream.type == "audio":
                if pkt.dts is not None:
                    pkt.stream = oas[pkt.stream.index]  # copied untouched
                    o.mux(pkt)
                continue
            try:
                frames = pkt.decode()
            except av.error.FFmpegError:  # damage: the frames FFmpeg gives are written, as pass 1 saw them
                continue
            for f in frames:
                if f.pts is None:
                    continue
                arr = f.to_ndarray(format="rgb24")
                timing["decode_s"] += time.perf_counter() - t
                t = time.perf_counter()
                k = pos.get(int(f.pts))
                if k is not None and len(regions[k]):
                    apply(arr, regions[k], style)
                timing["redact_s"] += time.perf_counter() - t
                t = time.perf_counter()
                nf = av.VideoFrame.from_ndarray(arr, format="rgb24")
                nf.pts, nf.time_base = f.pts, f.time_base
                for p in ov.encode(nf):
                    o.mux(p)
                timing["encode_s"] += time.perf_counter() - t
                t = time.perf_counter()
                bar.update(1)
        for p in ov.encode():
            o.mux(p)
        timing["encode_s"] += time.perf_counter() - t
        bar.close()


def face_frame(out: str, track_id: str, max_side: int = 640) -> bytes:
    """A JPEG of the frame at a track's thumbnail time with the track's face box drawn: the
    review queue shows where on the frame the face is (the thumbnail is only the crop)."""
    import io

    import av
    from PIL import ImageDraw

    from vidx.indexing import people
    from vidx.workers import decode
    from vidx.workers.sources import SourceError, local_file

    identities, _ = people.load(out)
    row = identities.filter(pc.equal(identities["track_id"], track_id)).to_pylist()
    if not row:
        raise RedactError(f"no track {track_id!r}")
    row = row[0]
    v = _video(out, row["video_id"])
    tr = _tracks(out, row["video_id"], set(), True, identities)
    if track_id not in tr.ids:
        raise RedactError(f"track {track_id!r} has no detections in the index")
    t = float(row["thumbnail_t"])
    box = _at(tr, np.array([t]), 1e9)[0, tr.ids.index(track_id)]
    try:
        with local_file(v["path"]) as path:
            start = decode.stream_start(path)
            with av.open(path) as c:
                s = c.streams.video[0]
                tb = float(s.time_base)
                c.seek(int((t + start) / tb), stream=s, backward=True, any_frame=False)
                img = None
                for f in c.decode(s):
                    if f.pts is not None and f.pts * tb - start >= t - 1e-3:
                        img = f.to_image()
                        break
                    img = f.to_image()
    except (av.error.FFmpegError, OSError, SourceError) as e:
        raise RedactError(f"{v['path']} cannot be read ({e}): moved or deleted since it was indexed?") from None
    if img is None:
        raise RedactError(f"{v['path']}: no frame at {t:.2f} s")
    d = ImageDraw.Draw(img)
    wd = max(2, round(max(img.size) / 320))
    d.rectangle([float(x) for x in box], outline=(250, 204, 21), width=wd)
    img.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=85)
    return buf.getvalue()


# ---------------------------------------------------------------------------- checking a redaction


def reference_faces(path: str, score: float = 0.8, device: str = "cpu") -> dict[int, np.ndarray]:
    """Every face visible on every frame, for checking a redaction: RetinaFace at the file's full
    resolution on each frame, faces scoring ``score`` or more; frame pts -> (K, 4) boxes."""
    from vidx.workers.retinaface import RetinaFace

    det = RetinaFace(device, score_threshold=score)
    return dict(_detected(det, ((p, img) for p, _, img in _frames(path))))


def covered(faces: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Per face box (K, 4), the share of its area inside the union of ``regions`` (inclusive ints)."""
    if not len(faces):
        return np.zeros(0)
    res = np.zeros(len(faces))
    for k, (x1, y1, x2, y2) in enumerate(np.round(faces).astype(np.int64).tolist()):  # a frame's few faces
        w, h = max(1, x2 - x1 + 1), max(1, y2 - y1 + 1)
        m = np.zeros((h, w), bool)
        for a1, b1, a2, b2 in regions.tolist():
            m[max(0, b1 - y1): max(0, b2 - y1 + 1), max(0, a1 - x1): max(0, a2 - x1 + 1)] = True
        res[k] = m.mean()
    return res
