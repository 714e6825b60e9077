"""Names from enrolled photos: the nearest photos' distance, one name per person, never shared by
people on screen together, never one a person's tracks were marked as not being; photo warnings."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.configs.spaces import Space
from vidx.indexing import schemas
from vidx.indexing.people.files import _emb

log = logging.getLogger(__name__)


def _named(people: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pid, name in zip(people["person_id"].to_pylist(), people["name"].to_pylist()):
        if name:
            out.setdefault(name, []).append(pid)
    return out


def nearest_photos(dist: np.ndarray) -> np.ndarray:
    """A name's distance from (rows', photos) distances: the mean of the nearest half of its photos,
    at most 3, at least 1, so one poor or wrong photo among several cannot veto a name."""
    k = max(1, min(3, dist.shape[1] // 2))
    return np.sort(dist, axis=1)[:, :k].mean(1)


def name_people(centre: np.ndarray, gallery: pa.Table, sp: Space, match_distance: float,
                together: set[tuple[int, int]], taken: list[str | None],
                refused: list[set[str]] | None = None) -> tuple[list[str | None], list[float | None]]:
    """An enrolled name (and its distance) per person, or None: the nearest name by
    :func:`nearest_photos` below ``match_distance``; of people on screen together (``together``:
    person index pairs) only the nearest gets a name; ``taken``: manual names, which win."""
    n = len(centre)
    name: list[str | None] = [None] * n
    dist_out: list[float | None] = [None] * n
    if not gallery.num_rows or not n:
        return name, dist_out
    g = _emb(gallery)
    gnames = np.array(gallery["name"].to_pylist())
    dist = sp.pairwise(centre, g)  # (people, photos)
    names_u = sorted(set(gnames.tolist()))
    nd = np.stack([nearest_photos(dist[:, gnames == nm]) for nm in names_u], 1)  # (people, names)
    for i, no in enumerate(refused or ()):  # "not this person": never that name
        for nm in no:
            if nm in names_u:
                nd[i, names_u.index(nm)] = np.inf
    best = nd.argmin(1)
    bd = nd[np.arange(n), best]
    holders: dict[str, list[int]] = {}
    for i in np.argsort(bd, kind="stable").tolist():  # nearest first: it keeps the name against a co-star
        if taken[i] or bd[i] >= match_distance:
            continue
        nm = names_u[best[i]]
        if any((min(i, j), max(i, j)) in together for j in holders.get(nm, ())):
            continue
        holders.setdefault(nm, []).append(i)
        name[i], dist_out[i] = nm, float(bd[i])
    return name, dist_out


@dataclass
class PhotoFace:
    photo: str
    face: int
    box: list[float]
    embedding: np.ndarray
    embedder: str = ""  # the model that embedded it (checked against the index's at enrolment)
    quality: float = 1.0  # workers.tracking.face_quality of the face (size, score, sharpness, turn)
    why_weak: str = ""  # which of those made it weak, for the warning
    outside: float = 0.0  # the part of the face's box outside the photo (a face cut off at the edge)


WEAK_PHOTO = 0.3  # a photo's face below this quality is reported at enrolment (it still counts)


def photo_warnings(name: str, faces: list[PhotoFace], gallery: pa.Table, sp: Space) -> list[str]:
    """What is doubtful about photos enrolled under ``name``: a face too small, soft or turned to
    count for much, and a photo far from the name's other photos (a different person, or a poor
    face) - the name's distance uses its nearest photos, so such a photo does not veto it."""
    out = [f"{f.photo}: the face is {f.why_weak or 'poor'} (quality {f.quality:.2f}); it counts little"
           for f in faces if f.quality < WEAK_PHOTO]
    out += [f"{f.photo}: the face is cut off at the photo's edge ({100 * f.outside:.0f}% of its box outside); "
            "a whole face describes the person better" for f in faces if f.quality >= WEAK_PHOTO and f.outside >= 0.1]
    own = gallery.filter(pc.equal(gallery["name"], name)) if gallery.num_rows else gallery
    new_keys = {(f.photo, f.face) for f in faces}
    others = [(ph, fc) for ph, fc in zip(own["photo"].to_pylist(), own["face"].to_pylist()) if (ph, fc) not in new_keys]
    emb = np.concatenate([np.stack([f.embedding for f in faces]),
                          _emb(own)[[i for i, k in enumerate(zip(own["photo"].to_pylist(), own["face"].to_pylist()))
                                     if k not in new_keys]]]) if faces else np.zeros((0, schemas.EMBED_DIM))
    labels = [f.photo for f in faces] + [ph for ph, _ in others]
    if len(emb) < 2:
        return out
    d = sp.pairwise(emb, emb)
    np.fill_diagonal(d, np.nan)
    med = np.nanmedian(d, axis=1)
    if len(emb) == 2:
        if d[0, 1] >= sp.same_person:
            out.append(f"the two photos of {name} are {d[0, 1]:.2f} apart (same person below {sp.same_person}): "
                       "one may show someone else; enrol a third to tell which")
        return out
    for i in range(len(faces)):  # only the photos enrolled now are reported
        if med[i] >= sp.same_person:
            out.append(f"{labels[i]}: far from the other photos of {name} (median distance {med[i]:.2f}; same "
                       f"person below {sp.same_person}): a different person, or a poor face?")
    return out
