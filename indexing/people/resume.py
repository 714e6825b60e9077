"""A delivery of new videos added to the people as they stand: the agglomeration resumed, each
touched person one cluster, and only the new rows written.

A full clustering is average linkage over tracks.  Between two groups of unit vectors the
average cosine distance is exact from their sums (1 - mean(a) . mean(b)), so a person of 20,000
tracks is one node of known size, and resuming the linkage from the people near the new tracks
(plus each new confident track as a node of its own) costs the delivery's size, not the
people's.  What it keeps as it is: people never merge with each other or split here (a full
refresh, ``vidx reindex --full``, re-decides those), weak tracks already placed stay where they
are, and a name is never taken from a person the delivery did not touch.  What it writes: the
new rows appended to identities, the new embeddings appended to ``faces.vectors``, a FAISS shard
of the new tracks, and the people table (a row a person: small).  A track already indexed keeps
the similarity and distance to its person's centre of the refresh that placed it.

Only when nothing else changed: parts were only added (none removed, no video indexed again),
the names and corrections are those the people were built with, the embedder's distance is
cosine (SFace; dlib's euclidean distance has no such exact form), and the tables are in the
shape this appends to.  Otherwise the refresh re-clusters the neighbourhood (``_incremental``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from vidx.configs.config import PeopleConfig
from vidx.configs.spaces import Space
from vidx.indexing import faces_index
from vidx.indexing.people.clustering import (
    co_occurring,
    constrained_linkage,
    join_weak,
    stable_ids,
)
from vidx.indexing.people.files import (
    IDENTITIES,
    Codes,
    PEOPLE,
    TRACK_COLUMNS,
    _emb,
    _fsl,
    _read,
    read_identities,
    read_vectors,
)
from vidx.indexing.people.naming import name_people
from vidx.indexing.store import IndexError_, Store
from vidx.indexing.tables import IndexTable, next_token

log = logging.getLogger(__name__)

MAX_PARTS = 64  # identities parts before the refresh writes the table whole again (readers open each)


@dataclass
class Grown:
    """What the writer appends: the new tracks' identities rows and embeddings, the FAISS index
    with them added (written as a shard), and the whole people table."""

    identities: pa.Table
    prev: pa.Table  # identities' NARROW columns before (the pack is written from both)
    emb: np.ndarray
    index: faces_index.FaceIndex
    people: pa.Table
    rows_before: int
    touched: int  # existing people the delivery was clustered with
    placed: int  # new tracks


def grow(store: Store, basis: dict, parts: dict, files: dict[str, str | None], cfg: PeopleConfig, sp: Space,
         gallery: pa.Table, ops: list[dict], labels: str) -> tuple[Grown | None, str]:
    """The delivery's tracks placed among the people (nothing written), or (None, why not)."""
    was = basis.get("face_tracks") or {}
    added = sorted(set(parts) - set(was))
    if set(was) - set(parts) or not added:
        return None, "tracks were removed" if set(was) - set(parts) else "no tracks were added"
    if sp.metric != "cosine":
        return None, f"{sp.name}'s {sp.metric} distance between groups is not exact from their sums"
    if basis.get("labels") != labels:
        return None, "the names or corrections changed"
    if any(files[p] is None for p in added):
        return None, "a part of face_tracks holds several videos"
    table = IndexTable(store, "identities", IDENTITIES)
    snap = table.snapshot(write=True)
    if basis.get("identities_version") != snap.version or len(snap.files) >= MAX_PARTS or next_token(snap.files) is None:
        return None, "the identities table is not as its basis says, or has too many parts"
    prev = read_identities(store, basis)
    n_prev = prev.num_rows
    if basis.get("rows") != n_prev or (n_prev and prev["face_id"].null_count):
        return None, "the identities table does not match its basis"
    try:
        idx = faces_index.FaceIndex.load(store, with_ids=False)  # identities.face_id maps its ids
        vec = read_vectors(store, n_prev)
    except (IndexError_, faces_index.FaceIndexError) as e:
        return None, str(e)
    if idx.meta.count != n_prev:
        return None, "the face index does not match the identities table"

    new = IndexTable(store, "face_tracks").read([parts[p] for p in added], columns=TRACK_COLUMNS + ["embedding"])
    new = new.sort_by("track_id")
    m = new.num_rows
    if idx.meta.kind == "exact" and n_prev + m >= cfg.index_exact_below:
        return None, "the face index becomes IVF"
    face_id = faces_index.track_hash(new["track_id"].to_pylist())
    prev_rows = faces_index.IdRows(prev["face_id"].to_numpy())
    if (prev_rows.rows(face_id) >= 0).any() or len(np.unique(face_id)) != m:
        return None, "new parts hold tracks already indexed"
    if pc.any(pc.is_in(new["video_id"], value_set=prev["video_id"].unique())).as_py():
        return None, "a new part holds a video already indexed"
    if m == 0:
        return None, "no tracks were added"
    x = _emb(new)
    u = faces_index.unit(x).astype(np.float64)
    q = np.nan_to_num(new["quality"].to_numpy(zero_copy_only=False).astype(np.float64), nan=1.0)
    conf = q >= cfg.min_quality

    ids = Codes(prev["person_id"])  # the previous tracks' people
    q_prev = np.nan_to_num(prev["quality"].to_numpy(zero_copy_only=False).astype(np.float64), nan=1.0)
    conf_prev = q_prev >= cfg.min_quality

    # the people within cluster_distance of a new track (their confident tracks: weak ones form no one)
    touched = np.zeros(0, np.int64)
    if n_prev:
        _, hits = idx.search_ids(x, cfg.neighbours + 1)
        r = prev_rows.rows(hits)
        qi = np.repeat(np.arange(m), r.shape[1])
        r = r.ravel()
        ok = r >= 0
        r, qi = r[ok], qi[ok]
        near = conf_prev[r]
        r, qi = r[near], qi[near]
        o = np.argsort(r, kind="stable")  # the memory-mapped rows read in file order
        e = np.empty((len(r), x.shape[1]), np.float32)
        e[o] = vec[r[o]]
        d = sp.distance(e, x[qi])
        touched = np.unique(ids.codes[r[d < cfg.cluster_distance]])
    t_rows = np.flatnonzero(ids.member(touched) & conf_prev)  # sorted: read in file order
    t_of = np.searchsorted(touched, ids.codes[t_rows])
    ut = faces_index.unit(np.asarray(vec[t_rows])).astype(np.float64)
    wt = np.maximum(q_prev[t_rows], 1e-3)
    T = len(touched)
    s_sum = np.zeros((T, x.shape[1]))
    w_sum = np.zeros((T, x.shape[1]))
    np.add.at(s_sum, t_of, ut)  # T is small (the people near a delivery): no sparse product needed
    np.add.at(w_sum, t_of, ut * wt[:, None])
    count = np.bincount(t_of, minlength=T).astype(np.float64)
    w_tot = np.bincount(t_of, weights=wt, minlength=T)

    # the linkage resumed: touched people and new confident tracks as nodes (people never merge here)
    ci = np.flatnonzero(conf)
    nodes = np.concatenate([s_sum / np.maximum(count, 1)[:, None], u[ci]])
    dist = 1.0 - nodes @ nodes.T
    dist[:T, :T] = np.inf
    cannot = co_occurring(new)
    pos = np.full(m, -1, np.int64)
    pos[ci] = T + np.arange(len(ci))
    cn = pos[cannot] if len(cannot) else np.zeros((0, 2), np.int64)
    cn = cn[(cn >= 0).all(1)] if len(cn) else cn
    lab = constrained_linkage(dist, cn, cfg.cluster_distance, size=np.concatenate([count, np.ones(len(ci))]))
    k = int(lab.max()) + 1 if len(lab) else 0
    person_of_label = np.full(k, -1, np.int64)  # the existing person each cluster holds, if any
    person_of_label[lab[:T]] = touched

    # weak new tracks join the nearest of these clusters, by the full clustering's rule
    labels_new = np.full(m, -1, np.int64)
    labels_new[ci] = lab[T:]
    role = np.where(conf, "core", "alone").astype(object)
    weak = np.flatnonzero(~conf)
    weak = weak[np.argsort(-q[weak], kind="stable")]
    if len(weak) and k:
        cw = np.zeros((k, x.shape[1]))
        cwt = np.zeros(k)
        np.add.at(cw, lab[:T], w_sum)
        np.add.at(cwt, lab[:T], w_tot)
        np.add.at(cw, lab[T:], u[ci] * np.maximum(q[ci], 1e-3)[:, None])
        np.add.at(cwt, lab[T:], np.maximum(q[ci], 1e-3))
        role[join_weak(x[weak], weak, labels_new, cw / np.maximum(cwt, 1e-12)[:, None], cannot, cfg, sp.metric)] = "joined"
    alone = labels_new < 0
    labels_new[alone] = k + np.arange(int(alone.sum()))

    # person ids: a cluster holding a person keeps its id; a new one gets a stable id of its own
    tids = new["track_id"].to_pylist()
    known = person_of_label[np.minimum(labels_new, k - 1)] if k else np.full(m, -1)
    known = np.where(labels_new < k, known, -1)
    pid = np.empty(m, dtype=object)
    pid[known >= 0] = [ids.values[c] for c in known[known >= 0].tolist()]
    fresh = np.flatnonzero(known < 0)
    if len(fresh):
        pid[fresh] = stable_ids(labels_new[fresh], [tids[i] for i in fresh], {}, taken=set(ids.values))

    people = _grow_people(store, prev, ids, new, x, pid, gallery, cannot, ops, cfg, sp)
    det = new["detections"].to_numpy(zero_copy_only=False).astype(np.float64)
    centre = _centres_of(people, pid)
    identities = pa.table({
        "track_id": new["track_id"], "person_id": pa.array(pid.tolist(), pa.string()), "video_id": new["video_id"],
        "similarity": pa.array((u * faces_index.unit(centre)).sum(1), pa.float32()),
        "distance": pa.array(sp.distance(x, centre), pa.float32()), "quality": pa.array(q, pa.float32()),
        "role": pa.array(role.tolist(), pa.string()), "face_id": pa.array(face_id, pa.int64()),
        "start_s": new["start_s"], "end_s": new["end_s"], "detections": pa.array(det.astype(np.int32), pa.int32()),
        "thumbnail_t": new["thumbnail_t"]}, schema=IDENTITIES)
    log.info("people: +%d track(s) placed among %d nearby person(s) (%d node(s) clustered), %d new person(s)",
             m, T, len(nodes), len(set(pid[fresh].tolist())))
    return Grown(identities, prev, x, idx, people, n_prev, T, m), ""


