"""``vidx check OUT [--repair]``: prove an index whole, as ``git fsck`` or Delta's ``FSCK REPAIR
TABLE`` do for theirs.

What is checked, each finding one line:

* every file each table's Delta log holds is in storage;
* every chunk of every indexed video is in each per-chunk table exactly once: in one part of
  vidx's own, and in no other engine's file beside it (rows another engine's rewrite holds, or
  copies it appended, are rows twice for every other reader);
* the FAISS index holds exactly the tracks that have vectors (``face_tracks`` rows with an
  embedding), under the ids the identities table gives them;
* the identities table covers those tracks, one row each;
* the packs (caches beside the tables) hold what their tables hold, for the versions they claim;
* no file in a table's folder is unknown to its log for longer than the table's retention
  (an orphan: a part of a job that died before committing it is swept by the next run of its
  video; one older than that is a leftover).

``repair`` (with the index's lease held, through the same commit path): a missing file leaves
its table's log (its chunks are then indexed again by ``vidx index``), rows another engine's
files hold beside vidx's own part leave those files (rewritten without them), the FAISS index,
identities and packs are rebuilt from the tables, and orphans are deleted.  What it cannot fix
(a chunk whose rows are gone or only in another engine's rewrite: the video must be decoded
again) is said with the command that fixes it.
"""

from __future__ import annotations

import logging
import posixpath
import time
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from vidx.indexing.lease import writes_index
from vidx.indexing.store import Store
from vidx.indexing.tables import (
    CHUNK_TABLES,
    SCHEMAS,
    IndexTable,
    chunk_keys,
    foreign_files,
    is_own,
    row_keys,
    strip_foreign,
)

log = logging.getLogger(__name__)


@dataclass
class Finding:
    what: str  # one line for the user
    fix: str = ""  # what --repair does, or "" when it cannot
    redo: str | None = None  # a video whose chunks must be indexed again (its path)
    orphan: tuple[str, str] | None = None  # (table, file) that no commit holds: --repair deletes it


@dataclass
class CheckReport:
    findings: list[Finding] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)  # what was looked at: files, chunks, tracks...
    repaired: list[str] = field(default_factory=list)
    not_repaired: list[str] = field(default_factory=list)

    @property
    def whole(self) -> bool:
        return not self.findings

    def summary(self) -> str:
        c = self.checked
        return (f"{c.get('videos', 0)} video(s), {c.get('chunks', 0)} chunk(s) once in each of {c.get('tables', 0)} "
                f"per-chunk tables, {c.get('files', 0)} file(s) present, {c.get('tracks', 0)} track(s) with vectors "
                "in FAISS and identities")


def _tables(store: Store) -> dict[str, IndexTable]:
    from vidx.indexing.people.files import GALLERY, IDENTITIES, PEOPLE

    out = {}
    for name, schema in {**SCHEMAS, "identities": IDENTITIES, "people": PEOPLE, "gallery": GALLERY}.items():
        t = IndexTable(store, name, schema)
        if t.log.version >= 0:
            out[name] = t
    return out


def _needed(manifest: dict) -> list[str]:
    """The per-chunk tables every chunk has a part in, as the index was built."""
    acts = ((manifest.get("config") or {}).get("actions") or {})
    need = ["face_detections", "track_segments", "shots"]
    if acts.get("enabled"):
        need.append("action_windows")
        if acts.get("per_person", "auto") != "off":
            need.append("person_windows")
    return need


