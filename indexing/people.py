"""People: face tracks clustered across the archive into identities, the gallery of enrolled
names, and the user's corrections, which survive re-indexing.

    OUT/faces.faiss (+ .ids.parquet, .json)        FAISS index of track embeddings
    OUT/faces.vectors                              the embeddings, float32, identities' row order
    OUT/people_basis.json                          the face_tracks parts (and action packs) built from
    OUT/identities/                                Delta table: track_id -> person_id, similarity, track times
    OUT/people/                                    Delta table: one row per person: name, counts, thumbnail track
    OUT/gallery/                                   Delta table: enrolled photos' embeddings, by name (user data)
    OUT/corrections.json                           merge / split / rename, replayed in order

:func:`refresh` brings the FAISS index, identities and people up to date whenever the tracks,
the gallery, the corrections or the parameters changed (a digest in the manifest says);
``vidx index`` calls it at the end, so a rerun with nothing new changes nothing.  It builds on
what it built: the tracks of new ``face_tracks`` parts join the FAISS index and only the people
near them are clustered again (:func:`_incremental`); a full clustering runs on ``force``
(``vidx reindex --full``), new parameters, or when there is nothing to build on.

Who may be one person: two tracks of one video that share a sampled time are two people (a
cannot-link constraint), in the clustering, in every merge it makes, in naming, and in a manual
``people merge`` (refused unless forced).  Only confident tracks (``face_tracks.quality`` >=
``people.min_quality``: big, sharp, frontal enough, seen more than once) form people; a weaker
track joins the person whose centre is nearest when that is below ``cluster_distance``, at least
``people.attach_margin`` nearer than any other person, and no track of that person is on screen
with it; otherwise it stays a person of its own (a photo query still finds it).

Clustering: a k-nearest-neighbour graph from the FAISS index, cut at ``cluster_distance``; each
connected part is clustered by average linkage with the cannot-link pairs at infinite distance
(which average linkage carries into every merged cluster), exactly over every pair in parts up
to ``dense_limit`` tracks, and over the kNN graph in larger ones (:func:`graph_linkage`), whose clusters
that hold a conflicting pair are re-clustered exactly.  One bad track cannot chain two people
together and nothing is quadratic in the archive size.  Person ids are kept across
re-clustering: a new cluster takes the id most of its tracks had.

Corrections are stored as the track ids they were made on, not person ids, so they still apply
when re-indexing renumbers clusters: ``merge`` joins the people holding those tracks (the first keeps its name), ``split``
moves tracks to a person of their own, ``rename`` names the person holding most of the tracks.
Enrolled names label every person whose distance to the name's nearest photos (the mean of the
nearest half, at most 3: one poor photo cannot veto a name) is below ``match_distance``; two
people on screen together never get the same name (the nearer keeps it); a manual name wins
over an enrolled one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.configs.config import PeopleConfig, fill_distances
from vidx.configs.spaces import Space, from_similarity, pairwise, space
from vidx.configs.spaces import distance as rowwise
from vidx.indexing import faces_index, packs, schemas
from vidx.indexing.lease import writes_index
from vidx.indexing.store import IndexError_, Store, read_index_table
from vidx.indexing.tables import IndexTable, replace_table, video_of

log = logging.getLogger(__name__)

CORRECTIONS_REL = "corrections.json"

IDENTITIES = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("similarity", pa.float32()),  # cosine of the track to its person's mean embedding
    pa.field("distance", pa.float32()),  # the track's distance to its person's centre (the embedder's metric)
    pa.field("quality", pa.float32()),  # the track's quality (face_tracks.quality)
    # core: a confident track that formed the person; joined: a weak track that joined it; alone: a weak
    # track no person was clearly nearest to; manual: placed by a correction; reviewed: accepted by hand
    pa.field("role", pa.string()),
    # the track's own facts, copied so that queries and the next refresh read one narrow table
    pa.field("face_id", pa.int64()),  # its id in the FAISS index (faces_index.track_hash)
    pa.field("start_s", pa.float64()),  # seconds from the video's first frame
    pa.field("end_s", pa.float64()),
    pa.field("detections", pa.int32()),
    pa.field("thumbnail_t", pa.float64()),
])

PEOPLE = pa.schema([
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("name", pa.string()),  # null: not named
    pa.field("name_source", pa.string()),  # enrolled | manual | null
    pa.field("name_distance", pa.float32()),  # enrolled: mean distance to the name's nearest photos
    pa.field("tracks", pa.int32()),
    pa.field("videos", pa.int32()),
    pa.field("seconds", pa.float64()),  # summed track durations
    pa.field("thumbnail_track", pa.string()),  # the track with most detections
    pa.field("embedding", pa.list_(pa.float32(), schemas.EMBED_DIM)),  # detection-weighted mean (raw)
])

GALLERY = pa.schema([
    pa.field("name", pa.string(), nullable=False),
    pa.field("photo", pa.string(), nullable=False),  # the path it was enrolled from
    pa.field("face", pa.int32()),  # which face of the photo (left to right)
    pa.field("box", pa.list_(pa.float32(), 4)),
    pa.field("embedding", pa.list_(pa.float32(), schemas.EMBED_DIM)),
    pa.field("added", pa.string()),
])


class PeopleError(RuntimeError):
    """A people command cannot be carried out (unknown person, nothing indexed...)."""


def person_id_for(track_ids: list[str], salt: str = "") -> str:
    return "P" + hashlib.blake2b((salt + min(track_ids)).encode(), digest_size=4).hexdigest()


def _emb(table: pa.Table, col: str = "embedding") -> np.ndarray:
    return np.asarray(table[col].combine_chunks().flatten().to_numpy(zero_copy_only=False),
                      np.float32).reshape(-1, schemas.EMBED_DIM)


def _fsl(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(np.asarray(x, np.float32).ravel(), schemas.EMBED_DIM)


# ---------------------------------------------------------------------------- clustering


def co_occurring(tracks: pa.Table) -> np.ndarray:
    """(P, 2) row pairs (i < j) of tracks in one video that share a sampled time (closed
    intervals overlap): two faces on screen together, never one person."""
    import duckdb

    if tracks.num_rows < 2:
        return np.zeros((0, 2), np.int64)
    t = pa.table({"r": pa.array(np.arange(tracks.num_rows), pa.int64()), "v": tracks["video_id"],
                  "s": tracks["start_s"], "e": tracks["end_s"]})
    con = duckdb.connect()
    con.register("t", t)
    pairs = con.execute("SELECT a.r AS i, b.r AS j FROM t a JOIN t b "
                        "ON a.v = b.v AND a.r < b.r AND a.s <= b.e AND b.s <= a.e").fetchnumpy()
    return np.stack([pairs["i"], pairs["j"]], 1).astype(np.int64).reshape(-1, 2)


def constrained_linkage(dist: np.ndarray, cannot: np.ndarray, distance: float) -> np.ndarray:
    """Average-linkage labels of a dense (n, n) distance matrix, merging while the nearest pair of
    clusters is closer than ``distance``; ``cannot`` (P, 2) pairs are set infinitely far, and the
    average carries that into every cluster that holds one of them, so none is ever merged with a
    cluster holding the other.  Nearest-neighbour bookkeeping: O(n^2) for clusterable data."""
    n = len(dist)
    d = np.array(dist, np.float64, copy=True)
    if len(cannot):
        d[cannot[:, 0], cannot[:, 1]] = np.inf
        d[cannot[:, 1], cannot[:, 0]] = np.inf
    np.fill_diagonal(d, np.inf)
    size = np.ones(n)
    alive = np.ones(n, bool)
    label = np.arange(n)
    nn = d.argmin(1)
    nnd = d[np.arange(n), nn]
    while True:
        i = int(np.argmin(np.where(alive, nnd, np.inf)))
        if not alive[i] or not nnd[i] < distance:
            break
        j = int(nn[i])
        row = (size[i] * d[i] + size[j] * d[j]) / (size[i] + size[j])  # inf stays inf: cannot-link carries
        row[i] = row[j] = np.inf
        d[i], d[:, i] = row, row
        d[j], d[:, j] = np.inf, np.inf
        size[i] += size[j]
        alive[j] = False
        nnd[j] = np.inf
        label[label == j] = i
        stale = alive & ((nn == i) | (nn == j))
        stale[i] = True
        for k in np.flatnonzero(stale):
            nn[k] = int(d[k].argmin())
            nnd[k] = d[k, nn[k]]
        closer = alive & (row < nnd)
        nn[closer], nnd[closer] = i, row[closer]
    return np.unique(label, return_inverse=True)[1].astype(np.int64)


def cluster(emb: np.ndarray, distance: float, neighbours: int = 30, index: faces_index.FaceIndex | None = None,
            track_ids: list[str] | None = None, dense_limit: int = 4000, metric: str = "euclidean",
            cannot: np.ndarray | None = None) -> np.ndarray:
    """Cluster label per row of embeddings: average linkage below ``distance`` (``metric``: euclidean
    for dlib, cosine for SFace), within the connected parts of the kNN graph whose edges are
    shorter than ``distance``: exact (every pair) in parts up to ``dense_limit`` tracks, over the
    kNN edges in larger ones.  ``cannot``: (P, 2) row pairs that must end in different clusters."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(emb)
    if n <= 1:
        return np.zeros(n, np.int64)
    cannot = np.zeros((0, 2), np.int64) if cannot is None else np.asarray(cannot, np.int64).reshape(-1, 2)
    k = min(neighbours + 1, n)
    if index is not None and track_ids is not None:  # reuse the archive's FAISS index
        sims, hits = index.search_ids(emb, k)
        nb = faces_index.IdRows(faces_index.track_hash(track_ids)).rows(hits)
    else:
        import faiss

        flat = faiss.IndexFlatIP(emb.shape[1])
        flat.add(faces_index.unit(emb))
        sims, nb = flat.search(faces_index.unit(emb), k)
    norm = np.linalg.norm(emb, axis=1)
    dist = from_similarity(sims, norm[:, None], norm[np.maximum(nb, 0)], metric)
    rows = np.repeat(np.arange(n), k)
    cols = nb.ravel()
    ok = (cols >= 0) & (rows != cols)
    rows, cols = rows[ok], cols[ok]
    d = dist.ravel()[ok]
    knn = coo_matrix((np.ones(len(d)), (rows, cols)), shape=(n, n)).tocsr()  # the graph's structure
    knn = knn.maximum(knn.T)
    close = d < distance  # a cluster never spans two parts of the graph of edges shorter than that
    graph = coo_matrix((np.ones(close.sum()), (rows[close], cols[close])), shape=(n, n))
    _, part = connected_components(graph, directed=False)
    labels = np.empty(n, np.int64)
    next_label = 0
    order = np.argsort(part, kind="stable")
    bad_pair = part[cannot[:, 0]] == part[cannot[:, 1]] if len(cannot) else np.zeros(0, bool)
    cannot = cannot[bad_pair]  # only pairs inside one part can be violated
    cannot = cannot[np.argsort(part[cannot[:, 0]], kind="stable")] if len(cannot) else cannot
    pair_part = part[cannot[:, 0]] if len(cannot) else np.zeros(0, np.int64)
    for members in np.split(order, np.flatnonzero(np.diff(part[order])) + 1):
        p = part[members[0]]  # this part's pairs only: nothing here may cost the archive's size
        mine = cannot[np.searchsorted(pair_part, p) : np.searchsorted(pair_part, p, side="right")]
        local = _local_pairs(members, mine)
        if len(members) == 1:
            lab = np.zeros(1, np.int64)
        elif len(members) <= dense_limit:  # exact average linkage over every pair
            lab = constrained_linkage(pairwise(emb[members], emb[members], metric), local, distance)
        else:  # large part: average linkage over the kNN graph's edges (approximate, memory ~ n * k)
            sub = knn[members][:, members].tocoo()
            lab = graph_linkage(emb[members], sub.row, sub.col, distance, metric)
            lab = _repair(lab, local, emb[members], distance, metric)
        labels[members] = lab + next_label
        next_label += int(lab.max()) + 1
    return labels