def _centres_of(people: pa.Table, pid: np.ndarray) -> np.ndarray:
    at = pc.index_in(pa.array(pid.tolist(), pa.string()), value_set=people["person_id"]).to_numpy(zero_copy_only=False)
    return _emb(people)[np.asarray(at, np.int64)].astype(np.float64)


def _grow_people(store: Store, prev: pa.Table, ids: Codes, new: pa.Table, x: np.ndarray,
                 pid: np.ndarray, gallery: pa.Table, cannot: np.ndarray, ops: list[dict], cfg: PeopleConfig,
                 sp: Space) -> pa.Table:
    """The people table with the new tracks counted in: the people they went to (counts, seconds,
    videos, thumbnail, the detection-weighted centre, the enrolled name) and the new people."""
    people = _read(store, "people", PEOPLE)
    old = {p: i for i, p in enumerate(people["person_id"].to_pylist())}
    got = sorted(set(pid.tolist()))
    gi = np.searchsorted(np.array(got, dtype=object), pid)  # each new track's person among ``got``
    g = len(got)
    det = new["detections"].to_numpy(zero_copy_only=False).astype(np.float64)
    q = np.nan_to_num(new["quality"].to_numpy(zero_copy_only=False).astype(np.float64), nan=1.0)
    w = det * np.maximum(q, 1e-3)
    start, end = new["start_s"].to_numpy(), new["end_s"].to_numpy()

    # what the people had: their weight (sum of w) and best thumbnail weight, from identities
    prev_code = ids.lookup(got)  # -1: a new person
    sel = ids.member(prev_code[prev_code >= 0])
    w_prev = prev["detections"].to_numpy(zero_copy_only=False).astype(np.float64)[sel] * np.maximum(
        np.nan_to_num(prev["quality"].to_numpy(zero_copy_only=False)[sel].astype(np.float64), nan=1.0), 1e-3)
    at = np.searchsorted(np.sort(prev_code), ids.codes[sel])
    by = np.argsort(prev_code)
    owner = by[at] if len(by) else at  # index into ``got`` of each previous row
    W0 = np.bincount(owner, weights=w_prev, minlength=g)
    best0 = np.full(g, -np.inf)
    np.maximum.at(best0, owner, w_prev)

    rows = np.array([old.get(p, -1) for p in got], np.int64)
    centre0 = np.zeros((g, x.shape[1]))
    if (rows >= 0).any():
        centre0[rows >= 0] = _emb(people.take(pa.array(rows[rows >= 0])))
    add = np.zeros((g, x.shape[1]))
    np.add.at(add, gi, x * w[:, None])
    W1 = W0 + np.bincount(gi, weights=w, minlength=g)
    centre = (centre0 * W0[:, None] + add) / np.maximum(W1, 1e-9)[:, None]

    def old_col(name: str, default):
        if not (rows >= 0).any():
            return [default] * g
        vals = people[name].take(pa.array(np.maximum(rows, 0))).to_pylist()
        return [v if r >= 0 else default for v, r in zip(vals, rows.tolist())]

    n_videos = np.zeros(g, np.int64)
    pairs = sorted(set(zip(gi.tolist(), new["video_id"].to_pylist())))  # new videos only: none counted before
    np.add.at(n_videos, np.array([a for a, _ in pairs], np.int64), 1)
    thumb = old_col("thumbnail_track", None)
    order = np.lexsort((np.arange(len(pid)), -w, gi))  # new tracks are in track id order: ties by track id
    first = order[np.r_[0, np.flatnonzero(np.diff(gi[order])) + 1]]
    tids = new["track_id"].to_pylist()
    for j, i in zip(gi[first].tolist(), first.tolist()):
        if w[i] > best0[j] or (w[i] == best0[j] and (thumb[j] is None or tids[i] < thumb[j])):
            thumb[j] = tids[i]

    name, source, name_d = old_col("name", None), old_col("name_source", None), old_col("name_distance", None)
    if gallery.num_rows:
        name, source, name_d = _names(prev, ids, got, centre, name, source, name_d, gi, cannot, new, people,
                                      gallery, ops, cfg, sp)
    grown = pa.table({
        "person_id": pa.array(got, pa.string()), "name": pa.array(name, pa.string()),
        "name_source": pa.array(source, pa.string()), "name_distance": pa.array(name_d, pa.float32()),
        "tracks": pa.array(np.array(old_col("tracks", 0)) + np.bincount(gi, minlength=g), pa.int32()),
        "videos": pa.array(np.array(old_col("videos", 0)) + n_videos, pa.int32()),
        "seconds": pa.array(np.array(old_col("seconds", 0.0)) + np.bincount(gi, weights=end - start, minlength=g),
                            pa.float64()),
        "thumbnail_track": pa.array(thumb, pa.string()), "embedding": _fsl(centre)}, schema=PEOPLE)
    keep = pc.invert(pc.is_in(people["person_id"], value_set=grown["person_id"]))
    return pa.concat_tables([people.filter(keep), grown]).sort_by("person_id")


