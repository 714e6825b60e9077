"""People: face tracks clustered across the archive into identities, the gallery of enrolled
names, and the user's corrections, which survive re-indexing.

    OUT/faces.faiss (+ .ids.json, .json)           FAISS index of track embeddings
    OUT/people/identities-<commit>.parquet         track_id -> person_id, similarity
    OUT/people/people-<commit>.parquet             one row per person: name, counts, thumbnail track
    OUT/people/gallery.parquet                     enrolled photos' embeddings, by name (user data)
    OUT/people/corrections.json                    merge / split / rename, replayed in order

:func:`refresh` rebuilds the FAISS index and the identities from ``face_tracks`` whenever the
tracks, the gallery, the corrections or the parameters changed (a digest in the manifest says);
``vidx index`` calls it at the end, so a rerun with nothing new changes nothing.

Clustering: a k-nearest-neighbour graph from the FAISS index, cut at ``cluster_distance``; each
connected part is clustered by average linkage (scikit-learn, on the part's kNN graph), so one
bad track cannot chain two people together and nothing is quadratic in the archive size.
Person ids are kept across re-clustering: a new cluster takes the id most of its tracks had.

Corrections are stored as the track ids they were made on, not person ids, so they still apply
when re-indexing renumbers clusters: ``merge`` joins the people holding those tracks (the first keeps its name), ``split``
moves tracks to a person of their own, ``rename`` names the person holding most of the tracks.
Enrolled names label every person whose mean distance to the name's photos is below
``match_distance``; a manual name wins over an enrolled one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.indexing import faces_index, schemas
from vidx.indexing.store import IndexError_, Store, read_index_table
from vidx.configs.config import PeopleConfig, fill_distances
from vidx.configs.spaces import Space, from_similarity, space

log = logging.getLogger(__name__)

GALLERY_REL = "people/gallery.parquet"
CORRECTIONS_REL = "people/corrections.json"

IDENTITIES = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("similarity", pa.float32()),  # cosine of the track to its person's mean embedding
])

PEOPLE = pa.schema([
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("name", pa.string()),  # null: not named
    pa.field("name_source", pa.string()),  # enrolled | manual | null
    pa.field("name_distance", pa.float32()),  # enrolled: mean distance to the name's photos
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


def cluster(emb: np.ndarray, distance: float, neighbours: int = 30, index: faces_index.FaceIndex | None = None,
            track_ids: list[str] | None = None, dense_limit: int = 4000, metric: str = "euclidean") -> np.ndarray:
    """Cluster label per row of embeddings: average linkage below ``distance`` (``metric``: euclidean
    for dlib, cosine for SFace), within the connected parts of the kNN graph whose edges are
    shorter than ``distance``: exact (every pair) in parts up to ``dense_limit`` tracks, over the
    kNN edges in larger ones."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial.distance import pdist
    from sklearn.cluster import AgglomerativeClustering

    n = len(emb)
    if n <= 1:
        return np.zeros(n, np.int64)
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
    for members in np.split(order, np.flatnonzero(np.diff(part[order])) + 1):
        if len(members) <= 2:  # one track, or two joined by an edge below the distance
            lab = np.zeros(len(members), np.int64)
        elif len(members) <= dense_limit:  # exact average linkage over every pair
            lab = fcluster(linkage(pdist(emb[members], metric), "average"), distance, criterion="distance") - 1
        else:  # large part: average linkage over the kNN graph's edges (approximate, memory ~ n * k)
            sub = knn[members][:, members]
            lab = AgglomerativeClustering(n_clusters=None, distance_threshold=distance, linkage="average",
                                          metric=metric, connectivity=sub).fit_predict(emb[members])
        labels[members] = lab + next_label
        next_label += int(lab.max()) + 1
    return labels


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
    return store.read_table(GALLERY_REL, GALLERY) if store.exists(GALLERY_REL) else GALLERY.empty_table()


def read_corrections(store: Store) -> list[dict[str, Any]]:
    if not store.exists(CORRECTIONS_REL):
        return []
    with store.fs.open_input_stream(store.path(CORRECTIONS_REL)) as f:
        try:
            return json.loads(f.read())["ops"]
        except (ValueError, KeyError) as e:
            raise IndexError_(f"{store.path(CORRECTIONS_REL)} is unreadable ({e})") from None


def write_corrections(store: Store, ops: list[dict[str, Any]]) -> None:
    data = json.dumps({"version": 1, "ops": ops}, indent=1).encode()

    def write(p):
        with store.fs.open_output_stream(p) as f:
            f.write(data)

    store._atomic(CORRECTIONS_REL, write)


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


