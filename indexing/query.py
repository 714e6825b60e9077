"""The query engine: who, where, doing what, when, across the whole index.

One module serves the CLI (``vidx query``) and the HTTP API (``vidx serve``).  The narrow tables
are loaded once; a query first finds the tracks that may answer it from in-memory indexes, then
pairs only those with the action tables by array operations:

    face photo -> FAISS -> matching tracks -> their people -> every track of those people
    name / person id -> people -> tracks
    tracks JOIN action_segments ON same video AND the intervals overlap (by more than 0 s)

Embeddings (``faces.vectors``) and thumbnails (``face_tracks``) are read on demand, so a server
holds narrow columns only (docs/benchmarks.md, "Queries and people at a million tracks").

A row is one appearance (a face track): the person (name or id), the video (id and path), start
and end seconds, the actions overlapping it (label, score, seconds of overlap, longest first),
and for a face query the track's distance to the photo, in the index's embedder's metric (SFace:
cosine distance; dlib: euclidean, < 0.6 = same person).
With ``actions`` and no person, the answer is who was on screen while those actions happened.

    engine = QueryEngine("index/")
    rows = engine.search(Query(person="Joe Biden", actions=["talking"]))
"""

from __future__ import annotations

import base64
import threading
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from vidx.configs.spaces import BY_MODEL, SPACES, space
from vidx.indexing import faces_index, packs, people, schemas
from vidx.indexing.store import IndexError_, Store
from vidx.indexing.tables import IndexTable, read_index_table, video_of
from vidx.configs.errors import QueryError  # noqa: F401 - defined there, raised here


@dataclass
class Query:
    face: np.ndarray | None = None  # a 128-d embedding (e.g. from a photo), of the index's embedder
    face_embedder: str | None = None  # the embedder that made ``face`` (checked against the index's)
    person: str | None = None  # a name (case-insensitive) or a person id
    person_id: str | None = None
    actions: list[str] = field(default_factory=list)  # labels, matched case-insensitively as substrings
    video: str | None = None  # video id, path, or file name
    start: float | None = None  # only appearances overlapping [start, end] seconds
    end: float | None = None
    min_score: float = 0.0  # action segments scoring below this are ignored
    limit: int = 50
    offset: int = 0
    max_distance: float | None = None  # face query: default the index's people.match_distance


def video_keys(videos) -> dict[str, set[str]]:
    """How a video is asked for: its id, any of its paths, or a path's file name -> the video ids
    (``videos``: rows with video_id, path and paths)."""
    keys: dict[str, set[str]] = {}
    for r in videos:
        for p in [r["video_id"], *{r["path"], *(r.get("paths") or [])} - {None}]:
            for key in {p, p.rsplit("/", 1)[-1]}:
                keys.setdefault(key, set()).add(r["video_id"])
    return keys