def check(out: str) -> CheckReport:
    """Every check of the module doc, reading only; the findings in a report."""
    store = Store(out)
    m = store.require_manifest()
    rep = CheckReport()
    tables = _tables(store)
    # 1. files the logs hold, in storage
    for name, t in tables.items():
        files = t.log.snapshot().files
        rep.checked["files"] = rep.checked.get("files", 0) + len(files)
        for p in t.missing(files.values()):
            vid = p.tags.get("video_id")
            rep.findings.append(Finding(f"{name}: {p.path} is in the table's log but missing from storage"
                                        + (f" (video {vid})" if vid else ""),
                                        fix="the log lets go of it" + (
                                            "; its chunks are then indexed again by vidx index" if vid else "")))
    # 2. every chunk exactly once
    videos = tables["videos"].read().to_pylist() if "videos" in tables else []
    paths = {v["video_id"]: v["path"] for v in videos}
    seen: set[tuple] = set()
    rep.checked["tables"] = len(_needed(m))
    for name in _needed(m):
        t = tables.get(name)
        if t is None:
            rep.findings.append(Finding(f"{name}: the table is missing", redo="*"))
            continue
        snap = t.log.snapshot()
        gone = {p.path for p in t.missing(snap.files.values())}
        own: dict[tuple, list[str]] = {}
        lost: set[tuple] = set()  # chunks of files found missing above (already one line each)
        for p in snap.files.values():
            if is_own(name, p):
                for k in chunk_keys(p):
                    (lost.add(k) if p.path in gone else own.setdefault(k, []).append(p.path))
        foreign: dict[tuple, list[str]] = {}
        for path, p in foreign_files(t).items():
            if path in gone:
                continue
            for k in row_keys(t, p):
                foreign.setdefault(k, []).append(path)
        grouped: dict[tuple, list[int]] = {}  # (video, kind, files) -> chunks: one line each
        for v in videos:
            if v["status"] == "failed":
                continue
            for c in range(int(v.get("chunks") or 0)):
                k = (v["video_id"], c)
                seen.add(k)
                mine, theirs = own.get(k, []), foreign.get(k, [])
                if len(mine) > 1:
                    grouped.setdefault((v["video_id"], "several", tuple(mine)), []).append(c)
                if mine and theirs:
                    grouped.setdefault((v["video_id"], "twice", tuple(theirs)), []).append(c)
                elif theirs:
                    grouped.setdefault((v["video_id"], "foreign", tuple(theirs)), []).append(c)
                elif not mine and k not in lost and v["status"] == "ok":
                    grouped.setdefault((v["video_id"], "none", ()), []).append(c)
        for (vid, kind, files), cs in grouped.items():
            what = f"{name}: {_chunks(cs)} of {vid} ({posixpath.basename(paths.get(vid) or '')})"
            listed = ", ".join(files)
            if kind == "several":
                rep.findings.append(Finding(f"{what} in {len(files)} of vidx's parts ({listed})", redo=paths.get(vid)))
            elif kind == "twice":
                rep.findings.append(Finding(f"{what}: rows in vidx's part and again in another engine's file "
                                            f"({listed}): twice for other readers",
                                            fix="those rows leave the other engine's file"))
            elif kind == "foreign":
                rep.findings.append(Finding(f"{what}: rows only in another engine's file ({listed}), rewritten "
                                            "outside vidx, not in a part of vidx's", redo=paths.get(vid)))
            else:
                rep.findings.append(Finding(f"{what}: no rows in the table", redo=paths.get(vid)))
    rep.checked["videos"] = len(videos)
    rep.checked["chunks"] = len(seen)
    _check_people(store, m, tables, rep)
    _check_orphans(store, tables, rep)
    for f in rep.findings:
        if f.redo and f.redo != "*" and f.redo not in paths.values():
            f.redo = None
    return rep


def _chunks(cs: list[int]) -> str:
    """``chunk 3`` or ``chunks 0-2, 5``."""
    cs = sorted(cs)
    runs, a = [], cs[0]
    for prev, c in zip(cs, cs[1:] + [None]):
        if c != prev + 1 if c is not None else True:
            runs.append(f"{a}" if a == prev else f"{a}-{prev}")
            a = c
    return ("chunk " if len(cs) == 1 else "chunks ") + ", ".join(runs)


