"""The index's tables: Delta Lake tables, one folder each, on any pyarrow filesystem.

    OUT/<table>/_delta_log/                     the table's commits (what a reader may trust)
    OUT/<table>/<video_id>/<chunk>-<id>.parquet per-chunk parts (face_detections, track_segments, shots,
                                                action_windows, person_windows); a finished
                                                video's parts are compacted into one file
    OUT/<table>/<video_id>-<id>.parquet         per-video parts (face_tracks, action_segments,
                                                person_actions)
    OUT/videos/videos-<id>.parquet              the videos table (one file)

Every part has a name of its own (never overwritten): a worker writes it, the driver commits
it (:class:`~vidx.indexing.delta_log.DeltaLog`: a commit costs what it adds, not what the table
holds), and a part that replaces another (a chunk redone, a video compacted or re-indexed)
removes the old one in the same commit.  The removed file stays on disk for the table's
retention (``delta.deletedFileRetentionDuration``, a week unless set) so that readers keep their
snapshots and time travel works; :func:`vacuum` (``vidx vacuum``, and the end of every ``vidx
index``) deletes those past it.  ``forget`` alone deletes at once (:meth:`IndexTable.commit`
with ``purge``).  Each part carries tags saying which video and chunks it holds; readers other
than vidx (DuckDB, Polars, Spark, delta-rs) read the tables as they are.

Files another engine added (no vidx tags, not a vidx name) are not vidx's results: vidx leaves
them out of its own reads with a warning.  They are known by their rows (:func:`row_keys`): when
vidx writes a chunk (or a video) again, the same commit takes that chunk's rows out of every
foreign file holding them (:func:`strip_foreign`), so no row is ever in a table twice.
"""

from __future__ import annotations

import contextlib
import logging
import posixpath
import re
import uuid
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from vidx.indexing import schemas
from vidx.indexing.delta_log import DeltaLog, FilePart, Snapshot, file_stats
from vidx.indexing.store import Store
from vidx.configs.errors import MissingFile  # noqa: F401 - defined there, raised here

log = logging.getLogger(__name__)

CHUNK_TABLES = {"face_detections": schemas.FACE_DETECTIONS, "track_segments": schemas.TRACK_SEGMENTS,
                "shots": schemas.SHOTS, "action_windows": schemas.ACTION_WINDOWS,
                "person_windows": schemas.PERSON_WINDOWS}
VIDEO_TABLES = {"face_tracks": schemas.FACE_TRACKS, "action_segments": schemas.ACTION_SEGMENTS,
                "person_actions": schemas.PERSON_ACTIONS}
SCHEMAS = {"videos": schemas.VIDEOS, **CHUNK_TABLES, **VIDEO_TABLES}
CHECKPOINT_EVERY = 10  # commits since the last checkpoint before a job's end writes one
_TOKEN = r"[0-9a-f]{12}\.parquet"
_TOKEN_PART = re.compile(_TOKEN)
_CHUNK_PART = re.compile(rf"\d{{5}}-{_TOKEN}")
_warned: set[tuple[str, str]] = set()


def _stats_columns(schema: pa.Schema) -> list[str]:
    return [c for c in ("video_id", "chunk", "t", "start_s", "end_s") if c in schema.names]


def write_part(store: Store, name: str, table: pa.Table, video_id: str | None = None,
               chunks: tuple[int, int] | None = None, token: str | None = None, **tags: str) -> FilePart:
    """Write ``table`` as a new part of table ``name`` (not yet committed) and describe it.
    ``token``: the name's 12 hex digits (default random; :func:`next_token` for a table whose
    rows are read in the order they were added)."""
    token = token or uuid.uuid4().hex[:12]
    if chunks is not None:
        rel = f"{video_id}/{chunks[0]:05d}-{token}.parquet"
    elif video_id is not None:
        rel = f"{video_id}-{token}.parquet"
    else:
        rel = f"{name}-{token}.parquet"
    buf = pa.BufferOutputStream()  # Parquet's own types only: Delta has no fixed-size arrays
    pq.write_table(table, buf, compression="zstd", store_schema=False)
    data = buf.getvalue().to_pybytes()
    store.write_bytes(f"{name}/{rel}", data)  # its size known without asking the store
    tags = {**({"video_id": video_id} if video_id else {}),
            **({"chunks": f"{chunks[0]}-{chunks[1]}"} if chunks is not None else {}), **tags}
    return FilePart(rel, len(data), table.num_rows, file_stats(table, _stats_columns(table.schema)), tags)


