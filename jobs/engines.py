"""The face engine for photos given to an index (enrol, query by photo, serve): the detector and
embedder the index was built with, so a photo's embedding is comparable with the index's."""

from __future__ import annotations

from vidx.indexing.people import index_space
from vidx.indexing.store import Store


class EngineChoiceError(ValueError):
    pass


def index_models(out: str) -> tuple[str, str]:
    """(detector, embedder) config names an index was built with."""
    m = Store(out).require_manifest()
    emb = index_space(m).name
    det = ((m.get("config") or {}).get("faces") or {}).get("detector") or ("retinaface" if emb == "sface" else "dlib")
    return det, emb


def engine_for_index(out: str, detector: str | None = None, embedder: str | None = None, device: str = "cpu",
                     upsample: int = 0):
    """A FaceEngine matching the index at ``out``; an explicit embedder other than the index's is
    refused (its distances would mean nothing there)."""
    from vidx.workers.faces import FaceEngine

    det, emb = index_models(out)
    if embedder and embedder != emb:
        raise EngineChoiceError(
            f"{out} was built with the {emb} face embedder; a photo embedded with {embedder} cannot be compared "
            f"with it. Leave out --embedder (photos then use {emb}), or index the videos again with "
            f"--set faces.embedder={embedder} into a new folder")
    if emb == "sface" and detector == "dlib":
        raise EngineChoiceError("this index uses the sface embedder, which aligns on RetinaFace's 5 points: "
                                "leave out --detector or use --detector retinaface")
    return FaceEngine(device=device, upsample=upsample, detector=detector or det, embedder=emb)
