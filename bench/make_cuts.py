"""Build the identity hard cases from the shared clips: hard cuts and in-shot face swaps.

    python bench/make_cuts.py [OUT] [--data ../shared/data]

Writes OUT/videos/*.mp4 (default OUT: out/cuts, ignored by git: the shared media never enter the
repository) and OUT/truth.csv, the truth for ``vidx eval`` derived from tests/truth/shared_clips.csv
by shifting times.  Three kinds of clip, each one H.264 stream:

* ``cut_*``: clip A for SEG seconds, then clip B (a different person) for SEG seconds, joined at a
  hard cut made as hard as real footage makes it: B is colour-matched to A's last frame (per-channel
  histogram matching, one lookup table for all of B, as ``skimage.exposure.match_histograms`` does
  for one frame) and scaled and shifted so that B's face lands where A's last face was.  Joined
  plainly, today's histogram test sees most of these cuts; matched, it does not.
* ``swap_*``: clip A throughout, but from SEG seconds on, A's face region is replaced by B's face
  (colour-matched, scaled onto A's face box, feathered edges): one person becomes another inside one
  shot, with no cut anywhere (the rest of the frame keeps moving as A's clip).
* ``cross_*``: a crossing: two faces (crops of two real clips) move across a still background in
  opposite directions, one passing in front of the other at mid-clip.

Every ordered pair of different people is made at two frame rates and sizes (``VARIANTS``), so each
cut and swap exists in both orders.  The faces are placed with vidx's own detector (RetinaFace) on
the frames where they are joined.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
SEG = 3.5  # seconds of each side
# (file, truth name): the shared clips that show one named or labelled person for their whole length
CLIPS = [("hk_biden.mp4", "Joe Biden"), ("hk_obama.mp4", "Barack Obama"), ("shd_obama.mp4", "Barack Obama"),
         ("mma_tests_test.avi", "eye_makeup_woman")]
SHORT = {"hk_biden.mp4": "biden", "hk_obama.mp4": "obama", "shd_obama.mp4": "obama2", "mma_tests_test.avi": "makeup"}
VARIANTS = [((640, 360), 25), ((854, 480), 30)]
CROSS_S = 6.0


def _read(path: Path, w: int, h: int, fps: float, seconds: float, start: float = 0.0) -> np.ndarray:
    """Frames of ``path`` at ``fps`` from ``start`` for ``seconds`` (nearest earlier source frame),
    scaled to cover w x h and centre-cropped (aspect kept)."""
    import av
    import cv2

    src_t, src_f = [], []
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        t0 = None
        for fr in c.decode(s):
            t = float(fr.pts * s.time_base)
            t0 = t if t0 is None else t0
            if t - t0 > start + seconds + 0.5:
                break
            src_t.append(t - t0)
            src_f.append(fr.to_ndarray(format="rgb24"))
    src_t = np.asarray(src_t)
    want = start + np.arange(int(round(seconds * fps))) / fps
    pick = np.clip(np.searchsorted(src_t, want + 1e-6) - 1, 0, len(src_f) - 1)
    out = []
    for i in pick:
        f = src_f[i]
        k = max(w / f.shape[1], h / f.shape[0])
        r = cv2.resize(f, (max(w, round(f.shape[1] * k)), max(h, round(f.shape[0] * k))), interpolation=cv2.INTER_AREA)
        y, x = (r.shape[0] - h) // 2, (r.shape[1] - w) // 2
        out.append(r[y : y + h, x : x + w])
    return np.stack(out)


def _face(engine, frame: np.ndarray) -> np.ndarray:
    """The largest face's box [x1, y1, x2, y2] in ``frame``."""
    import torch

    d = engine.detector.detect(torch.from_numpy(np.ascontiguousarray(frame[None])))[0]
    if not len(d):
        raise SystemExit("no face found where one was expected")
    b = d.boxes[np.argmax((d.boxes[:, 2] - d.boxes[:, 0]) * (d.boxes[:, 3] - d.boxes[:, 1]))]
    return np.asarray(b, np.float64)