class QueryEngine:
    """Loads an index's narrow tables once; :meth:`search` answers :class:`Query` objects.

    Held in memory: the identities table's narrow columns (a row a track: ids, video, times; no
    embedding or thumbnail), people without their centres, videos, action segments, person
    actions, the gallery, and the FAISS index once a face is asked for.  Read on demand: track
    embeddings (``faces.vectors``, memory-mapped) and thumbnails (from ``face_tracks``, the
    asked video's file only)."""

    def __init__(self, out: str):
        self.out = out
        self.store = Store(out)
        try:
            m = self.store.require_manifest()
            self.cfg = people.people_config(m)
            self.space = people.index_space(m)
            identities, ppl = people.load(out, narrow=True)  # the pack, memory-mapped
        except (IndexError_, people.PeopleError) as e:
            raise QueryError(str(e)) from None
        if identities.num_rows and identities["face_id"].null_count:
            raise QueryError(f"the people tables of {out} were built by an older vidx; run 'vidx reindex {out}'")
        self.people = ppl.drop_columns(["embedding"])
        self._people_full: pa.Table | None = None  # with the vectors, for near misses (read when asked)
        self.videos = read_index_table(out, "videos")
        # a player's media time of vidx's time t is t + this (indexes made before it was recorded: absent)
        self.stream_starts = {vid: float(e["stream_start_s"]) for vid, e in (m.get("videos") or {}).items()
                              if e.get("stream_start_s") is not None}
        basis = people.read_basis(self.store)
        self.segments = packs.read(self.store, "action_segments", basis)  # one file, not one a video
        self.person_actions = packs.read(self.store, "person_actions", basis)
        self.gallery = people.read_gallery(self.store)  # enrolled photos: a query by name measures to them
        self.action_vocabulary: list[str] = list(m.get("action_labels") or [])  # the action model's labels
        n = identities.num_rows
        self.n_tracks = n
        # person actions -> identities rows, hashing the (few) tracks with actions, not a million track ids
        pact_tracks = self.person_actions["track_id"].combine_chunks()
        acted = pc.unique(pact_tracks)
        at = pc.index_in(identities["track_id"], value_set=acted).to_numpy(zero_copy_only=False) if len(acted) else None
        row_of = np.full(len(acted), -1, np.int64)
        if at is not None:
            found = np.flatnonzero(~np.isnan(at.astype(np.float64)))
            row_of[at[found].astype(np.int64)] = found
        # each person's best track quality (the gallery puts people of weak tracks only aside)
        best = identities.group_by("person_id").aggregate([("quality", "max")])
        self.person_quality = dict(zip(best["person_id"].to_pylist(),
                                       [0.0 if q is None else float(q) for q in best["quality_max"].to_pylist()]))
        self.weak_people = sum(q < self.cfg.min_quality for q in self.person_quality.values())
        self.identities = pa.table({  # row = the track's row in faces.vectors
            "track_id": identities["track_id"], "person_id": identities["person_id"],
            "video_id": identities["video_id"]}).combine_chunks()
        num = lambda c, t: identities[c].to_numpy(zero_copy_only=False).astype(t)  # noqa: E731
        self._start, self._end = num("start_s", np.float64), num("end_s", np.float64)
        self._det, self._thumb_t = num("detections", np.int64), num("thumbnail_t", np.float64)
        self._has_pact = np.zeros(n, bool)
        self._has_pact[row_of[row_of >= 0]] = True
        self._by_person = _Groups(self.identities["person_id"])  # person -> rows, video -> rows
        self._by_video = _Groups(self.identities["video_id"])
        self._vcode = self._by_video.codes
        self._face_rows = faces_index.IdRows(identities["face_id"].to_numpy())  # FAISS id -> row
        self._names = {p: nm for p, nm in zip(self.people["person_id"].to_pylist(), self.people["name"].to_pylist())}
        # "not this person" marks: (the tracks left in the person then, its name, the tracks ruled out)
        self._nots = [(op.get("anchor") or [], op.get("name") or "", op["tracks"])
                      for op in people.read_corrections(self.store) if op["op"] == "not" and op.get("tracks")]
        # videos, in the answer's order (path, then id), by their code in identities
        vt = {r["video_id"]: r for r in self.videos.select(["video_id", "path", "paths"]).to_pylist()}
        self._videos, rank = [], {}
        for i, (vid, r) in enumerate(sorted(vt.items(), key=lambda kv: (kv[1]["path"] or "", kv[0]))):
            rank[vid] = i
        self._vrank = np.array([rank.get(v, len(rank)) for v in self._by_video.values], np.int64)
        for v in self._by_video.values:
            r = vt.get(v) or {"path": None, "paths": None}
            self._videos.append({"video_id": v, "path": r["path"],
                                 "other_paths": [x for x in (r["paths"] or []) if x != r["path"]]})
        self._video_keys = video_keys(vt.values())
        self._labels = sorted({x for x in self.segments["label"].to_pylist() + self.person_actions["label"].to_pylist()
                               if x})
        lab = {x: i for i, x in enumerate(self._labels)}
        seg_v = self._by_video.lookup(self.segments["video_id"].to_pylist())
        self._segs = _Intervals(self.segments, seg_v, len(self._by_video.values), seg_v, lab, source=False)
        pact_r = row_of[pc.index_in(pact_tracks, value_set=acted).to_numpy(zero_copy_only=False).astype(np.int64)] \
            if len(acted) else np.zeros(0, np.int64)
        pact_v = np.where(pact_r >= 0, self._vcode[np.maximum(pact_r, 0)], -1) if n else pact_r
        self._pacts = _Intervals(self.person_actions, pact_r, n, pact_v, lab, source=True)
        self._vectors: np.ndarray | None = None
        self._index: faces_index.FaceIndex | None = None
        self._thumb_parts: dict[str | None, list[str]] | None = None
        self._lazy = threading.Lock()
        self._holding: dict[tuple, np.ndarray] = {}  # (labels, min_score) -> video codes

    @property
    def tracks(self) -> pa.Table:
        """A row a track: ids, person, video, times (no embedding, no thumbnail)."""
        return self.identities

    @property
    def index(self) -> faces_index.FaceIndex:
        with self._lazy:
            if self._index is None:
                try:
                    self._index = faces_index.FaceIndex.load(self.store, with_ids=False)
                except faces_index.FaceIndexError as e:
                    raise QueryError(str(e)) from None
            return self._index

    @property
    def vectors(self) -> np.ndarray:
        with self._lazy:
            if self._vectors is None:
                try:
                    self._vectors = people.read_vectors(self.store, self.n_tracks, ranged=True)
                except IndexError_ as e:
                    raise QueryError(str(e)) from None
            return self._vectors

    def _embeddings(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return np.zeros((0, schemas.EMBED_DIM), np.float32)
        return np.asarray(self.vectors[rows], np.float32)

    # ------------------------------------------------------------------ pieces
    def _to_face(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Distances from tracks (rows) to one face, in the index's metric: one pass over their
        embeddings in float32 (the row-wise float64 form cost most of a face query)."""
        e = self._embeddings(rows)
        dot = e @ q
        sq = np.einsum("ij,ij->i", e, e)
        if self.space.metric == "cosine":
            return 1.0 - dot / np.maximum(np.sqrt(sq) * np.linalg.norm(q), 1e-12)
        return np.sqrt(np.maximum(sq + float(q @ q) - 2.0 * dot, 0.0))

    def _person_rows(self, person_ids) -> np.ndarray:
        """Every row of these people, sorted."""
        return np.sort(np.concatenate([self._by_person.rows(p) for p in person_ids] or [np.zeros(0, np.int64)]))

    def face_matches(self, embedding: np.ndarray, max_distance: float | None = None,
                     k: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(rows, distances) of every track within ``max_distance`` of the face, plus every other
        track of the people those tracks belong to (with their own distances)."""
        thr = self.cfg.match_distance if max_distance is None else max_distance
        q = np.asarray(embedding, np.float32).ravel()
        none = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self.n_tracks == 0 or self.index.meta.count == 0:
            return none
        sims, found = self.index.search_ids(q[None], k=min(k, self.index.meta.count))
        ok = found[0] >= 0
        if self.space.metric == "cosine":  # FAISS's cosine is the distance up to its 8-bit codes: skip the far
            ok &= 1.0 - sims[0] < thr + 0.05
        cand = self._face_rows.rows(found[0][ok])
        cand = np.sort(cand[cand >= 0])
        hits = cand[self._to_face(cand, q) < thr]
        if not len(hits):
            return none
        rows = self._person_rows(set(self.identities["person_id"].take(pa.array(hits)).to_pylist()))
        return rows, self._to_face(rows, q).astype(np.float32)

    def ruled_out(self, rows: np.ndarray, dist: np.ndarray) -> dict[int, str]:
        """Of a face's answer (rows, distances), the rows the user marked as not the person the face
        matches best (``vidx people not`` / "not this person" on the page: tracks put out of that
        person, or out of its name), with the reason: the answer marks them and puts them last."""
        if not len(rows) or not self._nots:
            return {}
        pid = self.identities["person_id"]
        best = pid[int(rows[int(np.argmin(dist))])].as_py()
        name = self._names.get(best)
        out: dict[int, str] = {}
        for anchor, op_name, tracks in self._nots:
            at = pc.index_in(pa.array(anchor, pa.string()), value_set=self.identities["track_id"]).drop_null()
            of_best = best in set(pid.take(at).to_pylist()) if len(at) else False
            if not (of_best or (op_name and name and op_name.casefold() == name.casefold())):
                continue
            why = f"you marked it not {name or best}"
            got = pc.index_in(pa.array(tracks, pa.string()), value_set=self.identities["track_id"]).drop_null()
            for r in got.to_pylist():
                if pid[r].as_py() != best:  # moved back into the person since: not ruled out
                    out[r] = why
        answer = set(rows.tolist())
        return {r: w for r, w in out.items() if r in answer}

    def near_misses(self, embedding: np.ndarray, max_distance: float | None = None, k: int = 3) -> list[dict[str, Any]]:
        """The ``k`` people nearest a face that matched no one (as ``vidx enroll`` names them for a
        photo): person id, name, distance to the person's centre, how far over the rule, tracks,
        videos.  The people's vectors are read on the first call."""
        if self._people_full is None:
            self._people_full = people.load(self.out)[1]
        rule = self.cfg.match_distance if max_distance is None else max_distance
        return [asdict(x) for x in people.nearest_people(self._people_full, np.asarray(embedding, np.float32)[None],
                                                          self.space, rule, k)]

    def name_distances(self, name: str, rows: np.ndarray) -> np.ndarray | None:
        """Each row's distance to the nearest photo enrolled under ``name``; None when the name
        has no photos (a manual name)."""
        gallery = self.gallery
        mine = gallery.filter(pc.equal(pc.utf8_lower(gallery["name"]), name.lower())) if gallery.num_rows else gallery
        if mine.num_rows == 0:
            return None
        return self.space.pairwise(self._embeddings(rows), people._emb(mine)).min(1) if len(rows) else np.zeros(0)

    def check_embedder(self, name: str | None) -> None:
        """A face embedded by another embedder than the index's is refused, saying what to do."""
        if name and name not in (self.space.name, self.space.model):
            known = name in SPACES or name in BY_MODEL
            raise QueryError(f"{self.space.built_with(self.out)}; this face was embedded with {name}, whose distances "
                             f"mean nothing here. Embed the photo with {self.space.name} (vidx query --face does so by "
                             f"itself), or index the videos again into a new folder with --set faces.embedder="
                             f"{space(name).name if known else name}")

    def _video_ids(self, video: str) -> list[str]:
        found = self._video_keys.get(video)
        if not found:
            raise QueryError(f"no indexed video with id, path or file name {video!r}")
        return sorted(found)

    # ------------------------------------------------------------------ the query
    HEAVY_ROWS = 5000  # a page this deep, or a person this large, is a long search (~10 ms and up)

    def heavy(self, q: Query) -> bool:
        """Whether ``q`` may take long (a deep page walks the archive in order; a very large
        person's tracks all meet their actions): a server runs such a search off its event loop,
        so that it does not hold the short ones back.  A guess from sizes, no search."""
        if q.offset + q.limit > self.HEAVY_ROWS:
            return True
        if q.person_id is not None and q.face is None:
            return len(self._by_person.rows(q.person_id)) > self.HEAVY_ROWS
        return False

    def search(self, q: Query) -> list[dict[str, Any]]:
        """The appearances (a row a track) that answer ``q``, in the order of the answer: by
        distance for a face, else by video path and time; ``q.offset`` / ``q.limit`` page it.

        The tracks that may answer come from in-memory indexes (a person's or a video's rows, a
        face's neighbours in FAISS); only they meet the action segments of their videos (and
        the person actions of their own tracks), by array operations.  A query by action alone
        walks the videos holding such actions in path order, a growing batch at a time, until
        the page is full."""
        if q.start is not None and q.end is not None and q.end < q.start:
            raise QueryError(f"--to {q.end} is before --from {q.start}")
        if q.limit < 1 or q.offset < 0:
            raise QueryError("limit must be >= 1 and offset >= 0")
        rows, dist = None, None  # candidate rows and, for a face or a name, their distances
        ruled: dict[int, str] = {}  # rows the user ruled out for the person a face matches best, and why
        if q.face is not None:
            self.check_embedder(q.face_embedder)
            rows, dist = self.face_matches(q.face, q.max_distance)
            ruled = self.ruled_out(rows, dist)
        who = q.person_id or q.person
        if who:
            try:
                pids = people.resolve_people(self.people, who) if q.person else [q.person_id]
            except people.PeopleError as e:
                enrolled = {n.casefold(): n for n in self.gallery["name"].to_pylist()} if q.person else {}
                if q.person and q.person.casefold() in enrolled:  # enrolled, but the rule named no one
                    raise QueryError(f"{enrolled[q.person.casefold()]!r} is enrolled but names no one: "
                                     + people.near_misses(self.out, enrolled[q.person.casefold()])) from None
                raise QueryError(str(e)) from None
            if q.person_id and q.person_id not in self._names:
                raise QueryError(f"no person with id {q.person_id!r}")
            mine = self._person_rows(pids)
            if rows is None:
                rows = mine  # a name: each track's distance to the nearest enrolled photo, if it has photos
                dist = self.name_distances(q.person, rows) if q.person else None
            else:
                keep = np.isin(rows, mine)
                rows, dist = rows[keep], dist[keep]
        if q.video:
            vrows = np.concatenate([self._by_video.rows(v) for v in self._video_ids(q.video)])
            if rows is None:
                rows = np.sort(vrows)
            else:
                keep = np.isin(rows, vrows)
                rows, dist = rows[keep], (dist[keep] if dist is not None else None)
        seg_ok = self._segs.score >= q.min_score
        pact_ok = self._pacts.score >= q.min_score
        if q.actions:
            hit = np.array([[a.lower() in lab.lower() for lab in self._labels] for a in q.actions], bool)
            hit = hit.reshape(len(q.actions), len(self._labels))
            self._check_labels([a for a, h in zip(q.actions, hit) if not h.any()])
            labels = np.append(hit.any(0), False)
            seg_ok &= labels[self._segs.label]
            pact_ok &= labels[self._pacts.label]
        if rows is not None:
            return self._answer(q, rows, dist, seg_ok, pact_ok, q.offset, q.limit, ruled)
        # by action alone (or nothing): the videos that hold such actions, in the answer's order
        codes = self._videos_holding(tuple(sorted(a.lower() for a in q.actions)), float(q.min_score), seg_ok, pact_ok)
        skip, out, at, size = q.offset, [], 0, 16  # pages before the asked one are counted, not built
        while at < len(codes) and len(out) < q.limit:
            batch = codes[at : at + size]
            at, size = at + size, size * 2
            rows = np.sort(np.concatenate([self._by_video.rows_of_code(c) for c in batch.tolist()]))
            if skip:
                n = len(self._matching(q, rows, None, seg_ok, pact_ok)[0])
                if n <= skip:
                    skip -= n
                    continue
            out += self._answer(q, rows, None, seg_ok, pact_ok, skip, q.limit - len(out))
            skip = 0
        return out

    def _videos_holding(self, labels: tuple[str, ...], min_score: float, seg_ok: np.ndarray,
                        pact_ok: np.ndarray) -> np.ndarray:
        """Codes of the videos holding an action of ``labels`` (any video without labels), in
        the answer's order; the last few answers are kept (a page of an action query asks again)."""
        key = (labels, min_score)
        with self._lazy:
            hit = self._holding.get(key)
        if hit is not None:
            return hit
        if labels:
            codes = np.union1d(self._segs.video[seg_ok], self._pacts.video[pact_ok])
            codes = codes[codes >= 0]
        else:
            codes = np.arange(len(self._vrank))
        codes = codes[np.argsort(self._vrank[codes], kind="stable")]
        with self._lazy:
            self._holding[key] = codes
            while len(self._holding) > 64:
                self._holding.pop(next(iter(self._holding)))
        return codes

    def _matching(self, q: Query, rows: np.ndarray, dist: np.ndarray | None, seg_ok: np.ndarray,
                  pact_ok: np.ndarray) -> tuple[np.ndarray, ...]:
        """The candidate rows that answer ``q`` (and their distances), with the (track, action)
        pairs overlapping them: scene segments (t1, s1) and the tracks' own actions (t2, s2)."""
        rows = np.asarray(rows, np.int64)
        keep = np.ones(len(rows), bool)
        if q.start is not None:
            keep &= self._end[rows] > q.start
        if q.end is not None:
            keep &= self._start[rows] < q.end
        rows = rows[keep]
        dist = dist[keep] if dist is not None else None
        # the actions overlapping each track (by more than 0 s): a person's own where vidx classified
        # them (scope person), else the frame's (scene)
        scene = rows[~self._has_pact[rows]]
        t1, s1 = self._segs.pairs(scene, self._vcode[scene])
        ok1 = seg_ok[s1] & (self._segs.start[s1] < self._end[t1]) & (self._start[t1] < self._segs.end[s1])
        own = rows[self._has_pact[rows]]
        t2, s2 = self._pacts.pairs(own, own)
        ok2 = pact_ok[s2] & (self._pacts.start[s2] < self._end[t2]) & (self._start[t2] < self._pacts.end[s2])
        t1, s1, t2, s2 = t1[ok1], s1[ok1], t2[ok2], s2[ok2]
        if q.actions:  # only tracks overlapping one of the asked actions
            hit = np.isin(rows, np.concatenate([t1, t2]))
            rows = rows[hit]
            dist = dist[hit] if dist is not None else None
        return rows, dist, t1, s1, t2, s2

    def _answer(self, q: Query, rows: np.ndarray, dist: np.ndarray | None, seg_ok: np.ndarray, pact_ok: np.ndarray,
                offset: int, limit: int, ruled: dict[int, str] | None = None) -> list[dict[str, Any]]:
        rows, dist, t1, s1, t2, s2 = self._matching(q, rows, dist, seg_ok, pact_ok)
        ruled = ruled or {}
        keys = [rows, self._start[rows], self._vrank[self._vcode[rows]]]
        if q.face is not None:
            keys.append(dist)
        if ruled:  # what the user ruled out comes last
            keys.append(np.isin(rows, np.fromiter(ruled, np.int64)))
        page = np.lexsort(keys)[offset : offset + limit]
        out = []
        sel1, sel2 = np.isin(t1, rows[page]), np.isin(t2, rows[page])
        acts: dict[int, list[dict[str, Any]]] = {}
        for t, s in zip(t1[sel1].tolist(), s1[sel1].tolist()):
            acts.setdefault(t, []).append(self._segs.action(s, self._start[t], self._end[t], "scene"))
        for t, s in zip(t2[sel2].tolist(), s2[sel2].tolist()):
            acts.setdefault(t, []).append(self._pacts.action(s, self._start[t], self._end[t]))
        tid = self.identities["track_id"].take(pa.array(rows[page])).to_pylist()
        pid = self.identities["person_id"].take(pa.array(rows[page])).to_pylist()
        for i, r in enumerate(rows[page].tolist()):
            v = self._videos[self._vcode[r]]
            name = self._names.get(pid[i])
            a = sorted(acts.get(r, []), key=lambda x: (-x["overlap_s"], x["label"]))
            out.append({"person": name or pid[i], "person_id": pid[i], "named": name is not None,
                        "video_id": v["video_id"], "path": v["path"], "other_paths": v["other_paths"],
                        "start_s": float(self._start[r]), "end_s": float(self._end[r]),
                        "scope": "person" if self._has_pact[r] else "scene", "actions": a,
                        "distance": round(float(dist[page[i]]), 4) if dist is not None else None,
                        "track_id": tid[i], "detections": int(self._det[r]), "thumbnail_t": float(self._thumb_t[r]),
                        **({"ruled_out": ruled[r]} if r in ruled else {})})
        return out

    # ------------------------------------------------------------------ thumbnails, on demand
    def _parts_of(self, video_id: str, fresh: bool = False) -> list[str]:
        with self._lazy:
            if self._thumb_parts is None or fresh:
                parts: dict[str | None, list[str]] = {}
                table = IndexTable(self.store, "face_tracks")
                for p in table.snapshot().files.values():
                    parts.setdefault(video_of(p), []).append(self.store.path(f"face_tracks/{p.path}"))
                self._thumb_parts = parts
            return self._thumb_parts.get(video_id, []) + self._thumb_parts.get(None, [])

    def thumbnails(self, track_ids: list[str]) -> dict[str, bytes]:
        """The JPEG of each track's best face, read from the files of those tracks' videos only."""
        if not track_ids:
            return {}
        idx = pc.index_in(pa.array(track_ids, pa.string()), value_set=self.identities["track_id"])
        missing = [t for t, i in zip(track_ids, idx.to_pylist()) if i is None]
        if missing:
            raise QueryError(f"no track {missing[0]!r}")
        vids = self.identities["video_id"].take(idx).to_pylist()
        want: dict[str, list[str]] = {}
        for t, v in zip(track_ids, vids):
            want.setdefault(v, []).append(t)
        import pyarrow.dataset as pads  # here: its import (pandas with it) slows a server's start

        out: dict[str, bytes] = {}
        for v, tids in want.items():
            for attempt in (False, True):  # a job may have compacted the files since: look again once
                try:
                    paths = self._parts_of(v, fresh=attempt)
                    if paths:
                        got = pads.dataset(paths, format="parquet", filesystem=self.store.fs).to_table(
                            columns=["track_id", "thumbnail"], filter=pc.field("track_id").isin(tids))
                        out.update(zip(got["track_id"].to_pylist(), got["thumbnail"].to_pylist()))
                    break
                except (FileNotFoundError, OSError) as e:
                    if attempt:
                        if not isinstance(e, FileNotFoundError) and "not found" not in str(e).lower():
                            raise
                        raise QueryError(f"the face_tracks file of video {v} is missing from storage (deleted "
                                         "outside vidx); run `vidx index` on that video again to rebuild it") from None
        lost = [t for t in track_ids if t not in out]
        if lost:
            raise QueryError(f"no thumbnail for track {lost[0]!r}: the index changed since it was opened "
                             "(reload it), or its face_tracks file was rewritten outside vidx")
        return out

    def thumbnail(self, track_id: str) -> bytes:
        """The JPEG of a track's best face."""
        return self.thumbnails([track_id])[track_id]

    def with_thumbnails(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        thumbs = self.thumbnails([r["track_id"] for r in rows])
        return [{**r, "thumbnail_jpeg_base64": base64.b64encode(thumbs[r["track_id"]]).decode()} for r in rows]

    def _check_labels(self, missing: list[str]) -> None:
        """Words that are part of no label this index holds: fine when they are part of a label of
        the model the index was built with (its vocabulary, recorded in the manifest: the answer is
        empty), else a mistake to name, with the closest labels.  An index without actions answers
        empty (the CLI says it has none)."""
        from vidx.indexing.labels import closest_labels, find_labels

        vocab = sorted(set(self.action_vocabulary) | set(self._labels))
        if not missing or not vocab:
            return
        for w in missing:
            if not find_labels(w, vocab):
                close = closest_labels(w, vocab)
                raise QueryError(f"no action label contains {w!r}" + (f"; closest: {', '.join(close)}" if close else "")
                                 + " (vidx actions labels WORD searches them)")

    def known_labels(self) -> list[str]:
        return sorted({x for x in self.segments["label"].to_pylist() if x})


def _csr(keys: np.ndarray, n_keys: int) -> tuple[np.ndarray, np.ndarray]:
    """(order, first): the positions of key k are order[first[k]:first[k + 1]]."""
    order = np.argsort(keys, kind="stable").astype(np.int64)
    return order, np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=n_keys))]).astype(np.int64)


