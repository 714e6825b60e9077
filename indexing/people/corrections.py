"""The user's corrections as array operations over a million tracks (merge, split, move, accept,
rename, "not this person"), and the checks that refuse contradicting ones."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.indexing.people.files import IDENTITIES, Codes, PeopleError, _read
from vidx.indexing.store import Store

log = logging.getLogger(__name__)


class Assignment(Codes):
    """Person per track, as :class:`Codes` over the person ids: corrections replayed over a
    million tracks are array operations, not loops over a dict."""

    def __init__(self, track_ids: pa.Array, person_ids: pa.Array):
        super().__init__(person_ids)
        self.track_ids = track_ids

    def plurality(self, rows: np.ndarray) -> int | None:
        """The person most of ``rows`` belong to (ties: the smallest id)."""
        if not len(rows):
            return None
        codes, counts = np.unique(self.codes[rows], return_counts=True)
        best = counts == counts.max()
        return min(codes[best].tolist(), key=lambda c: self.values[c])


def _rows(assign: Assignment, ops: list[dict[str, Any]],
          keys: tuple[str, ...] = ("into", "from", "tracks", "anchor")) -> list[dict[str, np.ndarray]]:
    """Each op's track lists as rows of the assignment, one hash lookup for all ops; tracks no
    longer indexed are left out."""
    flat = [t for op in ops for k in keys for t in op.get(k) or ()]
    found = pc.index_in(pa.array(flat, pa.string()), value_set=assign.track_ids).to_numpy(zero_copy_only=False)
    at = 0
    rows: list[dict[str, np.ndarray]] = []
    for op in ops:
        r = {}
        for k in keys:
            m = len(op.get(k) or ())
            x = found[at : at + m]
            r[k] = x[~np.isnan(x)].astype(np.int64) if x.dtype.kind == "f" else x.astype(np.int64)
            at += m
        rows.append(r)
    return rows


def replay(assign: Assignment, ops: list[dict[str, Any]]) -> dict[str, str]:
    """Apply corrections in order to ``assign`` (changed in place); returns the manual names
    (person -> name).  Tracks an op names that are no longer indexed are skipped."""
    rows = _rows(assign, ops)
    names: dict[str, str] = {}
    for op, r in zip(ops, rows):
        kind = op["op"]
        if kind == "merge":
            into = assign.plurality(r["into"])
            if into is None:
                continue
            for p in set(assign.codes[r["from"]].tolist()) - {into}:
                assign.codes[assign.codes == p] = into
                names.pop(assign.values[p], None)  # the first person keeps its name; the others' go
        elif kind == "split":
            assign.codes[r["tracks"]] = assign.code_of(op["person_id"], add=True)
        elif kind in ("move", "accept"):  # tracks moved into another person; accepted: kept in theirs
            into = assign.plurality(r["into"])
            if into is not None:
                assign.codes[r["tracks"]] = into
        elif kind == "not":  # "these tracks are not that person": out of the anchor's person, whoever put them back
            anchor = assign.plurality(r["anchor"])
            if anchor is not None and len(r["tracks"]):
                back = r["tracks"][assign.codes[r["tracks"]] == anchor]
                if len(back):
                    assign.codes[back] = assign.code_of(op["person_id"], add=True)
        elif kind == "rename":
            p = assign.plurality(r["tracks"])
            if p is not None:
                if op["name"]:
                    names[assign.values[p]] = op["name"]
                else:
                    names.pop(assign.values[p], None)
    return names


def refused_names(assign: Assignment, ops: list[dict[str, Any]]) -> dict[int, set[str]]:
    """Person code -> the names its tracks were marked as not being ("not this person"): naming
    never gives them one of these."""
    out: dict[int, set[str]] = {}
    nots = [op for op in ops if op["op"] == "not" and op.get("name")]
    for op, r in zip(nots, _rows(assign, nots, ("tracks",)) if nots else ()):
        for c in np.unique(assign.codes[r["tracks"]]).tolist():
            out.setdefault(c, set()).add(op["name"])
    return out


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
