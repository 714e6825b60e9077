"""End-to-end tests of `vidx index` on real clips: tables, bad inputs, resume after SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pyarrow.compute as pc
import pytest

from conftest import committed_chunks, sigkill_when_committed
from vidx.indexing.delta_log import DeltaLog

pytestmark = pytest.mark.media
VIDX = shutil.which("vidx", path=str(Path(sys.executable).parent)) or shutil.which("vidx")
ENV = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore")


def index(*args, timeout=600):
    """vidx index, faces only (no action weights on the test machines; tests/test_index_actions.py
    covers actions with staged weights)."""
    return subprocess.run([VIDX, "index", "--no-actions", *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def table(out, name):
    from vidx.indexing.tables import read_index_table

    return read_index_table(str(out), name)


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("bad")
    src = (data_dir / "videos" / "hk_biden.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(src[: len(src) // 5])
    (d / "notes.mp4").write_text("this is a text file with a video name\n")
    (d / "empty.mp4").write_bytes(b"")
    import zipfile

    with zipfile.ZipFile(d / "archive.zip", "w") as z:  # a video inside an archive
        z.write(data_dir / "videos" / "shd_obama.mp4", "press/shd_obama.mp4")
        z.writestr("press/notes.txt", "not a video")
    return d


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, data_dir, bad_inputs):
    out = tmp_path_factory.mktemp("idx") / "index"
    v = data_dir / "videos"
    p = index(v / "hk_obama.mp4", v / "mma_tests_test.mp4", v / "fnp_video.mp4", bad_inputs / "truncated.mp4",
              bad_inputs / "notes.mp4", bad_inputs / "empty.mp4", bad_inputs / "missing.mp4",
              bad_inputs / "archive.zip", "--out", out, "--set", "chunk_seconds=2")
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_tables_answer_who_was_there(indexed, faces_dir, sface_engine):
    from vidx.workers.images import load_rgb

    out, p = indexed
    videos = {Path(r["path"]).name: r for r in table(out, "videos").to_pylist()}
    tracks = table(out, "face_tracks").to_pylist()
    by_video = {}
    for t in tracks:
        by_video.setdefault(t["video_id"], []).append(t)
    obama = by_video[videos["hk_obama.mp4"]["video_id"]]
    dominant = max(obama, key=lambda t: t["detections"])
    assert dominant["end_s"] - dominant["start_s"] >= 0.7 * videos["hk_obama.mp4"]["duration_s"]
    assert len(dominant["segments"]) >= 2  # joined across the 2-second chunks
    ref = sface_engine([load_rgb(faces_dir / "fr_obama.jpg"), load_rgb(faces_dir / "fr_biden.jpg")]).embeddings
    emb = np.asarray(dominant["embedding"])
    sp = sface_engine.space  # the index's default embedder: SFace, cosine distance
    assert json.loads((out / "manifest.json").read_text())["embedder"] == "sface_2021dec"
    assert sp.distance(emb, ref[0]) < sp.match_distance < sp.distance(emb, ref[1])
    assert dominant["thumbnail"][:2] == b"\xff\xd8"
    assert videos["mma_tests_test.mp4"]["tracks"] == 0 and videos["mma_tests_test.mp4"]["status"] == "ok"
    assert len(by_video[videos["fnp_video.mp4"]["video_id"]]) >= 2
    dets = table(out, "face_detections")
    kept = dets.filter(pc.is_null(dets["rejected"]))
    assert kept.num_rows == sum(t["detections"] for t in tracks)
    seg_ids = {s for t in tracks for s in t["segments"]}
    assert set(kept["segment_id"].to_pylist()) == seg_ids
    rejected = dets.filter(pc.is_valid(dets["rejected"]))  # quality gates: kept with the reason, not embedded
    assert set(rejected["rejected"].to_pylist()) <= {"score", "size", "blur"}
    assert rejected["embedding"].null_count == rejected.num_rows
    # a weaker face that continued a track (faces.extend_score) carries that track's segment, nothing else does
    cont = rejected.filter(pc.is_valid(rejected["segment_id"]))
    assert set(cont["rejected"].to_pylist()) <= {"score"} and all(x >= 0.6 for x in cont["score"].to_pylist())
    assert set(cont["segment_id"].to_pylist()) <= seg_ids
    assert pc.min(kept["score"]).as_py() >= 0.9
    # faces.embed: needed: a kept face without an embedding continued its track on overlap; every
    # track holds embedded faces (its embedding is theirs)
    embedded = set(kept.filter(pc.is_valid(kept["embedding"]))["segment_id"].to_pylist())
    assert 0 < kept["embedding"].null_count < kept.num_rows and embedded == seg_ids
    # SFace aligns on RetinaFace's own points, kept per detection; dlib's landmarks are not computed
    assert kept["points"].null_count == 0 and kept["landmarks"].null_count == kept.num_rows
    # the file cut at a fifth of its bytes is indexed up to its cut (partial); three inputs are no video at all
    assert "videos: 4 ok, 1 partial, 3 failed" in p.stdout


def test_archive_member_is_indexed(indexed, faces_dir, sface_engine):
    from vidx.workers.images import load_rgb

    out, _ = indexed
    (row,) = [r for r in table(out, "videos").to_pylist() if r["path"].endswith("archive.zip::press/shd_obama.mp4")]
    assert row["status"] == "ok" and row["tracks"] >= 1
    tracks = [t for t in table(out, "face_tracks").to_pylist() if t["video_id"] == row["video_id"]]
    ref = sface_engine([load_rgb(faces_dir / "fr_obama.jpg")]).embeddings[0]
    sp = sface_engine.space
    assert min(sp.distance(np.asarray(t["embedding"]), ref) for t in tracks) < sp.match_distance


def test_bad_inputs_are_failed_rows_with_specific_errors(indexed):
    out, p = indexed
    videos = {Path(r["path"]).name: r for r in table(out, "videos").to_pylist()}
    assert videos["notes.mp4"]["status"] == "failed" and "not a video" in videos["notes.mp4"]["error"]
    assert videos["empty.mp4"]["error"] == "empty file (0 bytes)"
    assert videos["missing.mp4"]["error"] == "no such file"
    assert videos["truncated.mp4"]["status"] == "partial"
    assert videos["truncated.mp4"]["error"].startswith("truncated: data ends at ")
    for name in ("notes.mp4", "empty.mp4", "missing.mp4"):
        assert name in p.stdout


def _sorted(t, keys):
    return t.sort_by([(k, "ascending") for k in keys])


def _kill_args(data_dir):
    v = data_dir / "videos"
    srcs = [v / "hk_obama.mp4", v / "shd_obama.mp4", v / "mma_tests_test.mp4", v / "decord_flipping_a_pancake.mkv"]
    return [*srcs, "--set", "chunk_seconds=1"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    full = tmp_path_factory.mktemp("full") / "full"
    assert index(*_kill_args(data_dir), "--out", full).returncode == 0
    return full


def _same_tables(full: Path, out: Path, files_too: bool = True) -> None:
    for name, keys in (("face_detections", ["video_id", "frame", "x1", "y1"]), ("face_tracks", ["track_id"]),
                       ("videos", ["video_id"])):
        a, b = _sorted(table(full, name), keys), _sorted(table(out, name), keys)
        assert a.num_rows == b.num_rows
        for col in a.column_names:
            x, y = a[col].to_pylist(), b[col].to_pylist()
            if col == "embedding":  # null for rejected detections
                assert [v is None for v in x] == [v is None for v in y]
                assert np.allclose(np.asarray([v for v in x if v is not None]),
                                   np.asarray([v for v in y if v is not None]), atol=1e-5)
            elif col != "thumbnail":
                assert x == y, (name, col)
    keys = list(zip(*(table(out, "face_detections")[k].to_pylist() for k in ("video_id", "frame", "x1", "y1"))))
    assert len(keys) == len(set(keys))  # no duplicate rows
    if not files_too:  # the folders were vacuumed already (their removed files are gone)
        return
    # every file in a table's folder is one its Delta log holds, live or removed within retention
    # (compacted chunk parts, kept for readers' snapshots); parts of killed or retried attempts
    # were swept; `vidx vacuum --retention-hours 0` leaves the live ones only (one file a video)
    def files(name):
        snap = DeltaLog(pafs.LocalFileSystem(), str(out / name)).snapshot()
        disk = {str(p.relative_to(out / name)) for p in (out / name).rglob("*.parquet") if "_delta_log" not in p.parts}
        return snap, disk

    for name in ("face_detections", "track_segments", "face_tracks"):
        snap, on_disk = files(name)
        assert on_disk == set(snap.files) | set(snap.tombstones), name
        assert len(snap.files) == table(out, "videos").num_rows, name
    p = subprocess.run([VIDX, "vacuum", str(out), "--retention-hours", "0"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 0 and "deleted" in p.stdout, p.stderr
    for name in ("face_detections", "track_segments", "face_tracks"):
        snap, on_disk = files(name)
        assert on_disk == set(snap.files), name


def test_a_worker_killed_mid_job_is_restarted_and_its_chunks_retried(tmp_path, data_dir, uninterrupted):
    """kill -9 of an actor's process while it holds chunks: Ray restarts it, the chunks are
    retried, the job ends normally with the tables of an uninterrupted run."""
    out = tmp_path / "worker-killed"
    proc = subprocess.Popen([VIDX, "index", "--no-actions", *map(str, _kill_args(data_dir)), "--out", str(out)],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    import psutil

    try:
        deadline = time.time() + 300
        while time.time() < deadline and killed is None and proc.poll() is None:
            # a worker process whose title says it is running a chunk (Ray sets it per call): the
            # window is the whole fan-out, not the moment between two commits (too short since #17)
            pids = [p.pid for p in psutil.process_iter(["cmdline"])
                    if (p.info["cmdline"] or [""])[0].startswith("ray::_Worker.index_chunk")]
            if pids:
                killed = pids[0]
                os.kill(killed, signal.SIGKILL)
            time.sleep(0.05)
        stdout, stderr = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert killed is not None, "no worker was killed: the job ended first; give it more work"
    assert proc.returncode == 0, stderr[-3000:]
    assert "0 partial, 0 failed" in stdout, stdout
    _same_tables(uninterrupted, out)


def test_resume_after_sigkill_equals_uninterrupted_run(tmp_path, data_dir, uninterrupted):
    args = _kill_args(data_dir)
    full = uninterrupted
    out = tmp_path / "killed"
    local = pafs.LocalFileSystem()
    sigkill_when_committed([VIDX, "index", "--no-actions", *map(str, args), "--out", str(out)], ENV,
                           lambda: committed_chunks(local, str(out)))
    done_before = committed_chunks(local, str(out))
    p = index(*args, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"{done_before} already done" in p.stdout  # resumed, not restarted
    _same_tables(full, out)
    # a rerun of the finished job does no work and changes nothing
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    p = index(*args, "--out", out)
    assert p.returncode == 0 and "0 indexed" in p.stdout and "up to date" in p.stderr
    assert before == {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}


def _delta_rows(out: Path) -> dict[str, int]:
    """Rows per table as another engine (delta-rs) reads them: every live file, vidx's or not."""
    import deltalake

    return {n: deltalake.DeltaTable(str(out / n)).to_pyarrow_table().num_rows
            for n in ("face_detections", "track_segments", "shots", "face_tracks", "videos")}