class _Groups(people.Codes):
    """Rows of a table grouped by one id column's value (its :class:`~vidx.indexing.people.Codes`)."""

    def __init__(self, col: pa.Array | pa.ChunkedArray):
        super().__init__(col)
        self.order, self.start = _csr(self.codes, len(self.values))

    def rows(self, value: str) -> np.ndarray:
        i = self.code_of(value)
        return self.rows_of_code(i) if i >= 0 else np.zeros(0, np.int64)

    def rows_of_code(self, i: int) -> np.ndarray:
        return self.order[self.start[i] : self.start[i + 1]]


class _Intervals:
    """Action intervals (segments of a video, or a track's own actions) grouped by a key (a
    video code or a track row), to pair with tracks by array operations; ``video``: each
    interval's video code (-1: a video with no tracks)."""

    def __init__(self, table: pa.Table, key: np.ndarray, n_keys: int, video: np.ndarray, labels: dict[str, int],
                 source: bool):
        self.video = video
        self.start = table["start_s"].to_numpy(zero_copy_only=False).astype(np.float64)
        self.end = table["end_s"].to_numpy(zero_copy_only=False).astype(np.float64)
        self.score = np.nan_to_num(table["score"].to_numpy(zero_copy_only=False).astype(np.float32), nan=0.0)
        self.label_names = [x or "" for x in table["label"].to_pylist()]
        self.label = np.array([labels.get(x, len(labels)) for x in self.label_names], np.int64)
        self.source = table["source"].to_pylist() if source else None
        self.order, self.first = _csr(np.where(key >= 0, key, n_keys), n_keys + 1)  # -1: belongs to nothing indexed

    def pairs(self, rows: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, interval) for every interval under each row's key."""
        cnt = self.first[keys + 1] - self.first[keys]
        total = int(cnt.sum())
        if not total:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        ends = np.cumsum(cnt)
        within = np.arange(total) - np.repeat(ends - cnt, cnt)
        return np.repeat(rows, cnt), self.order[np.repeat(self.first[keys], cnt) + within]

    def action(self, i: int, t0: float, t1: float, source: str | None = None) -> dict[str, Any]:
        return {"label": self.label_names[i], "score": round(float(self.score[i]), 4),
                "overlap_s": round(float(min(t1, self.end[i]) - max(t0, self.start[i])), 3),
                "source": source or self.source[i]}
