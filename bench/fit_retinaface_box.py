"""Fit the map from RetinaFace boxes to dlib's box convention, and check what it changes.

    python bench/fit_retinaface_box.py [PHOTO_DIR]   (default ../shared/data/faces)

dlib's 5-point predictor was trained on boxes from dlib's own detector (square, tight around
brows-to-chin); RetinaFace's boxes are taller and sit higher.  For every face both detectors
find (IoU > 0.3), this fits centre shift (dx, dy) in units of the RetinaFace box's width and
height and a side scale s (dlib side / sqrt(w h)) by least squares (their means), then reports,
for those faces, the landmark and embedding differences between the dlib-box path and the
mapped-RetinaFace-box path.  The printed fit is what ``workers/retinaface.py`` uses as TO_DLIB.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    folder = Path(argv[0]) if argv else Path(__file__).resolve().parents[2] / "shared" / "data" / "faces"
    from vidx.workers.faces import DlibMMOD, FaceEngine
    from vidx.workers.images import ImageReadError, load_rgb
    from vidx.workers.retinaface import RetinaFace, to_dlib_boxes
    from vidx.workers.tracking import iou_matrix

    dlib_det, rf = DlibMMOD(upsample=1), RetinaFace(score_threshold=0.8)
    engine = FaceEngine(detector=dlib_det)
    pairs, imgs = [], []
    for p in sorted(folder.glob("*")):
        if p.suffix.lower() not in (".jpg", ".jpeg", ".png") or p.name.startswith("fnp_aligned"):
            continue
        try:
            img = load_rgb(p)
        except ImageReadError:
            continue
        d = dlib_det.detect([img])[0]
        r = rf.detect_raw([img])[0]
        if len(d) == 0 or len(r.scores) == 0:
            continue
        iou = iou_matrix(d.boxes, r.boxes)
        for i in range(len(d)):
            j = int(np.argmax(iou[i]))
            if iou[i, j] > 0.3:
                pairs.append((len(imgs), d.boxes[i], r.boxes[j]))
        imgs.append(img)
    db = np.array([p[1] for p in pairs])
    rb = np.array([p[2] for p in pairs])
    w, h = rb[:, 2] - rb[:, 0], rb[:, 3] - rb[:, 1]
    dx = ((db[:, 0] + db[:, 2]) / 2 - (rb[:, 0] + rb[:, 2]) / 2) / w
    dy = ((db[:, 1] + db[:, 3]) / 2 - (rb[:, 1] + rb[:, 3]) / 2) / h
    s = (db[:, 2] - db[:, 0] + 1) / np.sqrt(w * h)
    fit = (float(dx.mean()), float(dy.mean()), float(s.mean()))
    print(f"{len(pairs)} faces found by both in {len(imgs)} photos")
    print(f"TO_DLIB = ({fit[0]:.4f}, {fit[1]:.4f}, {fit[2]:.4f})  # sd ({dx.std():.4f}, {dy.std():.4f}, {s.std():.4f})")
    idx = np.array([p[0] for p in pairs])
    mapped = to_dlib_boxes(rb, fit)
    a = engine.describe(imgs, idx, db)
    b = engine.describe(imgs, idx, mapped)
    raw = engine.describe(imgs, idx, rb)
    lm = np.abs(a.landmarks - b.landmarks).max(axis=(1, 2)) / np.sqrt(w * h)
    de = np.linalg.norm(a.embeddings - b.embeddings, axis=1)
    de_raw = np.linalg.norm(a.embeddings - raw.embeddings, axis=1)
    print(f"landmarks, dlib box vs mapped box: median {np.median(lm):.4f}, max {lm.max():.4f} of the face size")
    print(f"embedding distance, dlib box vs mapped box: median {np.median(de):.4f}, max {de.max():.4f}")
    print(f"embedding distance, dlib box vs unmapped RetinaFace box: median {np.median(de_raw):.4f}, max {de_raw.max():.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
