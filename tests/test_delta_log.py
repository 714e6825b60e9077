"""vidx's Delta log writer: tables it writes are standard Delta tables (read, checkpointed,
compacted and vacuumed by delta-rs), commits are exclusive, and a commit's size depends on the
commit alone."""

from __future__ import annotations

import os
import threading

import deltalake  # the reader that proves the tables standard (the test extra)
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from vidx.indexing import schemas
from vidx.indexing.delta_log import LOG, ConcurrentCommit, DeltaLog, FilePart, file_stats


SCHEMA = pa.schema([("video_id", pa.string()), ("chunk", pa.int32()), ("t", pa.float64()),
                    ("box", pa.list_(pa.float32(), 4)), ("thumb", pa.binary())])


def part(root, vid: str, chunk: int, rows: int = 5, tag: str = "a") -> tuple[FilePart, pa.Table]:
    rng = np.random.default_rng(chunk)
    t = pa.table({"video_id": [vid] * rows, "chunk": np.full(rows, chunk, np.int32),
                  "t": np.sort(rng.uniform(chunk, chunk + 1, rows)),
                  "box": pa.FixedSizeListArray.from_arrays(rng.uniform(0, 99, rows * 4).astype(np.float32), 4),
                  "thumb": [b"\xff\xd8" + bytes([i]) for i in range(rows)]}, schema=SCHEMA)
    rel = f"{vid}/{chunk:05d}-{tag}.parquet"
    os.makedirs(os.path.join(root, vid), exist_ok=True)
    pq.write_table(t, os.path.join(root, rel))
    return FilePart(rel, os.path.getsize(os.path.join(root, rel)), t.num_rows,
                    file_stats(t, ["video_id", "chunk", "t"])), t


def rows(dt) -> list[tuple]:
    t = dt.to_pyarrow_table()
    return sorted(zip(t["video_id"].to_pylist(), t["chunk"].to_pylist(), t["t"].to_pylist()))


def key_rows(tables) -> list[tuple]:
    return sorted((v, c, x) for t in tables for v, c, x in zip(t["video_id"].to_pylist(), t["chunk"].to_pylist(),
                                                               t["t"].to_pylist()))


def test_delta_rs_reads_what_the_writer_commits_adds_and_removes(tmp_path):
    root = str(tmp_path / "face_detections")
    log = DeltaLog.create(pafs.LocalFileSystem(), root, SCHEMA)
    a, ta = part(root, "v1", 0)
    b, tb = part(root, "v1", 1)
    assert log.commit([a, b]) == 1
    dt = deltalake.DeltaTable(root)
    assert dt.version() == 1 and rows(dt) == key_rows([ta, tb])
    # a chunk redone: its old file removed and the new one added in the same commit
    b2, tb2 = part(root, "v1", 1, rows=3, tag="b")
    assert log.commit([b2], removes=[b]) == 2
    dt = deltalake.DeltaTable(root)
    assert rows(dt) == key_rows([ta, tb2])
    assert sorted(os.path.relpath(u, root) for u in dt.file_uris()) == [a.path, b2.path]
    # time travel still sees version 1
    assert rows(deltalake.DeltaTable(root, version=1)) == key_rows([ta, tb])
    # the schema Delta readers see: list columns as arrays, binary as binary
    fields = {f.name: f for f in dt.schema().fields}
    assert fields["chunk"].type.type == "integer" and fields["thumb"].type.type == "binary"
    assert fields["box"].type.element_type.type == "float"


def test_file_statistics_let_readers_skip_files(tmp_path):
    root = str(tmp_path / "t")
    log = DeltaLog.create(pafs.LocalFileSystem(), root, SCHEMA)
    parts = [part(root, f"v{i}", i) for i in range(4)]
    log.commit([p for p, _ in parts])
    dt = deltalake.DeltaTable(root)
    adds = dt.get_add_actions(flatten=True)
    adds = pa.table(adds) if not isinstance(adds, pa.Table) else adds
    assert sorted(adds.column("min.video_id").to_pylist()) == ["v0", "v1", "v2", "v3"]
    assert adds.column("num_records").to_pylist() == [5] * 4
    # a filter on video_id reads one file's rows
    got = dt.to_pyarrow_dataset().to_table(filter=pc.field("video_id") == "v2")
    assert set(got["chunk"].to_pylist()) == {2}