def graph_linkage(emb: np.ndarray, rows: np.ndarray, cols: np.ndarray, distance: float, metric: str) -> np.ndarray:
    """Average linkage over a graph's edges (the clusters scikit-learn's AgglomerativeClustering
    with ``connectivity`` gives: a merged cluster's distance to a neighbour is the size-weighted
    mean of its parts' distances to it, or the one part's when only one is connected), stopping
    at ``distance`` instead of building the whole tree: scikit-learn merges on up to one cluster,
    and its last merges of huge clusters ran past 10 minutes (then stopped) on a million-track
    archive whose confident tracks form one large part of the graph.  Edge lengths are measured exactly."""
    import heapq

    n = len(emb)
    keep = rows < cols  # each undirected edge once
    r, c = rows[keep].astype(np.int64), cols[keep].astype(np.int64)
    d = np.empty(len(r))
    for b in _blocks(len(r), 1 << 18):
        d[b] = rowwise(emb[r[b]], emb[c[b]], metric)
    adj: list[dict[int, float]] = [{} for _ in range(n)]
    for i, j, x in zip(r.tolist(), c.tolist(), d.tolist()):
        adj[i][j] = x
        adj[j][i] = x
    close = d < distance
    heap = list(zip(d[close].tolist(), r[close].tolist(), c[close].tolist()))
    heapq.heapify(heap)
    size = [1] * n
    alive = [True] * n
    parent = list(range(n))
    while heap:
        x, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]) or adj[i].get(j) != x:
            continue  # a stale entry: one side merged since
        if len(adj[i]) < len(adj[j]):
            i, j = j, i  # the cluster with more neighbours absorbs the other
        ni, nj = size[i], size[j]
        ai, aj = adj[i], adj[j]
        del ai[j], aj[i]
        for k, dk in aj.items():
            ak = adj[k]
            del ak[j]
            old = ai.get(k)
            nd = dk if old is None else (ni * old + nj * dk) / (ni + nj)
            ai[k] = ak[i] = nd
            if nd < distance:
                heapq.heappush(heap, (nd, min(i, k), max(i, k)))
        adj[j] = {}
        alive[j] = False
        parent[j] = i
        size[i] = ni + nj
    root = np.array(parent)
    while True:
        nxt = root[root]
        if np.array_equal(nxt, root):
            break
        root = nxt
    return np.unique(root, return_inverse=True)[1].astype(np.int64)


def _blocks(n: int, size: int = 131072):
    return (slice(a, min(a + size, n)) for a in range(0, n, size))


def _local_pairs(members: np.ndarray, cannot: np.ndarray) -> np.ndarray:
    """The cannot-link pairs among ``members``, in the members' own numbering."""
    if len(cannot) == 0 or len(members) < 2:
        return np.zeros((0, 2), np.int64)
    by = np.argsort(members, kind="stable")
    sm = members[by]
    at = np.clip(np.searchsorted(sm, cannot), 0, len(sm) - 1)
    ok = (sm[at] == cannot).all(1)
    return by[at[ok]].reshape(-1, 2)


def _repair(lab: np.ndarray, cannot: np.ndarray, emb: np.ndarray, distance: float, metric: str) -> np.ndarray:
    """Re-cluster exactly, with the constraint, every cluster that holds a cannot-link pair."""
    if len(cannot) == 0:
        return lab
    lab = lab.copy()
    nxt = int(lab.max()) + 1
    for c in np.unique(lab[cannot[:, 0]][lab[cannot[:, 0]] == lab[cannot[:, 1]]]):
        members = np.flatnonzero(lab == c)
        sub = constrained_linkage(pairwise(emb[members], emb[members], metric),
                                  _local_pairs(members, cannot), distance)
        lab[members] = np.where(sub == 0, c, sub + nxt - 1)
        nxt += int(sub.max())
    return lab


def _quality(tracks: pa.Table) -> np.ndarray:
    q = tracks["quality"].to_numpy(zero_copy_only=False) if "quality" in tracks.column_names else None
    return np.ones(tracks.num_rows) if q is None else np.nan_to_num(q.astype(np.float64), nan=1.0)


