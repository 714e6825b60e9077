"""Shot changes: a hard cut ends every open face track.

Two people filmed in the same place across a cut must not share a track, so the tracker is told
where the picture changes as a whole.  :class:`ShotDetector` looks at **every frame the decoder
decodes** on the way to the sampled frames, not only at the sampled ones: the sampled frames and
every frame they are predicted from (the reference frames; non-reference B-frames are skipped, as
the sparse reader always did), so a cut is seen by the first sampled frame after it at the latest,
and its time is known within the few frames between reference frames.  Each frame is reduced to a
thumbnail (about 128 px wide) straight from its YUV planes, and the thumbnails go through
PySceneDetect's ``ContentDetector`` (mean change of hue, saturation and value between consecutive
frames; cut at 27, PySceneDetect's default) in its ``SUPPRESS`` mode, so a cut is known when its
frame is decoded.  On thumbnails its scores follow full-size frames' (r 0.999 on the film clip,
whose PySceneDetect goldens, cuts at 3.75 s and 8.76 s, it finds).  Measured with
``bench/calibrate_cuts.py`` on what the index decodes: the 22 true cuts of the shared film clip and
the cuts set (``bench/make_cuts.py``: colour-matched, the next face where the last one was) score
30.2 or more; no frame inside a shot of the shared clips scores over 26.8 (a player walking into
the lens at the end of the basketball clip).  A false cut only splits a track, which people
clustering joins again; a missed one can put two people in one track.

The colour histograms below still decide which sampled frames the lean face path searches whole
(a picture that moved); they no longer decide cuts.
"""

from __future__ import annotations

import numpy as np

LEVELS = 8  # per channel: 512 colour bins
STEP = 4  # every 4th pixel of every 4th row
CUT_DISTANCE = 0.5
THRESHOLD = 27.0  # ContentDetector's score for a cut (PySceneDetect's default; see the module doc)
MIN_SHOT_S = 0.15  # a cut this soon after the last one is not another (a flash); shorter than any shot that can hold a track
THUMB_WIDTH = 128


def thumbnail(frame) -> np.ndarray:
    """A small BGR picture of a decoded frame (a PyAV ``VideoFrame``, or an RGB array): for 4:2:0
    YUV straight from its planes (every k-th pixel), otherwise by FFmpeg's scaler / striding."""
    import cv2

    if isinstance(frame, np.ndarray):
        k = max(1, frame.shape[1] // THUMB_WIDTH)
        return np.ascontiguousarray(frame[::k, ::k, ::-1])
    if frame.format.name in ("yuv420p", "yuvj420p"):
        # luma every k-th pixel and chroma (half resolution) every k-th: a small 4:2:0 picture,
        # converted as FFmpeg converts video (limited range, BT.601), so scores match full frames'
        k = max(1, frame.width // THUMB_WIDTH)
        p = frame.planes
        y = np.frombuffer(p[0], np.uint8).reshape(-1, p[0].line_size)[: frame.height : k, : frame.width : k]
        h, w = y.shape[0] & ~1, y.shape[1] & ~1
        uv = []
        for q in p[1:3]:
            c = np.frombuffer(q, np.uint8).reshape(-1, q.line_size)[: (frame.height + 1) // 2 : k, : (frame.width + 1) // 2 : k]
            if c.shape[0] < h // 2 or c.shape[1] < w // 2:  # only at odd sizes
                c = np.pad(c, ((0, max(0, h // 2 - c.shape[0])), (0, max(0, w // 2 - c.shape[1]))), mode="edge")
            uv.append(c[: h // 2, : w // 2].ravel())
        i420 = np.concatenate([y[:h, :w].ravel(), *uv]).reshape(h * 3 // 2, w)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    w = min(THUMB_WIDTH, frame.width)
    return frame.reformat(width=w, height=max(2, round(frame.height * w / frame.width)), format="bgr24").to_ndarray()


class ShotDetector:
    """Cuts among the frames of one chunk, fed in decoding order by :meth:`push` (times on vidx's
    clock).  ``cuts``: (time of the cut's first frame, its score), in order; safe to read from
    another thread while frames are pushed (list appends)."""

    def __init__(self, threshold: float = THRESHOLD, min_shot_s: float = MIN_SHOT_S, keep_scores: bool = False):
        from scenedetect.detector import FlashFilter
        from scenedetect.detectors import ContentDetector

        self._det = ContentDetector(threshold=threshold, min_scene_len=float(min_shot_s),
                                    filter_mode=FlashFilter.Mode.SUPPRESS)
        self.cuts: list[tuple[float, float]] = []
        self.scores: list[tuple[float, float]] = [] if keep_scores else None  # every frame's (t, score)

    def push(self, t: float, frame) -> None:
        from scenedetect.common import FrameTimecode

        img = thumbnail(frame)
        # the detector counts time from the timecodes it is given: vidx's seconds, at a nominal 1000 fps
        if self._det.process_frame(FrameTimecode(int(round(t * 1000)), fps=1000.0), img):
            self.cuts.append((float(t), float(self._det._frame_score or 0.0)))
        if self.scores is not None:
            self.scores.append((float(t), float(self._det._frame_score or 0.0)))

    def between(self, after: float, upto: float) -> list[tuple[float, float]]:
        """The cuts with after < time <= upto."""
        return [c for c in list(self.cuts) if after < c[0] <= upto + 1e-6]


def colour_histograms(frames: np.ndarray) -> np.ndarray:
    """(N, 512) normalised colour histograms of (N, H, W, 3) uint8 RGB frames, in one bincount."""
    frames = np.asarray(frames)
    n = len(frames)
    if n == 0:
        return np.zeros((0, LEVELS ** 3), np.float32)
    sub = (frames[:, ::STEP, ::STEP] >> 5).astype(np.int32)  # 0..7
    idx = (sub[..., 0] << 6) | (sub[..., 1] << 3) | sub[..., 2]
    flat = idx.reshape(n, -1) + (np.arange(n) * LEVELS ** 3)[:, None]
    h = np.bincount(flat.ravel(), minlength=n * LEVELS ** 3).reshape(n, -1).astype(np.float32)
    return h / np.maximum(h.sum(1, keepdims=True), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Half the L1 distance between histograms (rows), in [0, 1]."""
    return 0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum(-1)


def cut_scores(hists: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Distance of each sampled frame to the one before it (the first compares with ``previous``,
    the last frame of the previous piece; 0 when there is none)."""
    if len(hists) == 0:
        return np.zeros(0)
    prev = np.concatenate([hists[:1] if previous is None else previous[None], hists[:-1]])
    return histogram_distance(hists, prev)
