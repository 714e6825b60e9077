"""Reading people for review: suggestions for a name, a person's tracks, possibly the same person,
and the review queue of uncertain appearances."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.indexing.people.corrections import _refuse_not, _tracks_of, on_screen_together
from vidx.indexing.people.files import (
    PeopleError,
    _emb,
    index_space,
    load,
    people_config,
    read_corrections,
    read_gallery,
    read_vectors,
    resolve_people,
)
from vidx.indexing.people.naming import nearest_photos
from vidx.indexing.store import Store
from vidx.indexing.tables import read_index_table

log = logging.getLogger(__name__)


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
    return nearest_people(people, _emb(g), sp, rule, k)


def nearest_people(people: pa.Table, photos: np.ndarray, sp, rule: float, k: int = 3) -> list[Suggestion]:
    """The ``k`` people (rows of the people table, with embeddings) nearest photos' embeddings
    ``photos`` (P, D), by :func:`nearest_photos` to each person's centre (for one photo: its distance),
    nearest first, with how far over ``rule``: what every search by a face reports when nothing is
    within the rule (enrol, ``query --person`` and ``--face``, the page)."""
    if not people.num_rows or not len(photos):
        return []
    d = nearest_photos(sp.pairwise(_emb(people), np.asarray(photos).reshape(len(photos), -1)))
    rows = people.drop_columns(["embedding"]).to_pylist()
    return [Suggestion(rows[i]["person_id"], rows[i]["name"], float(d[i]), float(d[i] - rule), rows[i]["tracks"],
                       rows[i]["videos"], rows[i]["thumbnail_track"]) for i in np.argsort(d, kind="stable")[:k]]


def describe_near(sug: list[Suggestion], within: str = "within the rule but on screen with someone nearer") -> str:
    """The near misses in one line: each person, its distance and how far over the rule."""
    return "; ".join(f"{x.person_id}{f' ({x.name})' if x.name else ''} at {x.distance:.3f}"
                     + (f", {x.over:.3f} over the rule" if x.over > 0 else f", {within}")
                     + f", {x.tracks} track(s) in {x.videos} video(s)" for x in sug)


def near_misses(out: str, name: str, k: int = 3) -> str:
    """One message for a name the rule gave to no one: its nearest people, how far over the rule,
    and the command that confirms one."""
    rule = people_config(Store(out).require_manifest()).match_distance
    sug = suggestions(out, name, k)
    if not sug:
        return f"no indexed person is near the photos of {name!r} yet"
    near = describe_near(sug)
    return (f"no indexed person is within {rule:g} of the photos of {name!r} (people.match_distance); nearest: "
            f"{near}. If one is {name}: vidx people rename {out} {sug[0].person_id} {_quote(name)} (kept across "
            f"re-indexing); 'vidx people show {out} {sug[0].person_id}' lists its appearances")


def _quote(s: str) -> str:
    import shlex

    return shlex.quote(s)


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
    ops = read_corrections(Store(out))
    got = []
    for i in np.argsort(d, kind="stable")[:k].tolist():  # a loop over k people
        theirs = _tracks_of(identities, [rows[i]["person_id"]])
        clash = on_screen_together(out, mine, theirs, limit=1)
        try:  # the rule a merge would meet (vidx people merge refuses on it)
            _refuse_not(ops, set(mine) | set(theirs), "merging")
            marked = False
        except PeopleError:
            marked = True
        got.append({**rows[i], "distance": float(d[i]),
                    "refused": "on screen together" if clash else "marked not the same person" if marked else None})
    return got


REVIEW_CANDIDATES = 2000  # tracks farthest from their own person whose runner-up is measured for the queue
# the review queue holds appearances whose margin (runner-up's distance - own person's) is under this,
# per embedder; measured by bench/calibrate_review.py (docs/guide/page.md, the review queue)
REVIEW_MARGIN = {"sface": 0.3, "dlib": 0.3}


@dataclass
class ReviewQueue:
    """A page of the review queue: ``total`` appearances in the queue (margin under ``bound``),
    ``rest``: the other open ones (not reviewed or corrected by hand), and the page's ``items``."""

    total: int
    rest: int
    bound: float
    items: list[dict[str, Any]]


def review_queue(out: str, limit: int = 50, offset: int = 0, candidates: int = REVIEW_CANDIDATES,
                 bound: float | None = None) -> ReviewQueue:
    """Appearances to review, the least certain first: those whose margin is under ``bound``
    (default :data:`REVIEW_MARGIN`, in the index's distance; ``math.inf``: every open one).

    A track's certainty is its margin: the distance to the nearest *other* person's centre minus
    the distance to its own (small or negative: it could as well be someone else), low quality
    first among equal margins; a person of one track is its own centre, so it enters only when
    someone else is near. Tracks already reviewed or corrected by hand are not offered. Of
    the open tracks, the ``candidates`` farthest from their own person are measured (one FAISS
    search against the people's centres), so the queue costs the same at a million tracks."""
    import duckdb
    import faiss

    store = Store(out)
    sp = index_space(store.require_manifest())
    identities, people = load(out)
    bound = REVIEW_MARGIN.get(sp.name, 0.1) if bound is None else bound
    role = identities["role"].to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(~np.isin(role, ["manual", "reviewed"]))
    n_open = len(rows)
    if not len(rows) or people.num_rows < 2:
        return ReviewQueue(0, n_open, bound, [])
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
    d = np.maximum(sp.distance(vec.astype(np.float64), centres[own].astype(np.float64)), 0.0)  # no -0.000
    o_d = np.maximum(o_d, 0.0)
    margin = o_d - d
    quality = identities["quality"].to_numpy(zero_copy_only=False).astype(np.float64)[rows]
    inq = np.flatnonzero(margin < bound)
    rows, margin, d, o_d, o_idx, quality = rows[inq], margin[inq], d[inq], o_d[inq], o_idx[inq], quality[inq]
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
    return ReviewQueue(len(rows), n_open - len(rows), bound, [dict(zip(cols, r)) for r in cur.fetchall()])