def _match_lut(src: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """(3, 256) lookup tables mapping src's per-channel histograms onto ref's (histogram matching)."""
    lut = np.zeros((3, 256), np.uint8)
    for c in range(3):
        s_cdf = np.cumsum(np.bincount(src[..., c].ravel(), minlength=256)) / src[..., c].size
        r_cdf = np.cumsum(np.bincount(ref[..., c].ravel(), minlength=256)) / ref[..., c].size
        lut[c] = np.clip(np.searchsorted(r_cdf, s_cdf), 0, 255)
    return lut


def _apply(lut: np.ndarray, frames: np.ndarray) -> np.ndarray:
    out = np.empty_like(frames)
    for c in range(3):
        out[..., c] = lut[c][frames[..., c]]
    return out


def _align(frames: np.ndarray, box_from: np.ndarray, box_to: np.ndarray) -> np.ndarray:
    """Scale and shift frames so that box_from lands on box_to (edges replicated)."""
    import cv2

    k = (box_to[2] - box_to[0]) / max(box_from[2] - box_from[0], 1.0)
    cf, ct = (box_from[:2] + box_from[2:]) / 2, (box_to[:2] + box_to[2:]) / 2
    m = np.array([[k, 0, ct[0] - k * cf[0]], [0, k, ct[1] - k * cf[1]]], np.float64)
    h, w = frames.shape[1:3]
    return np.stack([cv2.warpAffine(f, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                     for f in frames])


def _feather(h: int, w: int, box: np.ndarray, grow: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """A soft elliptical mask over ``box`` grown by ``grow`` (and the box it covers)."""
    import cv2

    c, half = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]) / 2 * grow
    m = np.zeros((h, w), np.float32)
    cv2.ellipse(m, (int(c[0]), int(c[1])), (int(half[0]), int(half[1] * 1.15)), 0, 0, 360, 1.0, -1)
    k = max(3, int(half.min() * 0.4) | 1)
    return cv2.GaussianBlur(m, (k, k), 0)[..., None], np.r_[c - half, c + half]


def _write(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "20", "preset": "veryfast"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def build(out: Path, data: Path) -> list[dict]:
    from vidx.workers.faces import FaceEngine

    engine = FaceEngine(device="cpu", detector="retinaface", embedder="sface")
    vids = data / "videos"
    for f, _ in CLIPS:
        if not (vids / f).is_file():
            raise SystemExit(f"{vids / f} is missing (the shared test media)")
    truth: list[dict] = []
    pairs = [(a, b) for a, b in itertools.permutations(CLIPS, 2) if a[1] != b[1]]
    for ((w, h), fps), ((fa, na), (fb, nb)) in itertools.product(VARIANTS, pairs):
        tag = f"{SHORT[fa]}_{SHORT[fb]}_{w}x{h}_{fps}"
        a = _read(vids / fa, w, h, fps, SEG)
        b = _read(vids / fb, w, h, fps, SEG)
        box_a, box_b = _face(engine, a[-1]), _face(engine, b[0])
        cut_s = len(a) / fps
        # a hard cut: B colour-matched to A's last frame and its face moved onto A's last face
        b_cut = _apply(_match_lut(b[0], a[-1]), _align(b, box_b, box_a))
        name = f"cut_{tag}.mp4"
        _write(out / "videos" / name, np.concatenate([a, b_cut]), fps)
        end = (len(a) + len(b)) / fps
        truth += [dict(video=name, person=na, start_s=0.0, end_s=round(cut_s, 3)),
                  dict(video=name, person=nb, start_s=round(cut_s, 3), end_s=round(end, 3))]
        # a swap inside one shot: A continues, its face replaced by B's from SEG seconds on
        a2 = _read(vids / fa, w, h, fps, SEG, start=SEG) if _duration(vids / fa) >= 2 * SEG - 0.05 else a[::-1]
        box_a2 = _face(engine, a2[0])
        b_in = _apply(_match_lut(b[0], a2[0]), _align(b, box_b, box_a2)).astype(np.float32)
        mask, _ = _feather(h, w, box_a2)
        swapped = (a2 * (1 - mask) + b_in * mask).round().clip(0, 255).astype(np.uint8)
        name = f"swap_{tag}.mp4"
        _write(out / "videos" / name, np.concatenate([a, swapped]), fps)
        truth += [dict(video=name, person=na, start_s=0.0, end_s=round(cut_s, 3)),
                  dict(video=name, person=nb, start_s=round(cut_s, 3), end_s=round(end, 3))]
    truth += _crossings(out, vids, engine)
    with open(out / "truth.csv", "w", newline="") as f:
        f.write("# Derived by bench/make_cuts.py from tests/truth/shared_clips.csv (times shifted); media not in the repo\n")
        wr = csv.DictWriter(f, ["video", "person", "start_s", "end_s", "hard", "x_min", "x_max"])
        wr.writeheader()
        for r in truth:
            wr.writerow({"hard": 0, "x_min": "", "x_max": "", **r})
    return truth


def _duration(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return float(s.duration * s.time_base) if s.duration else float(c.duration or 0) / 1e6


def _crossings(out: Path, vids: Path, engine) -> list[dict]:
    """Two real faces crossing: face crops of two clips (moving with their own clips) slide across
    a still background from opposite sides; the second passes in front of the first at mid-clip.
    Truth: each person's face-centre band (x_min, x_max) in quarter-second rows."""
    w, h, fps = 854, 480, 25
    rows = []
    for (fa, na), (fb, nb) in [(CLIPS[0], CLIPS[1]), (CLIPS[1], CLIPS[0]), (CLIPS[0], CLIPS[3])]:
        n = int(CROSS_S * fps)
        bg = _read(vids / "mma_tests_test.mp4", w, h, fps, 1 / fps)[0] if (vids / "mma_tests_test.mp4").is_file() \
            else np.full((h, w, 3), 90, np.uint8)
        side = 150
        sprites = []
        for f in (fa, fb):
            src = _read(vids / f, 640, 360, fps, min(CROSS_S, _duration(vids / f) - 0.1))
            src = np.concatenate([src, src[::-1]] * 3)[:n]
            box = _face(engine, src[0])
            c, half = (box[:2] + box[2:]) / 2, max(box[2] - box[0], box[3] - box[1]) * 0.8
            y1, x1 = int(max(0, c[1] - half)), int(max(0, c[0] - half))
            crop = src[:, y1 : y1 + int(2 * half), x1 : x1 + int(2 * half)]
            import cv2

            sprites.append(np.stack([cv2.resize(x, (side, side), interpolation=cv2.INTER_AREA) for x in crop]))
        yy, xx = np.mgrid[:side, :side]
        alpha = (((xx - side / 2) / (side * 0.48)) ** 2 + ((yy - side / 2) / (side * 0.5)) ** 2 <= 1).astype(np.float32)
        alpha = alpha[..., None]
        frames, xs = [], []
        for i in range(n):
            u = i / (n - 1)
            xa = int(40 + u * (w - side - 80))  # A left -> right
            xb = int(w - side - 40 - u * (w - side - 80))  # B right -> left, in front
            y0 = (h - side) // 2
            f = bg.astype(np.float32).copy()
            for s, x in ((sprites[0][i], xa), (sprites[1][i], xb)):
                f[y0 : y0 + side, x : x + side] = f[y0 : y0 + side, x : x + side] * (1 - alpha) + s * alpha
            frames.append(f.round().clip(0, 255).astype(np.uint8))
            xs.append(((xa + side / 2) / w, (xb + side / 2) / w))
        name = f"cross_{SHORT[fa]}_{SHORT[fb]}.mp4"
        _write(out / "videos" / name, np.stack(frames), fps)
        xs = np.asarray(xs)
        q = 0.25
        for k in range(int(CROSS_S / q)):
            sl = xs[int(k * q * fps) : int((k + 1) * q * fps)]
            overlap = abs(sl[:, 0] - sl[:, 1]).min() < side / w  # the two faces overlap: who is seen is unclear
            for who, col in ((na, 0), (nb, 1)):
                hard = 1 if overlap and col == 0 else 0  # the one behind is hidden while they overlap
                rows.append(dict(video=name, person=who, start_s=round(k * q, 3), end_s=round((k + 1) * q, 3),
                                 hard=hard, x_min=round(max(0.0, sl[:, col].min() - 0.06), 3),
                                 x_max=round(min(1.0, sl[:, col].max() + 0.06), 3)))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", nargs="?", default=str(ROOT / "out" / "cuts"))
    ap.add_argument("--data", default=str(DATA))
    args = ap.parse_args(argv)
    truth = build(Path(args.out), Path(args.data))
    vids = sorted({r["video"] for r in truth})
    print(f"{len(vids)} videos ({sum(v.startswith('cut_') for v in vids)} cuts, "
          f"{sum(v.startswith('swap_') for v in vids)} swaps, {sum(v.startswith('cross_') for v in vids)} crossings) "
          f"and {args.out}/truth.csv ({len(truth)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
