"""Photos: ``vidx faces`` and ``vidx faces compare``, and the face engine the photo commands share."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Sequence

import numpy as np

from vidx.jobs.cli.parsing import _face_options, _Parser, _verbose

log = logging.getLogger("vidx")

PHOTO_CHUNK = 8  # photos decoded and run together: bounds memory for long lists


def _engine(args, out: str | None = None):
    """The face engine: for photos given to an index (``out``), the index's detector and embedder;
    else the options' (default: dlib's detector and embedder, exact dlib)."""
    from vidx.jobs.engines import EngineChoiceError, engine_for_index
    from vidx.workers.faces import PHOTO_SIDE, FaceEngine
    from vidx.workers.face_weights import WeightsError
    from vidx.workers.retinaface import RetinaFaceWeightsError
    from vidx.workers.sface import SFaceWeightsError

    detector, embedder = getattr(args, "detector", None), getattr(args, "embedder", None)
    # each command loads the models afresh (a few seconds on a CPU); `vidx serve` keeps them loaded
    log.info("loading the face models (a few seconds; `vidx serve` keeps them loaded between photos) ...")
    try:
        if out is not None:
            return engine_for_index(out, detector, embedder, args.device, args.upsample)
        embedder = embedder or "dlib"
        return FaceEngine(device=args.device, upsample=args.upsample, embedder=embedder, photo_side=PHOTO_SIDE,
                          detector=detector or ("retinaface" if embedder == "sface" else "dlib"))
    except (WeightsError, RetinaFaceWeightsError, SFaceWeightsError, EngineChoiceError, ValueError, RuntimeError) as e:
        raise SystemExit(f"vidx: {e}") from None


def _read(paths: Sequence[str]):
    """Yield (path, image or None) with a logged message for each unreadable file."""
    from vidx.workers.images import ImageReadError, load_rgb

    for p in paths:
        try:
            yield p, load_rgb(p)
        except ImageReadError as e:
            log.error("%s", e)
            yield p, None


def _face_record(path: str, k: int, faces, i: int, space) -> dict:
    rec = {
        "photo": path,
        "face": k,
        "box": [int(v) for v in faces.boxes[i]],
        "score": round(float(faces.scores[i]), 6),
    }
    if np.isfinite(faces.landmarks[i]).all():  # dlib's 5 points (the dlib embedder's alignment)
        rec["landmarks"] = [[int(x), int(y)] for x, y in faces.landmarks[i]]
    if faces.points is not None and np.isfinite(faces.points[i]).all():  # the detector's own 5 points
        rec["points"] = [[round(float(x), 2), round(float(y), 2)] for x, y in faces.points[i]]
    rec.update(embedder=space.model, metric=space.metric, embedding=[round(float(v), 7) for v in faces.embeddings[i]])
    return rec


def cmd_faces(args) -> int:
    engine = _engine(args)
    n_read = 0
    paths = list(args.photos)
    for s in range(0, len(paths), PHOTO_CHUNK):
        loaded = [(p, im) for p, im in _read(paths[s : s + PHOTO_CHUNK]) if im is not None]
        n_read += len(loaded)
        if not loaded:
            continue
        faces = engine([im for _, im in loaded])
        for j, (p, im) in enumerate(loaded):
            rows = np.flatnonzero(faces.image_index == j)
            if len(rows) == 0:
                if engine.detector.name == "dlib_mmod":
                    log.warning("%s: no face found (%dx%d; faces smaller than about %d px need --upsample 1 "
                                "or --detector retinaface)", p, im.shape[1], im.shape[0], 80 if args.upsample == 0 else 40)
                else:
                    log.warning("%s: no face found (%dx%d)", p, im.shape[1], im.shape[0])
            recs = [_face_record(p, k, faces, i, engine.space) for k, i in enumerate(rows)]
            if args.json:
                for r in recs:
                    print(json.dumps(r))
            else:
                print(f"{p}: {len(recs)} face{'s' if len(recs) != 1 else ''}  (embedder {engine.space.model}, "
                      f"{engine.space.metric} distance)")
                for r in recs:
                    print(f"  face {r['face']}  box {r['box']}  score {r['score']:.3f}")
                    if "landmarks" in r:
                        print(f"    landmarks {r['landmarks']}")
                    if "points" in r:
                        print(f"    points {r['points']}")
                    print("    embedding " + " ".join(f"{v:.4f}" for v in r["embedding"]))
    if n_read == 0:
        log.error("vidx faces: none of the %d file(s) could be read as a photo", len(paths))
        return 1
    return 0


def cmd_compare(args) -> int:
    photos = args.photos
    if len(photos) != 2:
        log.error("usage: vidx faces compare PHOTO_A PHOTO_B (got %d photo(s))", len(photos))
        return 2
    loaded = list(_read(photos))
    if any(im is None for _, im in loaded):
        return 1
    engine = _engine(args)
    faces = engine([im for _, im in loaded])
    picked = []
    for j, (p, _) in enumerate(loaded):
        rows = np.flatnonzero(faces.image_index == j)
        if len(rows) == 0:
            log.error("%s: no face found; nothing to compare", p)
            return 1
        b = faces.boxes[rows]
        best = rows[np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))]
        if len(rows) > 1:
            log.info("%s: %d faces; comparing the largest, box %s", p, len(rows), [int(v) for v in faces.boxes[best]])
        picked.append(best)
    sp = engine.space
    d = float(sp.distance(faces.embeddings[picked[0]], faces.embeddings[picked[1]]))
    same = d < engine.threshold
    if args.json:
        print(json.dumps({"a": photos[0], "b": photos[1], "distance": round(d, 6), "embedder": sp.model,
                          "metric": sp.metric, "threshold": engine.threshold, "same_person": bool(same)}))
    else:
        verdict = "same person" if same else "different people"
        print(f"distance {d:.4f}: {verdict} ({sp.metric} distance of {sp.model} embeddings; "
              f"threshold {engine.threshold})")
    return 0


def compare_parser() -> argparse.ArgumentParser:
    from vidx.configs.spaces import SPACES

    c = _Parser(
        prog="vidx faces compare",
        description="Distance between the largest faces of two photos, and whether they are the "
        f"same person (dlib: euclidean distance < {SPACES['dlib'].same_person}; sface: cosine distance < "
        f"{SPACES['sface'].same_person}).")
    c.add_argument("photos", nargs="*", metavar="PHOTO", help="exactly two photos")
    _face_options(c)
    _verbose(c)
    c.set_defaults(func=cmd_compare)
    return c


def add_parsers(sub) -> None:
    """The subcommands faces."""
    f = sub.add_parser(
        "faces",
        help="find, landmark and embed faces in photos",
        description="Print every face in each photo: box [x1,y1,x2,y2] (inclusive pixels), score, "
        "5 points and the 128-d embedding, naming the embedder and its metric (dlib: raw descriptors, "
        "euclidean; sface: unit vectors, cosine). 'vidx faces compare A B' prints the "
        "distance between the largest faces of two photos and the same-person verdict.",
    )
    f.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (or: compare A B)")
    _face_options(f)
    f.set_defaults(func=cmd_faces)
