"""Appending to a Delta Lake table's transaction log at a cost that does not grow with the table.

The Delta protocol is a log of numbered commit files (``_delta_log/<version>.json``, one JSON
action a line); a commit that adds k files writes k ``add`` lines, whatever the table already
holds.  delta-rs (``deltalake``) keeps the whole table state in memory and refreshes it on each
commit, so its per-commit cost grows with the number of files in the table (measured:
``bench/bench_commit.py``).  :class:`DeltaLog` writes the commit files itself, through any
``pyarrow.fs`` filesystem (local disk, S3, GCS), in time and bytes proportional to the commit
alone; the table stays a standard Delta table (protocol 1/2, no partition columns) that
delta-rs, DuckDB, Polars or Spark read, and that delta-rs checkpoints, compacts and vacuums.

Exclusive commits: on a local filesystem a commit file is created with ``os.link`` (atomic;
fails if the version exists), so two writers can never both win a version.  pyarrow's S3 and
GCS filesystems have no create-if-absent, so there the version is checked and then written:
two writers racing on one table could both write the same version.  vidx runs one writer (the
index job's driver) per index; :class:`ConcurrentCommit` is raised whenever a version is found
taken, which detects a second writer that is not racing within milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

LOG = "_delta_log"


class ConcurrentCommit(RuntimeError):
    """The version this writer was about to commit exists: another writer committed to the table."""


@dataclass(frozen=True)
class FilePart:
    """A Parquet file inside the table folder, as a commit names it."""

    path: str  # relative to the table root, '/'-separated, no characters that need URL-escaping
    size: int  # bytes: readers use it to find the Parquet footer
    rows: int
    stats: dict[str, Any] = field(default_factory=dict)  # minValues / maxValues / nullCount by column
    tags: dict[str, str] = field(default_factory=dict)  # what the file holds, for vidx (video, chunks)

    def add(self, now_ms: int) -> dict[str, Any]:
        return {"add": {"path": self.path, "partitionValues": {}, "size": self.size, "modificationTime": now_ms,
                        "dataChange": True, "stats": json.dumps({"numRecords": self.rows, **self.stats}),
                        **({"tags": self.tags} if self.tags else {})}}

    @classmethod
    def from_add(cls, add: dict[str, Any]) -> "FilePart":
        stats = json.loads(add.get("stats") or "{}")
        return cls(add["path"], int(add["size"]), int(stats.pop("numRecords", 0)), stats, dict(add.get("tags") or {}))

    def remove(self, now_ms: int) -> dict[str, Any]:
        return {"remove": {"path": self.path, "deletionTimestamp": now_ms, "dataChange": True,
                           "extendedFileMetadata": True, "partitionValues": {}, "size": self.size}}


def file_stats(table: pa.Table, columns: Iterable[str]) -> dict[str, Any]:
    """Delta file statistics (min, max, null count) of ``columns`` of a part, so that readers skip
    files by them (a video's rows: ``video_id``; a time window: ``t``)."""
    mins, maxs, nulls = {}, {}, {}
    for name in columns:
        col = table.column(name)
        nulls[name] = col.null_count
        if table.num_rows > col.null_count:
            mm = pc.min_max(col).as_py()
            mins[name], maxs[name] = mm["min"], mm["max"]
    return {"minValues": mins, "maxValues": maxs, "nullCount": nulls}


_PRIMITIVE = {pa.string(): "string", pa.large_string(): "string", pa.int8(): "byte", pa.int16(): "short",
              pa.int32(): "integer", pa.int64(): "long", pa.float32(): "float", pa.float64(): "double",
              pa.bool_(): "boolean", pa.binary(): "binary", pa.large_binary(): "binary", pa.date32(): "date"}


def _delta_type(t: pa.DataType) -> Any:
    if t in _PRIMITIVE:
        return _PRIMITIVE[t]
    if pa.types.is_timestamp(t):
        return "timestamp" if t.tz else "timestamp_ntz"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return {"type": "array", "elementType": _delta_type(t.value_type), "containsNull": True}
    if pa.types.is_struct(t):
        return _schema_json([t.field(i) for i in range(t.num_fields)])
    raise TypeError(f"no Delta type for Arrow type {t}")


def _schema_json(fields: Iterable[pa.Field]) -> dict[str, Any]:
    return {"type": "struct", "fields": [{"name": f.name, "type": _delta_type(f.type), "nullable": f.nullable,
                                          "metadata": {}} for f in fields]}


def _name(version: int) -> str:
    return f"{version:020d}.json"


@dataclass
class Snapshot:
    """A table at one version: its live files (path -> FilePart), protocol and metadata."""

    version: int
    files: dict[str, FilePart]
    protocol: dict[str, Any]
    metadata: dict[str, Any]


# A checkpoint as the protocol lays it out: one row an action, one struct column per kind.
_STR_MAP = pa.map_(pa.string(), pa.string())
CHECKPOINT_SCHEMA = pa.schema([
    ("protocol", pa.struct([("minReaderVersion", pa.int32()), ("minWriterVersion", pa.int32())])),
    ("metaData", pa.struct([("id", pa.string()), ("name", pa.string()), ("description", pa.string()),
                            ("format", pa.struct([("provider", pa.string()), ("options", _STR_MAP)])),
                            ("schemaString", pa.string()), ("partitionColumns", pa.list_(pa.string())),
                            ("configuration", _STR_MAP), ("createdTime", pa.int64())])),
    ("add", pa.struct([("path", pa.string()), ("partitionValues", _STR_MAP), ("size", pa.int64()),
                       ("modificationTime", pa.int64()), ("dataChange", pa.bool_()), ("stats", pa.string()),
                       ("tags", _STR_MAP)])),
    ("remove", pa.struct([("path", pa.string()), ("deletionTimestamp", pa.int64()), ("dataChange", pa.bool_())])),
])


def _map(d: dict | None) -> list[tuple[str, str]] | None:
    return None if d is None else list(d.items())


class DeltaLog:
    """The log of one Delta table at ``root`` on ``fs``: :meth:`create` it, then :meth:`commit`
    files that are already written into the table folder.  The writer remembers its version, so
    each commit costs one existence check and one write of its own lines."""

    def __init__(self, fs: pafs.FileSystem, root: str):
        self.fs, self.root = fs, root.rstrip("/")
        self.version = self._latest()

    @property
    def log_dir(self) -> str:
        return posixpath.join(self.root, LOG)

    @classmethod
    def create(cls, fs: pafs.FileSystem, root: str, schema: pa.Schema, name: str | None = None) -> "DeltaLog":
        """Version 0 of a new table with ``schema`` (or the existing table's log, if there is one)."""
        log = cls(fs, root)
        if log.version >= 0:
            return log
        now = int(time.time() * 1000)
        log._put(0, [{"commitInfo": {"timestamp": now, "operation": "CREATE TABLE", "clientVersion": "vidx"}},
                     {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
                     {"metaData": {"id": str(uuid.uuid4()), "name": name, "description": None,
                                   "format": {"provider": "parquet", "options": {}},
                                   "schemaString": json.dumps(_schema_json(schema)), "partitionColumns": [],
                                   "configuration": {}, "createdTime": now}}])
        log.version = 0
        return log

    def versions(self) -> tuple[list[int], list[int]]:
        """(commit versions, checkpoint versions) present in the log folder, sorted; one listing."""
        sel = pafs.FileSelector(self.log_dir, allow_not_found=True)
        commits, checkpoints = [], []
        for info in self.fs.get_file_info(sel):
            base = posixpath.basename(info.path)
            head = base.split(".", 1)[0]
            if not head.isdigit():
                continue
            if base.endswith(".checkpoint.parquet"):
                checkpoints.append(int(head))
            elif base.endswith(".json"):
                commits.append(int(head))
        return sorted(commits), sorted(checkpoints)

    def snapshot(self) -> Snapshot:
        """The table's live files at its newest version: the newest checkpoint, then the commits
        after it, replayed in order.  Reads the log once (a job's start, a reader's open)."""
        commits, checkpoints = self.versions()
        cp = checkpoints[-1] if checkpoints else -1
        files: dict[str, FilePart] = {}
        protocol: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        if cp >= 0:
            with self.fs.open_input_file(posixpath.join(self.log_dir, f"{cp:020d}.checkpoint.parquet")) as f:
                t = pq.read_table(f, columns=["protocol", "metaData", "add"])
            for row in t.to_pylist():
                if row["add"]:
                    a = row["add"]
                    a["tags"] = dict(a.get("tags") or [])
                    files[a["path"]] = FilePart.from_add(a)
                if row["protocol"]:
                    protocol = row["protocol"]
                if row["metaData"]:
                    metadata = row["metaData"]
        version = cp
        for v in (v for v in commits if v > cp):
            with self.fs.open_input_stream(posixpath.join(self.log_dir, _name(v))) as f:
                for line in f.read().decode().splitlines():
                    if not line.strip():
                        continue
                    action = json.loads(line)
                    if "add" in action:
                        files[action["add"]["path"]] = FilePart.from_add(action["add"])
                    elif "remove" in action:
                        files.pop(action["remove"]["path"], None)
                    elif "protocol" in action:
                        protocol = action["protocol"]
                    elif "metaData" in action:
                        metadata = action["metaData"]
            version = v
        self.version = max(self.version, version)
        return Snapshot(version, files, protocol, metadata)

    def checkpoint(self, snap: Snapshot | None = None) -> int:
        """Write a checkpoint of the newest version (``snap``, or the log read now), so that a
        reader opens the table from one Parquet file instead of replaying every commit; then
        delete the commits and checkpoints older than the previous checkpoint (readers need
        the newest checkpoint and what follows it; one job's history is kept)."""
        commits, checkpoints = self.versions()
        previous = checkpoints[-1] if checkpoints else -1
        snap = snap or self.snapshot()
        if snap.version <= previous:
            return previous
        md = snap.metadata
        rows = [{"protocol": {"minReaderVersion": int(snap.protocol.get("minReaderVersion", 1)),
                              "minWriterVersion": int(snap.protocol.get("minWriterVersion", 2))}},
                {"metaData": {"id": md["id"], "name": md.get("name"), "description": md.get("description"),
                              "format": {"provider": (md.get("format") or {}).get("provider", "parquet"),
                                         "options": _map((md.get("format") or {}).get("options") or {})},
                              "schemaString": md["schemaString"], "partitionColumns": list(md.get("partitionColumns") or []),
                              "configuration": _map(dict(md.get("configuration") or {})),
                              "createdTime": md.get("createdTime")}}]
        now = int(time.time() * 1000)
        for part in snap.files.values():
            a = part.add(now)["add"]
            rows.append({"add": {**a, "partitionValues": [], "tags": _map(a.get("tags"))}})
        table = pa.Table.from_pylist(rows, schema=CHECKPOINT_SCHEMA)
        name = posixpath.join(self.log_dir, f"{snap.version:020d}.checkpoint.parquet")
        with self.fs.open_output_stream(name) as f:
            pq.write_table(table, f)
        with self.fs.open_output_stream(posixpath.join(self.log_dir, "_last_checkpoint")) as f:
            f.write(json.dumps({"version": snap.version, "size": len(rows)}).encode())
        if previous >= 0:  # what came before the previous checkpoint is not needed by anyone
            old = [_name(v) for v in commits if v < previous]
            old += [f"{v:020d}.checkpoint.parquet" for v in checkpoints if v < previous]
            for base in old:
                with contextlib.suppress(FileNotFoundError, OSError):
                    self.fs.delete_file(posixpath.join(self.log_dir, base))
        return snap.version

    def _latest(self) -> int:
        """The newest committed version (-1: no table), from one listing of the log folder when the
        writer opens (a checkpoint never removes the newest commit file)."""
        commits, checkpoints = self.versions()
        return max(commits + checkpoints, default=-1)

    def commit(self, adds: Iterable[FilePart] = (), removes: Iterable[FilePart] = (),
               operation: str = "WRITE") -> int:
        """One atomic commit adding and removing files; returns its version.  Raises
        :class:`ConcurrentCommit` when another writer took the next version."""
        if self.version < 0:
            raise FileNotFoundError(f"{self.root} is not a Delta table (no {LOG}); create it first")
        now = int(time.time() * 1000)
        adds, removes = list(adds), list(removes)
        lines = [{"commitInfo": {"timestamp": now, "operation": operation, "clientVersion": "vidx",
                                 "operationParameters": {"mode": "Append"} if operation == "WRITE" else {}, "readVersion": self.version,
                                 "isBlindAppend": not removes}}]
        lines += [r.remove(now) for r in removes] + [a.add(now) for a in adds]
        self._put(self.version + 1, lines)
        self.version += 1
        return self.version

    def _put(self, version: int, lines: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(x, separators=(",", ":")) for x in lines) + "\n").encode()
        final = posixpath.join(self.log_dir, _name(version))
        taken = ConcurrentCommit(f"{self.root}: version {version} was committed by another writer; "
                                 "only one vidx job may write an index at a time")
        if isinstance(self.fs, pafs.LocalFileSystem):
            os.makedirs(self.log_dir, exist_ok=True)
            tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, final)  # atomic create-if-absent
            except FileExistsError:
                raise taken from None
            finally:
                os.unlink(tmp)
            return
        if self.fs.get_file_info(final).type != pafs.FileType.NotFound:
            raise taken
        with self.fs.open_output_stream(final) as f:  # an object appears whole when its upload completes
            f.write(data)
