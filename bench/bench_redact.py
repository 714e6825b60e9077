"""Redaction on the shared clips: does any face leak, is a kept person left alone, and how fast.

    python bench/bench_redact.py [--data ../shared/data] [--every 1 3] [--json bench/redact.json]

Indexes the shared videos (faces only), names Obama and Biden from their photos, then for each
clip:

* a reference pass marks every face visible on every frame: RetinaFace at the file's full
  resolution on each frame, score >= 0.8 (jobs.redact.reference_faces);
* ``vidx redact --all`` (each --every N): the share of those face-frames less than 90% inside the
  blurred regions (leaked), the faces RetinaFace still finds in the written copy where a
  reference face was (at >= 0.8, IoU >= 0.3), frames/s and where the time goes;
* on the single-person clips, ``--keep`` their person: the share of their face-frames (the
  largest face of each frame) touched by a blurred region (more than 10% of the face's area).

Times are seconds from each video's first frame. Prints one table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLIPS = {"hk_obama.mp4": "Barack Obama", "shd_obama.mp4": "Barack Obama", "hk_biden.mp4": "Joe Biden",
         "fnp_video.mp4": None, "mma_demo_skeleton.mp4": None, "mma_test_video_structuralize.mp4": None,
         "psd_goldeneye-vfr-drop3.mp4": None}
PHOTOS = {"Barack Obama": ["fr_obama.jpg", "fr_obama2.jpg", "fr_knntest_obama1.jpg"], "Joe Biden": ["fr_biden.jpg"]}


def vidx(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    p = subprocess.run([str(Path(sys.executable).parent / "vidx"), *map(str, args)], capture_output=True, text=True,
                       env=env)
    if p.returncode:
        raise SystemExit(f"vidx {args[0]} failed:\n{p.stderr[-2000:]}")
    return p


def largest(faces: np.ndarray) -> np.ndarray:
    """The largest face of a frame: on a single-speaker clip, the speaker (the reference also finds
    the odd small false face, e.g. on hk_biden's microphone)."""
    if not len(faces):
        return faces
    a = (faces[:, 2] - faces[:, 0]) * (faces[:, 3] - faces[:, 1])
    return faces[[int(a.argmax())]]


def coverage(ref: dict, regions: dict, pick=lambda f: f) -> np.ndarray:
    """Per reference face-frame (``pick`` chooses a frame's faces), the share of it inside the
    blurred regions."""
    from vidx.jobs.redact import covered

    got = [covered(pick(f), regions.get(p, np.zeros((0, 4), np.int64))) for p, f in ref.items() if len(f)]
    return np.concatenate(got) if got else np.zeros(0)


def found_again(ref: dict, written: str) -> int:
    """Faces RetinaFace finds in the written copy (>= 0.8) over a reference face (IoU >= 0.3)."""
    from vidx.jobs.redact import _iou, reference_faces

    again = reference_faces(written)
    n = 0
    for p, faces in ref.items():
        a = again.get(p)
        if len(faces) and a is not None and len(a):
            n += int((_iou(faces[:, None, :], a[None]) >= 0.3).any(1).sum())
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--every", type=int, nargs="+", default=[1, 3], help="--detect-every values to measure")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args(argv)
    from vidx.jobs.redact import redact, reference_faces

    work = Path(tempfile.mkdtemp(prefix="vidx-redact-"))
    out = work / "index"
    clips = [args.data / "videos" / c for c in CLIPS]
    print(vidx("index", "--no-actions", *clips, "--out", out).stdout.strip().splitlines()[-1], file=sys.stderr)
    for name, photos in PHOTOS.items():
        vidx("enroll", out, "--name", name, *[args.data / "faces" / p for p in photos])
    rows = []
    for clip, person in CLIPS.items():
        path = str(args.data / "videos" / clip)
        ref = reference_faces(path)
        for every in args.every:
            dst = work / f"all-{every}-{clip}"
            r = redact(str(out), clip, str(dst), keep=[], every=every, keep_boxes=True, progress=False)
            cov = coverage(ref, r.boxes)
            n, bad = len(cov), int((cov < 0.9).sum())  # leaked: less than 90% of the face inside
            row = {"clip": clip, "mode": "all", "every": every, "frames": r.frames, "face_frames": n,
                   "leaked": bad, "leaked_pct": round(100 * bad / n, 2) if n else None,
                   "found_again": found_again(ref, str(dst)) if every == args.every[0] else None,
                   "fps": round(r.fps, 1), **r.timing}
            rows.append(row)
        if person:
            r = redact(str(out), clip, str(work / f"keep-{clip}"), keep=[person], keep_boxes=True, progress=False)
            cov = coverage(ref, r.boxes, largest)
            n, hit = len(cov), int((cov > 0.1).sum())  # blurred: more than 10% of the face inside
            rows.append({"clip": clip, "mode": f"keep {person}", "every": 1, "frames": r.frames, "face_frames": n,
                         "kept_blurred": hit, "kept_blurred_pct": round(100 * hit / n, 2) if n else None,
                         "fps": round(r.fps, 1), **r.timing})
    print(f"{'clip':<34} {'mode':<18} {'every':>5} {'frames':>6} {'face-frames':>11} {'leaked %':>8} "
          f"{'kept blurred %':>14} {'found again':>11} {'frames/s':>8}  time (detect / encode / decode / blur s)")
    for r in rows:
        f = lambda k: "" if r.get(k) is None else str(r[k])  # noqa: E731
        print(f"{r['clip']:<34} {r['mode']:<18} {r['every']:>5} {r['frames']:>6} {r['face_frames']:>11} "
              f"{f('leaked_pct'):>8} {f('kept_blurred_pct'):>14} {f('found_again'):>11} {r['fps']:>8}  "
              f"{r['detect_s']:.1f} / {r['encode_s']:.1f} / {r['decode_s']:.1f} / {r['redact_s']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