def _check_people(store: Store, m: dict, tables: dict[str, IndexTable], rep: CheckReport) -> None:
    """FAISS ids, identities and packs against the tables."""
    from vidx.indexing import faces_index, packs
    from vidx.indexing.people.files import IDENTITIES_PACK, read_basis

    if "face_tracks" not in tables:
        return
    ft = tables["face_tracks"].read(columns=["track_id", "embedding"])
    with_vec = set(ft.filter(pc.is_valid(ft["embedding"]))["track_id"].to_pylist())
    rep.checked["tracks"] = len(with_vec)
    if not (m.get("people") or {}).get("digest"):
        if with_vec:
            rep.findings.append(Finding(f"the people tables and FAISS index were never built for {len(with_vec)} "
                                        "track(s)", fix="built (vidx reindex)"))
        return
    ident = tables["identities"].read(columns=["track_id", "face_id"]) if "identities" in tables else None
    have = ident["track_id"].to_pylist() if ident is not None else []
    dup = len(have) - len(set(have))
    if dup:
        rep.findings.append(Finding(f"identities: {dup} track(s) have more than one row", fix="rebuilt"))
    missing, extra = with_vec - set(have), set(have) - with_vec
    if missing:
        rep.findings.append(Finding(f"identities: {len(missing)} track(s) with vectors have no person "
                                    f"({', '.join(sorted(missing)[:3])}{', ...' if len(missing) > 3 else ''})",
                                    fix="rebuilt"))
    if extra:
        rep.findings.append(Finding(f"identities: {len(extra)} row(s) name tracks the face_tracks table does not "
                                    f"hold ({', '.join(sorted(extra)[:3])}{', ...' if len(extra) > 3 else ''})",
                                    fix="rebuilt"))
    try:
        fi = faces_index.FaceIndex.load(store)
        ids = dict(zip(fi.id_hash.tolist(), fi.id_track.to_pylist()))
    except Exception as e:  # noqa: BLE001 - an unreadable index is a finding, whatever the reason
        rep.findings.append(Finding(f"the FAISS index cannot be read ({str(e).splitlines()[0][:160]})", fix="rebuilt"))
        ids = None
    if ids is not None:
        if fi.index.ntotal != len(ids):
            rep.findings.append(Finding(f"the FAISS index holds {fi.index.ntotal} vector(s) but {len(ids)} id(s)",
                                        fix="rebuilt"))
        in_faiss = set(ids.values())
        no_track = sorted(in_faiss - with_vec)
        if no_track:
            rep.findings.append(Finding(f"the FAISS index holds {len(no_track)} id(s) of no track with a vector "
                                        f"({', '.join(no_track[:3])}{', ...' if len(no_track) > 3 else ''})",
                                        fix="rebuilt"))
        absent = sorted(with_vec - in_faiss)
        if absent:
            rep.findings.append(Finding(f"the FAISS index lacks {len(absent)} track(s) with vectors "
                                        f"({', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''})",
                                        fix="rebuilt"))
        if ident is not None:
            want = dict(zip(ident["track_id"].to_pylist(), ident["face_id"].to_pylist()))
            wrong = [t for h, t in ids.items() if t in want and want[t] != h]
            if wrong:
                rep.findings.append(Finding(f"the FAISS index and identities give {len(wrong)} track(s) different "
                                            "ids", fix="rebuilt"))
    basis = read_basis(store) or {}
    for name, rel in packs.PACKS.items():  # a pack claiming the table's version must hold its rows
        held = (basis.get("packs") or {}).get(name) or {}
        t = tables.get(name)
        if t is None or held.get("version") != t.log.version or not store.exists(rel):
            continue
        pack = store.read_table(rel, SCHEMAS[name])
        live = t.read()
        if not _same_rows(pack, live):
            rep.findings.append(Finding(f"packs/{posixpath.basename(rel)} claims version {held['version']} of "
                                        f"{name} but its rows differ ({pack.num_rows} vs {live.num_rows})",
                                        fix="rewritten"))
    t = tables.get("identities")
    if t is not None and basis.get("identities_version") == t.log.version and store.exists(IDENTITIES_PACK):
        import pyarrow.ipc as ipc

        pk = ipc.open_file(pa.BufferReader(store.read_bytes(IDENTITIES_PACK))).read_all()
        live = t.read(columns=pk.column_names)
        if not _same_rows(pk, live):
            rep.findings.append(Finding(f"{IDENTITIES_PACK} claims version {t.log.version} of identities but its "
                                        f"rows differ ({pk.num_rows} vs {live.num_rows})", fix="rewritten"))


