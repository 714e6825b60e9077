"""Forget a person: every trace of them leaves the index.

Removed: their face tracks (with thumbnails), the track segments and face detections those
tracks were made of (embeddings, landmarks, thumbnails), what they were seen doing (their
person actions and person windows), their gallery photos' embeddings, the
corrections that name their tracks, their vectors (the FAISS index and the identities and people
tables are rebuilt from what remains, and the old files deleted), and the videos table's track
counts.  Each part file is rewritten atomically under its own name, the manifest last; if the
process dies part-way, running ``forget`` again finishes the job (the person is still known by
id and name until the people tables are rebuilt, which is the last step).

Re-indexing the same videos does not bring the person back (the chunks stay committed); indexing
new videos in which they appear finds them again, as it would anyone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from vidx.indexing import people as people_mod
from vidx.indexing import schemas
from vidx.indexing.lease import writes_index
from vidx.indexing.store import Store

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


def _drop(store: Store, rel: str, schema: pa.Schema, column: str, values: pa.Array) -> int:
    t = store.read_table(rel, schema)
    hit = pc.is_in(t[column], value_set=values)
    n = pc.sum(hit).as_py() or 0
    if n:
        store.write_table(rel, t.filter(pc.invert(hit)))
    return n


@writes_index("forget")
def forget(out: str, who: str) -> Forgotten:
    """Remove the person (id or name; a name covers every person carrying it) from ``out``."""
    store = Store(out)
    m = store.require_manifest()
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

    for vid in res.videos:
        entry = m["videos"][vid]
        tr = store.read_table(entry["face_tracks"], schemas.FACE_TRACKS)
        segs = pa.array(pc.list_flatten(tr.filter(pc.is_in(tr["track_id"], value_set=track_ids))["segments"])
                        .to_pylist(), pa.string())
        for c in entry["chunks"].values():
            res.segments += _drop(store, c["segments"], schemas.TRACK_SEGMENTS, "segment_id", segs)
            if c.get("person_windows") and store.exists(c["person_windows"]):
                _drop(store, c["person_windows"], schemas.PERSON_WINDOWS, "segment_id", segs)
            n = _drop(store, c["detections"], schemas.FACE_DETECTIONS, "segment_id", segs)
            c["detections_n"] = c.get("detections_n", 0) - n
            res.detections += n
        if entry.get("person_actions") and store.exists(entry["person_actions"]):
            _drop(store, entry["person_actions"], schemas.PERSON_ACTIONS, "track_id", track_ids)
        res.tracks += _drop(store, entry["face_tracks"], schemas.FACE_TRACKS, "track_id", track_ids)
        entry["tracks_n"] = store.read_table(entry["face_tracks"], schemas.FACE_TRACKS).num_rows

    if res.videos and m.get("tables", {}).get("videos"):  # track counts in the videos table
        old_rel = m["tables"]["videos"]
        v = store.read_table(old_rel, schemas.VIDEOS)
        counts = {vid: m["videos"][vid].get("tracks_n", 0) for vid in res.videos}
        tracks = [counts.get(vid, n) for vid, n in zip(v["video_id"].to_pylist(), v["tracks"].to_pylist())]
        v = v.set_column(v.schema.get_field_index("tracks"), "tracks", pa.array(tracks, pa.int32()))
        m["commit"] = m.get("commit", 0) + 1
        rel = f"videos/videos-{m['commit']:06d}.parquet"
        store.write_table(rel, v)
        m["tables"]["videos"] = rel
        store.write_manifest(m)
        if old_rel != rel:
            store.fs.delete_file(store.path(old_rel))
    else:
        store.write_manifest(m)

    if pc.any(in_gallery).as_py() or names:
        keep = pc.invert(pc.is_in(pc.utf8_lower(gallery["name"]), value_set=pa.array([n.casefold() for n in names])))
        res.gallery_photos = gallery.num_rows - (pc.sum(keep).as_py() or 0)
        if res.gallery_photos:
            store.write_table(people_mod.GALLERY_REL, gallery.filter(keep))
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
    people_mod.refresh(out, force=True)  # FAISS, identities, people rebuilt; old files deleted
    log.info("forgot %s: %d track(s), %d segment(s), %d detection(s), %d gallery photo(s)",
             ", ".join(names or pids), res.tracks, res.segments, res.detections, res.gallery_photos)
    return res