def test_other_engines_operations_then_an_index_give_an_uninterrupted_runs_tables(tmp_path, data_dir, uninterrupted):
    """delta-rs deletes one chunk's rows (its rewrite holds the rest of the file, untagged),
    updates another table's rows, compacts a third, z-orders a per-video table and overwrites one
    video's rows in a fourth; the next `vidx index` of the same videos redoes exactly the chunks
    whose rows are no longer in vidx's own parts, takes their old rows out of the foreign files in
    the same commits, and ends with tables equal to an uninterrupted run's, for vidx and for
    delta-rs alike (no row twice).  Then a vacuum with zero retention changes nothing."""
    import deltalake

    out = tmp_path / "ops"
    shutil.copytree(uninterrupted, out)
    want = _delta_rows(uninterrupted)
    deltalake.DeltaTable(str(out / "face_detections")).delete("chunk = 1")
    assert _delta_rows(out)["face_detections"] < want["face_detections"]
    deltalake.DeltaTable(str(out / "track_segments")).update(updates={"end_s": "end_s + 1"}, predicate="chunk = 0")
    deltalake.DeltaTable(str(out / "shots")).optimize.compact()
    deltalake.DeltaTable(str(out / "face_tracks")).optimize.z_order(["start_s"])
    vt = deltalake.DeltaTable(str(out / "face_detections")).to_pyarrow_table()
    one = vt["video_id"][0].as_py()
    deltalake.write_deltalake(str(out / "face_detections"), vt.filter(pc.equal(vt["video_id"], one)),
                              mode="overwrite", predicate=f"video_id = '{one}'")
    p = index(*_kill_args(data_dir), "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "0 indexed" not in p.stdout and "already done" in p.stdout, p.stdout  # some chunks redone, not all
    _same_tables(uninterrupted, out)
    assert _delta_rows(out) == want
    p = subprocess.run([VIDX, "check", str(out)], capture_output=True, text=True, env=ENV)
    assert p.returncode == 0 and "is whole" in p.stdout, p.stdout + p.stderr
    deltalake.DeltaTable(str(out / "face_detections")).vacuum(retention_hours=0, enforce_retention_duration=False,
                                                               dry_run=False)
    p = index(*_kill_args(data_dir), "--out", out)
    assert p.returncode == 0 and "0 indexed" in p.stdout, p.stdout + p.stderr[-2000:]
    _same_tables(uninterrupted, out, files_too=False)
    assert _delta_rows(out) == want
    p = subprocess.run([VIDX, "check", str(out)], capture_output=True, text=True, env=ENV)
    assert p.returncode == 0 and "is whole" in p.stdout, p.stdout + p.stderr


def test_vidx_check_finds_each_injected_fault_and_repair_restores_an_uninterrupted_run(tmp_path, data_dir,
                                                                                       uninterrupted):
    """A whole index checks clean (exit 0, one line).  Five faults, one line each and exit 1: a
    chunk's rows appended again by another engine, a data file deleted, a FAISS id without a
    track, a stale pack and a chunk's rows half deleted by delta-rs.  `vidx check --repair` fixes
    them (the half-deleted chunk's video decoded again with the index's own config) and leaves an
    index that checks clean and equals an uninterrupted run, for vidx and for delta-rs."""
    import deltalake
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from vidx.indexing.faces_index import FaceIndex
    from vidx.indexing.people.files import IDENTITIES_PACK
    from vidx.indexing.store import Store
    from vidx.indexing.tables import IndexTable

    def check(*extra):
        return subprocess.run([VIDX, "check", str(out), *extra], capture_output=True, text=True, env=ENV, timeout=900)

    out = tmp_path / "faults"
    shutil.copytree(uninterrupted, out)
    p = check()
    assert p.returncode == 0 and p.stdout.count("\n") == 1 and "is whole" in p.stdout, p.stdout + p.stderr
    want = _delta_rows(uninterrupted)
    dets = deltalake.DeltaTable(str(out / "face_detections")).to_pyarrow_table()
    vids = sorted(set(dets["video_id"].to_pylist()))
    # 1. another engine appends one chunk's rows again
    again = dets.filter(pc.and_(pc.equal(dets["video_id"], vids[0]), pc.equal(dets["chunk"], 0)))
    assert again.num_rows
    deltalake.write_deltalake(str(out / "face_detections"), again, mode="append")
    # 2. a data file deleted
    store = Store(str(out))
    seg = next(p for p in IndexTable(store, "track_segments").snapshot().files.values() if p.tags["video_id"] == vids[1])
    os.unlink(out / "track_segments" / seg.path)
    # 3. a FAISS id without a track
    fi = FaceIndex.load(store)
    fi.add(np.ones((1, fi.index.d), np.float32), ["ghost-track"])
    fi.save(store)
    # 4. a stale pack: the identities pack loses a row, still claiming the table's version
    pk = ipc.open_file(pa.BufferReader(store.read_bytes(IDENTITIES_PACK))).read_all()
    buf = pa.BufferOutputStream()
    with ipc.new_file(buf, pk.schema) as w:
        w.write_table(pk.slice(1))
    store.write_bytes(IDENTITIES_PACK, buf.getvalue().to_pybytes())
    # 5. half of one chunk's rows deleted by delta-rs
    c1 = dets.filter(pc.and_(pc.equal(dets["video_id"], vids[2]), pc.equal(dets["chunk"], 1)))
    assert c1.num_rows >= 2
    mid = sorted(c1["t"].to_pylist())[c1.num_rows // 2]
    deltalake.DeltaTable(str(out / "face_detections")).delete(f"video_id = '{vids[2]}' AND chunk = 1 AND t < {mid}")
    p = check()
    assert p.returncode == 1, p.stdout + p.stderr
    lines = [ln for ln in p.stdout.splitlines() if not ln.startswith("chunks to decode again")]
    assert len(lines) == 5, p.stdout  # one line a fault
    text = p.stdout
    assert f"face_detections: chunk 0 of {vids[0]}" in text and "twice for other readers" in text
    assert f"track_segments: {seg.path} is in the table's log but missing from storage" in text
    assert "the FAISS index holds 1 id(s) of no track with a vector (ghost-track)" in text
    assert "packs/identities.arrow claims version" in text
    assert f"of {vids[2]}" in text and "rows only in another engine's file" in text
    assert "chunks to decode again: vidx index" in text
    p = check("--repair")
    assert p.returncode == 0 and "is whole" in p.stdout, p.stdout + p.stderr[-3000:]
    assert "indexed again" in p.stdout and "rebuilt" in p.stdout, p.stdout
    p = check()
    assert p.returncode == 0 and "is whole" in p.stdout, p.stdout
    _same_tables(uninterrupted, out, files_too=False)
    assert _delta_rows(out) == want
