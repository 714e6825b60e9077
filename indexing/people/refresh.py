"""The refresh: people rebuilt from the face tracks, incrementally when only tracks were added or
removed, fully when the parameters or the embedder changed; then corrections and names."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from vidx.configs.config import PeopleConfig, fill_distances
from vidx.configs.spaces import Space
from vidx.indexing import faces_index, packs, schemas
from vidx.indexing.lease import writes_index
from vidx.indexing.people.assemble import _tables
from vidx.indexing.people.clustering import (
    _quality,
    co_occurring,
    people_labels,
    stable_ids,
)
from vidx.indexing.people.corrections import Assignment, refused_names, replay
from vidx.indexing.people.files import (
    BASIS,
    IDENTITIES,
    NARROW,
    PEOPLE,
    TRACK_COLUMNS,
    VECTORS,
    _digest,
    _emb,
    _labels_digest,
    _read,
    _settings_digest,
    append_vectors,
    index_space,
    people_config,
    read_basis,
    read_corrections,
    read_gallery,
    read_vectors,
    write_identities_pack,
    write_vectors,
)
from vidx.indexing.people.naming import _named
from vidx.indexing.people.resume import Grown, grow
from vidx.indexing.store import IndexError_, Store
from vidx.indexing.tables import IndexTable, append_rows, replace_table, video_of

log = logging.getLogger(__name__)


@dataclass
class RefreshResult:
    changed: bool
    tracks: int
    people: int
    named: dict[str, list[str]]  # name -> person ids
    index_kind: str
    warnings: list[str] = field(default_factory=list)  # enrolment: doubtful photos
    mode: str = ""  # full | incremental | appended | unchanged
    reclustered: int = 0  # tracks clustered again (all of them in a full refresh; the new ones when appended)


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
        grown, why_not = grow(store, basis, parts, files, cfg, sp, gallery, ops, labels_in)
        if grown is not None:
            return _write_grown(store, m, grown, snap, files, packed, settings, labels_in, digest)
        log.debug("people: not appended (%s)", why_not)
        built, why = _incremental(store, basis, parts, files, cfg, sp)
    if built is None:
        log.info("people: clustering every track (%s)", why)
        built = _full(store, ft, parts, cfg, sp, old)
    manual = replay(built.assign, ops)
    refused = refused_names(built.assign, ops)
    role = np.where(built.assign.codes != built.auto, "manual", built.role)
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
        write_vectors(store, built.emb)
    replace_table(store, "identities", identities, IDENTITIES, purge)  # purge (forget): the old files
    replace_table(store, "people", people, PEOPLE, purge)  # deleted, a forgotten person must not linger
    _finish(store, m, built.index, people, identities.select(NARROW), files, packed, settings, labels_in, digest)
    log.info("people: %d track(s) -> %d person(s) (%s; %d clustered)", identities.num_rows, people.num_rows,
             built.mode, built.reclustered)
    return RefreshResult(True, identities.num_rows, people.num_rows, _named(people), built.index.meta.kind,
                         mode=built.mode, reclustered=built.reclustered)


def _write_grown(store: Store, m: dict, g: Grown, snap, files: dict, packed, settings: str, labels: str,
                 digest: str) -> RefreshResult:
    """Append a delivery: embeddings, then the FAISS shard, then the identities rows (what a
    reader trusts last of the three), then the people table, the basis and the manifest."""
    append_vectors(store, g.rows_before, g.emb)
    g.index.meta.face_tracks_version = snap.version
    g.index.save_added(store, g.emb, g.identities["track_id"].to_pylist())
    if not append_rows(store, "identities", g.identities, IDENTITIES):
        raise IndexError_("the identities table has no part name left to append; run 'vidx reindex --full'")
    replace_table(store, "people", g.people, PEOPLE)
    narrow = pa.concat_tables([g.prev.select(NARROW), g.identities.select(NARROW)])
    rows = narrow.num_rows
    _finish(store, m, g.index, g.people, narrow, files, packed, settings, labels, digest)
    log.info("people: %d track(s) -> %d person(s) (+%d appended; %d nearby person(s))", rows, g.people.num_rows,
             g.placed, g.touched)
    return RefreshResult(True, rows, g.people.num_rows, _named(g.people), g.index.meta.kind, mode="appended",
                         reclustered=g.placed)


def _finish(store: Store, m: dict, index: faces_index.FaceIndex, people: pa.Table, narrow: pa.Table, files: dict,
            packed, settings: str, labels: str, digest: str) -> None:
    """The identities pack, the basis the next refresh builds on, then the manifest (what
    readers trust)."""
    write_identities_pack(store, narrow)
    store.write_bytes(BASIS, json.dumps({
        "version": 1, "settings": settings, "labels": labels, "rows": narrow.num_rows, "identities_pack": True,
        "identities_version": IndexTable(store, "identities", IDENTITIES).log.version, "face_tracks": files,
        "packs": packed}).encode())
    m["faces_index"] = {"files": [faces_index.INDEX_FILE, faces_index.IDS_FILE, faces_index.META_FILE, VECTORS],
                        **asdict(index.meta)}
    m["people"] = {"digest": digest, "count": people.num_rows}
    m["commit"] = m.get("commit", 0) + 1
    m["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_manifest(m)


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
    return _Built(_track_rows(tracks), emb, idx, assign, assign.codes.copy(), np.array(role, dtype=object), len(tids),
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
    return _Built(tracks, emb, idx, assign, assign.codes.copy(), role, len(s), "incremental", changed), ""
