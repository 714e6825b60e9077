"""The index's tables: Delta Lake tables, one folder each, on any pyarrow filesystem.

    OUT/<table>/_delta_log/                     the table's commits (what a reader may trust)
    OUT/<table>/<video_id>/<chunk>-<id>.parquet per-chunk parts (face_detections, track_segments,
                                                action_windows, person_windows); a finished
                                                video's parts are compacted into one file
    OUT/<table>/<video_id>-<id>.parquet         per-video parts (face_tracks, action_segments,
                                                person_actions)
    OUT/videos/videos-<id>.parquet              the videos table (one file)

Every part has a name of its own (never overwritten): a worker writes it, the driver commits
it (:class:`~vidx.indexing.delta_log.DeltaLog`: a commit costs what it adds, not what the table
holds), and a part that replaces another (a chunk redone, a video compacted or re-indexed, a
person forgotten) removes the old one in the same commit; the old file is then deleted, so no
row outlives its removal in any file.  Each part carries tags saying which video and chunks it
holds; readers other than vidx (DuckDB, Polars, Spark, delta-rs) read the tables as they are.
"""

from __future__ import annotations

import contextlib
import posixpath
import uuid
from typing import Iterable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from vidx.indexing import schemas
from vidx.indexing.delta_log import DeltaLog, FilePart, Snapshot, file_stats
from vidx.indexing.store import IndexError_, Store

CHUNK_TABLES = {"face_detections": schemas.FACE_DETECTIONS, "track_segments": schemas.TRACK_SEGMENTS,
                "action_windows": schemas.ACTION_WINDOWS, "person_windows": schemas.PERSON_WINDOWS}
VIDEO_TABLES = {"face_tracks": schemas.FACE_TRACKS, "action_segments": schemas.ACTION_SEGMENTS,
                "person_actions": schemas.PERSON_ACTIONS}
SCHEMAS = {"videos": schemas.VIDEOS, **CHUNK_TABLES, **VIDEO_TABLES}
CHECKPOINT_EVERY = 10  # commits since the last checkpoint before a job's end writes one


def _stats_columns(schema: pa.Schema) -> list[str]:
    return [c for c in ("video_id", "chunk", "t", "start_s", "end_s") if c in schema.names]


def write_part(store: Store, name: str, table: pa.Table, video_id: str | None = None,
               chunks: tuple[int, int] | None = None, **tags: str) -> FilePart:
    """Write ``table`` as a new part of table ``name`` (not yet committed) and describe it."""
    token = uuid.uuid4().hex[:12]
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


def chunk_keys(part: FilePart) -> list[tuple[str, int]]:
    """(video_id, chunk) of every chunk the part holds: from its tags, or (a part another engine
    wrote, e.g. by compacting one video's files) from its statistics when they name one video."""
    if "chunks" in part.tags:
        a, b = (int(x) for x in part.tags["chunks"].split("-"))
        return [(part.tags["video_id"], c) for c in range(a, b + 1)]
    lo, hi = part.stats.get("minValues", {}), part.stats.get("maxValues", {})
    vid = video_of(part)
    if vid is not None and "chunk" in lo:
        return [(vid, c) for c in range(int(lo["chunk"]), int(hi["chunk"]) + 1)]
    raise IndexError_(f"the part {part.path} holds rows of several videos (the table was rewritten by another "
                      "tool); vidx cannot tell which chunks are done. Index into a new folder")


def video_of(part: FilePart) -> str | None:
    """The one video a part holds (its tags, else its statistics), None when it holds several
    or cannot tell."""
    if part.tags.get("video_id"):
        return part.tags["video_id"]
    lo, hi = part.stats.get("minValues", {}), part.stats.get("maxValues", {})
    return lo.get("video_id") if lo.get("video_id") is not None and lo.get("video_id") == hi.get("video_id") else None


class IndexTable:
    """One Delta table of the index."""

    def __init__(self, store: Store, name: str, schema: pa.Schema | None = None):
        self.store, self.name, self.schema = store, name, schema or SCHEMAS[name]
        self.log = DeltaLog(store.fs, store.path(name))

    def create(self) -> "IndexTable":
        if self.log.version < 0:
            self.log = DeltaLog.create(self.store.fs, self.store.path(self.name), self.schema, name=self.name)
        return self

    def snapshot(self) -> Snapshot:
        if self.log.version < 0:
            return Snapshot(-1, {}, {}, {})
        return self.log.snapshot()

    def read(self, parts: Iterable[FilePart] | None = None, columns: list[str] | None = None) -> pa.Table:
        """The rows of ``parts`` (default: every live part), in path order."""
        if parts is None:
            parts = self.snapshot().files.values()
        paths = sorted(self.store.path(f"{self.name}/{p.path}") for p in parts)
        schema = self.schema if columns is None else pa.schema([self.schema.field(c) for c in columns])
        if not paths:
            return schema.empty_table()
        return pads.dataset(paths, schema=self.schema, format="parquet", filesystem=self.store.fs).to_table(
            columns=columns)

    def commit(self, adds: Iterable[FilePart] = (), removes: Iterable[FilePart] = (),
               operation: str = "WRITE") -> None:
        """Commit, then delete the files the commit removed (readers of the new version never
        open them; none of their rows is left anywhere)."""
        adds, removes = list(adds), [r for r in removes if r is not None]
        if not adds and not removes:
            return
        self.log.commit(adds, removes, operation)
        for r in removes:
            with contextlib.suppress(FileNotFoundError, OSError):
                self.store.fs.delete_file(self.store.path(f"{self.name}/{r.path}"))

    def sweep(self, video_id: str, keep: Iterable[FilePart]) -> int:
        """Delete the files under this table's folder of ``video_id`` that no commit holds: parts
        of chunks that failed, or of attempts Ray retried, or of a job killed before it
        committed them.  Only the one writer (the lease holder) calls it, after its commits."""
        live = {p.path for p in keep}
        sel = pafs.FileSelector(self.store.path(f"{self.name}/{video_id}"), allow_not_found=True)
        gone = 0
        for info in self.store.fs.get_file_info(sel):
            rel = f"{video_id}/{posixpath.basename(info.path)}"
            if info.type == pafs.FileType.File and rel not in live:
                with contextlib.suppress(FileNotFoundError, OSError):
                    self.store.fs.delete_file(info.path)
                    gone += 1
        return gone

    def checkpoint_if_due(self) -> None:
        commits, checkpoints = self.log.versions()
        if commits and commits[-1] - max(checkpoints[-1:] or [0]) >= CHECKPOINT_EVERY:
            self.log.checkpoint()


def create_all(store: Store) -> dict[str, IndexTable]:
    return {name: IndexTable(store, name).create() for name in SCHEMAS}


def replace_table(store: Store, name: str, table: pa.Table, schema: pa.Schema) -> None:
    """Replace every row of the (created if new) table ``name``: one commit removes its parts
    (deleted right after) and adds one with ``table``."""
    t = IndexTable(store, name, schema).create()
    t.commit([write_part(store, name, table)], list(t.snapshot().files.values()), operation="WRITE")
    t.checkpoint_if_due()


def read_table(store: Store, name: str, columns: list[str] | None = None) -> pa.Table:
    return IndexTable(store, name).read(columns=columns)