def centres(emb: np.ndarray, labels: np.ndarray, weight: np.ndarray, metric: str) -> np.ndarray:
    """Each label's centre: the weighted mean of its rows (unit rows first for cosine)."""
    from scipy.sparse import csr_matrix

    x = faces_index.unit(emb) if metric == "cosine" else np.asarray(emb, np.float64)
    k = int(labels.max()) + 1 if len(labels) else 0
    m = csr_matrix((np.asarray(weight, np.float64), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    c = np.asarray(m @ np.asarray(x, np.float64))  # a weighted sum per label (np.add.at: 10x slower)
    return c / np.maximum(np.bincount(labels, weights=weight, minlength=k), 1e-12)[:, None]


def people_labels(emb: np.ndarray, quality: np.ndarray, cannot: np.ndarray, cfg: PeopleConfig, sp: Space,
                  index: faces_index.FaceIndex | None = None, track_ids: list[str] | None = None
                  ) -> tuple[np.ndarray, list[str]]:
    """A person label and a role per track: confident tracks (quality >= min_quality) are clustered
    under the cannot-link constraint (role ``core``); each weaker track, best first, joins the
    person whose centre is nearest if that is below cluster_distance, attach_margin nearer than the
    next person, and none of that person's tracks is on screen with it (``joined``); otherwise it
    is a person of its own (``alone``)."""
    n = len(emb)
    conf = quality >= cfg.min_quality
    ci = np.flatnonzero(conf)
    labels = np.full(n, -1, np.int64)
    role = ["alone"] * n
    if len(ci):
        local = _local_pairs(ci, cannot)
        sub_ids = [track_ids[i] for i in ci] if track_ids is not None else None
        labels[ci] = cluster(emb[ci], cfg.cluster_distance, cfg.neighbours, index if sub_ids else None, sub_ids,
                             metric=sp.metric, cannot=local)
        for i in ci:
            role[i] = "core"
    n_core = int(labels.max()) + 1 if len(ci) else 0
    weak = np.flatnonzero(~conf)
    weak = weak[np.argsort(-quality[weak], kind="stable")]
    if len(weak) and n_core:
        w = np.maximum(quality[ci], 1e-3)
        cen = centres(emb[ci], labels[ci], w, sp.metric)
        two, dd = _nearest_centres(emb[weak], cen, sp.metric, min(2, n_core))  # exact, without a weak x people matrix
        d1 = dd[:, 0]
        d2 = dd[:, 1] if n_core > 1 else np.full(len(weak), np.inf)
        partners: dict[int, list[int]] = {}
        for a, b in cannot.tolist():
            partners.setdefault(a, []).append(b)
            partners.setdefault(b, []).append(a)
        for k, i in enumerate(weak.tolist()):
            p = int(two[k, 0])
            if d1[k] < cfg.cluster_distance and d2[k] - d1[k] >= cfg.attach_margin \
                    and not any(labels[j] == p for j in partners.get(i, ())):
                labels[i] = p
                role[i] = "joined"
    nxt = n_core
    for i in weak.tolist():
        if labels[i] < 0:
            labels[i] = nxt
            nxt += 1
    return labels, role


def _nearest_centres(x: np.ndarray, centre: np.ndarray, metric: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest centres of each row and their distances (exact FAISS search: at a million
    tracks the weak tracks x people matrix would be 55 GB)."""
    import faiss

    x = np.ascontiguousarray(x, np.float32)
    c = np.ascontiguousarray(centre, np.float32)
    if metric == "cosine":
        index = faiss.IndexFlatIP(c.shape[1])
        index.add(faces_index.unit(c))
        sims, nn = index.search(faces_index.unit(x), k)
        return nn, (1.0 - sims).astype(np.float64)
    index = faiss.IndexFlatL2(c.shape[1])
    index.add(c)
    d2, nn = index.search(x, k)
    return nn, np.sqrt(np.maximum(d2, 0)).astype(np.float64)


def stable_ids(labels: np.ndarray, track_ids: list[str], previous: dict[str, str],
               taken: set[str] | None = None) -> list[str]:
    """A person id per cluster: the id most of its tracks had before (bigger clusters choose
    first), else a new one from the cluster's smallest track id.  ``taken``: ids already held by
    people outside these tracks (an incremental refresh), which no cluster here gets."""
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    taken = set(taken or ())
    out = [""] * len(track_ids)
    for lab, members in sorted(groups.items(), key=lambda g: (-len(g[1]), min(track_ids[i] for i in g[1]))):
        votes: dict[str, int] = {}
        for i in members:
            p = previous.get(track_ids[i])
            if p and p not in taken:
                votes[p] = votes.get(p, 0) + 1
        if votes:
            pid = max(sorted(votes), key=votes.get)
        else:
            pid = person_id_for([track_ids[i] for i in members])
            while pid in taken:
                pid = "P" + hashlib.blake2b(pid.encode(), digest_size=4).hexdigest()
        taken.add(pid)
        for i in members:
            out[i] = pid
    return out


class Assignment:
    """Person per track as integer codes over a list of person ids: corrections replayed over a
    million tracks are array operations, not loops over a dict."""

    def __init__(self, track_ids: pa.Array, person_ids: pa.Array):
        self.track_ids = track_ids
        enc = pc.dictionary_encode(person_ids).combine_chunks() if isinstance(person_ids, pa.ChunkedArray) \
            else pc.dictionary_encode(person_ids)
        self.names: list[str] = enc.dictionary.to_pylist()
        self.code = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)

    def person_ids(self) -> pa.Array:
        return pa.array(self.names, pa.string()).take(pa.array(self.code))

    def code_of(self, pid: str) -> int:
        try:
            return self.names.index(pid)
        except ValueError:
            self.names.append(pid)
            return len(self.names) - 1

    def plurality(self, rows: np.ndarray) -> int | None:
        """The person most of ``rows`` belong to (ties: the smallest id)."""
        if not len(rows):
            return None
        codes, counts = np.unique(self.code[rows], return_counts=True)
        best = counts == counts.max()
        return min(codes[best].tolist(), key=lambda c: self.names[c])


def replay(assign: Assignment, ops: list[dict[str, Any]]) -> dict[str, str]:
    """Apply corrections in order to ``assign`` (changed in place); returns the manual names
    (person -> name).  Tracks an op names that are no longer indexed are skipped."""
    keys = ("into", "from", "tracks", "anchor")
    flat = [t for op in ops for k in keys for t in op.get(k) or ()]
    found = pc.index_in(pa.array(flat, pa.string()), value_set=assign.track_ids).to_numpy(zero_copy_only=False)
    at = 0
    rows: list[dict[str, np.ndarray]] = []
    for op in ops:  # each op's track lists as rows of the assignment (one hash lookup for all ops)
        r = {}
        for k in keys:
            m = len(op.get(k) or ())
            x = found[at : at + m]
            r[k] = x[~np.isnan(x)].astype(np.int64) if x.dtype.kind == "f" else x.astype(np.int64)
            at += m
        rows.append(r)
    names: dict[str, str] = {}
    for op, r in zip(ops, rows):
        kind = op["op"]
        if kind == "merge":
            into = assign.plurality(r["into"])
            if into is None:
                continue
            for p in set(assign.code[r["from"]].tolist()) - {into}:
                assign.code[assign.code == p] = into
                names.pop(assign.names[p], None)  # the first person keeps its name; the others' go
        elif kind == "split":
            assign.code[r["tracks"]] = assign.code_of(op["person_id"])
        elif kind in ("move", "accept"):  # tracks moved into another person; accepted: kept in theirs
            into = assign.plurality(r["into"])
            if into is not None:
                assign.code[r["tracks"]] = into
        elif kind == "not":  # "these tracks are not that person": out of the anchor's person, whoever put them back
            anchor = assign.plurality(r["anchor"])
            if anchor is not None and len(r["tracks"]):
                back = r["tracks"][assign.code[r["tracks"]] == anchor]
                if len(back):
                    assign.code[back] = assign.code_of(op["person_id"])
        elif kind == "rename":
            p = assign.plurality(r["tracks"])
            if p is not None:
                if op["name"]:
                    names[assign.names[p]] = op["name"]
                else:
                    names.pop(assign.names[p], None)
    return names


def refused_names(assign: Assignment, ops: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Person code -> the names its tracks were marked as not being ("not this person"): naming
    never gives them one of these."""
    out: dict[int, set[str]] = {}
    nots = [op for op in ops if op["op"] == "not" and op.get("name")]
    if not nots:
        return out
    flat = [t for op in nots for t in op["tracks"]]
    found = pc.index_in(pa.array(flat, pa.string()), value_set=assign.track_ids).to_numpy(zero_copy_only=False)
    at = 0
    for op in nots:
        x = found[at : at + len(op["tracks"])]
        at += len(op["tracks"])
        rows = x[~np.isnan(x)].astype(np.int64) if x.dtype.kind == "f" else x.astype(np.int64)
        for c in np.unique(assign.code[rows]).tolist():
            out.setdefault(c, set()).add(op["name"])
    return out


# ---------------------------------------------------------------------------- files


def read_gallery(store: Store) -> pa.Table:
    return _read(store, "gallery", GALLERY)


def _read(store: Store, name: str, schema: pa.Schema) -> pa.Table:
    t = IndexTable(store, name, schema)
    return t.read() if t.log.version >= 0 else schema.empty_table()


def write_gallery(store: Store, gallery: pa.Table) -> None:
    replace_table(store, "gallery", gallery, GALLERY)


def read_corrections(store: Store) -> list[dict[str, Any]]:
    if not store.exists(CORRECTIONS_REL):
        return []
    with store.fs.open_input_stream(store.path(CORRECTIONS_REL)) as f:
        try:
            return json.loads(f.read())["ops"]
        except (ValueError, KeyError) as e:
            raise IndexError_(f"{store.path(CORRECTIONS_REL)} is unreadable ({e})") from None


def write_corrections(store: Store, ops: list[dict[str, Any]]) -> None:
    store.write_bytes(CORRECTIONS_REL, json.dumps({"version": 1, "ops": ops}, indent=1).encode())


def index_space(manifest: dict[str, Any]) -> Space:
    """The embedder an index was built with, and its distances."""
    return space(manifest.get("embedder") or faces_index.EMBEDDER)


def people_config(manifest: dict[str, Any]) -> PeopleConfig:
    """The people parameters the index was built with (``vidx index --set people.*``); thresholds
    left at 0 take the index's embedder's values."""
    saved = (manifest.get("config") or {}).get("people") or {}
    known = {k: v for k, v in saved.items() if k in PeopleConfig.__dataclass_fields__}
    cfg = PeopleConfig(**known)
    fill_distances(index_space(manifest).name, None, cfg)
    return cfg


VECTORS = "faces.vectors"  # float32 (rows of identities, 128): the tracks' embeddings, memory-mapped by readers
BASIS = "people_basis.json"  # what the people tables were built from: the next refresh adds only what is new
TRACK_COLUMNS = ["track_id", "video_id", "start_s", "end_s", "detections", "thumbnail_t", "quality"]


def _settings_digest(cfg: PeopleConfig, embedder: str) -> str:
    """What a change of forces a full re-clustering: the people parameters and the embedder."""
    return hashlib.blake2b(json.dumps([asdict(cfg), embedder], sort_keys=True).encode(), digest_size=16).hexdigest()


def _labels_digest(gallery: pa.Table, ops: list) -> str:
    """What names and corrections depend on (a change relabels; it re-clusters nothing)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(_emb(gallery).tobytes())
    h.update("\0".join(gallery["name"].to_pylist()).encode())
    h.update(json.dumps(ops, sort_keys=True).encode())
    return h.hexdigest()


def _digest(settings: str, labels: str, files: dict[str, str | None]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update((settings + labels).encode())
    for p in sorted(files):  # parts are never rewritten in place: their names say what they hold
        h.update(p.encode() + b"\0")
    return h.hexdigest()


def read_vectors(store: Store, rows: int) -> np.ndarray:
    """The tracks' embeddings in identities' row order: memory-mapped from a local index (pages
    read when touched, shared with the page cache), read whole from an object store."""
    import os

    size = rows * schemas.EMBED_DIM * 4
    local = store.fs.type_name == "local"
    path = store.path(VECTORS)
    data = None if local else (store.read_bytes(VECTORS) if store.exists(VECTORS) else b"")
    found = (os.path.getsize(path) if os.path.exists(path) else -1) if local else len(data)
    if found != size:
        raise IndexError_(f"{path} does not match the identities table ({rows} rows); run 'vidx reindex {store.uri}'")
    if not local:
        return np.frombuffer(data, np.float32).reshape(rows, schemas.EMBED_DIM)
    if rows == 0:  # numpy cannot map an empty file
        return np.zeros((0, schemas.EMBED_DIM), np.float32)
    return np.memmap(path, np.float32, "r", shape=(rows, schemas.EMBED_DIM))


def read_basis(store: Store) -> dict[str, Any] | None:
    if not store.exists(BASIS):
        return None
    try:
        b = json.loads(store.read_bytes(BASIS))
        return b if b.get("version") == 1 else None
    except ValueError:
        return None


@dataclass
class RefreshResult:
    changed: bool
    tracks: int
    people: int
    named: dict[str, list[str]]  # name -> person ids
    index_kind: str
    warnings: list[str] = field(default_factory=list)  # enrolment: doubtful photos
    mode: str = ""  # full | incremental | unchanged
    reclustered: int = 0  # tracks clustered again (all of them in a full refresh)


@dataclass
class _Built:
    """What a full or an incremental refresh hands to the writer."""

    tracks: pa.Table  # TRACK_COLUMNS + face_id, in identities' row order
    emb: np.ndarray
    index: faces_index.FaceIndex
    assign: Assignment
    auto: np.ndarray  # person codes before corrections
    role: np.ndarray
    reclustered: int
    mode: str  # full | incremental
    changed: bool = True  # tracks came or went: the FAISS index and faces.vectors are written
    cannot: np.ndarray | None = None  # co_occurring(tracks), when the clustering already found it


@writes_index("reindex")
def refresh(out: str, cfg: PeopleConfig | None = None, force: bool = False, purge: bool = False) -> RefreshResult:
    """Bring the FAISS index, identities and people up to date with ``face_tracks``, the gallery
    and the corrections: incrementally when only tracks were added or removed (or names and
    corrections changed), fully when the people parameters or the embedder changed, when there
    is nothing to build on, or when ``force`` (``vidx reindex --full``)."""
    store = Store(out)
    m = store.require_manifest()
    cfg = cfg or people_config(m)
    sp = index_space(m)
    fill_distances(sp.name, None, cfg)
    for name, schema in (("identities", IDENTITIES), ("people", PEOPLE)):  # refused before anything is written
        IndexTable(store, name, schema).snapshot(write=True)
    ft = IndexTable(store, "face_tracks")  # one writer: no commit lands while this runs
    snap = ft.snapshot() if ft.log.version >= 0 else None
    parts = dict(snap.files) if snap else {}
    files = {p: video_of(part) for p, part in parts.items()}
    gallery = read_gallery(store)
    ops = read_corrections(store)
    settings, labels_in = _settings_digest(cfg, sp.model), _labels_digest(gallery, ops)
    digest = _digest(settings, labels_in, files)
    old = m.get("people") or {}
    basis = read_basis(store)
    packed = packs.update(store, (basis or {}).get("packs"))  # the action tables, one file each
    if not force and old.get("digest") == digest and basis is not None:
        if packed != basis.get("packs"):
            store.write_bytes(BASIS, json.dumps({**basis, "packs": packed}).encode())
        people = _read(store, "people", PEOPLE)
        return RefreshResult(False, int(basis.get("rows", 0)), people.num_rows, _named(people),
                             m["faces_index"]["kind"], mode="unchanged")

    built, why = None, "forced" if force else ""
    if not force:
        why = ("no people tables to build on" if basis is None or not old.get("digest") else
               "the people parameters or the embedder changed" if basis.get("settings") != settings else "")
    if not why:
        built, why = _incremental(store, basis, parts, files, cfg, sp)
    if built is None:
        log.info("people: clustering every track (%s)", why)
        built = _full(store, ft, parts, cfg, sp, old)
    manual = replay(built.assign, ops)
    refused = refused_names(built.assign, ops)
    role = np.where(built.assign.code != built.auto, "manual", built.role)
    accepted = [t for op in ops if op["op"] in ("accept", "not") for t in op["tracks"]]
    if accepted:  # reviewed by hand (accepted, or marked not their person): out of the review queue
        seen = pc.is_in(built.tracks["track_id"], value_set=pa.array(accepted, pa.string())).to_numpy(
            zero_copy_only=False)
        role = np.where(seen & (role != "manual"), "reviewed", role)
    cannot = built.cannot if built.cannot is not None else co_occurring(built.tracks)
    identities, people = _tables(built.tracks, built.emb, built.assign, manual, gallery, cfg, sp, role, cannot,
                                 refused)

    if built.changed:
        built.index.meta.face_tracks_version = snap.version if snap else -1
        built.index.save(store)
        store.write_bytes(VECTORS, np.ascontiguousarray(built.emb, np.float32).tobytes())
    replace_table(store, "identities", identities, IDENTITIES, purge)  # purge (forget): the old files
    replace_table(store, "people", people, PEOPLE, purge)  # deleted, a forgotten person must not linger
    store.write_bytes(BASIS, json.dumps({
        "version": 1, "settings": settings, "rows": identities.num_rows,
        "identities_version": IndexTable(store, "identities", IDENTITIES).log.version, "face_tracks": files,
        "packs": packed}).encode())
    m["faces_index"] = {"files": [faces_index.INDEX_FILE, faces_index.IDS_FILE, faces_index.META_FILE, VECTORS],
                        **asdict(built.index.meta)}
    m["people"] = {"digest": digest, "count": people.num_rows}
    m["commit"] = m.get("commit", 0) + 1
    m["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_manifest(m)
    log.info("people: %d track(s) -> %d person(s) (%s; %d clustered)", identities.num_rows, people.num_rows,
             built.mode, built.reclustered)
    return RefreshResult(True, identities.num_rows, people.num_rows, _named(people), built.index.meta.kind,
                         mode=built.mode, reclustered=built.reclustered)


def _track_rows(tracks: pa.Table) -> pa.Table:
    """TRACK_COLUMNS (quality filled where absent) plus the FAISS id."""
    cols = {c: tracks[c] for c in TRACK_COLUMNS if c in tracks.column_names}
    cols["quality"] = pa.array(_quality(tracks), pa.float32())
    cols["face_id"] = pa.array(faces_index.track_hash(tracks["track_id"].to_pylist()), pa.int64())
    return pa.table(cols)


def _full(store: Store, ft: IndexTable, parts: dict, cfg: PeopleConfig, sp: Space, old: dict) -> _Built:
    tracks = ft.read(parts.values(), columns=TRACK_COLUMNS + ["embedding"]) if parts else \
        schemas.FACE_TRACKS.empty_table().select(TRACK_COLUMNS + ["embedding"])
    tracks = tracks.sort_by("track_id")
    tids = tracks["track_id"].to_pylist()
    emb = _emb(tracks)
    log.debug("people: clustering %d track(s)", len(tids))
    idx = faces_index.FaceIndex.build(emb, tids, exact_below=cfg.index_exact_below, codec=cfg.index_codec,
                                      embedder=sp.model, rule=sp.rule)
    cannot = co_occurring(tracks)
    labels, role = people_labels(emb, _quality(tracks), cannot, cfg, sp, idx, tids)
    previous: dict[str, str] = {}
    if old.get("digest"):
        prev = _read(store, "identities", IDENTITIES)
        previous = dict(zip(prev["track_id"].to_pylist(), prev["person_id"].to_pylist()))
    assign = Assignment(tracks["track_id"].combine_chunks(), pa.array(stable_ids(labels, tids, previous), pa.string()))
    return _Built(_track_rows(tracks), emb, idx, assign, assign.code.copy(), np.array(role, dtype=object), len(tids),
                  "full", cannot=cannot)


def _incremental(store: Store, basis: dict[str, Any], parts: dict, files: dict[str, str | None],
                 cfg: PeopleConfig, sp: Space) -> tuple[_Built | None, str]:
    """Add the tracks of parts new since the last refresh and drop those of parts removed (a
    video indexed again, a person forgotten): new tracks go into the FAISS index, and only the
    people within ``cluster_distance`` of a new track (or that lost tracks) are clustered again,
    together with the new tracks, by the same rules as a full clustering.  (None, why) when it
    cannot build on what is there."""
    was: dict[str, str | None] = basis.get("face_tracks") or {}
    prev = _read(store, "identities", IDENTITIES)
    if basis.get("rows") != prev.num_rows or prev.num_rows and prev["face_id"].null_count:
        return None, "the identities table does not match its basis"
    if basis.get("identities_version") != IndexTable(store, "identities", IDENTITIES).log.version:
        return None, "the identities table changed since its basis was written"
    added = sorted(set(parts) - set(was))
    removed = sorted(set(was) - set(parts))
    if any(files[p] is None for p in added) or any(was[p] is None for p in removed):
        return None, "a part of face_tracks holds several videos"
    try:
        old_vec = read_vectors(store, prev.num_rows)
        idx = faces_index.FaceIndex.load(store)
    except (IndexError_, faces_index.FaceIndexError) as e:
        return None, str(e)
    if idx.meta.count != prev.num_rows:
        return None, "the face index does not match the identities table"

    gone_videos = pa.array(sorted({was[p] for p in removed}), pa.string())
    keep = pc.invert(pc.is_in(prev["video_id"], value_set=gone_videos)).to_numpy(zero_copy_only=False)
    kept = prev.filter(pa.array(keep))
    new = IndexTable(store, "face_tracks").read([parts[p] for p in added], columns=TRACK_COLUMNS + ["embedding"]) \
        if added else schemas.FACE_TRACKS.empty_table().select(TRACK_COLUMNS + ["embedding"])
    new = new.sort_by("track_id")
    new_tids = new["track_id"].to_pylist()
    if pc.any(pc.is_in(kept["track_id"], value_set=new["track_id"])).as_py():
        return None, "new parts hold tracks already indexed"
    new_emb = _emb(new)
    tracks = pa.concat_tables([kept.select(TRACK_COLUMNS + ["face_id"]),
                               _track_rows(new).cast(kept.select(TRACK_COLUMNS + ["face_id"]).schema)])
    emb = np.concatenate([np.asarray(old_vec[keep]), new_emb]) if len(new_emb) or not keep.all() else old_vec
    if idx.meta.kind == "exact" and tracks.num_rows >= cfg.index_exact_below:
        log.info("people: %d tracks: the face index becomes IVF (trained on them all)", tracks.num_rows)
        idx = faces_index.FaceIndex.build(emb, tracks["track_id"].to_pylist(), exact_below=cfg.index_exact_below,
                                          codec=cfg.index_codec, embedder=sp.model, rule=sp.rule)
    else:
        idx.remove(prev.filter(pa.array(~keep))["track_id"].to_pylist())
        idx.add(new_emb, new_tids)
    n_kept, n = kept.num_rows, tracks.num_rows
    pid = np.asarray(kept["person_id"].to_pylist() + [""] * len(new_tids), dtype=object)

    # the neighbourhood: people within cluster_distance of a new track, and people that lost tracks
    touched = set(prev.filter(pa.array(~keep))["person_id"].to_pylist())
    if len(new_tids):
        _, hits = idx.search_ids(new_emb, cfg.neighbours + 1)
        rows = faces_index.IdRows(tracks["face_id"].to_numpy()).rows(hits)
        q = np.repeat(np.arange(len(new_tids)), rows.shape[1])
        r = rows.ravel()
        ok = (r >= 0) & (r < n_kept)
        d = sp.distance(np.asarray(emb[r[ok]]), new_emb[q[ok]])
        touched |= set(pid[r[ok][d < cfg.cluster_distance]].tolist())
    redo = np.zeros(n, bool)
    redo[n_kept:] = True
    if touched:
        redo[:n_kept] |= np.isin(pid[:n_kept], np.array(sorted(touched), dtype=object))
    s = np.flatnonzero(redo)

    role = np.asarray(kept["role"].to_pylist() + ["alone"] * len(new_tids), dtype=object)
    if len(s):
        sub = tracks.take(pa.array(s))
        labels, role_s = people_labels(np.asarray(emb[s]), _quality(sub), co_occurring(sub), cfg, sp)
        previous = {t: p for t, p in zip(sub["track_id"].to_pylist(), pid[s].tolist()) if p}
        others = set(pid[:n_kept][~redo[:n_kept]].tolist())
        pid[s] = stable_ids(labels, sub["track_id"].to_pylist(), previous, taken=others)
        role[s] = role_s
    changed = bool(len(new_tids) or not keep.all())
    if changed:  # rows in track id order, as a full refresh leaves them: what is derived from the rows
        order = pc.sort_indices(tracks["track_id"]).to_numpy()  # (ties, thumbnails) must not depend on history
        tracks, emb, pid, role = tracks.take(pa.array(order)), np.asarray(emb)[order], pid[order], role[order]
    assign = Assignment(tracks["track_id"].combine_chunks(), pa.array(pid.tolist(), pa.string()))
    log.log(logging.INFO if changed else logging.DEBUG,
            "people: incremental: +%d / -%d track(s); %d person(s) touched; %d track(s) clustered again",
            len(new_tids), int((~keep).sum()), len(touched), len(s))
    return _Built(tracks, emb, idx, assign, assign.code.copy(), role, len(s), "incremental", changed), ""


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


def _tables(tracks: pa.Table, emb: np.ndarray, assign: Assignment, manual: dict[str, str],
            gallery: pa.Table, cfg: PeopleConfig, sp: Space, role: np.ndarray,
            cannot: np.ndarray, refused: dict[int, set[str]] | None = None) -> tuple[pa.Table, pa.Table]:
    """identities (a row a track) and people (a row a person), with array operations only: a
    million tracks take seconds, not a loop per person."""
    from scipy.sparse import csr_matrix

    n = tracks.num_rows
    quality = _quality(tracks)
    person_ids = assign.person_ids()
    names_sorted = sorted(set(assign.names[c] for c in np.unique(assign.code).tolist())) if n else []
    rank = {p: i for i, p in enumerate(names_sorted)}
    remap = np.array([rank.get(p, -1) for p in assign.names], np.int64)
    inv = remap[assign.code] if n else np.zeros(0, np.int64)  # person index per track, people sorted by id
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
    if refused:  # a manual name its tracks were since marked as not being goes too
        pos = {p: i for i, p in enumerate(assign.names)}
        taken = [None if t and t in refused.get(pos[p], ()) else t for p, t in zip(names_sorted, taken)]
    no = None
    if refused:  # person index -> the names its tracks are marked as not being
        no = [refused.get(pos[p], set()) for p in names_sorted]
    enrolled, name_d = name_people(centre, gallery, sp, cfg.match_distance, together, taken, no)
    name = [t or e for t, e in zip(taken, enrolled)]
    source = ["manual" if t else ("enrolled" if e else None) for t, e in zip(taken, enrolled)]
    name_d = [None if t else d for t, d in zip(taken, name_d)]
    start, end = tracks["start_s"].to_numpy(), tracks["end_s"].to_numpy()
    order = np.lexsort((np.arange(n), -w, inv)) if n else np.zeros(0, np.int64)
    first = order[np.r_[0, np.flatnonzero(np.diff(inv[order])) + 1]] if n else np.zeros(0, np.int64)
    thumb = tracks["track_id"].take(pa.array(first))  # per person: the track with most (weighted) detections
    vcode = pc.dictionary_encode(tracks["video_id"].combine_chunks()).indices.to_numpy(zero_copy_only=False)
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


# ---------------------------------------------------------------------------- reading


def load(out: str) -> tuple[pa.Table, pa.Table]:
    """(identities, people): the Delta tables the last refresh replaced."""
    store = Store(out)
    m = store.require_manifest()
    if not (m.get("people") or {}).get("digest"):
        raise PeopleError(f"{out} has no people tables yet; build them with 'vidx reindex {out}'")
    return _read(store, "identities", IDENTITIES), _read(store, "people", PEOPLE)


def resolve_people(people: pa.Table, who: str) -> list[str]:
    """Person ids for a person id or a name (case-insensitive); a clear error if neither."""
    if who in set(people["person_id"].to_pylist()):
        return [who]
    names = people["name"].to_pylist()
    hits = [p for p, n in zip(people["person_id"].to_pylist(), names) if n and n.casefold() == who.casefold()]
    if hits:
        return hits
    known = sorted({n for n in names if n})
    raise PeopleError(f"no person with id or name {who!r}" +
                      (f" (names: {', '.join(known)})" if known else " (no one is named yet; see 'vidx people')"))


@dataclass
class Suggestion:
    """A person near a name's photos but not given the name: the rule (``match_distance``) was not met."""

    person_id: str
    name: str | None  # the name it holds now, if any
    distance: float  # the name's distance (:func:`nearest_photos`) to the person's centre
    over: float  # distance - match_distance: how far beyond the rule (<= 0: within, held off by a co-star)
    tracks: int
    videos: int
    thumbnail_track: str | None


def suggestions(out: str, name: str, k: int = 3) -> list[Suggestion]:
    """The ``k`` people nearest an enrolled name's photos that do not carry the name, nearest first:
    what a user confirms with ``vidx people rename OUT PERSON NAME`` (a manual name, kept across
    re-indexing) when the rule left the name unused."""
    store = Store(out)
    m = store.require_manifest()
    sp, rule = index_space(m), people_config(m).match_distance
    gallery = read_gallery(store)
    g = gallery.filter(pc.equal(gallery["name"], name))
    if not g.num_rows:
        raise PeopleError(f"no photos are enrolled as {name!r}")
    identities, people = load(out)
    people = people.filter(pc.invert(pc.fill_null(pc.equal(people["name"], name), False)))
    marked = [t for op in read_corrections(store) if op["op"] == "not" and op.get("name") == name for t in op["tracks"]]
    if marked:  # people marked as not NAME are not suggested for it
        no = identities.filter(pc.is_in(identities["track_id"], value_set=pa.array(marked, pa.string())))["person_id"]
        people = people.filter(pc.invert(pc.is_in(people["person_id"], value_set=no.unique())))
    if not people.num_rows:
        return []
    d = nearest_photos(sp.pairwise(_emb(people), _emb(g)))
    rows = people.drop_columns(["embedding"]).to_pylist()
    return [Suggestion(rows[i]["person_id"], rows[i]["name"], float(d[i]), float(d[i] - rule), rows[i]["tracks"],
                       rows[i]["videos"], rows[i]["thumbnail_track"]) for i in np.argsort(d, kind="stable")[:k]]


def near_misses(out: str, name: str, k: int = 3) -> str:
    """One message for a name the rule gave to no one: its nearest people, how far over the rule,
    and the command that confirms one."""
    rule = people_config(Store(out).require_manifest()).match_distance
    sug = suggestions(out, name, k)
    if not sug:
        return f"no indexed person is near the photos of {name!r} yet"
    near = "; ".join(f"{x.person_id}{f' ({x.name})' if x.name else ''} at {x.distance:.3f}"
                     + (f", {x.over:.3f} over the rule" if x.over > 0 else ", within the rule but on screen with "
                        "someone nearer")
                     + f", {x.tracks} track(s) in {x.videos} video(s)" for x in sug)
    return (f"no indexed person is within {rule:g} of the photos of {name!r} (people.match_distance); nearest: "
            f"{near}. If one is {name}: vidx people rename {out} {sug[0].person_id} {_quote(name)} (kept across "
            f"re-indexing); 'vidx people show {out} {sug[0].person_id}' lists its appearances")


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


def enrolled_names(out: str) -> list[str]:
    """Names with photos in the gallery (named people or not)."""
    return sorted(set(read_gallery(Store(out))["name"].to_pylist()))


def person_tracks(out: str, who: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the person's row, its tracks): video path, times (seconds from the video's first frame),
    detections, quality, distance to the person's centre and role; the farthest (the likeliest
    mistakes) first."""
    import duckdb

    identities, people = load(out)
    pids = resolve_people(people, who)
    if len(pids) > 1:
        raise PeopleError(f"{who!r} names {len(pids)} people ({', '.join(pids)}); give one id")
    pid = pids[0]
    row = people.filter(pc.equal(people["person_id"], pid)).drop_columns(["embedding"]).to_pylist()[0]
    con = duckdb.connect()
    con.register("i", identities.filter(pc.equal(identities["person_id"], pid)))
    con.register("v", read_index_table(out, "videos", ["video_id", "path"]))
    cur = con.execute("""
        SELECT i.track_id, i.video_id, v.path, i.start_s, i.end_s, i.detections, i.thumbnail_t,
               i.quality, i.distance, i.role
        FROM i LEFT JOIN v ON v.video_id = i.video_id
        ORDER BY i.distance DESC NULLS LAST, v.path, i.start_s""")
    cols = [c[0] for c in cur.description]
    return row, [dict(zip(cols, r)) for r in cur.fetchall()]


def similar_people(out: str, who: str, k: int = 5) -> list[dict[str, Any]]:
    """"Possibly the same person": the ``k`` people whose centres are nearest this person's, each
    with its distance and whether a merge would be refused (faces on screen together, or a "not
    this person" mark), nearest first."""
    identities, people = load(out)
    pids = resolve_people(people, who)
    if len(pids) > 1:
        raise PeopleError(f"{who!r} names {len(pids)} people ({', '.join(pids)}); give one id")
    sp = index_space(Store(out).require_manifest())
    me = people.filter(pc.equal(people["person_id"], pids[0]))
    others = people.filter(pc.not_equal(people["person_id"], pids[0]))
    if not others.num_rows:
        return []
    d = sp.pairwise(_emb(me), _emb(others))[0]
    rows = others.drop_columns(["embedding"]).to_pylist()
    mine = _tracks_of(identities, pids)
    ops = [op for op in read_corrections(Store(out)) if op["op"] == "not"]
    got = []
    for i in np.argsort(d, kind="stable")[:k].tolist():  # a loop over k people
        theirs = _tracks_of(identities, [rows[i]["person_id"]])
        clash = on_screen_together(out, mine, theirs, limit=1)
        marked = any(set(op["tracks"]) & set(mine + theirs) and set(op.get("anchor") or ()) & set(mine + theirs)
                     for op in ops)
        got.append({**rows[i], "distance": float(d[i]),
                    "refused": "on screen together" if clash else "marked not the same person" if marked else None})
    return got


REVIEW_CANDIDATES = 2000  # tracks farthest from their own person whose runner-up is measured for the queue


def review_queue(out: str, limit: int = 50, offset: int = 0,
                 candidates: int = REVIEW_CANDIDATES) -> tuple[int, list[dict[str, Any]]]:
    """Appearances to review, the least certain first: (how many are open, a page of them).

    A track's certainty is its margin: the distance to the nearest *other* person's centre minus
    the distance to its own (small or negative: it could as well be someone else), low quality
    first among equal margins. Tracks already reviewed or corrected by hand are not offered. Of
    the open tracks, the ``candidates`` farthest from their own person are measured (one FAISS
    search against the people's centres), so the queue costs the same at a million tracks."""
    import duckdb
    import faiss

    store = Store(out)
    sp = index_space(store.require_manifest())
    identities, people = load(out)
    role = identities["role"].to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(~np.isin(role, ["manual", "reviewed"]))
    if not len(rows) or people.num_rows < 2:
        return 0, []
    own_d = identities["distance"].to_numpy(zero_copy_only=False).astype(np.float64)[rows]
    rows = rows[np.argsort(-np.nan_to_num(own_d, nan=np.inf), kind="stable")[:candidates]]
    vec = np.asarray(read_vectors(store, identities.num_rows)[rows], np.float32)
    centres = _emb(people).astype(np.float32)
    pid = people["person_id"].to_pylist()
    pos = {p: i for i, p in enumerate(pid)}
    own = np.array([pos[p] for p in identities["person_id"].take(pa.array(rows)).to_pylist()], np.int64)
    if sp.metric == "cosine":
        unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
        index = faiss.IndexFlatIP(centres.shape[1])
        index.add(unit(centres))
        sim, nn = index.search(unit(vec), min(3, len(pid)))
        dist = 1.0 - sim
    else:
        index = faiss.IndexFlatL2(centres.shape[1])
        index.add(centres)
        d2, nn = index.search(vec, min(3, len(pid)))
        dist = np.sqrt(np.maximum(d2, 0))
    other = np.where(nn[:, 0] != own, 0, 1)  # the nearest that is not the track's own person
    o_idx = nn[np.arange(len(rows)), other]
    o_d = dist[np.arange(len(rows)), other].astype(np.float64)
    d = sp.distance(vec.astype(np.float64), centres[own].astype(np.float64))
    margin = o_d - d
    quality = identities["quality"].to_numpy(zero_copy_only=False).astype(np.float64)[rows]
    order = np.lexsort((np.nan_to_num(quality), margin))[offset: offset + limit]
    names = people["name"].to_pylist()
    q = pa.table({"row": pa.array(rows[order]), "margin": pa.array(margin[order]), "distance": pa.array(d[order]),
                  "other_person": pa.array([pid[i] for i in o_idx[order]], pa.string()),
                  "other_name": pa.array([names[i] for i in o_idx[order]], pa.string()),
                  "other_distance": pa.array(o_d[order]), "rank": pa.array(np.arange(len(order)))})
    con = duckdb.connect()
    con.register("q", q)
    con.register("i", identities.drop_columns(["distance"]).append_column(
        "row", pa.array(np.arange(identities.num_rows))))
    con.register("p", people.select(["person_id", "name"]))
    con.register("v", read_index_table(out, "videos", ["video_id", "path"]))
    cur = con.execute("""
        SELECT i.track_id, i.video_id, v.path, i.start_s, i.end_s, i.thumbnail_t, i.quality, i.role,
               i.person_id, p.name, q.distance, q.other_person, q.other_name, q.other_distance, q.margin
        FROM q JOIN i USING (row) LEFT JOIN p USING (person_id) LEFT JOIN v USING (video_id)
        ORDER BY q.rank""")
    cols = [c[0] for c in cur.description]
    return len(rows), [dict(zip(cols, r)) for r in cur.fetchall()]


# ---------------------------------------------------------------------------- corrections


def _tracks_of(identities: pa.Table, person_ids: list[str]) -> list[str]:
    mask = pc.is_in(identities["person_id"], value_set=pa.array(person_ids))
    return identities.filter(mask)["track_id"].to_pylist()


def on_screen_together(out: str, a: list[str], b: list[str], limit: int = 5) -> list[str]:
    """Pairs of tracks, one from ``a`` and one from ``b``, of one video sharing a sampled time,
    described for a message (at most ``limit``)."""
    import duckdb

    tracks = _read(Store(out), "identities", IDENTITIES).select(["track_id", "video_id", "start_s", "end_s"])
    con = duckdb.connect()
    con.register("t", tracks)
    con.register("a", pa.table({"track_id": pa.array(a, pa.string())}))
    con.register("b", pa.table({"track_id": pa.array(b, pa.string())}))
    rows = con.execute("""
        WITH x AS (SELECT t.* FROM t JOIN a USING (track_id)), y AS (SELECT t.* FROM t JOIN b USING (track_id))
        SELECT x.track_id, y.track_id, x.video_id, greatest(x.start_s, y.start_s), least(x.end_s, y.end_s)
        FROM x JOIN y ON x.video_id = y.video_id AND x.track_id != y.track_id
             AND x.start_s <= y.end_s AND y.start_s <= x.end_s
        ORDER BY 3, 4 LIMIT $n""", {"n": limit}).fetchall()
    return [f"{ta} and {tb} (video {v}, {s:.1f}-{e:.1f} s)" for ta, tb, v, s, e in rows]


def _refuse_not(ops: list[dict[str, Any]], result: set[str], what: str, name: str | None = None) -> None:
    """Refuse a correction whose person (tracks ``result``, named ``name``) contradicts a "not this
    person" mark: its tracks together with the person they were marked apart from, or the name
    they were marked as not being."""
    for op in ops:
        if op["op"] != "not":
            continue
        mine = result & set(op["tracks"])
        if mine and result & set(op.get("anchor") or ()):
            raise PeopleError(f"{what} would put {', '.join(sorted(mine)[:3])} back with "
                              f"{op.get('name') or op.get('was') or 'the person'} they were marked as not being "
                              f"({op.get('at', '')[:10]}); 'vidx people' shows the marks")
        if mine and name and op.get("name") and op["name"].casefold() == name.casefold():
            raise PeopleError(f"{what}: {', '.join(sorted(mine)[:3])} were marked as not {op['name']} "
                              f"({op.get('at', '')[:10]})")


def _refuse_together(out: str, a: list[str], b: list[str], what: str) -> None:
    clash = on_screen_together(out, a, b)
    if clash:
        raise PeopleError(f"{what} would make one person of faces on screen at the same time: "
                          f"{'; '.join(clash)}{' ...' if len(clash) == 5 else ''} (times from each video's first "
                          "frame). Check the tracks ('vidx people show'); --force to insist")


@writes_index("people")
def correct(out: str, op: str, people_args: list[str], name: str | None = None, video: str | None = None,
            tracks: list[str] | None = None, force: bool = False) -> RefreshResult:
    """Record a correction (merge A B..., split P [--video V | --tracks T...], move P --tracks T...
    (into P), rename P NAME) and refresh.  People may be given by id or name.  A merge or move that
    would put two faces on screen together into one person is refused unless ``force``."""
    store = Store(out)
    identities, people = load(out)
    persons = [resolve_people(people, p) for p in people_args]
    done = read_corrections(store)
    if op == "merge":
        if len(persons) < 2:
            raise PeopleError("merge needs at least two people")
        into = _tracks_of(identities, persons[0])
        rec = {"op": "merge", "into": into, "from": _tracks_of(identities, [p for ps in persons[1:] for p in ps])}
        if not set(rec["from"]) - set(into):
            raise PeopleError("those are already one person")
        if not force:
            _refuse_together(out, into, rec["from"], "merging " + " and ".join(people_args))
        _refuse_not(done, set(into) | set(rec["from"]), "merging " + " and ".join(people_args))
        rec["force"] = force
    elif op == "move":
        if len(persons) != 1 or not tracks:
            raise PeopleError("move needs the person to move tracks into and --tracks TRACK_ID...")
        known = set(identities["track_id"].to_pylist())
        missing = sorted(set(tracks) - known)
        if missing:
            raise PeopleError(f"no track {', '.join(missing)} in this index")
        into = _tracks_of(identities, persons[0])
        moved = [t for t in tracks if t not in set(into)]
        if not moved:
            raise PeopleError(f"those tracks already belong to {people_args[0]}")
        if not force:
            _refuse_together(out, into, moved, f"moving those tracks into {people_args[0]}")
        _refuse_not(done, set(into) | set(moved), f"moving those tracks into {people_args[0]}")
        rec = {"op": "move", "tracks": moved, "into": into, "force": force}
    elif op == "rename":
        rec = {"op": "rename", "tracks": _tracks_of(identities, persons[0]), "name": name or ""}
        if name:
            _refuse_not(done, set(rec["tracks"]), f"naming {people_args[0]} {name}", name)
    elif op == "accept":  # reviewed: the tracks are the person (out of the review queue, kept there)
        if not tracks:
            raise PeopleError("accept needs --tracks TRACK_ID...")
        own = _tracks_of(identities, persons[0])
        missing = sorted(set(tracks) - set(own))
        if missing:
            raise PeopleError(f"track(s) {', '.join(missing)} do not belong to {people_args[0]}")
        rec = {"op": "accept", "tracks": list(tracks), "into": own}
    elif op == "not":  # tracks of a person that are not them, or (name) a person who is not NAME
        own = _tracks_of(identities, persons[0])
        label = people.filter(pc.is_in(people["person_id"], value_set=pa.array(persons[0])))["name"].to_pylist()
        was = next((x for x in label if x), None)
        if tracks:
            missing = sorted(set(tracks) - set(own))
            if missing:
                raise PeopleError(f"track(s) {', '.join(missing)} do not belong to {people_args[0]}")
            anchor = [t for t in own if t not in set(tracks)]
            if not anchor and not (name or was):
                raise PeopleError(f"those are every track of {people_args[0]}: nothing is left to keep them apart "
                                  "from; name who they are not (--name NAME)")
            rec = {"op": "not", "tracks": list(tracks), "anchor": anchor, "name": name or was or "",
                   "was": people_args[0], "person_id": person_id_for(list(tracks), salt="not:")}
        elif name:
            rec = {"op": "not", "tracks": own, "anchor": [], "name": name, "was": people_args[0],
                   "person_id": persons[0][0]}
        else:
            raise PeopleError("not needs --tracks TRACK_ID... (these appearances are not PERSON) or --name NAME "
                              "(PERSON is not NAME)")
    elif op == "split":
        own = identities.filter(pc.is_in(identities["person_id"], value_set=pa.array(persons[0])))
        if video:
            own_v = own.filter(pc.equal(own["video_id"], video))
            if own_v.num_rows == 0:
                raise PeopleError(f"{people_args[0]} has no track in video {video}")
            moved = own_v["track_id"].to_pylist()
        elif tracks:
            missing = sorted(set(tracks) - set(own["track_id"].to_pylist()))
            if missing:
                raise PeopleError(f"track(s) {', '.join(missing)} do not belong to {people_args[0]}")
            moved = list(tracks)
        else:
            raise PeopleError("split needs --video VIDEO_ID or --tracks TRACK_ID...")
        if len(moved) == own.num_rows:
            raise PeopleError(f"that would move every track of {people_args[0]}; nothing to split")
        rec = {"op": "split", "tracks": moved, "person_id": person_id_for(moved, salt="split:")}
    else:
        raise PeopleError(f"unknown correction {op!r}")
    rec["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_corrections(store, read_corrections(store) + [rec])
    return refresh(out)


# ---------------------------------------------------------------------------- enrolment


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


@writes_index("enroll")
def enroll(out: str, name: str, faces: list[PhotoFace]) -> RefreshResult:
    """Add photos' faces to the gallery under ``name`` (a photo enrolled again is replaced) and
    refresh, which labels the matching people."""
    import os

    if not name.strip():
        raise PeopleError("the name must not be empty")
    store = Store(out)
    sp = index_space(store.require_manifest(f"index videos into it first ('vidx index ... --out {out}')"))
    wrong = sorted({f.embedder for f in faces if f.embedder and f.embedder != sp.model})
    if wrong:
        raise PeopleError(f"{sp.built_with(out)}; these photos were embedded with {', '.join(wrong)}: embed them "
                          f"with {sp.name} (vidx enroll does so by itself)")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    new = pa.table({"name": [name] * len(faces),
                    "photo": [f.photo if f.photo.startswith("upload:") else os.path.abspath(f.photo) for f in faces],
                    "face": pa.array([f.face for f in faces], pa.int32()),
                    "box": pa.FixedSizeListArray.from_arrays(np.asarray([f.box for f in faces], np.float32).ravel(), 4),
                    "embedding": _fsl(np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128))),
                    "added": [now] * len(faces)}, schema=GALLERY)
    old = read_gallery(store)
    key = pc.binary_join_element_wise(old["name"], old["photo"], pc.cast(old["face"], pa.string()), "\0")
    new_key = pc.binary_join_element_wise(new["name"], new["photo"], pc.cast(new["face"], pa.string()), "\0")
    old = old.filter(pc.invert(pc.is_in(key, value_set=new_key)))
    warnings = photo_warnings(name, faces, old, sp)
    write_gallery(store, pa.concat_tables([old, new]))
    res = refresh(out)
    res.warnings = warnings
    return res
