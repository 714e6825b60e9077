"""People: face tracks clustered across the archive into identities, the gallery of enrolled
names, and the user's corrections, which survive re-indexing.

    OUT/faces.faiss (+ .ids.json, .json)           FAISS index of track embeddings
    OUT/identities/                                Delta table: track_id -> person_id, similarity
    OUT/people/                                    Delta table: one row per person: name, counts, thumbnail track
    OUT/gallery/                                   Delta table: enrolled photos' embeddings, by name (user data)
    OUT/corrections.json                           merge / split / rename, replayed in order

:func:`refresh` rebuilds the FAISS index and the identities from ``face_tracks`` whenever the
tracks, the gallery, the corrections or the parameters changed (a digest in the manifest says);
``vidx index`` calls it at the end, so a rerun with nothing new changes nothing.

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
to ``dense_limit`` tracks, and over the kNN graph in larger ones (scikit-learn), whose clusters
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
from vidx.indexing import faces_index, schemas
from vidx.indexing.delta_log import DeltaLog
from vidx.indexing.lease import writes_index
from vidx.indexing.store import IndexError_, Store, read_index_table
from vidx.indexing.tables import IndexTable, replace_table

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
    # track no person was clearly nearest to; manual: placed by a correction
    pa.field("role", pa.string()),
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
        h = faces_index.track_hash(track_ids)
        order = np.argsort(h)
        at = np.clip(np.searchsorted(h[order], hits), 0, n - 1)
        nb = np.where((hits >= 0) & (h[order][at] == hits), order[at], -1)
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
    for members in np.split(order, np.flatnonzero(np.diff(part[order])) + 1):
        local = _local_pairs(members, cannot, n)
        if len(members) == 1:
            lab = np.zeros(1, np.int64)
        elif len(members) <= dense_limit:  # exact average linkage over every pair
            lab = constrained_linkage(pairwise(emb[members], emb[members], metric), local, distance)
        else:  # large part: average linkage over the kNN graph's edges (approximate, memory ~ n * k)
            from sklearn.cluster import AgglomerativeClustering  # imported here: 1.8 s, only large archives need it

            sub = knn[members][:, members]
            lab = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, linkage="average",
                                          metric=metric, connectivity=sub).fit_predict(emb[members])
            lab = _repair(lab, local, emb[members], distance, metric)
        labels[members] = lab + next_label
        next_label += int(lab.max()) + 1
    return labels


def _local_pairs(members: np.ndarray, cannot: np.ndarray, n: int) -> np.ndarray:
    """The cannot-link pairs among ``members``, in the members' own numbering."""
    if len(cannot) == 0 or len(members) < 2:
        return np.zeros((0, 2), np.int64)
    pos = np.full(n, -1, np.int64)
    pos[members] = np.arange(len(members))
    loc = pos[cannot]
    return loc[(loc >= 0).all(1)]


def _repair(lab: np.ndarray, cannot: np.ndarray, emb: np.ndarray, distance: float, metric: str) -> np.ndarray:
    """Re-cluster exactly, with the constraint, every cluster that holds a cannot-link pair."""
    if len(cannot) == 0:
        return lab
    lab = lab.copy()
    nxt = int(lab.max()) + 1
    for c in np.unique(lab[cannot[:, 0]][lab[cannot[:, 0]] == lab[cannot[:, 1]]]):
        members = np.flatnonzero(lab == c)
        sub = constrained_linkage(pairwise(emb[members], emb[members], metric),
                                  _local_pairs(members, cannot, len(lab)), distance)
        lab[members] = np.where(sub == 0, c, sub + nxt - 1)
        nxt += int(sub.max())
    return lab


def _quality(tracks: pa.Table) -> np.ndarray:
    q = tracks["quality"].to_numpy(zero_copy_only=False) if "quality" in tracks.column_names else None
    return np.ones(tracks.num_rows) if q is None else np.nan_to_num(q.astype(np.float64), nan=1.0)