def is_own(name: str, part: FilePart) -> bool:
    """Whether vidx wrote the part: its name is one :func:`write_part` gives and its tags say what
    it holds (a chunk table's part: video and chunks; a per-video table's: video).  A file
    another engine wrote (an append, or a rewrite by its delete, update or compaction) is not."""
    vid = part.tags.get("video_id")
    path = part.path
    if name in CHUNK_TABLES:  # one compiled pattern for every video: a table has tens of thousands of parts
        return bool(vid and "chunks" in part.tags and path.startswith(vid + "/")
                    and _CHUNK_PART.fullmatch(path, len(vid) + 1))
    if name in VIDEO_TABLES:
        return bool(vid and path.startswith(vid + "-") and _TOKEN_PART.fullmatch(path, len(vid) + 1))
    return path.startswith(name + "-") and bool(_TOKEN_PART.fullmatch(path, len(name) + 1))


def chunk_keys(part: FilePart) -> list[tuple[str, int]]:
    """(video_id, chunk) of every chunk a part of vidx's holds (its tags)."""
    a, b = (int(x) for x in part.tags["chunks"].split("-"))
    return [(part.tags["video_id"], c) for c in range(a, b + 1)]


def foreign_files(table: "IndexTable") -> dict[str, FilePart]:
    """The table's live files that another engine wrote (an append, or the rewrite its delete,
    update or compaction made of vidx's files): not vidx's results, but rows other readers see."""
    if table.log.version < 0:
        return {}
    return {p: part for p, part in table.log.snapshot().files.items() if not is_own(table.name, part)}


def row_keys(table: "IndexTable", part: FilePart) -> set[tuple]:
    """What a file holds, read from its rows (two columns): (video_id, chunk) pairs of a per-chunk
    table, (video_id,) of any other."""
    cols = ["video_id", "chunk"] if table.name in CHUNK_TABLES else ["video_id"]
    rows = table.read([part], columns=cols)
    return set(zip(*(rows[c].to_pylist() for c in cols)))


def key_mask(rows: pa.Table, keys: set[tuple]) -> pa.Array:
    """Which rows belong to ``keys`` ((video_id, chunk) pairs, or (video_id,) alone)."""
    if not keys:
        return pa.array([False] * rows.num_rows)
    if len(next(iter(keys))) == 1:
        return pc.is_in(rows["video_id"], value_set=pa.array(sorted(k[0] for k in keys), pa.string()))
    by_video: dict[str, list[int]] = {}
    for v, c in keys:
        by_video.setdefault(v, []).append(c)
    mask = None
    for v, cs in by_video.items():
        m = pc.and_(pc.equal(rows["video_id"], v), pc.is_in(rows["chunk"], value_set=pa.array(cs, pa.int32())))
        mask = m if mask is None else pc.or_(mask, m)
    return pc.fill_null(mask, False)


def strip_foreign(table: "IndexTable", foreign: dict[str, tuple[FilePart, set[tuple]]],
                  keys: set[tuple]) -> tuple[list[FilePart], list[FilePart]]:
    """Take the rows of ``keys`` out of the foreign files holding any (``foreign``: path -> (file,
    the keys it holds), updated in place): (remainders to add, files to remove), for the same
    commit that adds vidx's new rows of those keys, so that no row is ever in the table twice.  A
    remainder (the file's other rows, rewritten as they were) stays another engine's file."""
    adds, removes = [], []
    for path, (part, held) in list(foreign.items()):
        hit = held & keys
        if not hit:
            continue
        del foreign[path]
        rows = table.read([part])
        left = rows.filter(pc.invert(key_mask(rows, hit)))
        removes.append(part)
        if left.num_rows:
            rem = write_part(table.store, table.name, left)
            adds.append(rem)
            foreign[rem.path] = (rem, held - hit)
        log.info("%s: %d row(s) of %d key(s) taken out of %s, another engine's file (%d row(s) left)", table.name,
                 rows.num_rows - left.num_rows, len(hit), path, left.num_rows)
    return adds, removes


def video_of(part: FilePart) -> str | None:
    """The one video a part holds (its tags), None for a part of a whole-index table."""
    return part.tags.get("video_id") or None


