"""Appending to a Delta Lake table's transaction log at a cost that does not grow with the table.

The Delta protocol is a log of numbered commit files (``_delta_log/<version>.json``, one JSON
action a line); a commit that adds k files writes k ``add`` lines, whatever the table already
holds.  delta-rs (``deltalake``) keeps the whole table state in memory and refreshes it on each
commit, so its per-commit cost grows with the number of files in the table (measured:
``bench/bench_commit.py``).  :class:`DeltaLog` writes the commit files itself, in time and bytes
proportional to the commit alone; the table stays a standard Delta table (protocol 1/2, no
partition columns) that delta-rs, DuckDB, Polars or Spark read.

Commits are exclusive everywhere: a commit file is created only if its version is absent
(:mod:`vidx.indexing.objects`: ``os.link`` on a local disk, ``If-None-Match: *`` on S3, GCS and
Azure), so two writers can never both win a version.  A writer that loses a race reads the
commits that won, and retries at the next version when they do not conflict with its own
(Delta's optimistic concurrency: appends never conflict; removing a file another commit
removed, or a protocol or metadata change, does) or stops with :class:`ConcurrentCommit`.

Checkpoints and the cleanup of old log entries are delta-rs's (``create_checkpoint``,
``cleanup_metadata``): they carry every action another engine may have written (``txn``,
``domainMetadata``, tombstones, table features) and keep ``logRetentionDuration`` of history.
Files a commit removes stay on disk until :meth:`DeltaLog.expired` says their retention passed,
so readers keep their snapshots and time travel works within retention.

vidx writes protocol 1/2 tables and refuses (:class:`ProtocolError`) to write a table whose
protocol another engine raised (writer version > 2, writer features such as deletion vectors),
or one made append-only, and to read one whose reader version is above 1.
"""

from __future__ import annotations

import json
import math
import posixpath
import re
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidx.indexing.objects import AlreadyExists, Objects
from vidx.configs.errors import ConcurrentCommit, ProtocolError  # noqa: F401 - defined there, raised here

LOG = "_delta_log"
WEEK_MS = 7 * 24 * 3600 * 1000
COMMIT_TRIES = 20  # races lost in a row before a writer gives up


@dataclass(frozen=True)
class FilePart:
    """A Parquet file inside the table folder, as a commit names it."""

    path: str  # relative to the table root, '/'-separated, no characters that need URL-escaping
    size: int  # bytes: readers use it to find the Parquet footer
    rows: int
    stats: dict[str, Any] = field(default_factory=dict)  # minValues / maxValues / nullCount by column
    tags: dict[str, str] = field(default_factory=dict)  # what the file holds, for vidx (video, chunks)

    def add(self, now_ms: int, data_change: bool = True) -> dict[str, Any]:
        return {"add": {"path": self.path, "partitionValues": {}, "size": self.size, "modificationTime": now_ms,
                        "dataChange": data_change, "stats": json.dumps({"numRecords": self.rows, **self.stats}),
                        **({"tags": self.tags} if self.tags else {})}}

    @classmethod
    def from_add(cls, add: dict[str, Any]) -> "FilePart":
        stats = json.loads(add.get("stats") or "{}")
        return cls(add["path"], int(add.get("size") or 0), int(stats.pop("numRecords", 0) or 0), stats,
                   dict(add.get("tags") or {}))

    def remove(self, now_ms: int, data_change: bool = True) -> dict[str, Any]:
        return {"remove": {"path": self.path, "deletionTimestamp": now_ms, "dataChange": data_change,
                           "extendedFileMetadata": True, "partitionValues": {}, "size": self.size,
                           **({"tags": self.tags} if self.tags else {})}}


def _finite(v: Any) -> bool:
    return not (isinstance(v, float) and not math.isfinite(v))


