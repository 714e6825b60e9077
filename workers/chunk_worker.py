"""The per-chunk worker that runs inside Ray actors: decode -> faces -> tracks -> Parquet parts.

The batch-inference pattern: :class:`ChunkIndexer` loads the face engine once in ``__init__``;
``index_chunk`` turns a chunk description into a small result row.  The index job holds one per Ray actor (``jobs/index/pool._Worker``), two
chunks at a time.  Decoded frames never leave the actor: a decoder thread fills a bounded queue of frame pieces while
the models run on the previous piece, so memory is set by ``faces.batch_frames`` and the
queue depth, not by the video's length.  Parts are written under names of their own and
returned for the driver to commit (indexing/tables.py); a retried chunk writes new ones.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import traceback
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import torch

from vidx.indexing import schemas
from vidx.indexing.store import Store
from vidx.indexing.tables import write_part
from vidx.workers import decode
from vidx.workers.chunks import ChunkResult, ChunkTask, spans_tag
from vidx.workers.face_detector import Detections
from vidx.workers.sources import SourceError, local_file
from vidx.workers import shots
from vidx.workers.tracking import Tracker, TrackParams, face_quality, iou_matrix, top_mean

log = logging.getLogger(__name__)

QUEUE_PIECES = 2  # decoded pieces waiting for the models (bounds an actor's frame memory)
MOVED = 0.3  # a sampled frame this far (histogram distance) from the last full frame gets a full detection
CROP = 5.0  # a live track is searched for in its predicted box grown to CROP x its longer side ...
CROP_SIDE = 640  # ... scaled down to at most this many pixels a side (a face over 128 px)
CROP_MIN = 48  # ... and at least this many (decoded pixels)
GRID = 32  # RetinaFace's largest stride
NEWCOMER_IOU = 0.3  # a kept face in a crop overlapping no live track less than this starts a full search
GLIMPSE_SIDE = 320  # between full frames the whole frame is glanced at this size for newcomers


def _newcomer_glimpse(det, frame: np.ndarray, found: np.ndarray, min_score: float) -> bool:
    """Whether a quick look at the whole frame (its longer side at GLIMPSE_SIDE px: faces of about
    4 x 20 px and up) shows a confident face that no crop found: a newcomer to search for whole."""
    import cv2

    h, w = frame.shape[:2]
    s = GLIMPSE_SIDE / max(h, w)
    if s >= 0.75:  # a small frame: the crops already cover what a glimpse would see
        return False
    small = cv2.resize(frame, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    r = det.detect_raw([torch.from_numpy(small)])[0]
    boxes = r.boxes[r.scores >= min_score] / s
    if not len(boxes):
        return False
    from vidx.workers.retinaface import to_dlib_boxes

    boxes = to_dlib_boxes(boxes)
    return bool(not len(found) or (iou_matrix(np.asarray(found, np.float64).reshape(-1, 4), boxes).max(0) < NEWCOMER_IOU).any())


def _crop_detect(det, frame: np.ndarray, pred: np.ndarray):
    """Faces near predicted boxes (decoded pixels): one crop per box, searched at full resolution
    (scaled to CROP_SIDE at most), faces mapped back to the frame; a face touching a crop's
    inner edge is dropped (the crop cut it), duplicates from overlapping crops removed (NMS)."""
    import cv2

    h, w = frame.shape[:2]
    if not len(pred):
        return Detections.empty()
    c = (pred[:, :2] + pred[:, 2:]) / 2
    half = np.maximum(CROP * np.maximum(pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1]), CROP_MIN) / 2
    # on the detector's coarsest grid (32 px): the crop's anchors fall where the full frame's do
    g = GRID
    x1 = np.clip(np.floor((c[:, 0] - half) / g) * g, 0, max(0, (w - 1) // g * g)).astype(int)
    y1 = np.clip(np.floor((c[:, 1] - half) / g) * g, 0, max(0, (h - 1) // g * g)).astype(int)
    x2 = np.clip(np.ceil((c[:, 0] + half) / g) * g, x1 + 1, w).astype(int)
    y2 = np.clip(np.ceil((c[:, 1] + half) / g) * g, y1 + 1, h).astype(int)
    crops, scales = [], []
    for a, b, cc, d in zip(x1, y1, x2, y2):
        crop = frame[b:d, a:cc]
        s = min(1.0, CROP_SIDE / max(crop.shape[:2]))
        if s < 1.0:
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s))),
                              interpolation=cv2.INTER_AREA)
        crops.append(torch.from_numpy(np.ascontiguousarray(crop)))
        scales.append((crop.shape[1] / (cc - a), crop.shape[0] / (d - b)))
    boxes, scores, points = [], [], []
    for r, (a, b, cc, d), (kx, ky) in zip(det.detect_raw(crops), zip(x1, y1, x2, y2), scales):
        if not len(r.scores):
            continue
        rb = r.boxes
        edge = 2.0
        inner = ((rb[:, 0] < edge) & (a > 0)) | ((rb[:, 1] < edge) & (b > 0)) \
            | ((rb[:, 2] > (cc - a) * kx - edge) & (cc < w)) | ((rb[:, 3] > (d - b) * ky - edge) & (d < h))
        keep = ~inner
        off = np.array([a, b])
        bx = rb[keep].reshape(-1, 2, 2) / np.array([kx, ky]) + off
        boxes.append(bx.reshape(-1, 4))
        scores.append(r.scores[keep])
        points.append(r.landmarks[keep] / np.array([kx, ky]) + off)
    if not boxes or not sum(len(s) for s in scores):
        return Detections.empty()
    raw, sc, pt = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
    if len(pred) > 1:  # overlapping crops see the same face
        xywh = np.concatenate([raw[:, :2], raw[:, 2:] - raw[:, :2]], 1)
        keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), sc.tolist(), 0.0, det.nms_iou), np.int64).reshape(-1)
        keep = np.sort(keep)
        raw, sc, pt = raw[keep], sc[keep], pt[keep]
    from vidx.workers.retinaface import to_dlib_boxes

    return Detections(to_dlib_boxes(raw), sc, pt)


def _pieces(path: str, info: decode.Stream, indices: np.ndarray, times: np.ndarray, max_side: int, piece: int,
            timing: dict, lost: list[float] | None = None, threads: int = 1,
            every=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Decode in a background thread, at most QUEUE_PIECES pieces ahead of the consumer; the
    times of sampled frames that cannot be decoded go to ``lost`` (damage is read around)."""
    q: queue.Queue = queue.Queue(maxsize=QUEUE_PIECES)
    stop = threading.Event()

    def produce():
        try:
            it = decode.read_frames(path, info, indices, max_side, piece, times, lost, threads, every)
            while not stop.is_set():
                t = time.perf_counter()
                item = next(it, None)
                timing["decode_s"] += time.perf_counter() - t
                q.put(item)
                if item is None:
                    return
        except BaseException as e:  # noqa: BLE001 - forwarded to the consumer
            q.put(e)

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while th.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            th.join(timeout=0.05)


