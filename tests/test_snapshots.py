"""Readers keep their snapshots: a reader holding a version reads it whole while index runs,
people refreshes, enrolment and corrections commit beside it, and every version within
retention can be read back by delta-rs and Polars (time travel).  Files a commit removes go
only when their retention has passed (`vidx vacuum`), or at once for `forget`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import deltalake
import polars as pl
import pyarrow.fs as pafs
import pytest

from synthetic_index import near, person_vectors, write_index
from vidx.indexing import people
from vidx.indexing.delta_log import DeltaLog
from vidx.indexing.forget import forget
from vidx.indexing.store import Store
from vidx.indexing.tables import IndexTable, vacuum

VIDX = os.path.join(os.path.dirname(sys.executable), "vidx")
TABLES = ("videos", "face_detections", "track_segments", "face_tracks", "identities", "people")


def rows(t) -> list:
    return sorted(map(str, t.to_pylist()))


@pytest.fixture
def index_dir(tmp_path):
    out = tmp_path / "idx"
    v = person_vectors(3)
    write_index(out, {"vid1": [("t1", 0.0, 4.0, v[0]), ("t2", 1.0, 4.0, v[1])],
                      "vid2": [("t3", 2.0, 9.0, v[2])]})
    people.refresh(str(out))
    return out, v


def test_a_reader_holding_a_snapshot_reads_it_whole_while_writers_commit(index_dir):
    out, v = index_dir
    store = Store(str(out))
    held = {n: deltalake.DeltaTable(str(out / n)) for n in TABLES}  # delta-rs readers, opened now
    ours = {n: IndexTable(store, n, people.IDENTITIES if n == "identities" else people.PEOPLE if n == "people"
                          else None) for n in TABLES}
    snaps = {n: t.snapshot() for n, t in ours.items()}  # vidx's reader, holding its version
    before = {n: rows(held[n].to_pyarrow_table()) for n in TABLES}
    # beside them: another index run (vid1 again, replacing its parts, and a new video), a full
    # people refresh (reindex), an enrolment, a correction
    write_index(out, {"vid1": [("t1b", 0.0, 5.0, near(v[0], 0.05, 1))], "vid3": [("t4", 0.0, 3.0, v[1])]})
    people.refresh(str(out), force=True)
    people.enroll(str(out), "Ann", [people.PhotoFace("ann.jpg", 0, [0, 0, 9, 9], near(v[2], 0.05, 2))])
    pid = people.load(str(out))[1]["person_id"][0].as_py()
    people.correct(str(out), "rename", [pid], name="Bo")
    for n in TABLES:
        assert deltalake.DeltaTable(str(out / n)).version() > held[n].version(), n  # each table moved on
        assert rows(held[n].to_pyarrow_table()) == before[n], n  # the old version, whole
        assert rows(ours[n].read(snaps[n].files.values())) == before[n], n
    # time travel: every version of every table, by delta-rs and by Polars
    for n in TABLES:
        last = deltalake.DeltaTable(str(out / n)).version()
        for version in range(last + 1):
            a = deltalake.DeltaTable(str(out / n), version=version).to_pyarrow_table()
            b = pl.read_delta(str(out / n), version=version)
            assert rows(a) == rows(b.to_arrow()), (n, version)  # the same rows, value by value


def test_vacuum_deletes_removed_files_only_past_retention_and_forget_at_once(index_dir, tmp_path):
    out, v = index_dir
    write_index(out, {"vid1": [("t1b", 0.0, 5.0, v[0])]})  # vid1's parts replaced: the old ones kept
    store = Store(str(out))
    snap = DeltaLog(pafs.LocalFileSystem(), str(out / "face_tracks")).snapshot()
    assert snap.tombstones and all((out / "face_tracks" / p).exists() for p in snap.tombstones)
    assert sum(vacuum(store).values()) == 0  # a week's retention: nothing goes
    p = subprocess.run([VIDX, "vacuum", str(out)], capture_output=True, text=True)
    assert p.returncode == 0 and "deleted 0 removed file(s) older than each table's retention" in p.stdout
    p = subprocess.run([VIDX, "vacuum", str(out), "--retention-hours", "0"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not any((out / "face_tracks" / q).exists() for q in snap.tombstones)
    assert deltalake.DeltaTable(str(out / "face_tracks")).to_pyarrow_table().num_rows == 2  # the live rows stay
    # forget deletes at once every file that held the person's rows, old versions' included
    people.refresh(str(out))
    write_index(out, {"vid2": [("t3", 2.0, 9.0, v[2])]})  # vid2 written again: its first parts are history
    people.refresh(str(out))
    pid = people.load(str(out))[0].filter(
        __import__("pyarrow.compute", fromlist=["x"]).equal(people.load(str(out))[0]["track_id"], "t3"))["person_id"][0]
    old = [q for q in DeltaLog(pafs.LocalFileSystem(), str(out / "face_tracks")).snapshot().tombstones]
    forget(str(out), pid.as_py())
    for name in ("face_tracks", "face_detections", "track_segments", "identities", "people"):
        snap = DeltaLog(pafs.LocalFileSystem(), str(out / name)).snapshot()
        left = [q for q in snap.tombstones if (out / name / q).exists()]
        assert not left, (name, left)
    assert not any((out / "face_tracks" / q).exists() for q in old)


def test_a_lease_taken_over_stops_commits_compactions_and_deletions(index_dir):
    """A holder whose lease another writer took commits nothing and deletes nothing."""
    import json
    import socket
    import time

    from vidx.indexing.lease import LEASE, LeaseLost, writing

    out, v = index_dir
    with writing(str(out), "index") as lease:
        t = IndexTable(Store(str(out)), "face_tracks")
        version = t.log.version
        body = json.loads((out / LEASE).read_bytes())  # taken over behind its back
        (out / LEASE).write_text(json.dumps({**body, "owner": "other", "host": "x-" + socket.gethostname()}))
        lease._confirmed = time.time() - 999
        part = next(iter(t.snapshot().files.values()))
        with pytest.raises(LeaseLost):
            t.commit([], [part])
        with pytest.raises(LeaseLost):
            t.delete([part.path])
        with pytest.raises(LeaseLost):
            t.log.checkpoint()
        assert t.log._latest() == version and (out / "face_tracks" / part.path).exists()
    assert (out / LEASE).exists()  # not its lease: left to its holder


def test_serve_follows_the_index_without_a_restart(index_dir):
    import time

    from fastapi.testclient import TestClient

    from vidx.jobs import serve

    out, v = index_dir
    c = TestClient(serve.create_app(str(out)))
    assert {x["video_id"] for x in c.get("/api/videos").json()["items"]} == {"vid1", "vid2"}
    write_index(out, {"vid3": [("t4", 0.0, 3.0, v[1])]})  # another command commits
    people.refresh(str(out))
    deadline = time.time() + 20
    seen = set()
    while time.time() < deadline:
        seen = {x["video_id"] for x in c.get("/api/videos").json()["items"]}
        if "vid3" in seen:
            break
        time.sleep(0.2)
    assert seen == {"vid1", "vid2", "vid3"}
    ids = {r["track_id"] for r in c.get("/api/search", params={"video": "vid3"}).json()["items"]}
    assert ids == {"t4"}