def centres(emb: np.ndarray, labels: np.ndarray, weight: np.ndarray, metric: str) -> np.ndarray:
    """Each label's centre: the weighted mean of its rows (unit rows first for cosine)."""
    x = faces_index.unit(emb) if metric == "cosine" else np.asarray(emb, np.float64)
    k = int(labels.max()) + 1 if len(labels) else 0
    c = np.zeros((k, emb.shape[1]), np.float64)
    np.add.at(c, labels, x * weight[:, None])
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
        local = _local_pairs(ci, cannot, n)
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
        d = sp.pairwise(emb[weak], cen)  # (weak, people); people counts are far below track counts
        two = np.argsort(d, axis=1)[:, :2]
        d1 = d[np.arange(len(weak)), two[:, 0]]
        d2 = d[np.arange(len(weak)), two[:, 1]] if n_core > 1 else np.full(len(weak), np.inf)
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


def stable_ids(labels: np.ndarray, track_ids: list[str], previous: dict[str, str]) -> list[str]:
    """A person id per cluster: the id most of its tracks had before (bigger clusters choose
    first), else a new one from the cluster's smallest track id."""
    groups: dict[int, list[int]] = {}
    for i, lab in enumerate(labels.tolist()):
        groups.setdefault(lab, []).append(i)
    taken: set[str] = set()
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


def _plurality(assign: dict[str, str], tracks: list[str]) -> str | None:
    votes: dict[str, int] = {}
    for t in tracks:
        if t in assign:
            votes[assign[t]] = votes.get(assign[t], 0) + 1
    return max(sorted(votes), key=votes.get) if votes else None


def replay(assign: dict[str, str], ops: list[dict[str, Any]]) -> dict[str, str]:
    """Apply corrections in order to ``assign`` (track -> person, changed in place); returns
    the manual names (person -> name)."""
    names: dict[str, str] = {}
    for op in ops:
        kind = op["op"]
        if kind == "merge":
            into = _plurality(assign, op["into"])
            if into is None:
                continue
            for p in {assign[t] for t in op["from"] if t in assign} - {into}:
                for t, q in assign.items():
                    if q == p:
                        assign[t] = into
                names.pop(p, None)  # the first person keeps its name; the others' go
        elif kind == "split":
            for t in op["tracks"]:
                if t in assign:
                    assign[t] = op["person_id"]
        elif kind == "move":  # tracks moved into another person
            into = _plurality(assign, op["into"])
            if into is not None:
                for t in op["tracks"]:
                    if t in assign:
                        assign[t] = into
        elif kind == "rename":
            p = _plurality(assign, op["tracks"])
            if p is not None:
                if op["name"]:
                    names[p] = op["name"]
                else:
                    names.pop(p, None)
    return names


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