class IndexTable:
    """One Delta table of the index."""

    def __init__(self, store: Store, name: str, schema: pa.Schema | None = None):
        self.store, self.name, self.schema = store, name, schema if schema is not None else SCHEMAS[name]
        self.log = self._log(DeltaLog(store.fs, store.path(name), self._uri()))

    def _uri(self) -> str:
        base, _, query = self.store.uri.partition("?")
        return f"{base.rstrip('/')}/{self.name}" + (f"?{query}" if query else "")

    def _log(self, log: DeltaLog) -> DeltaLog:
        log.guard = self.store.check_writer  # every commit and checkpoint: the lease first
        return log

    def create(self) -> "IndexTable":
        if self.log.version < 0:
            self.log = self._log(DeltaLog.create(self.store.fs, self.store.path(self.name), self.schema,
                                                 name=self.name, uri=self._uri()))
        return self

    def snapshot(self, write: bool = False) -> Snapshot:
        """The table's newest version, its ``files`` vidx's own parts only (another engine's files
        are left out, with a warning once a process).  ``write``: refuse (ProtocolError) when
        vidx must not write it."""
        if self.log.version < 0:
            return Snapshot(-1, {}, {}, {})
        snap = self.log.snapshot()
        if write:
            snap.writable(self.log.root)
        foreign = sorted(p for p, part in snap.files.items() if not is_own(self.name, part))
        if foreign:
            key = (self.store.path(self.name), ",".join(foreign))
            if key not in _warned:
                _warned.add(key)
                log.warning("%s: %d file(s) another engine wrote (%s%s) are not vidx's results: they stay out of "
                            "its answers, and a chunk vidx indexes again leaves them ('vidx check' says which)",
                            self.name, len(foreign), foreign[0], ", ..." if len(foreign) > 1 else "")
            for p in foreign:
                del snap.files[p]
        return snap

    def read(self, parts: Iterable[FilePart] | None = None, columns: list[str] | None = None) -> pa.Table:
        """The rows of ``parts`` (default: every live part of vidx's), in path order."""
        if parts is None:
            parts = self.snapshot().files.values()
        paths = sorted(self.store.path(f"{self.name}/{p.path}") for p in parts)
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        if not paths:
            return schema.empty_table()
        import pyarrow.dataset as pads  # here: its import (pandas with it) costs a quarter of a second

        try:
            return pads.dataset(paths, schema=self.schema, format="parquet", filesystem=self.store.fs).to_table(
                columns=columns)
        except FileNotFoundError as e:
            raise MissingFile(f"a file of the {self.name} table is missing from storage (deleted outside vidx: "
                              f"{str(e).split(':')[-1].strip()[:160]}); run `vidx index` on the same videos again to "
                              "rebuild it") from None

    def missing(self, parts: Iterable[FilePart]) -> list[FilePart]:
        """The parts whose file is gone from storage (deleted outside vidx): one listing."""
        parts = list(parts)
        if not parts:
            return []
        sel = pafs.FileSelector(self.store.path(self.name), recursive=True, allow_not_found=True)
        base = self.store.path(self.name).rstrip("/") + "/"
        there = {i.path[len(base):] for i in self.store.fs.get_file_info(sel) if i.type == pafs.FileType.File}
        return [p for p in parts if p.path not in there]

    def commit(self, adds: Iterable[FilePart] = (), removes: Iterable[FilePart] = (),
               operation: str = "WRITE", purge: bool = False) -> None:
        """One commit.  The removed files stay for readers' snapshots until :func:`vacuum`;
        ``purge`` (forget) deletes them at once.  A compaction (OPTIMIZE) changes no data."""
        adds, removes = list(adds), [r for r in removes if r is not None]
        if not adds and not removes:
            return
        self.log.commit(adds, removes, operation, data_change=operation != "OPTIMIZE")
        if purge:
            self.delete([r.path for r in removes])

    def delete(self, paths: Iterable[str]) -> int:
        """Delete files of this table (lease checked first)."""
        gone = 0
        self.store.check_writer()
        for rel in paths:
            with contextlib.suppress(FileNotFoundError, OSError):
                self.store.fs.delete_file(self.store.path(f"{self.name}/{rel}"))
                gone += 1
        return gone

    def sweep(self, video_id: str, keep: Iterable[FilePart], snap: Snapshot | None = None) -> int:
        """Delete the files under this table's folder of ``video_id`` that no commit holds (live or
        removed within retention): parts of chunks that failed, of attempts Ray retried, or of a
        job killed before it committed them.  Only the one writer (the lease holder) calls it,
        after its commits."""
        snap = snap or self.log.snapshot()
        live = {p.path for p in keep} | set(snap.files) | set(snap.tombstones)
        sel = pafs.FileSelector(self.store.path(f"{self.name}/{video_id}"), allow_not_found=True)
        stray = []
        for info in self.store.fs.get_file_info(sel):
            rel = f"{video_id}/{posixpath.basename(info.path)}"
            if info.type == pafs.FileType.File and rel not in live:
                stray.append(rel)
        return self.delete(stray)

    def vacuum(self, retention_ms: int | None = None, only: Iterable[str] | None = None) -> int:
        """Delete the removed files whose retention has passed (``retention_ms``, default the
        table's own); ``only``: of these paths only."""
        if self.log.version < 0:
            return 0
        snap = self.log.snapshot()
        paths = self.log.expired(snap, retention_ms)
        if only is not None:
            want = set(only)
            paths = [p for p in paths if p in want]
        return self.delete(paths)

    def checkpoint_if_due(self) -> None:
        commits, checkpoints = self.log.versions()
        if commits and commits[-1] - max(checkpoints[-1:] or [0]) >= CHECKPOINT_EVERY:
            self.log.checkpoint()