def file_stats(table: pa.Table, columns: Iterable[str]) -> dict[str, Any]:
    """Delta file statistics (min, max, null count) of ``columns`` of a part, so that readers skip
    files by them (a video's rows: ``video_id``; a time window: ``t``).  A NaN or infinite bound
    is left out (JSON has no such numbers; a reader then reads the file)."""
    mins, maxs, nulls = {}, {}, {}
    for name in columns:
        col = table.column(name)
        nulls[name] = col.null_count
        if table.num_rows > col.null_count:
            if pa.types.is_floating(col.type):
                col = pc.drop_null(pc.if_else(pc.is_finite(col), col, None))
                if len(col) == 0:
                    continue
            mm = pc.min_max(col).as_py()
            if _finite(mm["min"]) and _finite(mm["max"]):
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


_INTERVAL = re.compile(r"^\s*interval\s+(\d+)\s+(\w+?)s?\s*$", re.I)
_UNIT_MS = {"millisecond": 1, "second": 1000, "minute": 60_000, "hour": 3_600_000, "day": 86_400_000,
            "week": 7 * 86_400_000}


def interval_ms(text: str | None, default_ms: int) -> int:
    """A Delta interval property ("interval 1 week", "interval 168 hours") in milliseconds."""
    m = _INTERVAL.match(text or "")
    if not m or m.group(2).lower() not in _UNIT_MS:
        return default_ms
    return int(m.group(1)) * _UNIT_MS[m.group(2).lower()]


@dataclass
class Snapshot:
    """A table at one version: its live files (path -> FilePart), the files removed and still
    within retention (path -> (deletion time in ms, size)), protocol and metadata."""

    version: int
    files: dict[str, FilePart]
    protocol: dict[str, Any]
    metadata: dict[str, Any]
    tombstones: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def configuration(self) -> dict[str, str]:
        conf = self.metadata.get("configuration") or {}
        return dict(conf)

    @property
    def retention_ms(self) -> int:
        """How long a removed file stays for readers (``delta.deletedFileRetentionDuration``, 1 week)."""
        return interval_ms(self.configuration.get("delta.deletedFileRetentionDuration"), WEEK_MS)

    def writable(self, root: str) -> None:
        """Raise :class:`ProtocolError` when vidx must not write this table."""
        r, w = int(self.protocol.get("minReaderVersion", 1)), int(self.protocol.get("minWriterVersion", 2))
        feats = sorted(set(self.protocol.get("writerFeatures") or []) | set(self.protocol.get("readerFeatures") or []))
        if w > 2 or r > 1 or feats:
            raise ProtocolError(
                f"{root}: another engine raised this table's protocol to reader {r} / writer {w}"
                f"{' with ' + ', '.join(feats) if feats else ''}; vidx writes protocol 1/2 tables only and will not "
                "change it (index into a new folder, or restore the table to a version before the upgrade)")
        if str(self.configuration.get("delta.appendOnly", "false")).lower() == "true":
            raise ProtocolError(f"{root}: another engine made this table append-only (delta.appendOnly=true); vidx "
                                "replaces files when it redoes or compacts a chunk, so it will not write here")

    def readable(self, root: str) -> None:
        r = int(self.protocol.get("minReaderVersion", 1))
        if r > 1:
            raise ProtocolError(f"{root}: another engine raised this table's reader protocol to {r} "
                                f"({', '.join(self.protocol.get('readerFeatures') or []) or 'table features'}); "
                                "vidx reads reader version 1 only")


_CHECKPOINT_COLUMNS = ("protocol", "metaData", "add", "remove")


