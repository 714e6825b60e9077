"""Forget a person: every trace of them leaves the index.

Removed: their face tracks (with thumbnails), the track segments and face detections those
tracks were made of (embeddings, landmarks, thumbnails), what they were seen doing (their
person actions and person windows), their gallery photos' embeddings, the
corrections that name their tracks, their vectors (the FAISS index and the identities and people
tables are rebuilt from what remains, and the old files deleted), and the videos table's track
counts.  Each part holding their rows is rewritten under a new name and swapped in by one Delta
commit a table, and the old file deleted at once, with every file earlier commits removed that
held rows of those videos (or of identities, people and the gallery): no row of theirs stays
in any file; the tables' logs hold file names and statistics of times and ids only.  Unlike
every other command, forget therefore ends time travel to the versions that held the person.  If the process dies
part-way, running ``forget`` again finishes the job (the person is still known by id and name
until the people tables are rebuilt, which is the last step).

Re-indexing the same videos does not bring the person back (the chunks stay committed); indexing
new videos in which they appear finds them again, as it would anyone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from vidx.indexing import people as people_mod
from vidx.indexing.delta_log import FilePart
from vidx.indexing.lease import writes_index
from vidx.indexing.store import Store
from vidx.indexing.tables import SCHEMAS, IndexTable, write_part

log = logging.getLogger(__name__)


@dataclass
class Forgotten:
    person_ids: list[str]
    names: list[str]
    tracks: int = 0
    segments: int = 0
    detections: int = 0
    gallery_photos: int = 0
    videos: list[str] = field(default_factory=list)


def _drop(table: IndexTable, parts: list[FilePart], column: str, values: pa.Array) -> int:
    """Rewrite the parts holding rows whose ``column`` is in ``values`` without them; one commit
    removes the old files (then deleted) and adds the new.  Returns the rows dropped."""
    adds, removes, dropped = [], [], 0
    for p in parts:
        t = table.read([p])
        hit = pc.is_in(t[column], value_set=values)
        n = pc.sum(hit).as_py() or 0
        if n:
            tags = dict(p.tags)
            vid, chunks = tags.pop("video_id", None), tags.pop("chunks", None)
            span = tuple(int(x) for x in chunks.split("-")) if chunks else None
            adds.append(write_part(table.store, table.name, t.filter(pc.invert(hit)), vid, span, **tags))
            removes.append(p)
            dropped += n
    table.commit(adds, removes, operation="DELETE", purge=True)
    return dropped


def _purge_history(table: IndexTable, vids: set[str] | None) -> int:
    """Delete at once the files earlier commits removed (kept for time travel) that hold rows of
    ``vids`` (None: any): an older version may hold the person's rows."""
    if table.log.version < 0:
        return 0
    snap = table.log.snapshot()
    paths = [p for p in snap.tombstones if p not in snap.files
             and (vids is None or p.split("/", 1)[0] in vids or p.rsplit("-", 1)[0] in vids)]
    return table.delete(paths)