def create_all(store: Store) -> dict[str, IndexTable]:
    return {name: IndexTable(store, name).create() for name in SCHEMAS}


def replace_table(store: Store, name: str, table: pa.Table, schema: pa.Schema, purge: bool = False) -> None:
    """Replace every row of vidx's in the (created if new) table ``name``: one commit removes its
    parts and adds one with ``table`` (``purge``: the old files deleted at once, for forget).  The
    part's name sorts first (:func:`next_token`), so rows appended later read after it."""
    t = IndexTable(store, name, schema).create()
    t.commit([write_part(store, name, table, token=next_token([]))], list(t.snapshot(write=True).files.values()),
             operation="WRITE", purge=purge)
    t.checkpoint_if_due()


def append_rows(store: Store, name: str, table: pa.Table, schema: pa.Schema) -> bool:
    """Add ``table``'s rows to a whole-index table after its rows (:meth:`IndexTable.read` takes
    parts in path order: the new part's name sorts after every live one); False, writing
    nothing, when no such name is left (then :func:`replace_table`)."""
    t = IndexTable(store, name, schema)
    token = next_token(t.snapshot(write=True).files)
    if token is None:
        return False
    t.commit([write_part(store, name, table, token=token)], operation="WRITE")
    t.checkpoint_if_due()
    return True


def next_token(paths: Iterable[str]) -> str | None:
    """A part token (6 hex digits of sequence, 6 random) that sorts after the tokens of ``paths``
    (``<name>-<token>.parquet``), None past the last sequence."""
    seq = max((int(m.group(1)[:6], 16) + 1 for p in paths if (m := re.search(r"-([0-9a-f]{12})\.parquet$", p))),
              default=0)
    return None if seq > 0xFFFFFF else f"{seq:06x}{uuid.uuid4().hex[:6]}"


def read_index_table(out: str, name: str, columns: list[str] | None = None) -> pa.Table:
    """One of videos, face_detections, track_segments, face_tracks, action_windows,
    action_segments, person_windows, person_actions: every row its Delta log commits."""
    store = Store(out)
    store.require_manifest()
    return read_table(store, name, columns)


def read_video_rows(out: str, name: str, video_id: str, columns: list[str] | None = None) -> pa.Table:
    """One video's rows of a per-chunk table, read from that video's parts only (and any part
    holding several videos)."""
    store = Store(out)
    store.require_manifest()
    table = IndexTable(store, name)
    parts = [p for p in table.snapshot().files.values() if video_of(p) in (video_id, None)]
    rows = table.read(parts, columns=None if columns is None else sorted({*columns, "video_id"}))
    rows = rows.filter(pc.equal(rows["video_id"], video_id))
    return rows if columns is None else rows.select(columns)


def read_table(store: Store, name: str, columns: list[str] | None = None) -> pa.Table:
    return IndexTable(store, name).read(columns=columns)


def vacuum(store: Store, retention_hours: float | None = None) -> dict[str, int]:
    """Delete, in every Delta table of the index, the removed files past retention
    (``retention_hours``, default each table's ``delta.deletedFileRetentionDuration``, one
    week); returns files deleted by table.  Time travel to versions that held them ends."""
    out = {}
    ms = None if retention_hours is None else int(retention_hours * 3_600_000)
    sel = pafs.FileSelector(store.root, allow_not_found=True)
    for info in store.fs.get_file_info(sel):
        name = posixpath.basename(info.path)
        if info.type != pafs.FileType.Directory:
            continue
        t = IndexTable(store, name, SCHEMAS.get(name, pa.schema([])))
        if t.log.version >= 0:
            out[name] = t.vacuum(ms)
    return out
