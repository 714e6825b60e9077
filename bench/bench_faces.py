"""Face engine benchmark: the PyTorch engine beside dlib's own binding (dlib-bin), one run.

    python bench/bench_faces.py [--data ../shared/data] [--device cpu] [--frames 4]

Both sides get the same inputs: real photos from ../shared/data/faces letterboxed into
640x360 frames, the faces found in them, and their chips.  dlib-bin processes one image at
a time (its binding's CNN detector also accepts a list; it is used where that is faster).
Timings are medians of repeated runs after a warm-up; ratios are dlib time / torch time
from the same run.  dlib-bin is a test/bench dependency (pip install -e '.[test]').
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

PHOTOS = ["fr_two_people.jpg", "fr_knntest_obama_and_biden.jpg", "of_longoria-cooper.jpg",
          "fr_knntest_kit_with_rose.jpg", "if_Rob_Lowe_0001.jpg", "fr_obama2.jpg", "of_clapton-1.jpg",
          "fr_biden2.jpg"]


def letterbox(path: Path, w: int = 640, h: int = 360) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    s = min(w / im.width, h / im.height)
    im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
    canvas = Image.new("RGB", (w, h), (0, 0, 0))
    canvas.paste(im, ((w - im.width) // 2, (h - im.height) // 2))
    return np.ascontiguousarray(np.asarray(canvas))


def timed(fn, repeat: int) -> float:
    """Median seconds of `repeat` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="PyTorch face engine vs dlib-bin, side by side")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--frames", type=int, default=4, help="640x360 frames per detection timing")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    import dlib

    from vidx.workers import face_weights as fw
    from vidx.workers.face_align import extract_chips
    from vidx.workers.faces import FaceEngine

    dev = torch.device(args.device)
    ref_det = dlib.cnn_face_detection_model_v1(str(fw.model_path(fw.DETECTOR_FILE)))
    ref_sp = dlib.shape_predictor(str(fw.model_path(fw.LANDMARKS_FILE)))
    ref_rec = dlib.face_recognition_model_v1(str(fw.model_path(fw.EMBEDDER_FILE)))
    engine = FaceEngine(device=dev)
    det = engine.detector.net

    frames = [letterbox(args.data / "faces" / p) for p in PHOTOS][: max(1, args.frames)]
    frames_t = torch.from_numpy(np.stack(frames)).to(dev)
    rows = []

    def row(task, unit, n, t_dlib, t_torch):
        rows.append((task, unit, 1e3 * t_dlib / n, 1e3 * t_torch / n, t_dlib / t_torch))

    # detection, ms per 640x360 frame
    for ups, reps in ((0, args.repeat), (1, 1)):
        t_d = timed(lambda: [ref_det(f, ups) for f in frames], reps)
        t_t = timed(lambda: det.detect_batch(frames_t, upsample=ups), reps)
        t_t1 = timed(lambda: [det.detect_batch(frames_t[i : i + 1], upsample=ups) for i in range(len(frames))], reps)
        row(f"detect 640x360, upsample {ups}, torch batch {len(frames)}", "ms/frame", len(frames), t_d, t_t)
        row(f"detect 640x360, upsample {ups}, torch batch 1", "ms/frame", len(frames), t_d, t_t1)

    # faces in those frames (upsample 1 finds the small ones too) -> landmarks, chips, embeddings
    dets = det.detect_batch(frames_t, upsample=1)
    idx = np.concatenate([np.full(len(d), i) for i, d in enumerate(dets)])
    boxes = np.concatenate([d.boxes for d in dets])
    n = len(boxes)
    rects = [dlib.rectangle(*[int(v) for v in b]) for b in boxes]
    t_d = timed(lambda: [ref_sp(frames[i], r) for i, r in zip(idx, rects)], args.repeat)
    t_t = timed(lambda: engine.landmarks.predict(list(frames_t), idx, boxes), args.repeat)
    row(f"landmarks ({n} faces, batched)", "ms/face", n, t_d, t_t)
    lm = engine.landmarks.predict(list(frames_t), idx, boxes)
    shapes = [ref_sp(frames[i], r) for i, r in zip(idx, rects)]
    t_d = timed(lambda: [dlib.get_face_chip(frames[i], s, 150, 0.25) for i, s in zip(idx, shapes)], args.repeat)
    t_t = timed(lambda: extract_chips(list(frames_t), idx, lm, device=dev), args.repeat)
    row(f"chips ({n} faces, batched)", "ms/face", n, t_d, t_t)

    # embedding, ms per face at batch 1 and 32 (dlib's aligned 'johns' chips)
    from vidx.workers.images import load_rgb

    chips = np.stack([load_rgb(p) for p in sorted((args.data / "faces" / "dlib_johns").rglob("*.jpg"))[:32]])
    chips_t = torch.from_numpy(chips).to(dev)
    t_d = timed(lambda: [ref_rec.compute_face_descriptor(c) for c in chips[:8]], args.repeat)
    t_t = timed(lambda: [engine.embedder.embed(chips_t[i : i + 1]) for i in range(8)], args.repeat)
    row("embed, batch 1", "ms/face", 8, t_d, t_t)
    t_d = timed(lambda: ref_rec.compute_face_descriptor(list(chips)), args.repeat)
    t_t = timed(lambda: engine.embedder.embed(chips_t), args.repeat)
    row("embed, batch 32", "ms/face", 32, t_d, t_t)

    cpu = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU, {torch.get_num_threads()} torch threads"
    print(f"# vidx face engine vs dlib-bin {dlib.__version__} (torch {torch.__version__}, {cpu})")
    print("| task | unit | dlib-bin | vidx torch | speed-up |")
    print("|---|---|---:|---:|---:|")
    for task, unit, a, b, r in rows:
        print(f"| {task} | {unit} | {a:.1f} | {b:.1f} | {r:.1f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
