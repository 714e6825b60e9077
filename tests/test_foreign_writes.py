"""Tables another engine changed: vidx refuses what it must not write, leaves other engines' files
alone and out of its answers, notices files deleted behind its back, and never leaves a table
delta-rs cannot read."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import deltalake
import pyarrow as pa
import pytest

from synthetic_index import person_vectors, write_index
from vidx.indexing import people
from vidx.indexing.delta_log import ProtocolError
from vidx.indexing.store import Store
from vidx.indexing.tables import IndexTable, read_index_table

VIDX = os.path.join(os.path.dirname(sys.executable), "vidx")
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore")


@pytest.fixture
def index_dir(tmp_path):
    out = tmp_path / "idx"
    v = person_vectors(3)
    write_index(out, {"vid1": [("t1", 0.0, 4.0, v[0]), ("t2", 1.0, 4.0, v[1])],
                      "vid2": [("t3", 2.0, 9.0, v[2])]})
    people.refresh(str(out))
    return out, v


def _readable(path) -> int:
    return deltalake.DeltaTable(str(path)).to_pyarrow_table().num_rows


def _files_intact(path) -> int:
    """delta-rs opens the table and every file its log holds is there (its pyarrow reader does not
    read deletion vectors, so a table that has them is checked by its log and files)."""
    dt = deltalake.DeltaTable(str(path))
    uris = dt.file_uris()
    assert all(os.path.exists(u) for u in uris)
    return len(uris)


def test_a_table_upgraded_to_deletion_vectors_is_refused_and_stays_readable(index_dir):
    out, v = index_dir
    dt = deltalake.DeltaTable(str(out / "identities"))
    dt.alter.set_table_properties({"delta.enableDeletionVectors": "true"})
    proto = deltalake.DeltaTable(str(out / "identities")).protocol()
    assert (proto.min_reader_version, proto.min_writer_version) == (3, 7)
    version, n = deltalake.DeltaTable(str(out / "identities")).version(), _files_intact(out / "identities")
    p = subprocess.run([VIDX, "reindex", str(out), "--full"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "another engine raised this table's" in p.stderr and "deletionVectors" in p.stderr
    assert deltalake.DeltaTable(str(out / "identities")).version() == version and _files_intact(out / "identities") == n
    with pytest.raises(ProtocolError, match="reader version 1 only"):  # vidx's own reader refuses too
        IndexTable(Store(str(out)), "identities", people.IDENTITIES).snapshot()


def test_an_append_only_table_is_refused(index_dir):
    out, v = index_dir
    deltalake.DeltaTable(str(out / "face_tracks")).alter.set_table_properties({"delta.appendOnly": "true"})
    version = deltalake.DeltaTable(str(out / "face_tracks")).version()
    t = IndexTable(Store(str(out)), "face_tracks")
    with pytest.raises(ProtocolError, match="append-only"):
        t.snapshot(write=True)
    assert deltalake.DeltaTable(str(out / "face_tracks")).version() == version and _readable(out / "face_tracks") == 3


def test_another_engine_s_rows_are_left_in_the_table_and_out_of_vidx_s_answers(index_dir, caplog):
    out, v = index_dir
    ours = read_index_table(str(out), "face_tracks")
    extra = ours.slice(0, 1).set_column(0, "track_id", pa.array(["foreign"]))
    deltalake.write_deltalake(str(out / "face_tracks"), extra, mode="append")
    with caplog.at_level(logging.WARNING):
        got = read_index_table(str(out), "face_tracks")
    assert sorted(got["track_id"].to_pylist()) == sorted(ours["track_id"].to_pylist())
    assert "1 file(s) another engine wrote" in caplog.text and "not vidx's results" in caplog.text
    # a vidx commit beside it keeps the foreign file (delta-rs still sees its row)
    write_index(out, {"vid2": [("t3", 2.0, 9.0, v[2])]})
    assert "foreign" in deltalake.DeltaTable(str(out / "face_tracks")).to_pyarrow_table()["track_id"].to_pylist()


def test_a_delete_by_delta_rs_makes_the_chunk_not_done(index_dir):
    from vidx.jobs.index import _ChunkParts
    from vidx.indexing.tables import create_all

    out, v = index_dir
    deltalake.DeltaTable(str(out / "face_detections")).delete("video_id = 'vid1' AND t < 2")
    parts = _ChunkParts(create_all(Store(str(out))))
    assert not parts.done(("vid1", 0), ["face_detections"])  # its file was rewritten: no longer vidx's
    assert parts.done(("vid2", 0), ["face_detections"])


def test_a_file_deleted_behind_vidx_s_back_is_one_line_then_redone(index_dir):
    from vidx.jobs.index import _ChunkParts
    from vidx.indexing.tables import create_all

    out, v = index_dir
    ft = IndexTable(Store(str(out)), "face_tracks")
    part = next(p for p in ft.snapshot().files.values() if p.tags["video_id"] == "vid1")
    os.unlink(out / "face_tracks" / part.path)
    p = subprocess.run([VIDX, "query", str(out), "--person-id",
                        people.load(str(out))[0].filter(pa.compute.equal(people.load(str(out))[0]["track_id"], "t1"))
                        ["person_id"][0].as_py(), "--json"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert "face_tracks file of video vid1 is missing from storage" in p.stderr
    seg = IndexTable(Store(str(out)), "track_segments")
    spart = next(p for p in seg.snapshot().files.values() if p.tags["video_id"] == "vid2")
    os.unlink(out / "track_segments" / spart.path)
    parts = _ChunkParts(create_all(Store(str(out))))  # the next index: the log lets go, the chunk is redone
    assert not parts.done(("vid2", 0), ["track_segments"]) and parts.done(("vid1", 0), ["track_segments"])
    assert _readable(out / "track_segments") == 2  # delta-rs reads the table again


def test_another_writer_s_commit_between_vidx_s_is_retried_and_checkpoints_keep_its_actions(index_dir):
    from deltalake import CommitProperties, Transaction

    out, v = index_dir
    ft = IndexTable(Store(str(out)), "face_tracks")
    ft.snapshot(write=True)  # vidx's writer at the table's version now
    extra = read_index_table(str(out), "face_tracks").slice(0, 1).set_column(0, "track_id", pa.array(["foreign"]))
    deltalake.write_deltalake(str(out / "face_tracks"), extra, mode="append", commit_properties=CommitProperties(
        app_transactions=[Transaction(app_id="stream-1", version=7)]))  # another engine commits in between
    from vidx.indexing.tables import write_part

    mine = write_part(ft.store, "face_tracks", read_index_table(str(out), "face_tracks").slice(0, 1), "vid9")
    ft.commit([mine])  # its version was taken: read the winner, retried at the next
    ft.log.checkpoint()
    dt = deltalake.DeltaTable(str(out / "face_tracks"))
    assert dt.transaction_version("stream-1") == 7  # the checkpoint kept the other writer's txn
    names = {os.path.relpath(u, out / "face_tracks") for u in dt.file_uris()}
    assert mine.path in names and len(names) == 4 and _readable(out / "face_tracks") == 5


def test_vidx_check_finds_an_old_orphan_and_a_chunk_in_two_of_vidx_s_parts(index_dir):
    """A Parquet file in a table's folder that no commit holds, older than the table's retention,
    is an orphan (one line; --repair deletes it; a young one may be a running job's and is left);
    a chunk committed in two of vidx's own parts is a chunk twice (one line, to index again)."""
    import time

    from vidx.indexing.check import check, repair
    from vidx.indexing.tables import write_part

    out, v = index_dir
    assert check(str(out)).whole
    young = out / "face_detections" / "vid1" / "00009-aaaaaaaaaaaa.parquet"
    old = out / "face_detections" / "vid1" / "00009-bbbbbbbbbbbb.parquet"
    src = next((out / "face_detections" / "vid1").glob("*.parquet"))
    for f in (young, old):
        shutil.copy(src, f)
    week = time.time() - 8 * 24 * 3600
    os.utime(old, (week, week))
    rep = check(str(out))
    assert [f.what for f in rep.findings] == [
        "face_detections: vid1/00009-bbbbbbbbbbbb.parquet is in no commit of the table's log (an orphan, 192 h old)"]
    fixed = repair(str(out))
    assert fixed.whole and not old.exists() and young.exists() and "1 orphan file(s) deleted" in fixed.repaired
    # the same chunk in a second part of vidx's, committed beside the first
    t = IndexTable(Store(str(out)), "face_detections")
    first = next(p for p in t.snapshot().files.values() if p.tags["video_id"] == "vid1")
    twin = write_part(Store(str(out)), "face_detections", t.read([first]), "vid1", (0, 0))
    t.commit([twin])
    lines = [f.what for f in check(str(out)).findings]
    assert len(lines) == 1 and lines[0].startswith("face_detections: chunk 0 of vid1") and "in 2 of vidx's parts" in \
        lines[0], lines
