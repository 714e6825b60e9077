"""The identities (a row a track) and people (a row a person) tables from an assignment, by array
operations only."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from vidx.configs.config import PeopleConfig
from vidx.configs.spaces import Space
from vidx.indexing import faces_index, schemas
from vidx.indexing.people.clustering import _blocks, _quality
from vidx.indexing.people.corrections import Assignment
from vidx.indexing.people.files import IDENTITIES, PEOPLE, Codes, _fsl
from vidx.indexing.people.naming import name_people

log = logging.getLogger(__name__)


def _tables(tracks: pa.Table, emb: np.ndarray, assign: Assignment, manual: dict[str, str],
            gallery: pa.Table, cfg: PeopleConfig, sp: Space, role: np.ndarray,
            cannot: np.ndarray, refused: dict[int, set[str]] | None = None) -> tuple[pa.Table, pa.Table]:
    """identities (a row a track) and people (a row a person), with array operations only: a
    million tracks take seconds, not a loop per person."""
    from scipy.sparse import csr_matrix

    n = tracks.num_rows
    quality = _quality(tracks)
    person_ids = assign.ids()
    names_sorted = sorted(set(assign.values[c] for c in np.unique(assign.codes).tolist())) if n else []
    rank = {p: i for i, p in enumerate(names_sorted)}
    remap = np.array([rank.get(p, -1) for p in assign.values], np.int64)
    inv = remap[assign.codes] if n else np.zeros(0, np.int64)  # person index per track, people sorted by id
    k = len(names_sorted)
    det = tracks["detections"].to_numpy(zero_copy_only=False).astype(np.float64)
    w = det * np.maximum(quality, 1e-3)  # a person's centre leans on its many-detection, good tracks
    dim = emb.shape[1] if emb.ndim == 2 and emb.shape[1] else schemas.EMBED_DIM
    centre = np.zeros((k, dim), np.float64)
    for b in _blocks(n):  # the detection-weighted mean, a block of tracks at a time (no n x 128 float64 copy)
        m = csr_matrix((w[b], (inv[b], np.arange(b.stop - b.start))), shape=(k, b.stop - b.start))
        centre += m @ np.asarray(emb[b], np.float64)
    centre /= np.maximum(np.bincount(inv, weights=w, minlength=k), 1e-9)[:, None]
    unit_c = faces_index.unit(centre)
    sim = np.zeros(n, np.float32)
    to_centre = np.zeros(n, np.float32)
    for b in _blocks(n):
        e = np.asarray(emb[b])
        sim[b] = (faces_index.unit(e) * unit_c[inv[b]]).sum(1)
        to_centre[b] = sp.distance(e, centre[inv[b]])
    identities = pa.table({"track_id": tracks["track_id"], "person_id": person_ids, "video_id": tracks["video_id"],
                           "similarity": sim, "distance": to_centre, "quality": pa.array(quality, pa.float32()),
                           "role": pa.array(list(role), pa.string()), "face_id": tracks["face_id"],
                           "start_s": tracks["start_s"], "end_s": tracks["end_s"],
                           "detections": tracks["detections"], "thumbnail_t": tracks["thumbnail_t"]},
                          schema=IDENTITIES)

    # names: manual first, then the nearest enrolled name (people on screen together never share one)
    a, b = inv[cannot[:, 0]], inv[cannot[:, 1]]
    diff = a != b
    together = set(zip(np.minimum(a, b)[diff].tolist(), np.maximum(a, b)[diff].tolist()))
    taken = [manual.get(p) for p in names_sorted]
    no = None
    if refused:  # per person, the names its tracks are marked as not being: a manual one goes too
        pos = {p: i for i, p in enumerate(assign.values)}
        no = [refused.get(pos[p], set()) for p in names_sorted]
        taken = [None if t in n else t for t, n in zip(taken, no)]
    enrolled, name_d = name_people(centre, gallery, sp, cfg.match_distance, together, taken, no)
    name = [t or e for t, e in zip(taken, enrolled)]
    source = ["manual" if t else ("enrolled" if e else None) for t, e in zip(taken, enrolled)]
    name_d = [None if t else d for t, d in zip(taken, name_d)]
    start, end = tracks["start_s"].to_numpy(), tracks["end_s"].to_numpy()
    order = np.lexsort((np.arange(n), -w, inv)) if n else np.zeros(0, np.int64)
    first = order[np.r_[0, np.flatnonzero(np.diff(inv[order])) + 1]] if n else np.zeros(0, np.int64)
    thumb = tracks["track_id"].take(pa.array(first))  # per person: the track with most (weighted) detections
    vcode = Codes(tracks["video_id"]).codes
    pairs = np.unique(inv * (int(vcode.max()) + 1 if n else 1) + vcode) if n else np.zeros(0, np.int64)
    n_videos = np.bincount(pairs // (int(vcode.max()) + 1), minlength=k) if n else np.zeros(0, np.int64)
    people = pa.table({
        "person_id": pa.array(names_sorted, pa.string()), "name": pa.array(name, pa.string()),
        "name_source": pa.array(source, pa.string()), "name_distance": pa.array(name_d, pa.float32()),
        "tracks": pa.array(np.bincount(inv, minlength=k), pa.int32()),
        "videos": pa.array(n_videos, pa.int32()),
        "seconds": pa.array(np.bincount(inv, weights=end - start, minlength=k), pa.float64()),
        "thumbnail_track": thumb, "embedding": _fsl(centre.reshape(-1, dim)),
    }, schema=PEOPLE)
    return identities, people
