"""The query engine: who, where, doing what, when, across the whole index.

One module serves the CLI (``vidx query``) and the HTTP API (``vidx serve``).  The narrow tables
are loaded once; a query first finds the tracks that may answer it from in-memory indexes, then
joins only those with the action tables in one DuckDB statement:

    face photo -> FAISS -> matching tracks -> their people -> every track of those people
    name / person id -> people -> tracks
    tracks JOIN action_segments ON same video AND the intervals overlap (by more than 0 s)

Embeddings (``faces.vectors``) and thumbnails (``face_tracks``) are read on demand, so a server
holds narrow columns only (README "Queries at a million tracks").

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
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from vidx.configs.spaces import BY_MODEL, SPACES, space
from vidx.indexing import faces_index, people, schemas
from vidx.indexing.store import IndexError_, Store, read_index_table
from vidx.indexing.tables import IndexTable, video_of

class QueryError(ValueError):
    """The query cannot be answered as asked (unknown person or video, bad range...)."""


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
            identities, ppl = people.load(out)
        except (IndexError_, people.PeopleError) as e:
            raise QueryError(str(e)) from None
        if identities.num_rows and identities["face_id"].null_count:
            raise QueryError(f"the people tables of {out} were built by an older vidx; run 'vidx reindex {out}'")
        self.people = ppl.drop_columns(["embedding"])
        self.videos = read_index_table(out, "videos")
        self.segments = read_index_table(out, "action_segments")
        self.person_actions = read_index_table(out, "person_actions")
        self.gallery = people.read_gallery(self.store)  # enrolled photos: a query by name measures to them
        n = identities.num_rows
        self.n_tracks = n
        has = pc.is_in(identities["track_id"], value_set=self.person_actions["track_id"].unique())
        self.identities = pa.table({  # row = the track's row in faces.vectors
            "row": pa.array(np.arange(n, dtype=np.int32)), "track_id": identities["track_id"],
            "person_id": identities["person_id"], "video_id": identities["video_id"],
            "start_s": identities["start_s"], "end_s": identities["end_s"], "detections": identities["detections"],
            "thumbnail_t": identities["thumbnail_t"], "has_pact": has}).combine_chunks()
        self._start = self.identities["start_s"].to_numpy()
        self._end = self.identities["end_s"].to_numpy()
        self._by_person = _Groups(self.identities["person_id"])  # person -> rows, video -> rows
        self._by_video = _Groups(self.identities["video_id"])
        face = identities["face_id"].to_numpy()
        self._face_order = np.argsort(face).astype(np.int32)
        self._face_sorted = face[self._face_order]
        self._vectors: np.ndarray | None = None
        self._index: faces_index.FaceIndex | None = None
        self._thumb_parts: dict[str | None, list[str]] | None = None
        self._lazy = threading.Lock()
        self.db = duckdb.connect()
        for name, tbl in (("people", self.people), ("videos", self.videos), ("segs", self.segments),
                          ("pacts", self.person_actions)):
            # copied into DuckDB's own storage once: scanning it beats re-reading Arrow per query
            self.db.register("arrow_in", tbl)
            self.db.execute(f"CREATE TABLE {name} AS SELECT * FROM arrow_in ORDER BY ALL")
            self.db.unregister("arrow_in")

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
                    self._vectors = people.read_vectors(self.store, self.n_tracks)
                except IndexError_ as e:
                    raise QueryError(str(e)) from None
            return self._vectors

    def _embeddings(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return np.zeros((0, schemas.EMBED_DIM), np.float32)
        return np.asarray(self.vectors[rows], np.float32)

    # ------------------------------------------------------------------ pieces
    def face_matches(self, embedding: np.ndarray, max_distance: float | None = None, k: int = 256) -> pa.Table:
        """(row, distance) of every track within ``max_distance`` of the face, plus every other
        track of the people those tracks belong to (with their own distances)."""
        thr = self.cfg.match_distance if max_distance is None else max_distance
        q = np.asarray(embedding, np.float32).reshape(1, -1)
        empty = pa.table({"row": pa.array([], pa.int32()), "distance": pa.array([], pa.float32())})
        if self.n_tracks == 0 or self.index.meta.count == 0:
            return empty
        _, found = self.index.search_ids(q, k=min(k, self.index.meta.count))
        h = found[0][found[0] >= 0]
        at = np.clip(np.searchsorted(self._face_sorted, h), 0, self.n_tracks - 1)
        cand = np.sort(self._face_order[at[self._face_sorted[at] == h]])
        d = self.space.distance(self._embeddings(cand), q)
        hits = cand[d < thr]
        if not len(hits):
            return empty
        pids = set(self.identities["person_id"].take(pa.array(hits)).to_pylist())
        rows = np.sort(np.concatenate([self._by_person.rows(p) for p in pids]))
        d_all = self.space.distance(self._embeddings(rows), q)
        return pa.table({"row": pa.array(rows, pa.int32()), "distance": pa.array(d_all, pa.float32())})

    def name_distances(self, name: str, person_ids: list[str]) -> pa.Table | None:
        """(row, distance to the nearest photo enrolled under ``name``) for the tracks of
        ``person_ids``; None when the name has no photos (a manual name)."""
        gallery = self.gallery
        mine = gallery.filter(pc.equal(pc.utf8_lower(gallery["name"]), name.lower())) if gallery.num_rows else gallery
        if mine.num_rows == 0:
            return None
        rows = np.sort(np.concatenate([self._by_person.rows(p) for p in person_ids] or [np.zeros(0, np.int64)]))
        d = self.space.pairwise(self._embeddings(rows), people._emb(mine)).min(1) if len(rows) else np.zeros(0)
        return pa.table({"row": pa.array(rows, pa.int32()), "distance": pa.array(d, pa.float32())})

    def check_embedder(self, name: str | None) -> None:
        """A face embedded by another embedder than the index's is refused, saying what to do."""
        if name and name not in (self.space.name, self.space.model):
            known = name in SPACES or name in BY_MODEL
            raise QueryError(f"{self.space.built_with(self.out)}; this face was embedded with {name}, whose distances "
                             f"mean nothing here. Embed the photo with {self.space.name} (vidx query --face does so by "
                             f"itself), or index the videos again into a new folder with --set faces.embedder="
                             f"{space(name).name if known else name}")

    def _video_ids(self, video: str) -> list[str]:
        rows = self.db.cursor().execute(
            "SELECT video_id FROM videos WHERE video_id = $1 OR path = $1 OR regexp_extract(path, '[^/]+$') = $1 "
            "OR len(list_filter(coalesce(paths, []), lambda x: x = $1 OR regexp_extract(x, '[^/]+$') = $1)) > 0",
            [video]).fetchall()
        if not rows:
            raise QueryError(f"no indexed video with id, path or file name {video!r}")
        return [r[0] for r in rows]

    # ------------------------------------------------------------------ the query
    def search(self, q: Query) -> list[dict[str, Any]]:
        """The appearances (a row a track) that answer ``q``, in the order of the answer: by
        distance for a face, else by video path and time; ``q.offset`` / ``q.limit`` page it.

        The tracks that may answer are found first from in-memory indexes (a person's or a
        video's rows, a face's neighbours in FAISS), then only they meet the action tables in
        one DuckDB statement.  A query by action alone walks the videos holding those actions in
        path order, a growing batch at a time, until the page is full."""
        if q.start is not None and q.end is not None and q.end < q.start:
            raise QueryError(f"--to {q.end} is before --from {q.start}")
        if q.limit < 1 or q.offset < 0:
            raise QueryError("limit must be >= 1 and offset >= 0")
        con = self.db.cursor()  # per query: concurrent searches must not share a handle
        rows, dist = None, None  # candidate rows and, for a face or a name, their distances
        if q.face is not None:
            self.check_embedder(q.face_embedder)
            m = self.face_matches(q.face, q.max_distance)
            rows, dist = m["row"].to_numpy(), m["distance"].to_numpy()
        who = q.person_id or q.person
        if who:
            try:
                pids = people.resolve_people(self.people, who) if q.person else [q.person_id]
            except people.PeopleError as e:
                raise QueryError(str(e)) from None
            if q.person_id and not len(self._by_person.rows(q.person_id)) and \
                    q.person_id not in set(self.people["person_id"].to_pylist()):
                raise QueryError(f"no person with id {q.person_id!r}")
            mine = np.sort(np.concatenate([self._by_person.rows(p) for p in pids] or [np.zeros(0, np.int64)]))
            if rows is None:
                rows = mine
                by_name = self.name_distances(q.person, pids) if q.person else None
                if by_name is not None:  # a name: each track's distance to the nearest enrolled photo
                    dist = by_name["distance"].to_numpy()
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
        params: dict[str, Any] = {"min_score": float(q.min_score)}
        seg_where = ["score >= $min_score"]
        if q.actions:
            seg_where.append("len(list_filter($labels, lambda x: contains(lower(label), x))) > 0")
            params["labels"] = [a.lower() for a in q.actions]
        if rows is not None:
            return self._answer(con, q, rows, dist, seg_where, params, q.offset, q.limit)
        # by action alone (or nothing): the videos that hold such actions, in the answer's order
        if q.actions:
            w = " AND ".join(f"({x})" for x in seg_where)
            vids = con.execute(f"""SELECT video_id FROM videos WHERE video_id IN (
                SELECT video_id FROM segs WHERE {w} UNION SELECT video_id FROM pacts WHERE {w})
                ORDER BY path, video_id""", params).fetchall()
        else:
            vids = con.execute("SELECT video_id FROM videos ORDER BY path, video_id").fetchall()
        vids = [v[0] for v in vids]
        want, out, at, size = q.offset + q.limit, [], 0, 4
        while at < len(vids) and len(out) < want:
            batch = vids[at : at + size]
            at, size = at + size, size * 2
            vrows = [self._by_video.rows(v) for v in batch]
            rows = np.sort(np.concatenate(vrows)) if vrows else np.zeros(0, np.int64)
            out += self._answer(con, q, rows, None, seg_where, params, 0, want - len(out))
        return out[q.offset : q.offset + q.limit]

    def _answer(self, con, q: Query, rows: np.ndarray, dist: np.ndarray | None, seg_where: list[str],
                params: dict[str, Any], offset: int, limit: int) -> list[dict[str, Any]]:
        keep = np.ones(len(rows), bool)
        if q.start is not None:
            keep &= self._end[rows] > q.start
        if q.end is not None:
            keep &= self._start[rows] < q.end
        rows = np.asarray(rows)[keep]
        cand = self.identities.take(pa.array(rows, pa.int64()))
        cand = cand.append_column("distance", pa.array(dist[keep] if dist is not None else np.full(len(rows), np.nan),
                                                       pa.float32()))
        con.register("t", cand)
        try:
            having = "HAVING count(j.label) > 0" if q.actions else ""
            order = "distance NULLS LAST, " if q.face is not None else ""
            w = " AND ".join(f"({x})" for x in seg_where)
            sql = f"""
            WITH j AS (  -- a person's own actions where vidx classified them (scope person), else the frame's (scene)
                SELECT t.row, a.label, a.score,
                       least(t.end_s, a.end_s) - greatest(t.start_s, a.start_s) AS overlap_s, 'scene' AS source
                FROM t JOIN segs a ON a.video_id = t.video_id AND a.start_s < t.end_s AND t.start_s < a.end_s
                WHERE NOT t.has_pact AND {w}
                UNION ALL
                SELECT t.row, x.label, x.score,
                       least(t.end_s, x.end_s) - greatest(t.start_s, x.start_s) AS overlap_s, x.source
                FROM t JOIN pacts x ON x.track_id = t.track_id AND x.start_s < t.end_s AND t.start_s < x.end_s
                WHERE t.has_pact AND {w}
            )
            SELECT coalesce(p.name, t.person_id) AS person, t.person_id, p.name IS NOT NULL AS named,
                   t.video_id, v.path, list_filter(coalesce(v.paths, []), lambda x: x != v.path) AS other_paths,
                   t.start_s, t.end_s, CASE WHEN t.has_pact THEN 'person' ELSE 'scene' END AS scope,
                   coalesce(list({{'label': j.label, 'score': j.score, 'overlap_s': j.overlap_s, 'source': j.source}}
                                 ORDER BY j.overlap_s DESC, j.label) FILTER (WHERE j.label IS NOT NULL), []) AS actions,
                   CASE WHEN isnan(t.distance) THEN NULL ELSE t.distance END AS distance,
                   t.track_id, t.detections, t.thumbnail_t
            FROM t LEFT JOIN j USING (row) LEFT JOIN videos v USING (video_id) LEFT JOIN people p USING (person_id)
            GROUP BY ALL
            {having}
            ORDER BY {order}v.path, t.start_s, t.track_id
            LIMIT {int(limit)} OFFSET {int(offset)}
            """
            cur = con.execute(sql, params)
            cols = [c[0] for c in cur.description]
            out = [dict(zip(cols, r)) for r in cur.fetchall()]
        finally:
            con.unregister("t")
        for r in out:
            for a in r["actions"]:
                a["score"] = round(float(a["score"]), 4)
                a["overlap_s"] = round(float(a["overlap_s"]), 3)
            if r["distance"] is not None:
                r["distance"] = round(float(r["distance"]), 4)
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
                except (FileNotFoundError, OSError):
                    if attempt:
                        raise
        lost = [t for t in track_ids if t not in out]
        if lost:
            raise QueryError(f"no thumbnail for track {lost[0]!r} (the index changed; reload it)")
        return out

    def thumbnail(self, track_id: str) -> bytes:
        """The JPEG of a track's best face."""
        return self.thumbnails([track_id])[track_id]

    def with_thumbnails(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        thumbs = self.thumbnails([r["track_id"] for r in rows])
        return [{**r, "thumbnail_jpeg_base64": base64.b64encode(thumbs[r["track_id"]]).decode()} for r in rows]

    def known_labels(self) -> list[str]:
        return sorted({x for x in self.segments["label"].to_pylist() if x})


class _Groups:
    """Rows of a table grouped by one string column's value (CSR: values sorted, offsets)."""

    def __init__(self, col: pa.Array | pa.ChunkedArray):
        enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
        codes = enc.indices.to_numpy(zero_copy_only=False)
        self.code = {v: i for i, v in enumerate(enc.dictionary.to_pylist())}
        self.order = np.argsort(codes, kind="stable").astype(np.int64)
        self.start = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=len(self.code)))]).astype(np.int64)

    def rows(self, value: str) -> np.ndarray:
        i = self.code.get(value)
        return self.order[self.start[i] : self.start[i + 1]] if i is not None else np.zeros(0, np.int64)