class ChunkIndexer:
    """The models, loaded once; ``index_chunk`` indexes one chunk of one video (a Ray actor's call)."""

    def __init__(self, out: str, faces: dict[str, Any], tracking: dict[str, Any], num_cpus: float = 1.0,
                 actions: dict[str, Any] | None = None):
        """actions: None (faces only) or {"model", "weights_path", "stride", "top_k"}, resolved by the driver."""
        from vidx.workers.faces import FaceEngine, Gates

        torch.set_num_threads(max(1, int(num_cpus)))
        self.threads = max(1, int(num_cpus))  # the decoder's threads: the actor's share of the CPUs
        # An actor runs two chunks at once (Ray's max_concurrency): one decodes while the other
        # holds the models, so a short chunk's decoding no longer idles the models.  The models
        # themselves run one chunk at a time (onnxruntime / OpenCV sessions are not shared safely).
        self._models = threading.Lock()
        dev = faces.get("device", "auto")
        if dev == "auto":
            dev = "cuda" if torch.cuda.is_available() else "cpu"
        self.faces = faces
        detector = faces.get("detector", "retinaface")
        embedder = faces.get("embedder", "sface")
        gates = Gates(min_score=float(faces["min_score"]) if detector == "retinaface" else 0.0,  # dlib: own threshold
                      min_size=float(faces["min_size"]), min_sharpness=float(faces["min_sharpness"]))
        # retinaface: weaker faces (down to the detector's 0.5) may continue tracks; dlib reports none
        self.extend_score = float(faces.get("extend_score", 1.0)) if detector == "retinaface" else 1.0
        # detect where faces can be, embed what identity needs (docs/benchmarks.md "Detect where faces can be"):
        # a full-frame detection every full_every-th sampled frame and at shot changes, crops
        # around the live tracks between them; embed "needed": a face one track alone overlaps
        # continues it unembedded unless the track wants it (Tracker.wants)
        cpu = torch.device(dev).type == "cpu"
        full_every = int(faces.get("full_every", 1)) or (2 if cpu else 1)  # 0: auto
        self.full_every = full_every if detector == "retinaface" else 1
        embed = faces.get("embed", "all")
        self.embed_needed = embed == "needed" or (embed == "auto" and cpu)
        self.searched = {"frames": 0, "full": 0, "redone": 0}  # sampled frames, searched whole, redone whole
        self.engine = FaceEngine(device=dev, upsample=int(faces["upsample"]), detector=detector, embedder=embedder,
                                 gates=gates)
        self.track_params = TrackParams(link_distance=tracking["link_distance"], max_gap_s=tracking["max_gap_s"],
                                        overlap_distance=tracking["overlap_distance"], metric=self.engine.space.metric,
                                        verify_distance=float(tracking.get("verify_distance")
                                                              or self.engine.space.verify_distance))
        self.actions = actions
        self.per_person = (actions or {}).get("per_person", "off")  # auto | on | off
        self.action_model = None
        if actions:
            from vidx.workers.actions import ActionModel

            self.action_model = ActionModel(actions["model"], actions["weights_path"], dev,
                                            clip_len=int(actions.get("clip_len") or 0),
                                            stride=int(actions.get("stride") or 0))
        self.store = Store(out)

    def index_chunk(self, task: ChunkTask) -> ChunkResult:
        vid, chunk = task.video_id, task.chunk
        timing = {"decode_s": 0.0, "model_s": 0.0}
        res = ChunkResult(vid, chunk, task.seconds)
        t0 = time.perf_counter()
        try:
            with local_file(task.source) as path:
                dets, segs, (windows, person), n_frames, spans, shot_rows = self._run(path, task, timing)
            damaged = spans_tag(spans)
            # new parts under names of their own; the driver commits them (a retry writes others)
            parts = {"face_detections": write_part(self.store, "face_detections", dets, vid, (chunk, chunk),
                                                   **({"damaged": damaged} if damaged else {})),
                     "track_segments": write_part(self.store, "track_segments", segs, vid, (chunk, chunk)),
                     "shots": write_part(self.store, "shots", shot_rows, vid, (chunk, chunk))}
            if windows is not None:
                parts["action_windows"] = write_part(self.store, "action_windows", windows, vid, (chunk, chunk))
            if person is not None:
                parts["person_windows"] = write_part(self.store, "person_windows", person, vid, (chunk, chunk))
            res.parts, res.damaged = parts, spans
            res.detections, res.segments, res.sampled_frames = dets.num_rows, segs.num_rows, n_frames
        except (decode.DecodeError, SourceError) as e:
            res.status, res.error = "failed", str(e)
        except Exception as e:  # noqa: BLE001 - one bad chunk must not stop the job
            log.error("chunk %s/%d failed:\n%s", vid, chunk, traceback.format_exc())
            res.status, res.error = "failed", f"internal error: {type(e).__name__}: {e}"
        res.decode_s, res.model_s, res.wall_s = timing["decode_s"], timing["model_s"], time.perf_counter() - t0
        return res

    def _run(self, path: str, task: ChunkTask, timing: dict):
        """The driver already probed the video and picked this chunk's frames (frame_idx and
        their times frame_t): the worker decodes exactly those, without probing again."""
        vid, chunk = task.video_id, task.chunk
        face_idx = np.asarray(task.frame_idx, np.int64)
        idx, times = face_idx, np.asarray(task.frame_t, np.float64)
        act = self.action_model
        if act is not None:  # one decode for both stages: the union of their frames
            act_idx = np.asarray(task.action_idx, np.int64)
            tmap = dict(zip(face_idx.tolist(), times.tolist()))
            tmap.update(zip(act_idx.tolist(), np.asarray(task.action_t, np.float64).tolist()))
            idx = np.union1d(face_idx, act_idx)
            times = np.array([tmap[i] for i in idx.tolist()])
            from vidx.workers.actions import Windows

            buf = Windows(act)
            wins = []
        info = task.stream
        w, h = decode.scaled_size(info.width, info.height, int(self.faces["max_side"]))
        sx, sy = info.width / w, info.height / h
        scale4 = np.array([sx, sy, sx, sy])
        tracker = Tracker(self.track_params)
        cols: dict[str, list] = {k: [] for k in ("frame", "t", "box", "score", "lm", "pts", "emb", "seg", "sharp", "rej",
                                                 "q")}
        n_frames = 0
        lost: list[float] = []  # sampled times the decoder could not give (damage)
        # cuts, seen on every decoded frame by the decoder's thread (workers/shots.py), and the lean
        # path's state (the last whole frame's histogram, the last sampled time, ...)
        hist_state: dict = {"shots": shots.ShotDetector(), "cut_t": -np.inf}
        pwins: list = []
        for part, frames in _pieces(path, info, idx, times, int(self.faces["max_side"]),
                                    int(self.faces["batch_frames"]), timing, lost, self.threads,
                                    every=hist_state["shots"].push):
            with self._models:  # the other chunk of this actor decodes meanwhile
                t = time.perf_counter()
                if act is not None:  # the piece's action frames wait until its faces are tracked
                    a_sel = np.flatnonzero(np.isin(part, act_idx))
                    a_frames, a_times = frames[a_sel], times[np.searchsorted(idx, part[a_sel])]
                    f_sel = np.flatnonzero(np.isin(part, face_idx))
                    part, frames = part[f_sel], frames[f_sel]
                if len(part):
                    self._faces(part, frames, idx, times, tracker, cols, scale4, sx, sy, info, hist_state)
                    n_frames += len(part)
                if act is not None and len(a_frames):
                    for run in buf.push(a_frames, a_times.tolist()):
                        self._actions(run, tracker, wins, pwins, 1 / scale4)
                timing["model_s"] += time.perf_counter() - t
        if self.full_every > 1 or self.embed_needed:
            log.debug("chunk %s/%d: this actor's sampled frames so far, searched whole by the schedule, "
                      "searched whole for newcomers: %s", vid, chunk, self.searched)
        if self.embed_needed:
            with self._models:
                self._check_pending(tracker)
        if act is not None:  # the chunk's frames after its last whole window (or a chunk shorter than one)
            t = time.perf_counter()
            for run in buf.last():
                self._actions(run, tracker, wins, pwins, 1 / scale4)
            timing["model_s"] += time.perf_counter() - t
        return self._tables(vid, chunk, cols, tracker, wins if act is not None else None,
                            pwins if act is not None else None, n_frames, lost, times,
                            (task.start_s, task.end_s, hist_state["shots"].cuts))

    def _actions(self, run, tracker: Tracker, wins: list, pwins: list, to_decoded: np.ndarray) -> None:
        """Classify one run of windows (:class:`vidx.workers.actions.Windows`): the frame's, then each
        person's."""
        clip, clip_t, stride, L = run
        wins.append(self.action_model.classify_frames(clip, clip_t, stride, int(self.actions["top_k"]), length=L))
        if self.per_person != "off":
            pwins.append(self._person_windows(clip, clip_t, stride, tracker, wins[-1], to_decoded, length=L))

    def _faces(self, part, frames, idx, times, tracker, cols, scale4, sx, sy, info, hist_state) -> None:
        """Detect, embed and track the faces of one piece of sampled frames."""
        if self.full_every > 1 or self.embed_needed:
            return self._faces_lean(part, frames, idx, times, tracker, cols, scale4, sx, sy, info, hist_state)
        faces = self.engine(torch.from_numpy(np.ascontiguousarray(frames)))
        boxes, lms, pts, q, weak = self._measure(faces, scale4, sx, sy, info)
        kept = faces.kept
        ts_all = times[np.searchsorted(idx, part)]
        cut = self._cuts(ts_all, hist_state)
        base = sum(len(x) for x in cols["seg"])  # the face rows so far (a split moves rows by number)
        for j in range(len(part)):  # tracker: per sampled frame, vectorised inside
            if cut[j]:
                tracker.cut()
            on = faces.image_index == j
            sel = np.flatnonzero(on & kept)  # rejected faces are recorded, not tracked...
            wk = np.flatnonzero(on & weak)  # ...but a weaker one may continue a track it overlaps
            ts = float(times[np.searchsorted(idx, part[j])])
            on_ix, first = np.flatnonzero(on), base + int((faces.image_index < j).sum())  # rows: per frame, in order
            rel = lambda ix: first + np.searchsorted(on_ix, ix)  # noqa: E731
            k, kw = tracker.update(ts, frames[j], boxes[sel], faces.embeddings[sel], q[sel], (1 / sx, 1 / sy),
                                   weak=boxes[wk], rows=rel(sel), weak_rows=rel(wk),
                                   weak_embs=self._weak_embs(frames[j], faces.boxes[wk], faces.scores[wk],
                                                             faces.points[wk]))
            seg = np.full(int(on.sum()), -1, np.int64)
            seg[kept[on]] = k
            seg[weak[on]] = kw
            cols["frame"].append(np.full(len(seg), part[j]))
            cols["t"].append(np.full(len(seg), ts))
            cols["seg"].append(seg)
        order = np.argsort(faces.image_index, kind="stable")  # per frame, as frame/t/seg above
        cols["box"].append(boxes[order])
        cols["score"].append(faces.scores[order])
        cols["lm"].append(lms.reshape(-1, 10)[order])
        cols["pts"].append(pts.reshape(-1, 10)[order])
        cols["emb"].append(faces.embeddings[order])
        cols["sharp"].append(faces.sharpness[order])  # the engine has gates here: both columns are set
        cols["rej"].append(faces.rejected[order])
        cols["q"].append(q[order])

    @staticmethod
    def _cuts(ts: np.ndarray, hist_state: dict) -> np.ndarray:
        """Whether a cut (seen on any decoded frame) lies between each sampled time and the one before."""
        out = np.zeros(len(ts), bool)
        det = hist_state["shots"]
        for j, t in enumerate(ts.tolist()):
            out[j] = bool(det.between(hist_state["cut_t"], t))
            hist_state["cut_t"] = t
        return out

    def _switch(self, tracker: Tracker, tr, newcomer: np.ndarray) -> int:
        """Track ``tr``'s face has become someone else's (``newcomer``, the face at hand): its faces
        continued unembedded since its last check are embedded now (one batch) and the track is split
        at the first that is nearer the newcomer than the track's own faces (those from there on go to
        a new track, which the face at hand continues), or closed when none is (the face at hand then
        starts or joins another).  Returns the track the face at hand continues, or -1."""
        pend = tr.pending
        embs = self.engine.embed(np.stack([c for _, c in pend])) if pend else np.zeros((0, 0))
        if pend:
            sp = self.engine.space
            other = sp.pairwise(embs, newcomer[None])[:, 0] < sp.pairwise(embs, tr.mean()[None])[:, 0]
        else:
            other = np.zeros(0, bool)
        at = int(np.argmax(other)) if other.any() else len(pend)
        k = tracker.split(tr.k, at, embs if pend else None)
        return -1 if k is None else k

    def _weak_embs(self, frame: np.ndarray, boxes: np.ndarray, scores: np.ndarray, points) -> np.ndarray:
        """Embeddings of weak faces (under the score gate), so that one does not continue a track of
        someone else (NaN where the chip is too blurred to tell: overlap decides, as before)."""
        if not len(boxes):
            return np.zeros((0, self.engine.embedder.dim), np.float32)
        f = self.engine.describe(torch.from_numpy(frame[None]), np.zeros(len(boxes), np.int64), boxes,
                                 np.ones(len(boxes)), points=points)
        return f.embeddings

    def _check_pending(self, tracker: Tracker) -> None:
        """A track's end is checked like its middle: faces still unembedded when the chunk ends are
        embedded and the track split where they stop being its person."""
        for tr in list(tracker.tracks):
            if not tr.pending:
                continue
            embs = self.engine.embed(np.stack([c for _, c in tr.pending]))
            far = tracker.far(tr, embs, np.array([tr.log[pos][3] for pos, _ in tr.pending]))
            if far.any():
                tracker.split(tr.k, int(np.argmax(far)), embs)
            else:
                tr.pending = []

    def _measure(self, faces, scale4, sx, sy, info):
        """Video-pixel boxes, landmarks and points, each face's quality, and the weak faces (a
        score under the gate but at least extend_score, big enough) that may continue a track."""
        boxes = faces.boxes * scale4
        lms = faces.landmarks * np.array([sx, sy])
        pts = faces.points * np.array([sx, sy])
        q = face_quality(boxes, faces.scores, faces.sharpness, pts, lms, (info.width, info.height))
        if faces.rejected is None:
            return boxes, lms, pts, q, np.zeros(len(faces), bool)
        side = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 1
        weak = (faces.rejected == "score") & (faces.scores >= self.extend_score) & (side >= float(self.faces["min_size"]))
        return boxes, lms, pts, q, weak

    def _faces_lean(self, part, frames, idx, times, tracker, cols, scale4, sx, sy, info, hist_state) -> None:
        """The same, detecting where faces can be and embedding what identity needs.

        Full frames (batched): the chunk's first sampled frame, the first after frames the
        decoder lost, every ``full_every``-th on vidx's clock (sampled frame number = round(t x
        sample_fps), so damage or chunking does not shift the schedule), a shot change, a picture
        that moved from the last full frame (histogram distance >= MOVED).  The others: each live
        track's predicted box, and each face of the frame before (a weak one starts no track but may
        be a face growing clearer), grown to a crop (CROP x its side) on the detector's grid,
        searched at full resolution (at most CROP_SIDE px), its faces mapped back; a kept face there
        that no live track overlaps (a newcomer) has the frame searched whole after all, so tracks
        start only on what the full frame sees.  Then frame by frame: gates, quality, the faces the
        tracker needs embedded (``embed: needed``), the tracker."""
        hists = shots.colour_histograms(frames)
        fps = float(self.faces["sample_fps"])
        ts_all = times[np.searchsorted(idx, part)]
        cut = self._cuts(ts_all, hist_state)
        full = np.zeros(len(part), bool)
        gap = np.zeros(len(part), bool)  # frames lost before this one: no track goes on unembedded across them
        for j in range(len(part)):  # the schedule needs no model: full frames run as one batch
            ref, prev = hist_state.get("ref"), hist_state.get("prev_t")
            moved = ref is not None and shots.histogram_distance(hists[j], ref) >= MOVED
            gap[j] = prev is None or ts_all[j] - prev > 1.5 / fps
            if gap[j] or cut[j] or moved or round(ts_all[j] * fps) % self.full_every == 0:
                full[j], hist_state["ref"] = True, hists[j]
            hist_state["prev_t"] = ts_all[j]
        self.searched["frames"] += len(part)
        self.searched["full"] += int(full.sum())
        det = self.engine.detector
        full_dets = iter(det.detect(torch.from_numpy(np.ascontiguousarray(frames[full]))) if full.any() else [])
        to_dec = 1 / scale4
        min_score = float(self.faces["min_score"])
        for j in range(len(part)):
            ts = float(ts_all[j])
            if cut[j]:
                tracker.cut()
            frame = frames[j]
            if full[j]:
                d = next(full_dets)
            else:  # where faces can be: live tracks, and any face the last frame had (a weak one starts none)
                pred = tracker.predict(ts) * to_dec
                seeds = hist_state.get("seeds", np.zeros((0, 4)))
                if len(pred) and len(seeds):
                    seeds = seeds[iou_matrix(pred, seeds).max(0) < 0.3]
                d = _crop_detect(det, frame, np.concatenate([pred, seeds]))
            f = self.engine.describe(torch.from_numpy(frame[None]), np.zeros(len(d), np.int64), d.boxes, d.scores,
                                     points=d.points, embed=False)
            if not full[j] and ((tracker.overlap(ts, f.boxes[f.kept] * scale4) < NEWCOMER_IOU).any()
                                or _newcomer_glimpse(det, frame, d.boxes, min_score)):
                # a crop's face that would start a track: this frame is searched whole after all, so a
                # track starts only on what the full frame sees (a crop's context changes small faces' scores)
                d = det.detect(torch.from_numpy(frame[None]))[0]
                f = self.engine.describe(torch.from_numpy(frame[None]), np.zeros(len(d), np.int64), d.boxes,
                                         d.scores, points=d.points, embed=False)
                self.searched["redone"] += 1
            hist_state["seeds"] = d.boxes
            boxes, lms, pts, q, weak = self._measure(f, scale4, sx, sy, info)
            sel, wk = np.flatnonzero(f.kept), np.flatnonzero(weak)
            emb = f.embeddings
            follow = None
            rows = sum(len(x) for x in cols["seg"]) + np.arange(len(f))
            if self.embed_needed:
                claim = tracker.claims(ts, boxes[sel])
                need = tracker.wants(ts, claim, q[sel]) | gap[j]  # after lost frames every face is embedded
                follow = np.where(need, -1, claim)
                # a face linked by embedding is compared with each track's latest face, as when every
                # face is embedded: tracks whose latest face went unembedded embed its kept chip now
                stale = [tr for tr in tracker.live(ts) if tr.last_chip is not None] if (follow < 0).any() else []
                e = self.engine.embed(np.concatenate([f.chips[sel[need]], *[tr.last_chip[None] for tr in stale]]))
                emb[sel[need]] = e[: int(need.sum())]
                for tr, v in zip(stale, e[int(need.sum()):]):
                    tr.last_emb, tr.last_chip = v, None
                # the check: an embedded face that its track claims on overlap must be that track's person
                for i in np.flatnonzero(need & (claim >= 0)):
                    tr = tracker.track(int(claim[i]))
                    if tracker.far(tr, emb[sel[i]], q[sel[i : i + 1]])[0]:
                        follow[i] = self._switch(tracker, tr, emb[sel[i]])
            else:
                emb[sel] = self.engine.embed(f.chips[sel])
            k, kw = tracker.update(ts, frame, boxes[sel], emb[sel], q[sel], (1 / sx, 1 / sy), weak=boxes[wk],
                                   follow=follow, chips=None if follow is None else f.chips[sel],
                                   rows=rows[sel], weak_rows=rows[wk],
                                   weak_embs=self._weak_embs(frame, f.boxes[wk], f.scores[wk], f.points[wk]))
            seg = np.full(len(f), -1, np.int64)
            seg[sel], seg[wk] = k, kw
            cols["frame"].append(np.full(len(f), part[j]))
            cols["t"].append(np.full(len(f), ts))
            cols["seg"].append(seg)
            cols["box"].append(boxes)
            cols["score"].append(f.scores)
            cols["lm"].append(lms.reshape(-1, 10))
            cols["pts"].append(pts.reshape(-1, 10))
            cols["emb"].append(emb)
            cols["sharp"].append(f.sharpness)
            cols["rej"].append(f.rejected)
            cols["q"].append(q)

    def _tables(self, vid, chunk, cols, tracker, wins, pwins, n_frames, lost, times, shot_span):
        cat = {k: np.concatenate(v) if v else None for k, v in cols.items()}
        n = 0 if cat["t"] is None else len(cat["t"])
        if tracker.moved:  # faces a split moved to a new track
            rows = np.fromiter(tracker.moved.keys(), np.int64)
            cat["seg"][rows] = np.fromiter(tracker.moved.values(), np.int64)
        seg_id = lambda k: f"{vid}-{chunk:05d}-{int(k):04d}"  # noqa: E731
        if n:
            order_box = cat["box"]
            rej = cat["rej"]
            # null: a rejected face, or (embed: needed) one that continued its track unembedded
            emb = pa.FixedSizeListArray.from_arrays(np.nan_to_num(cat["emb"].astype(np.float32)).ravel(),
                                                    schemas.EMBED_DIM,
                                                    mask=pa.array((rej != "") | np.isnan(cat["emb"]).any(1)))
            dets = pa.table({
                "video_id": [vid] * n, "chunk": np.full(n, chunk, np.int32), "frame": cat["frame"].astype(np.int64),
                "t": cat["t"], "x1": order_box[:, 0].astype(np.float32), "y1": order_box[:, 1].astype(np.float32),
                "x2": order_box[:, 2].astype(np.float32), "y2": order_box[:, 3].astype(np.float32),
                "score": cat["score"].astype(np.float32),
                "landmarks": pa.FixedSizeListArray.from_arrays(np.nan_to_num(cat["lm"].astype(np.float32)).ravel(), 10,
                                                               mask=pa.array(np.isnan(cat["lm"]).any(1))),
                "points": pa.FixedSizeListArray.from_arrays(np.nan_to_num(cat["pts"].astype(np.float32)).ravel(), 10,
                                                            mask=pa.array(np.isnan(cat["pts"]).any(1))),
                "embedding": emb,
                "segment_id": [seg_id(k) if k >= 0 else None for k in cat["seg"]],
                "sharpness": pa.array(cat["sharp"].astype(np.float32), from_pandas=True),  # NaN -> null
                "rejected": [r or None for r in rej],
                "quality": pa.array(cat["q"].astype(np.float32), mask=np.asarray(rej != "", bool)),
            }, schema=schemas.FACE_DETECTIONS)
        else:
            dets = schemas.FACE_DETECTIONS.empty_table()
        trs = tracker.tracks
        if trs:
            f32 = lambda a, d: pa.FixedSizeListArray.from_arrays(np.asarray(a, np.float32).ravel(), d)  # noqa: E731
            segs = pa.table({
                "segment_id": [seg_id(tr.k) for tr in trs], "video_id": [vid] * len(trs),
                "chunk": np.full(len(trs), chunk, np.int32),
                "start_s": [tr.start for tr in trs], "end_s": [tr.end for tr in trs],
                "detections": np.array([tr.n for tr in trs], np.int32),
                "weight": np.array([tr.weight for tr in trs], np.float32),
                "embedding": f32([tr.emb_sum / tr.weight for tr in trs], schemas.EMBED_DIM),
                "first_box": f32([tr.first_box for tr in trs], 4), "last_box": f32([tr.last_box for tr in trs], 4),
                "first_embedding": f32([tr.first_emb for tr in trs], schemas.EMBED_DIM),
                "last_embedding": f32([tr.last_emb for tr in trs], schemas.EMBED_DIM),
                "best_quality": np.array([tr.best_q for tr in trs], np.float32),
                "quality": np.array([top_mean(tr.qs) for tr in trs], np.float32),
                "thumbnail": [tr.thumb for tr in trs], "thumbnail_t": [tr.thumb_t for tr in trs],
            }, schema=schemas.TRACK_SEGMENTS)
        else:
            segs = schemas.TRACK_SEGMENTS.empty_table()
        windows = person = None
        act = self.action_model
        if wins is not None:
            starts = np.concatenate([w.start for w in wins]) if wins else np.zeros(0)
            windows = pa.table({
                "video_id": [vid] * len(starts), "chunk": np.full(len(starts), chunk, np.int32),
                "start_s": starts, "end_s": np.concatenate([w.end for w in wins]) if wins else np.zeros(0),
                "label_ids": [row.tolist() for w in wins for row in w.labels.astype(np.int32)],
                "scores": [row.tolist() for w in wins for row in w.scores.astype(np.float32)],
                "model": [act.name] * len(starts),
            }, schema=schemas.ACTION_WINDOWS)
            if self.per_person != "off":
                rows = [r for pw in (pwins or []) for r in pw]
                person = pa.table({
                    "segment_id": [seg_id(r[0]) for r in rows], "video_id": [vid] * len(rows),
                    "chunk": np.full(len(rows), chunk, np.int32), "start_s": [r[1] for r in rows],
                    "end_s": [r[2] for r in rows], "label_ids": [r[3] for r in rows], "scores": [r[4] for r in rows],
                    "model": [act.name] * len(rows), "source": [r[5] for r in rows],
                }, schema=schemas.PERSON_WINDOWS)
        if lost and not n_frames:
            raise decode.DecodeError("no sampled frame of this chunk could be decoded")
        start, end, cuts = shot_span
        bounds = [start, *[t for t, _ in cuts if start < t < end], end]
        scores = [None, *[sc for t, sc in cuts if start < t < end]]
        shot_rows = pa.table({"video_id": [vid] * len(scores), "chunk": np.full(len(scores), chunk, np.int32),
                              "shot": np.arange(len(scores), dtype=np.int32), "start_s": bounds[:-1],
                              "end_s": bounds[1:], "score": pa.array(scores, pa.float32())}, schema=schemas.SHOTS)
        return dets, segs, (windows, person), n_frames, decode.lost_spans(lost, times), shot_rows

    def _person_windows(self, clip: np.ndarray, clip_t: np.ndarray, stride: int, tracker: Tracker, scene,
                        to_decoded: np.ndarray, length: int | None = None) -> list[tuple]:
        """(track number, start, end, top labels, top scores, source) per person per window of
        ``clip``: the person's own tube classified (``per_person`` on, or auto with two or more
        faces on screen), or the scene's window when the person is alone (auto)."""
        from vidx.workers import tubes

        act = self.action_model
        L, k = length or act.clip_len, int(self.actions["top_k"])
        gap = 1.0 / float(self.faces["sample_fps"])
        starts = list(range(0, len(clip) - L + 1, stride))
        h, w = clip.shape[1:3]
        jobs, out = [], []  # (window, track, regions)
        for wi, s0 in enumerate(starts):
            t0, t1 = clip_t[s0], clip_t[s0 + L - 1]
            here = [tr for tr in tracker.tracks if tr.hist_t and tr.hist_t[-1] >= t0 - gap and tr.hist_t[0] <= t1 + gap
                    and any(t0 - gap <= x <= t1 + gap for x in tr.hist_t)]
            crop = self.per_person == "on" or len(here) >= 2
            for tr in here:
                if not crop:  # alone on screen: what the frame does, the person does
                    out.append((tr.k, float(scene.start[wi]), float(scene.end[wi]), scene.labels[wi].astype(int).tolist(),
                                scene.scores[wi].astype(float).tolist(), "scene"))
                    continue
                face = tubes.boxes_at(clip_t[s0 : s0 + L], np.asarray(tr.hist_t), np.asarray(tr.hist_b)) * to_decoded
                jobs.append((wi, tr.k, tubes.body_regions(face, w, h), s0))
        if jobs:
            side = int(max(act.transforms.resize_size))
            fi = np.concatenate([np.arange(s0, s0 + L) for *_, s0 in jobs])
            regions = np.concatenate([r for _, _, r, _ in jobs])
            cuts = tubes.crops(clip, fi, regions, side).reshape(len(jobs), L, side, side, 3)
            p = act.scores(cuts)
            top = torch.topk(p, min(k, p.shape[1]), dim=1)
            for (wi, tk, _, _), lab, sc in zip(jobs, top.indices.numpy(), top.values.numpy()):
                out.append((tk, float(scene.start[wi]), float(scene.end[wi]), lab.astype(int).tolist(),
                            sc.astype(float).tolist(), "crop"))
        return out