def refresh(out: str, cfg: PeopleConfig | None = None, force: bool = False) -> RefreshResult:
    """Rebuild the FAISS index, the identities and the people tables if anything they depend on
    changed (or ``force``); readers see the old set until the manifest names the new one."""
    store = Store(out)
    if store.fs.type_name != "local":
        raise PeopleError("the face index and people tables are written to local index folders only, for now")
    m = store.require_manifest()
    cfg = cfg or people_config(m)
    sp = index_space(m)
    fill_distances(sp.name, None, cfg)
    tracks = read_index_table(out, "face_tracks").sort_by("track_id")
    gallery = read_gallery(store)
    ops = read_corrections(store)
    digest = _digest(tracks, gallery, ops, cfg, sp.model)
    old = m.get("people") or {}
    if not force and old.get("digest") == digest and all(store.exists(old[k]) for k in ("identities", "people")):
        people = store.read_table(old["people"], PEOPLE)
        return RefreshResult(False, tracks.num_rows, people.num_rows, _named(people), m["faces_index"]["kind"])

    tids = tracks["track_id"].to_pylist()
    emb = _emb(tracks)
    log.debug("people: clustering %d track(s)", len(tids))
    idx = faces_index.FaceIndex.build(emb, tids, exact_below=cfg.index_exact_below, codec=cfg.index_codec,
                                      embedder=sp.model, rule=sp.rule)
    labels = cluster(emb, cfg.cluster_distance, cfg.neighbours, idx, tids, metric=sp.metric)
    previous: dict[str, str] = {}
    if old.get("identities") and store.exists(old["identities"]):
        prev = store.read_table(old["identities"], IDENTITIES)
        previous = dict(zip(prev["track_id"].to_pylist(), prev["person_id"].to_pylist()))
    assign = dict(zip(tids, stable_ids(labels, tids, previous)))
    manual = replay(assign, ops)
    identities, people = _tables(tracks, emb, assign, manual, gallery, cfg, sp)

    commit = m.get("commit", 0) + 1
    rels = {"identities": f"people/identities-{commit:06d}.parquet", "people": f"people/people-{commit:06d}.parquet"}
    idx.save(store.root)
    store.write_table(rels["identities"], identities)
    store.write_table(rels["people"], people)
    m["faces_index"] = {"files": [faces_index.INDEX_FILE, faces_index.IDS_FILE, faces_index.META_FILE],
                        **asdict(idx.meta)}
    m["people"] = {**rels, "digest": digest, "count": people.num_rows,
                   "gallery": GALLERY_REL if store.exists(GALLERY_REL) else None,
                   "corrections": CORRECTIONS_REL if store.exists(CORRECTIONS_REL) else None}
    m["commit"] = commit
    m["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_manifest(m)
    for k, rel in rels.items():  # old versions go: a forgotten person must not linger in them
        if old.get(k) and old[k] != rel and store.exists(old[k]):
            store.fs.delete_file(store.path(old[k]))
    log.info("people: %d track(s) -> %d person(s)", len(tids), people.num_rows)
    return RefreshResult(True, len(tids), people.num_rows, _named(people), idx.meta.kind)


def _named(people: pa.Table) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for pid, name in zip(people["person_id"].to_pylist(), people["name"].to_pylist()):
        if name:
            out.setdefault(name, []).append(pid)
    return out


def _tables(tracks: pa.Table, emb: np.ndarray, assign: dict[str, str], manual: dict[str, str],
            gallery: pa.Table, cfg: PeopleConfig, sp: Space) -> tuple[pa.Table, pa.Table]:
    tids = tracks["track_id"].to_pylist()
    pids = np.array([assign[t] for t in tids], dtype=object)
    uniq, inv = np.unique(pids.astype(str), return_inverse=True) if len(pids) else (np.array([], str), np.zeros(0, int))
    w = tracks["detections"].to_numpy(zero_copy_only=False).astype(np.float64)
    centre = np.zeros((len(uniq), emb.shape[1]), np.float64)
    np.add.at(centre, inv, emb * w[:, None])
    centre /= np.maximum(np.bincount(inv, weights=w, minlength=len(uniq)), 1e-9)[:, None]
    unit_c = faces_index.unit(centre)
    sim = (faces_index.unit(emb) * unit_c[inv]).sum(1) if len(emb) else np.zeros(0)
    identities = pa.table({"track_id": tids, "person_id": pids.astype(str).tolist(),
                           "video_id": tracks["video_id"], "similarity": pa.array(sim, pa.float32())},
                          schema=IDENTITIES)

    # names: manual first, then the closest enrolled name whose photos are within match_distance
    name = [manual.get(p) for p in uniq]
    source = ["manual" if n else None for n in name]
    name_d: list[float | None] = [None] * len(uniq)
    if gallery.num_rows and len(uniq):
        g = _emb(gallery)
        gnames = np.array(gallery["name"].to_pylist())
        dist = sp.pairwise(centre, g)  # (people, photos)
        names_u = sorted(set(gnames.tolist()))
        mean_d = np.stack([dist[:, gnames == n].mean(1) for n in names_u], 1)  # (people, names)
        best = mean_d.argmin(1)
        for i in range(len(uniq)):
            d = float(mean_d[i, best[i]])
            if not name[i] and d < cfg.match_distance:
                name[i], source[i], name_d[i] = names_u[best[i]], "enrolled", d
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
    """(identities, people) as the manifest names them."""
    store = Store(out)
    m = store.require_manifest()
    p = m.get("people")
    if not p or not store.exists(p["identities"]) or not store.exists(p["people"]):
        raise PeopleError(f"{out} has no people tables yet; build them with 'vidx reindex {out}'")
    return store.read_table(p["identities"], IDENTITIES), store.read_table(p["people"], PEOPLE)


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


# ---------------------------------------------------------------------------- corrections


def _tracks_of(identities: pa.Table, person_ids: list[str]) -> list[str]:
    mask = pc.is_in(identities["person_id"], value_set=pa.array(person_ids))
    return identities.filter(mask)["track_id"].to_pylist()


def correct(out: str, op: str, people_args: list[str], name: str | None = None, video: str | None = None,
            tracks: list[str] | None = None) -> RefreshResult:
    """Record a correction (merge A B..., split P [--video V | --tracks T...], rename P NAME) and
    refresh.  People may be given by id or name."""
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
    store.write_table(GALLERY_REL, pa.concat_tables([old, new]))
    return refresh(out)