def test_checkpoint_compaction_and_vacuum_by_delta_rs_keep_the_rows(tmp_path):
    root = str(tmp_path / "t")
    log = DeltaLog.create(pafs.LocalFileSystem(), root, SCHEMA)
    tables = []
    for c in range(12):
        p, t = part(root, "v1", c)
        log.commit([p])
        tables.append(t)
    dt = deltalake.DeltaTable(root)
    dt.create_checkpoint()
    dt.optimize.compact()
    dt = deltalake.DeltaTable(root)
    assert len(dt.file_uris()) == 1 and rows(dt) == key_rows(tables)
    dt.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert len([f for f in (tmp_path / "t").rglob("*.parquet") if LOG not in str(f)]) == 1
    # the writer opens at the version delta-rs left and goes on committing
    log = DeltaLog(pafs.LocalFileSystem(), root)
    assert log.version == dt.version()
    p, t = part(root, "v2", 0)
    log.commit([p])
    assert rows(deltalake.DeltaTable(root)) == key_rows([*tables, t])


def race(writers, parts_of, rounds: int) -> list:
    """Every writer commits its own file per round at the same moment; returns the outcomes."""
    outcome: list = []
    lock = threading.Lock()
    for r in range(rounds):
        go = threading.Barrier(len(writers))

        def run(i):
            go.wait()
            try:
                got = writers[i].commit([parts_of(r, i)])
            except ConcurrentCommit as e:
                got = e
            with lock:
                outcome.append(got)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writers))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return outcome


def test_racing_writers_each_win_a_version_and_no_acknowledged_add_is_lost(tmp_path):
    root = str(tmp_path / "t")
    DeltaLog.create(pafs.LocalFileSystem(), root, SCHEMA)
    writers = [DeltaLog(pafs.LocalFileSystem(), root) for _ in range(2)]
    files = {(r, i): part(root, f"v{i}", r)[0] for r in range(30) for i in range(2)}
    outcome = race(writers, lambda r, i: files[r, i], 30)
    assert sorted(outcome) == list(range(1, 61))  # every commit acknowledged at a version of its own
    got = {os.path.relpath(u, root) for u in deltalake.DeltaTable(root).file_uris()}
    assert got == {p.path for p in files.values()}
    assert not [f for f in os.listdir(os.path.join(root, LOG)) if ".tmp-" in f]


def test_a_commit_that_removes_what_a_winner_removed_stops_with_one_line(tmp_path):
    root = str(tmp_path / "t")
    log = DeltaLog.create(pafs.LocalFileSystem(), root, SCHEMA)
    a, _ = part(root, "v1", 0)
    log.commit([a])
    late = DeltaLog(pafs.LocalFileSystem(), root)
    b, _ = part(root, "v1", 0, tag="b")
    c, _ = part(root, "v1", 0, tag="c")
    log.commit([b], removes=[a])
    with pytest.raises(ConcurrentCommit, match="removed v1/00000-a.parquet"):
        late.commit([c], removes=[a])
    assert {os.path.relpath(u, root) for u in deltalake.DeltaTable(root).file_uris()} == {b.path}


def test_a_commit_holds_its_own_files_only(tmp_path):
    """The cost that matters at archive scale: commit k is as small as commit 1."""
    root = str(tmp_path / "t")
    log = DeltaLog.create(pafs.LocalFileSystem(), root, SCHEMA)
    p, _ = part(root, "v1", 0)
    for _ in range(300):  # the same file named again and again: only the log grows
        log.commit([p], removes=[p])
    sizes = [os.path.getsize(os.path.join(root, LOG, f"{v:020d}.json")) for v in (2, 300)]
    assert abs(sizes[1] - sizes[0]) <= 8  # timestamps and version numbers differ in digits only


