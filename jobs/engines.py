"""The face engine for photos given to an index (enrol, query by photo, serve): the detector,
embedder and quality gates the index was built with, so a photo's faces are found and embedded
as the video's were (RetinaFace's weak detections, gated out of the index, are not offered as
faces of a photo either)."""

from __future__ import annotations

from vidx.indexing.people import PeopleError, PhotoFace, index_space
from vidx.indexing.store import Store
from vidx.configs.errors import EngineChoiceError  # noqa: F401 - defined there, raised here


def _models(m: dict) -> tuple[str, str, dict]:
    """(detector, embedder, faces config) an index was built with, from its manifest."""
    emb = index_space(m).name
    fc = (m.get("config") or {}).get("faces") or {}
    return fc.get("detector") or ("retinaface" if emb == "sface" else "dlib"), emb, fc


def index_models(out: str) -> tuple[str, str]:
    """(detector, embedder) config names an index was built with."""
    det, emb, _ = _models(Store(out).require_manifest())
    return det, emb


def engine_for_index(out: str, detector: str | None = None, embedder: str | None = None, device: str = "cpu",
                     upsample: int = 0):
    """A FaceEngine matching the index at ``out``; an explicit embedder other than the index's is
    refused (its distances would mean nothing there)."""
    from vidx.workers.faces import PHOTO_SIDE, FaceEngine, Gates

    m = Store(out).require_manifest()
    det, emb, fc = _models(m)
    if embedder and embedder != emb:
        raise EngineChoiceError(
            f"{index_space(m).built_with(out)}; a photo embedded with {embedder} cannot be compared with it. Leave out "
            f"--embedder (photos then use {emb}), or index the videos again with --set faces.embedder={embedder} "
            "into a new folder")
    if emb == "sface" and detector == "dlib":
        raise EngineChoiceError("this index uses the sface embedder, which aligns on RetinaFace's 5 points: "
                                "leave out --detector or use --detector retinaface")
    detector = detector or det
    gates = Gates(min_score=float(fc.get("min_score", 0.0)) if detector == "retinaface" else 0.0,
                  min_size=float(fc.get("min_size", 0.0)), min_sharpness=float(fc.get("min_sharpness", 0.0)))
    return FaceEngine(device=device, upsample=upsample, detector=detector, embedder=emb, gates=gates,
                      photo_side=PHOTO_SIDE)


def _offered(path: str, engine):
    """(image, faces, order): a photo's faces through ``engine`` and the ones offered to pick, left
    to right (faces an engine with quality gates refused are not offered)."""
    import numpy as np

    from vidx.workers.images import ImageReadError, load_rgb

    try:
        img = load_rgb(path)
    except ImageReadError as e:
        raise PeopleError(str(e)) from None
    faces = engine([img])
    kept = np.flatnonzero(faces.kept)
    return img, faces, kept[np.argsort(faces.boxes[kept, 0], kind="stable")]


def photo_boxes(path: str, engine) -> tuple[int, int, list[list[int]]]:
    """(width, height, boxes): the faces of a photo the index's engine would offer, numbered as
    :func:`pick_faces` numbers them (left to right); boxes [left, top, right, bottom] pixels."""
    img, faces, order = _offered(path, engine)
    return img.shape[1], img.shape[0], [[int(v) for v in faces.boxes[i]] for i in order]


def pick_faces(photos: list[tuple[str, int | None]], engine) -> list[PhotoFace]:
    """One face per photo (``(path, face index or None)``), faces numbered left to right.  A photo
    that cannot be read, has no face, or has several and no index given is refused, naming it."""
    picked = []
    for path, want in photos:
        img, faces, order = _offered(path, engine)
        if len(order) == 0:
            gated = len(faces) - int(faces.kept.sum())
            why = (f"{gated} too weak or small for the index's quality gates" if gated
                   else "faces need about 80 px" if getattr(engine.detector, "name", "") == "dlib_mmod" else "none detected")
            raise PeopleError(f"{path}: no face found ({img.shape[1]}x{img.shape[0]}; {why})")
        boxes = [[int(v) for v in faces.boxes[i]] for i in order]
        if want is None and len(order) > 1:
            listing = "; ".join(f"{k}: box {b}" for k, b in enumerate(boxes))
            raise PeopleError(f"{path}: {len(order)} faces ({listing}); pick one with {path}@N")
        k = want or 0
        if not 0 <= k < len(order):
            raise PeopleError(f"{path}: face {k} asked for, the photo has {len(order)} (0..{len(order) - 1})")
        i = order[k]
        q, why, cut = _photo_quality(faces, i, img.shape[1], img.shape[0])
        picked.append(PhotoFace(path, k, [float(v) for v in faces.boxes[i]], faces.embeddings[i],
                                getattr(engine.embedder, "name", ""), q, why, cut))
    return picked


def _photo_quality(faces, i: int, width: int, height: int) -> tuple[float, str, float]:
    """The quality of face ``i`` as video faces are scored, what makes it weak, and the part of its
    box outside the photo."""
    import numpy as np

    from vidx.workers.tracking import face_quality, outside, yaw

    box = faces.boxes[i:i + 1]
    sharp = None if faces.sharpness is None else faces.sharpness[i:i + 1]
    pts = faces.points[i:i + 1] if faces.points is not None else None
    lms = faces.landmarks[i:i + 1] if faces.landmarks is not None else None
    q = float(face_quality(box, faces.scores[i:i + 1], sharp, pts, lms, (width, height))[0])
    cut = float(outside(box, width, height)[0])
    why = []
    side = float(min(box[0, 2] - box[0, 0], box[0, 3] - box[0, 1]) + 1)
    if side < 60:
        why.append(f"small ({side:.0f} px)")
    if sharp is not None and np.isfinite(sharp[0]) and sharp[0] < 30:
        why.append("blurred")
    t = yaw(pts, lms)[0] if pts is not None or lms is not None else np.nan
    if np.isfinite(t) and t > 0.5:
        why.append("turned")
    if faces.scores[i] < 0.9:
        why.append(f"a weak detection ({faces.scores[i]:.2f})")
    if cut >= 0.1:
        why.append(f"cut off at the photo's edge ({100 * cut:.0f}% outside)")
    return q, " and ".join(why), cut
