"""The face engine for photos given to an index (enrol, query by photo, serve): the detector,
embedder and quality gates the index was built with, so a photo's faces are found and embedded
as the video's were (RetinaFace's weak detections, gated out of the index, are not offered as
faces of a photo either)."""

from __future__ import annotations

from vidx.indexing.people import index_space
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