def test_every_index_schema_maps_to_a_delta_schema(tmp_path):
    for name in ("VIDEOS", "FACE_DETECTIONS", "TRACK_SEGMENTS", "FACE_TRACKS", "ACTION_WINDOWS", "ACTION_SEGMENTS",
                 "PERSON_WINDOWS", "PERSON_ACTIONS"):
        schema = getattr(schemas, name)
        root = str(tmp_path / name)
        DeltaLog.create(pafs.LocalFileSystem(), root, schema, name=name.lower())
        got = deltalake.DeltaTable(root).schema().to_arrow()
        assert [f.name for f in got] == schema.names, name


def test_commit_to_a_folder_that_is_no_table_says_so(tmp_path):
    log = DeltaLog(pafs.LocalFileSystem(), str(tmp_path / "nothing"))
    with pytest.raises(FileNotFoundError, match="not a Delta table"):
        log.commit([])


def test_checkpoints_by_delta_rs_keep_every_version_and_the_writer_reads_them(tmp_path):
    root = str(tmp_path / "t")
    fs = pafs.LocalFileSystem()
    log = DeltaLog.create(fs, root, SCHEMA)
    tables, parts = {}, {}
    expected = {0: []}  # version -> the rows it holds, kept as the versions are written
    for c in range(6):
        p, t = part(root, "v1", c)
        p = FilePart(p.path, p.size, p.rows, p.stats, {"video_id": "v1", "chunks": f"{c}-{c}"})
        log.commit([p])
        tables[c], parts[c] = t, p
        expected[c + 1] = key_rows(tables.values())
    p3, t3 = part(root, "v1", 3, rows=2, tag="redo")
    log.commit([p3], removes=[parts[3]])
    old3 = parts[3]
    tables[3], parts[3] = t3, p3
    expected[7] = key_rows(tables.values())
    assert log.checkpoint() == 7
    p7, t7 = part(root, "v2", 0)
    log.commit([p7])
    tables[7], parts[7] = t7, p7
    expected[8] = key_rows(tables.values())
    assert log.checkpoint() == 8
    names = sorted(os.listdir(os.path.join(root, LOG)))
    assert f"{0:020d}.json" in names and f"{8:020d}.checkpoint.parquet" in names  # history within retention
    dt = deltalake.DeltaTable(root)
    assert dt.version() == 8 and rows(dt) == key_rows(tables.values())
    for v in range(9):  # time travel to every version, the removed file still there for versions 4-6
        assert rows(deltalake.DeltaTable(root, version=v)) == expected[v], v
    snap = DeltaLog(fs, root).snapshot()
    assert snap.version == 8 and snap.files == {p.path: p for p in parts.values()}  # tags and stats kept
    assert set(snap.tombstones) == {old3.path} and os.path.exists(os.path.join(root, old3.path))
    assert DeltaLog(fs, root).expired(snap) == []  # a week's retention
    assert DeltaLog(fs, root).expired(snap, retention_ms=0) == [old3.path]
    # and the log goes on after a checkpoint
    p9, t9 = part(root, "v3", 0)
    DeltaLog(fs, root).commit([p9])
    assert rows(deltalake.DeltaTable(root)) == key_rows([*tables.values(), t9])


def test_statistics_never_hold_non_finite_numbers(tmp_path):
    t = pa.table({"t": [float("nan"), 1.0, float("inf"), 2.0], "x": [float("nan")] * 4})
    st = file_stats(t, ["t", "x"])
    assert st["minValues"] == {"t": 1.0} and st["maxValues"] == {"t": 2.0}


def test_a_compaction_commit_says_no_data_changed(tmp_path):
    import json

    from vidx.indexing.store import Store
    from vidx.indexing.tables import IndexTable

    root = tmp_path / "t"
    DeltaLog.create(pafs.LocalFileSystem(), str(root), SCHEMA)
    t = IndexTable(Store(str(tmp_path)), "t", SCHEMA)
    a, _ = part(str(root), "v1", 0)
    b, _ = part(str(root), "v1", 0, tag="b")
    t.commit([a])
    t.commit([b], [a], operation="OPTIMIZE")
    lines = [json.loads(x) for x in (root / LOG / f"{2:020d}.json").read_text().splitlines()]
    assert lines[0]["commitInfo"]["operation"] == "OPTIMIZE"
    assert [x[k]["dataChange"] for x in lines[1:] for k in x] == [False, False]
    assert os.path.exists(root / a.path)  # removed, kept for readers until vacuum