class DeltaLog:
    """The log of one Delta table at ``root`` on ``fs``: :meth:`create` it, then :meth:`commit`
    files that are already written into the table folder.  The writer remembers its version, so
    each commit costs one conditional write of its own lines."""

    def __init__(self, fs: pafs.FileSystem, root: str, uri: str | None = None):
        self.fs, self.root = fs, root.rstrip("/")
        self.uri = uri or self.root
        self.objects = Objects(self.uri, fs.type_name, self.root)
        self.guard = None  # called before every commit (the index's write lease check)
        self.version = self._latest()

    @property
    def log_dir(self) -> str:
        return posixpath.join(self.root, LOG)

    @classmethod
    def create(cls, fs: pafs.FileSystem, root: str, schema: pa.Schema, name: str | None = None,
               uri: str | None = None) -> "DeltaLog":
        """Version 0 of a new table with ``schema`` (or the existing table's log, if there is one)."""
        log = cls(fs, root, uri)
        if log.version >= 0:
            return log
        now = int(time.time() * 1000)
        try:
            log._put(0, [{"commitInfo": {"timestamp": now, "operation": "CREATE TABLE", "clientVersion": "vidx"}},
                         {"protocol": {"minReaderVersion": 1, "minWriterVersion": 2}},
                         {"metaData": {"id": str(uuid.uuid4()), "name": name, "description": None,
                                       "format": {"provider": "parquet", "options": {}},
                                       "schemaString": json.dumps(_schema_json(schema)), "partitionColumns": [],
                                       "configuration": {}, "createdTime": now}}])
        except AlreadyExists:  # created by another writer a moment ago: the same table, use it
            pass
        log.version = max(log.version, 0)
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

    def _read_commit(self, v: int) -> list[dict[str, Any]]:
        with self.fs.open_input_stream(posixpath.join(self.log_dir, _name(v))) as f:
            return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]

    def snapshot(self, version: int | None = None) -> Snapshot:
        """The table at its newest version (or ``version``): the newest checkpoint at or below it,
        then the commits after it, replayed in order."""
        commits, checkpoints = self.versions()
        if version is not None:
            commits = [v for v in commits if v <= version]
            checkpoints = [v for v in checkpoints if v <= version]
        cp = checkpoints[-1] if checkpoints else -1
        snap = Snapshot(cp, {}, {}, {})
        if cp >= 0:
            with self.fs.open_input_file(posixpath.join(self.log_dir, f"{cp:020d}.checkpoint.parquet")) as f:
                pf = pq.ParquetFile(f)
                cols = [c for c in _CHECKPOINT_COLUMNS if c in pf.schema_arrow.names]
                t = pf.read(columns=cols)
            for row in t.to_pylist():
                self._apply(snap, {k: v for k, v in row.items() if v is not None})
        for v in (v for v in commits if v > cp):
            for action in self._read_commit(v):
                self._apply(snap, action)
            snap.version = v
        snap.readable(self.root)
        if version is None:
            self.version = max(self.version, snap.version)
        return snap

    @staticmethod
    def _apply(snap: Snapshot, action: dict[str, Any]) -> None:
        if "add" in action:
            a = action["add"]
            snap.files[a["path"]] = FilePart.from_add(a)
            snap.tombstones.pop(a["path"], None)
        elif "remove" in action:
            r = action["remove"]
            gone = snap.files.pop(r["path"], None)
            snap.tombstones[r["path"]] = (int(r.get("deletionTimestamp") or 0),
                                          int(r.get("size") or (gone.size if gone else 0)))
        elif "protocol" in action:
            snap.protocol = action["protocol"]
        elif "metaData" in action:
            snap.metadata = action["metaData"]

    def _latest(self) -> int:
        """The newest committed version (-1: no table), from one listing of the log folder."""
        commits, checkpoints = self.versions()
        return max(commits + checkpoints, default=-1)

    def commit(self, adds: Iterable[FilePart] = (), removes: Iterable[FilePart] = (),
               operation: str = "WRITE", data_change: bool = True) -> int:
        """One atomic commit adding and removing files; returns its version.  A lost race is
        retried at the next version when the winning commits do not conflict with this one;
        otherwise :class:`ConcurrentCommit` says what conflicted."""
        if self.version < 0:
            raise FileNotFoundError(f"{self.root} is not a Delta table (no {LOG}); create it first")
        adds, removes = list(adds), list(removes)
        for attempt in range(COMMIT_TRIES):
            if self.guard is not None:
                self.guard()
            now = int(time.time() * 1000)
            lines = [{"commitInfo": {"timestamp": now, "operation": operation, "clientVersion": "vidx",
                                     "operationParameters": {"mode": "Append"} if operation == "WRITE" else {},
                                     "readVersion": self.version, "isBlindAppend": not removes}}]
            lines += [r.remove(now, data_change) for r in removes] + [a.add(now, data_change) for a in adds]
            try:
                self._put(self.version + 1, lines)
            except AlreadyExists:
                self._catch_up({r.path for r in removes})
                continue
            self.version += 1
            return self.version
        raise ConcurrentCommit(f"{self.root}: other writers won {COMMIT_TRIES} commits in a row; nothing of this "
                               "commit was written. Run the command again")

    def _catch_up(self, removing: set[str]) -> None:
        """Read the commits that won since this writer's version; raise if one conflicts."""
        v = self.version + 1
        while True:
            try:
                actions = self._read_commit(v)
            except FileNotFoundError:
                break
            for a in actions:
                if "protocol" in a or "metaData" in a:
                    raise ConcurrentCommit(f"{self.root}: another writer changed the table's protocol or schema "
                                           f"(version {v}) while vidx was committing; run the command again")
                if "remove" in a and a["remove"]["path"] in removing:
                    raise ConcurrentCommit(f"{self.root}: another writer removed {a['remove']['path']} (version {v}), "
                                           "which this commit replaces; run the command again")
            self.version = v
            v += 1

    def _put(self, version: int, lines: list[dict[str, Any]]) -> None:
        data = ("\n".join(json.dumps(x, separators=(",", ":")) for x in lines) + "\n").encode()
        self.objects.create(f"{LOG}/{_name(version)}", data)

    # ------------------------------------------------------------------ housekeeping (delta-rs)
    def delta_table(self):
        """delta-rs's view of the table, with the same store settings as vidx's."""
        import deltalake

        return deltalake.DeltaTable(_table_uri(self.uri, self.fs.type_name, self.root),
                                    storage_options=storage_options(self.uri, self.fs.type_name) or None)

    def checkpoint(self) -> int:
        """A checkpoint of the newest version by delta-rs (complete: every action kind, tombstones
        within retention), then delta-rs's cleanup of log entries older than the table's
        ``logRetentionDuration`` (30 days unless set).  Returns the version checkpointed."""
        if self.guard is not None:
            self.guard()
        dt = self.delta_table()
        dt.create_checkpoint()
        dt.cleanup_metadata()
        self.version = max(self.version, dt.version())
        return dt.version()

    def expired(self, snap: Snapshot, retention_ms: int | None = None, now_ms: int | None = None) -> list[str]:
        """Removed files whose retention has passed (paths relative to the table): safe to delete,
        no reader's snapshot within retention holds them."""
        keep = snap.retention_ms if retention_ms is None else retention_ms
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return sorted(p for p, (when, _) in snap.tombstones.items() if now - when >= keep and p not in snap.files)


def _table_uri(uri: str, fs_type: str, root: str) -> str:
    if fs_type == "local":
        return root
    scheme = {"s3": "s3", "gcs": "gs", "abfs": "abfss"}.get(fs_type, fs_type)
    return f"{scheme}://{root}"


def storage_options(uri: str, fs_type: str) -> dict[str, str]:
    """delta-rs storage options matching pyarrow's view of ``uri`` (an S3 endpoint from the URI's
    query or ``AWS_ENDPOINT_URL``; credentials from the environment, which delta-rs reads)."""
    if fs_type != "s3":
        return {}
    from vidx.indexing.store import s3_endpoint, uri_query

    q = uri_query(uri)
    endpoint = s3_endpoint(uri)
    out = {}
    if endpoint:
        out["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            out["AWS_ALLOW_HTTP"] = "true"
    if q.get("region"):
        out["AWS_REGION"] = q["region"]
    return out
