"""The query engine: who, where, doing what, when, across the whole index.

One module serves the CLI (``vidx query``) and, later, the HTTP API.  The tables are loaded
once into an in-memory DuckDB (Arrow, zero-copy); each query is one SQL statement:

    face photo -> FAISS -> matching tracks -> their people -> every track of those people
    name / person id -> people -> tracks
    tracks JOIN action_segments ON same video AND the intervals overlap (by more than 0 s)

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
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.configs.spaces import BY_MODEL, SPACES, space
from vidx.indexing import faces_index, people, schemas
from vidx.indexing.store import IndexError_, Store, read_index_table

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
    """Loads an index's tables once; :meth:`search` answers :class:`Query` objects."""

    def __init__(self, out: str):
        self.out = out
        try:
            m = Store(out).require_manifest()
        except IndexError_ as e:
            raise QueryError(str(e)) from None
        self.cfg = people.people_config(m)
        self.space = people.index_space(m)
        self.identities, self.people = people.load(out)
        self.tracks = read_index_table(out, "face_tracks")
        self.videos = read_index_table(out, "videos")
        self.segments = read_index_table(out, "action_segments")
        self.person_actions = read_index_table(out, "person_actions")
        self.gallery = people.read_gallery(Store(out))  # enrolled photos: a query by name measures to them
        self._index: faces_index.FaceIndex | None = None
        self.db = duckdb.connect()
        tracks_lite = self.tracks.drop_columns(["embedding", "thumbnail", "segments"])
        for name, tbl in (("tracks", tracks_lite), ("identities", self.identities),
                          ("people", self.people.drop_columns(["embedding"])), ("videos", self.videos),
                          ("segs", self.segments), ("pacts", self.person_actions)):
            # copied into DuckDB's own storage once: scanning it beats re-reading Arrow per query
            self.db.register("arrow_in", tbl)
            self.db.execute(f"CREATE TABLE {name} AS SELECT * FROM arrow_in")
            self.db.unregister("arrow_in")
        self._emb = self.tracks["embedding"]
        self._row = {t: i for i, t in enumerate(self.tracks["track_id"].to_pylist())}

    @property
    def index(self) -> faces_index.FaceIndex:
        if self._index is None:
            try:
                self._index = faces_index.FaceIndex.load(Store(self.out))
            except faces_index.FaceIndexError as e:
                raise QueryError(str(e)) from None
        return self._index

    # ------------------------------------------------------------------ pieces
    def face_matches(self, embedding: np.ndarray, max_distance: float | None = None, k: int = 256) -> pa.Table:
        """(track_id, distance) of every track within ``max_distance`` of the face, plus every
        other track of the people those tracks belong to (with their own distances)."""
        thr = self.cfg.match_distance if max_distance is None else max_distance
        q = np.asarray(embedding, np.float32).reshape(1, -1)
        if self.index.meta.count == 0:
            return pa.table({"track_id": pa.array([], pa.string()), "distance": pa.array([], pa.float32())})
        _, found = self.index.search(q, k=min(k, self.index.meta.count))
        cand = found[0]
        emb = _rows(self._emb, [self._row[t] for t in cand])
        d = self.space.distance(emb, q)
        hits = [t for t, x in zip(cand, d) if x < thr]
        if not hits:
            return pa.table({"track_id": pa.array([], pa.string()), "distance": pa.array([], pa.float32())})
        con = self.db.cursor()  # one DuckDB handle per call: the engine serves concurrent requests
        pid = con.execute("SELECT DISTINCT person_id FROM identities WHERE track_id IN (SELECT unnest($1))",
                              [hits]).fetchall()
        members = con.execute("SELECT track_id FROM identities WHERE person_id IN (SELECT unnest($1))",
                                  [[p[0] for p in pid]]).fetchall()
        tids = [r[0] for r in members]
        d_all = self.space.distance(_rows(self._emb, [self._row[t] for t in tids]), q)
        return pa.table({"track_id": tids, "distance": pa.array(d_all, pa.float32())})

    def name_distances(self, name: str, person_ids: list[str]) -> pa.Table | None:
        """(track_id, distance to the nearest photo enrolled under ``name``) for the tracks of
        ``person_ids``; None when the name has no photos (a manual name)."""
        gallery = self.gallery
        mine = gallery.filter(pc.equal(pc.utf8_lower(gallery["name"]), name.lower())) if gallery.num_rows else gallery
        if mine.num_rows == 0:
            return None
        tids = self.identities.filter(pc.is_in(self.identities["person_id"], value_set=pa.array(person_ids)))
        tids = tids["track_id"].to_pylist()
        emb = _rows(self._emb, [self._row[t] for t in tids]) if tids else np.zeros((0, schemas.EMBED_DIM))
        d = self.space.pairwise(emb, people._emb(mine)).min(1) if len(tids) else np.zeros(0)
        return pa.table({"track_id": pa.array(tids, pa.string()), "distance": pa.array(d, pa.float32())})

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
        if q.start is not None and q.end is not None and q.end < q.start:
            raise QueryError(f"--to {q.end} is before --from {q.start}")
        if q.limit < 1 or q.offset < 0:
            raise QueryError("limit must be >= 1 and offset >= 0")
        where, params = ["TRUE"], {}
        con = self.db.cursor()  # per query: concurrent searches must not share a handle or "matches"
        if q.face is not None:
            self.check_embedder(q.face_embedder)
            con.register("matches", self.face_matches(q.face, q.max_distance))
            join_match = "JOIN matches m USING (track_id)"
            dist = "m.distance"
        else:
            join_match, dist = "", "NULL::FLOAT"
        who = q.person_id or q.person
        if who:
            try:
                pids = people.resolve_people(self.people, who) if q.person else [q.person_id]
            except people.PeopleError as e:
                raise QueryError(str(e)) from None
            if q.person_id and q.person_id not in set(self.people["person_id"].to_pylist()):
                raise QueryError(f"no person with id {q.person_id!r}")
            where.append("i.person_id IN (SELECT unnest($pids))")
            params["pids"] = pids
            by_name = self.name_distances(q.person, pids) if q.person and q.face is None else None
            if by_name is not None:  # a name: each track's distance to the nearest enrolled photo
                con.register("matches", by_name)
                join_match, dist = "LEFT JOIN matches m USING (track_id)", "m.distance"
        if q.video:
            where.append("t.video_id IN (SELECT unnest($vids))")
            params["vids"] = self._video_ids(q.video)
        if q.start is not None:
            where.append("t.end_s > $t0")
            params["t0"] = float(q.start)
        if q.end is not None:
            where.append("t.start_s < $t1")
            params["t1"] = float(q.end)
        seg_where = ["score >= $min_score"]
        params["min_score"] = float(q.min_score)
        if q.actions:
            seg_where.append("len(list_filter($labels, lambda x: contains(lower(label), x))) > 0")
            params["labels"] = [a.lower() for a in q.actions]
        having = "HAVING count(j.label) > 0" if q.actions else ""
        order = "distance NULLS LAST, " if q.face is not None else ""
        sql = f"""
        WITH t AS (
            SELECT t.track_id, t.video_id, t.start_s, t.end_s, t.detections, t.thumbnail_t,
                   i.person_id, p.name, {dist} AS distance
            FROM tracks t JOIN identities i USING (track_id) JOIN people p USING (person_id) {join_match}
            WHERE {' AND '.join(where)}
        ),
        a AS (SELECT video_id, start_s, end_s, label, score FROM segs WHERE {' AND '.join(f'({w})' for w in seg_where)}),
        has AS (SELECT DISTINCT track_id FROM pacts),
        pact AS (SELECT track_id, start_s, end_s, label, score, source FROM pacts
              WHERE {' AND '.join(f'({w})' for w in seg_where)}),
        j AS (  -- a person's own actions where vidx classified them (scope person), else the frame's (scene)
            SELECT t.track_id, a.label, a.score,
                   least(t.end_s, a.end_s) - greatest(t.start_s, a.start_s) AS overlap_s, 'scene' AS source
            FROM t JOIN a ON a.video_id = t.video_id AND a.start_s < t.end_s AND t.start_s < a.end_s
            WHERE t.track_id NOT IN (SELECT track_id FROM has)
            UNION ALL
            SELECT t.track_id, x.label, x.score,
                   least(t.end_s, x.end_s) - greatest(t.start_s, x.start_s) AS overlap_s, x.source
            FROM t JOIN pact x ON x.track_id = t.track_id AND x.start_s < t.end_s AND t.start_s < x.end_s
        )
        SELECT coalesce(t.name, t.person_id) AS person, t.person_id, t.name IS NOT NULL AS named,
               t.video_id, v.path, list_filter(coalesce(v.paths, []), lambda x: x != v.path) AS other_paths,
               t.start_s, t.end_s,
               CASE WHEN t.track_id IN (SELECT track_id FROM has) THEN 'person' ELSE 'scene' END AS scope,
               coalesce(list({{'label': j.label, 'score': j.score, 'overlap_s': j.overlap_s, 'source': j.source}}
                             ORDER BY j.overlap_s DESC, j.label) FILTER (WHERE j.label IS NOT NULL), []) AS actions,
               t.distance, t.track_id, t.detections, t.thumbnail_t
        FROM t LEFT JOIN j USING (track_id) LEFT JOIN videos v USING (video_id)
        GROUP BY ALL
        {having}
        ORDER BY {order}v.path, t.start_s, t.track_id
        LIMIT {int(q.limit)} OFFSET {int(q.offset)}
        """
        cur = con.execute(sql, params)
        cols = [c[0] for c in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
        for r in rows:
            for a in r["actions"]:
                a["score"] = round(float(a["score"]), 4)
                a["overlap_s"] = round(float(a["overlap_s"]), 3)
            if r["distance"] is not None:
                r["distance"] = round(float(r["distance"]), 4)
        return rows

    def thumbnail(self, track_id: str) -> bytes:
        """The JPEG of a track's best face."""
        i = self._row.get(track_id)
        if i is None:
            raise QueryError(f"no track {track_id!r}")
        return self.tracks["thumbnail"][i].as_py()

    def with_thumbnails(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "thumbnail_jpeg_base64": base64.b64encode(self.thumbnail(r["track_id"])).decode()} for r in rows]

    def known_labels(self) -> list[str]:
        return sorted({x for x in self.segments["label"].to_pylist() if x})


def _rows(col: pa.ChunkedArray, idx: list[int]) -> np.ndarray:
    if not idx:
        return np.zeros((0, schemas.EMBED_DIM), np.float32)
    taken = col.take(pa.array(idx, pa.int64())).combine_chunks()
    return np.asarray(taken.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(-1, schemas.EMBED_DIM)