def _digest(tracks: pa.Table, gallery: pa.Table, ops: list, cfg: PeopleConfig, embedder: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    for col in ("track_id", "video_id"):
        for t in tracks[col].to_pylist():
            h.update(t.encode() + b"\0")
    h.update(_emb(tracks).tobytes())
    h.update(_quality(tracks).tobytes())
    h.update(tracks["start_s"].to_numpy().tobytes() + tracks["end_s"].to_numpy().tobytes())
    h.update(_emb(gallery).tobytes())
    h.update("\0".join(gallery["name"].to_pylist()).encode())
    h.update(json.dumps(ops, sort_keys=True).encode())
    h.update(json.dumps(asdict(cfg), sort_keys=True).encode())
    h.update(embedder.encode())
    return h.hexdigest()


@dataclass
class RefreshResult:
    changed: bool
    tracks: int
    people: int
    named: dict[str, list[str]]  # name -> person ids
    index_kind: str
    warnings: list[str] = field(default_factory=list)  # enrolment: doubtful photos


@writes_index("reindex")
def refresh(out: str, cfg: PeopleConfig | None = None, force: bool = False) -> RefreshResult:
    """Rebuild the FAISS index, the identities and the people tables if anything they depend on
    changed (or ``force``); readers see the old set until the manifest names the new one."""
    store = Store(out)
    m = store.require_manifest()
    cfg = cfg or people_config(m)
    sp = index_space(m)
    fill_distances(sp.name, None, cfg)
    tracks_log = DeltaLog(store.fs, store.path("face_tracks"))  # one writer: no commit lands while this runs
    tracks = read_index_table(out, "face_tracks").sort_by("track_id")
    gallery = read_gallery(store)
    ops = read_corrections(store)
    digest = _digest(tracks, gallery, ops, cfg, sp.model)
    old = m.get("people") or {}
    if not force and old.get("digest") == digest:
        people = _read(store, "people", PEOPLE)
        return RefreshResult(False, tracks.num_rows, people.num_rows, _named(people), m["faces_index"]["kind"])

    tids = tracks["track_id"].to_pylist()
    emb = _emb(tracks)
    log.debug("people: clustering %d track(s)", len(tids))
    idx = faces_index.FaceIndex.build(emb, tids, exact_below=cfg.index_exact_below, codec=cfg.index_codec,
                                      embedder=sp.model, rule=sp.rule)
    idx.meta.face_tracks_version = tracks_log.version
    cannot = co_occurring(tracks)
    labels, role = people_labels(emb, _quality(tracks), cannot, cfg, sp, idx, tids)
    previous: dict[str, str] = {}
    if old.get("digest"):
        prev = _read(store, "identities", IDENTITIES)
        previous = dict(zip(prev["track_id"].to_pylist(), prev["person_id"].to_pylist()))
    auto = dict(zip(tids, stable_ids(labels, tids, previous)))
    assign = dict(auto)
    manual = replay(assign, ops)
    for i, t in enumerate(tids):
        if assign[t] != auto[t]:
            role[i] = "manual"
    identities, people = _tables(tracks, emb, assign, manual, gallery, cfg, sp, role, cannot)

    commit = m.get("commit", 0) + 1
    idx.save(store)
    replace_table(store, "identities", identities, IDENTITIES)  # the old files deleted: a forgotten
    replace_table(store, "people", people, PEOPLE)  # person must not linger in them
    m["faces_index"] = {"files": [faces_index.INDEX_FILE, faces_index.IDS_FILE, faces_index.META_FILE],
                        **asdict(idx.meta)}
    m["people"] = {"digest": digest, "count": people.num_rows}  # the tables: identities/, people/, gallery/
    m["commit"] = commit
    m["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_manifest(m)
    log.info("people: %d track(s) -> %d person(s)", len(tids), people.num_rows)
    return RefreshResult(True, len(tids), people.num_rows, _named(people), idx.meta.kind)


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
                together: set[tuple[int, int]], taken: list[str | None]) -> tuple[list[str | None], list[float | None]]:
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


def _tables(tracks: pa.Table, emb: np.ndarray, assign: dict[str, str], manual: dict[str, str],
            gallery: pa.Table, cfg: PeopleConfig, sp: Space, role: list[str] | None = None,
            cannot: np.ndarray | None = None) -> tuple[pa.Table, pa.Table]:
    tids = tracks["track_id"].to_pylist()
    quality = _quality(tracks)
    pids = np.array([assign[t] for t in tids], dtype=object)
    uniq, inv = np.unique(pids.astype(str), return_inverse=True) if len(pids) else (np.array([], str), np.zeros(0, int))
    det = tracks["detections"].to_numpy(zero_copy_only=False).astype(np.float64)
    w = det * np.maximum(quality, 1e-3)  # a person's centre leans on its many-detection, good tracks
    centre = np.zeros((len(uniq), emb.shape[1]), np.float64)
    np.add.at(centre, inv, emb * w[:, None])
    centre /= np.maximum(np.bincount(inv, weights=w, minlength=len(uniq)), 1e-9)[:, None]
    unit_c = faces_index.unit(centre)
    sim = (faces_index.unit(emb) * unit_c[inv]).sum(1) if len(emb) else np.zeros(0)
    to_centre = sp.distance(emb, centre[inv]) if len(emb) else np.zeros(0)
    identities = pa.table({"track_id": tids, "person_id": pids.astype(str).tolist(),
                           "video_id": tracks["video_id"], "similarity": pa.array(sim, pa.float32()),
                           "distance": pa.array(to_centre, pa.float32()), "quality": pa.array(quality, pa.float32()),
                           "role": role or ["core"] * len(tids)}, schema=IDENTITIES)

    # names: manual first, then the nearest enrolled name (people on screen together never share one)
    cannot = np.zeros((0, 2), np.int64) if cannot is None else cannot
    together = {(min(a, b), max(a, b)) for a, b in zip(inv[cannot[:, 0]].tolist(), inv[cannot[:, 1]].tolist())
                if a != b}
    taken = [manual.get(p) for p in uniq]
    enrolled, name_d = name_people(centre, gallery, sp, cfg.match_distance, together, taken)
    name = [t or e for t, e in zip(taken, enrolled)]
    source = ["manual" if t else ("enrolled" if e else None) for t, e in zip(taken, enrolled)]
    name_d = [None if t else d for t, d in zip(taken, name_d)]
    start, end = tracks["start_s"].to_numpy(), tracks["end_s"].to_numpy()
    vids = np.array(tracks["video_id"].to_pylist(), dtype=object)
    thumb, n_videos = [], []
    for i in range(len(uniq)):  # one pass per person over its own rows (grouped by np.unique)
        rows = np.flatnonzero(inv == i)
        thumb.append(tids[rows[np.argmax(w[rows])]])
        n_videos.append(len(set(vids[rows].tolist())))
    people = pa.table({
        "person_id": uniq.tolist(), "name": name, "name_source": source,
        "name_distance": pa.array(name_d, pa.float32()),
        "tracks": pa.array(np.bincount(inv, minlength=len(uniq)), pa.int32()),
        "videos": pa.array(n_videos, pa.int32()),
        "seconds": np.bincount(inv, weights=end - start, minlength=len(uniq)) if len(uniq) else pa.array([], pa.float64()),
        "thumbnail_track": thumb, "embedding": _fsl(centre.reshape(-1, emb.shape[1] if emb.size else schemas.EMBED_DIM)),
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
    con.register("t", read_index_table(out, "face_tracks").select(["track_id", "video_id", "start_s", "end_s",
                                                                   "detections", "thumbnail_t"]))
    con.register("v", read_index_table(out, "videos").select(["video_id", "path"]))
    cur = con.execute("""
        SELECT i.track_id, t.video_id, v.path, t.start_s, t.end_s, t.detections, t.thumbnail_t,
               i.quality, i.distance, i.role
        FROM i JOIN t USING (track_id) LEFT JOIN v ON v.video_id = t.video_id
        ORDER BY i.distance DESC NULLS LAST, v.path, t.start_s""")
    cols = [c[0] for c in cur.description]
    return row, [dict(zip(cols, r)) for r in cur.fetchall()]


# ---------------------------------------------------------------------------- corrections


def _tracks_of(identities: pa.Table, person_ids: list[str]) -> list[str]:
    mask = pc.is_in(identities["person_id"], value_set=pa.array(person_ids))
    return identities.filter(mask)["track_id"].to_pylist()


def on_screen_together(out: str, a: list[str], b: list[str], limit: int = 5) -> list[str]:
    """Pairs of tracks, one from ``a`` and one from ``b``, of one video sharing a sampled time,
    described for a message (at most ``limit``)."""
    import duckdb

    tracks = read_index_table(out, "face_tracks").select(["track_id", "video_id", "start_s", "end_s"])
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
    if op == "merge":
        if len(persons) < 2:
            raise PeopleError("merge needs at least two people")
        into = _tracks_of(identities, persons[0])
        rec = {"op": "merge", "into": into, "from": _tracks_of(identities, [p for ps in persons[1:] for p in ps])}
        if not set(rec["from"]) - set(into):
            raise PeopleError("those are already one person")
        if not force:
            _refuse_together(out, into, rec["from"], "merging " + " and ".join(people_args))
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
        rec = {"op": "move", "tracks": moved, "into": into, "force": force}
    elif op == "rename":
        rec = {"op": "rename", "tracks": _tracks_of(identities, persons[0]), "name": name or ""}
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