def _same_rows(a: pa.Table, b: pa.Table) -> bool:
    if a.num_rows != b.num_rows or set(a.column_names) != set(b.column_names):
        return False
    cols = [c for c in a.column_names if not pa.types.is_list(a.schema.field(c).type)
            and not pa.types.is_fixed_size_list(a.schema.field(c).type)
            and not pa.types.is_binary(a.schema.field(c).type)]
    key = [(c, "ascending") for c in cols]
    return a.select(cols).sort_by(key).equals(b.select(cols).cast(a.select(cols).schema).sort_by(key))


def _check_orphans(store: Store, tables: dict[str, IndexTable], rep: CheckReport) -> None:
    """Files in a table's folder its log does not know (live or removed), older than its retention."""
    now_ms = time.time() * 1000
    for name, t in tables.items():
        snap = t.log.snapshot()
        known = set(snap.files) | set(snap.tombstones)
        retention = snap.retention_ms
        base = store.path(name).rstrip("/") + "/"
        sel = pafs.FileSelector(store.path(name), recursive=True, allow_not_found=True)
        for info in store.fs.get_file_info(sel):
            rel = info.path[len(base):]
            if info.type != pafs.FileType.File or rel.startswith("_delta_log") or not rel.endswith(".parquet"):
                continue
            if rel in known:
                continue
            age_ms = now_ms - (info.mtime.timestamp() * 1000 if info.mtime else now_ms)
            if age_ms > retention:
                rep.findings.append(Finding(f"{name}: {rel} is in no commit of the table's log (an orphan, "
                                            f"{age_ms / 3_600_000:.0f} h old)", fix="deleted", orphan=(name, rel)))


@writes_index("check --repair")
def repair(out: str) -> CheckReport:
    """Check, then fix what removing or rebuilding can fix (module doc); returns the report of the
    check after the repair, with what was done and what could not be."""
    from vidx.indexing import people

    store = Store(out)
    before = check(out)
    done: list[str] = []
    tables = _tables(store)
    for name, t in tables.items():  # missing files leave the logs
        files = t.log.snapshot().files
        gone = t.missing(files.values())
        if gone:
            t.commit([], gone, operation="DELETE")
            done.append(f"{name}: {len(gone)} missing file(s) left the table's log")
    for name in CHUNK_TABLES:  # rows beside vidx's own part leave the foreign files
        t = tables.get(name)
        if t is None:
            continue
        own = {k for p in t.snapshot().files.values() for k in chunk_keys(p)}
        foreign = {path: (p, row_keys(t, p)) for path, p in foreign_files(t).items()}
        twice = {k for _, ks in foreign.values() for k in ks} & own
        if twice:
            adds, removes = strip_foreign(t, foreign, twice)
            t.commit(adds, removes, operation="DELETE")
            done.append(f"{name}: the rows of {len(twice)} chunk(s) left {len(removes)} file(s) of another engine")
    if any(f.fix in ("rebuilt", "rewritten", "built (vidx reindex)") for f in before.findings):
        people.refresh(out, force=True)
        from vidx.indexing import packs

        packs.update(store, None)  # every pack rewritten from its table
        done.append("the FAISS index, identities and packs rebuilt from the tables")
    orphans = [f.orphan for f in before.findings if f.orphan]
    for name, rel in orphans:
        tables[name].delete([rel])
    if orphans:
        done.append(f"{len(orphans)} orphan file(s) deleted")
    after = check(out)
    after.repaired = done
    return after