@writes_index("forget")
def forget(out: str, who: str) -> Forgotten:
    """Remove the person (id or name; a name covers every person carrying it) from ``out``."""
    store = Store(out)
    store.require_manifest()
    gallery = people_mod.read_gallery(store)
    in_gallery = pc.equal(pc.utf8_lower(gallery["name"]), who.casefold())
    try:
        identities, people = people_mod.load(out)
        pids = people_mod.resolve_people(people, who)
    except people_mod.PeopleError:
        if not pc.any(in_gallery).as_py():
            raise
        pids, identities, people = [], people_mod.IDENTITIES.empty_table(), people_mod.PEOPLE.empty_table()
    mine = identities.filter(pc.is_in(identities["person_id"], value_set=pa.array(pids, pa.string())))
    carriers: dict[str, set[str]] = {}
    for p, n in zip(people["person_id"].to_pylist(), people["name"].to_pylist()):
        if n:
            carriers.setdefault(n, set()).add(p)
    # a name goes (gallery photos included) when every person carrying it goes
    names = sorted({n for n, ps in carriers.items() if ps <= set(pids)}
                   | set(gallery.filter(in_gallery)["name"].to_pylist()))
    res = Forgotten(pids, names, videos=sorted(set(mine["video_id"].to_pylist())))
    track_ids = pa.array(mine["track_id"].to_pylist(), pa.string())

    if res.videos:
        tables = {n: IndexTable(store, n) for n in SCHEMAS}
        vids = set(res.videos)

        def parts_of(name: str) -> list[FilePart]:
            return [p for p in tables[name].snapshot().files.values() if p.tags.get("video_id") in vids]

        tr_parts = parts_of("face_tracks")
        tr = tables["face_tracks"].read(tr_parts)
        segs = pa.array(pc.list_flatten(tr.filter(pc.is_in(tr["track_id"], value_set=track_ids))["segments"])
                        .to_pylist(), pa.string())
        res.segments = _drop(tables["track_segments"], parts_of("track_segments"), "segment_id", segs)
        _drop(tables["person_windows"], parts_of("person_windows"), "segment_id", segs)
        res.detections = _drop(tables["face_detections"], parts_of("face_detections"), "segment_id", segs)
        _drop(tables["person_actions"], parts_of("person_actions"), "track_id", track_ids)
        res.tracks = _drop(tables["face_tracks"], tr_parts, "track_id", track_ids)
        counts = pc.value_counts(tables["face_tracks"].read(parts_of("face_tracks"), columns=["video_id"])["video_id"])
        counts = {c["values"].as_py(): c["counts"].as_py() for c in counts}
        old_parts = list(tables["videos"].snapshot().files.values())
        if old_parts:  # track counts in the videos table
            v = tables["videos"].read(old_parts)
            n = [counts.get(vid, 0) if vid in vids else k for vid, k in zip(v["video_id"].to_pylist(),
                                                                           v["tracks"].to_pylist())]
            v = v.set_column(v.schema.get_field_index("tracks"), "tracks", pa.array(n, pa.int32()))
            tables["videos"].commit([write_part(store, "videos", v)], old_parts, operation="UPDATE")
        for name in SCHEMAS:
            if name != "videos":
                _purge_history(tables[name], vids)

    if pc.any(in_gallery).as_py() or names:
        keep = pc.invert(pc.is_in(pc.utf8_lower(gallery["name"]), value_set=pa.array([n.casefold() for n in names])))
        res.gallery_photos = gallery.num_rows - (pc.sum(keep).as_py() or 0)
        if res.gallery_photos:
            people_mod.write_gallery(store, gallery.filter(keep))
    gone = set(mine["track_id"].to_pylist())
    ops = people_mod.read_corrections(store)
    if gone and ops:
        kept = []
        for op in ops:
            op = {k: ([t for t in v if t not in gone] if isinstance(v, list) else v) for k, v in op.items()}
            if op["op"] == "rename" and names and op["name"] in names:
                continue  # the name itself is forgotten
            if any(isinstance(v, list) and v for v in op.values()):
                kept.append(op)
        people_mod.write_corrections(store, kept)
    # the rewritten videos' tracks leave the FAISS index, faces.vectors, identities and people (their
    # old files deleted), and only the people near them are clustered again
    people_mod.refresh(out, purge=True)
    for name in ("identities", "people", "gallery"):  # every older version of these named the person
        _purge_history(IndexTable(store, name, {"identities": people_mod.IDENTITIES, "people": people_mod.PEOPLE, "gallery": people_mod.GALLERY}[name]), None)
    log.info("forgot %s: %d track(s), %d segment(s), %d detection(s), %d gallery photo(s)",
             ", ".join(names or pids), res.tracks, res.segments, res.detections, res.gallery_photos)
    return res
