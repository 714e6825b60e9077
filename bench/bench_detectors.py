"""Face detectors side by side: dlib's MMOD (vidx's torch port, upsample 0 and 1) and
RetinaFace-MNet0.25 (onnxruntime and torch backends), one run, same frames.

    python bench/bench_detectors.py [--data ../shared/data] [--repeat 3]

Speed: ms per frame on the crowd clip's frames (fnp_video.mp4, 1 fps) decoded at 640x360 and
at 1920x1080, median of repeated runs after a warm-up, frames run 4 at a time where the
detector batches.  Recall: faces found in those frames at 640x360 (against the 35 visible faces
counted by eye in tests/test_retinaface.py), and faces found in two group photos.  RetinaFace
is counted at the index job's detection threshold (0.5) and at its score gate (0.8).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from bench_faces import timed  # median of repeated runs after a warm-up


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_retinaface import FNP_FACES

    from vidx.workers import decode
    from vidx.workers.faces import DlibMMOD
    from vidx.workers.images import load_rgb
    from vidx.workers.retinaface import RetinaFace

    p = str(args.data / "videos" / "fnp_video.mp4")
    info = decode.probe(p)
    idx = decode.sample_indices(info.timestamps, 0, info.duration, 1.0)
    frames = {side: np.concatenate([f for _, f in decode.read_frames(p, info, idx, max_side=side)])
              for side in (640, 1920)}
    photos = {n: load_rgb(args.data / "faces" / n) for n in ("if_t1.jpg", "dlib_bald_guys.jpg")}
    total = sum(len(v) for v in FNP_FACES.values())

    def visible_found(dets) -> int:
        n = 0
        for i, d in zip(idx.tolist(), dets):
            for x, y in FNP_FACES[i]:
                b = d.boxes
                n += bool(((b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3])).any())
        return n

    detectors = {
        "dlib MMOD, upsample 0": DlibMMOD(0),
        "dlib MMOD, upsample 1": DlibMMOD(1),
        "RetinaFace, onnxruntime": RetinaFace(backend="onnxruntime", score_threshold=0.5),
        "RetinaFace, torch": RetinaFace(backend="torch", score_threshold=0.5),
    }
    cpu = f"{os.cpu_count()} CPUs, torch {torch.get_num_threads()} threads"
    print(f"# face detectors, {cpu}; fnp_video.mp4 at 1 fps ({len(idx)} frames, {total} visible faces)")
    print("| detector | ms/frame 640x360 | ms/frame 1920x1080 | fnp visible faces found (640x360) "
          "| faces in if_t1.jpg | faces in dlib_bald_guys.jpg |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, det in detectors.items():
        ms = {}
        for side, fr in frames.items():
            if name.endswith("upsample 1") and side == 1920:
                ms[side] = float("nan")  # 4x the 1080p cost: minutes per run on 2 cores
                continue
            ms[side] = 1e3 * timed(lambda: det.detect(list(fr)), args.repeat) / len(fr)
        fnp = det.detect(list(frames[640]))
        found = visible_found(fnp)
        group = {n: det.detect([im])[0] for n, im in photos.items()}
        if name.startswith("RetinaFace"):
            found_hi = visible_found([type(d)(d.boxes[d.scores >= 0.8], d.scores[d.scores >= 0.8]) for d in fnp])
            cell = f"{found} ({found_hi} at score >= 0.8)"
            gcells = [f"{len(g)} ({int((g.scores >= 0.8).sum())})" for g in group.values()]
        else:
            cell = str(found)
            gcells = [str(len(g)) for g in group.values()]
        print(f"| {name} | {ms[640]:.0f} | {ms[1920]:.0f} | {cell} / {total} | {gcells[0]} | {gcells[1]} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