def _names(prev, ids: Codes, got, centre, name, source, name_d, gi, cannot, new, people, gallery, ops, cfg, sp):
    """Enrolled names of the people the delivery went to, by the full refresh's rule among them
    and the people on screen with them; a name held by a person on screen with one of them that
    the delivery did not touch stays with that person."""
    g = len(got)
    gcode = ids.lookup(got)  # -1: a new person
    # on screen together: new tracks among themselves, and these people's earlier tracks with anyone
    together = {(min(a, b), max(a, b)) for a, b in zip(gi[cannot[:, 0]].tolist(), gi[cannot[:, 1]].tolist()) if a != b} \
        if len(cannot) else set()
    blocked: list[set[str]] = [set() for _ in range(g)]
    mine = ids.member(gcode[gcode >= 0])
    if mine.any():
        vids = pc.unique(prev["video_id"].filter(pa.array(mine)))
        there = np.flatnonzero(pc.is_in(prev["video_id"], value_set=vids).to_numpy(zero_copy_only=False))
        sub = prev.take(pa.array(there))
        pairs = co_occurring(sub)
        if len(pairs):
            pc_ = ids.codes[there][pairs]
            of = {c: j for j, c in enumerate(gcode.tolist()) if c >= 0}
            pname = dict(zip(people["person_id"].to_pylist(), people["name"].to_pylist()))
            for a, b in pc_.tolist():
                ja, jb = of.get(a), of.get(b)
                if ja is not None and jb is not None and ja != jb:
                    together.add((min(ja, jb), max(ja, jb)))
                elif (ja is None) != (jb is None):
                    j, other = (ja, b) if ja is not None else (jb, a)
                    if pname.get(ids.values[other]):
                        blocked[j].add(pname[ids.values[other]])
    taken = [n if s == "manual" else None for n, s in zip(name, source)]
    refused = [set() for _ in range(g)]
    nots = [op for op in ops if op["op"] == "not" and op.get("name")]
    if nots:
        track_person = dict(zip(prev["track_id"].to_pylist(), prev["person_id"].to_pylist()))
        where = {p: j for j, p in enumerate(got)}
        for op in nots:
            for t in op["tracks"]:
                j = where.get(track_person.get(t))
                if j is not None:
                    refused[j].add(op["name"])
    taken = [None if t in r else t for t, r in zip(taken, refused)]
    enrolled, dist = name_people(centre, gallery, sp, cfg.match_distance, together, taken, refused)
    out_n, out_s, out_d = [], [], []
    for j in range(g):
        e = enrolled[j] if enrolled[j] not in blocked[j] else None
        out_n.append(taken[j] or e)
        out_s.append("manual" if taken[j] else ("enrolled" if e else None))
        out_d.append(None if taken[j] or not e else dist[j])
    return out_n, out_s, out_d
