"""The face engine for photos given to an index (enrol, query by photo, serve): the detector,
embedder and quality gates the index was built with, so a photo's faces are found and embedded
as the video's were (RetinaFace's weak detections, gated out of the index, are not offered as
faces of a photo either)."""

from __future__ import annotations

from vidx.indexing.people import PeopleError, PhotoFace, index_space
from vidx.indexing.store import Store


class EngineChoiceError(ValueError):
    pass


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


def pick_faces(photos: list[tuple[str, int | None]], engine) -> list[PhotoFace]:
    """One face per photo (``(path, face index or None)``), faces numbered left to right.  A photo
    that cannot be read, has no face, or has several and no index given is refused, naming it."""
    import numpy as np

    from vidx.workers.images import ImageReadError, load_rgb

    picked = []
    for path, want in photos:
        try:
            img = load_rgb(path)
        except ImageReadError as e:
            raise PeopleError(str(e)) from None
        faces = engine([img])
        kept = np.flatnonzero(faces.kept)  # faces an engine with quality gates refused are not offered
        order = kept[np.argsort(faces.boxes[kept, 0], kind="stable")]
        if len(order) == 0:
            gated = len(faces) - len(kept)
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
        picked.append(PhotoFace(path, k, [float(v) for v in faces.boxes[i]], faces.embeddings[i],
                                getattr(engine.embedder, "name", "")))
    return picked
