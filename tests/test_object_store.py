"""An index on an S3 API (moto's standalone server, started here on a free port; nothing of vidx
mocked): index, people, photo and name queries, forget leaving no embedding of the person in
any object, and one clear line for a missing bucket or an unreachable endpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.fs as pafs
import pytest

from conftest import committed_chunks, sigkill_when_committed

BIN = Path(sys.executable).parent
VIDX = shutil.which("vidx", path=str(BIN)) or shutil.which("vidx")
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto(log, **env) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    proc = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log,
                            env=dict(os.environ, **env))
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """(endpoint, env for the CLI, filesystem) of a fresh moto S3 server holding bucket 'archive'."""
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")
    proc, endpoint = _moto(log)
    fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                           region="us-east-1", allow_bucket_creation=True)
    try:
        for _ in range(100):
            try:
                fs.create_dir("archive")
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("moto_server did not start")
        env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore", AWS_ENDPOINT_URL=endpoint, **KEYS)
        yield endpoint, env, fs
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def vidx(env, *args, timeout=600):
    return subprocess.run([VIDX, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)


def objects(fs) -> dict[str, bytes]:
    sel = pafs.FileSelector("archive", recursive=True)
    out = {}
    for info in fs.get_file_info(sel):
        if info.type == pafs.FileType.File:
            with fs.open_input_stream(info.path) as f:
                out[info.path] = f.read()
    return out


@pytest.mark.media
def test_an_index_on_s3_answers_and_forgets(s3, data_dir, tmp_path):
    endpoint, env, fs = s3
    src = tmp_path / "videos"
    src.mkdir()
    for name in ("hk_obama.mp4", "shd_obama.mp4", "mma_tests_test.mp4"):
        shutil.copyfile(data_dir / "videos" / name, src / name)
    out = "s3://archive/idx"
    p = vidx(env, "index", "--no-actions", src, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "3 ok" in p.stdout and "people:" in p.stdout
    names = set(objects(fs))
    assert {"archive/idx/manifest.json", "archive/idx/faces.faiss", "archive/idx/faces.faiss.json"} <= names
    assert not [n for n in names if ".tmp-" in n]  # no half-written object left

    photo = data_dir / "faces" / "fr_obama.jpg"
    p = vidx(env, "query", out, "--face", photo, "--json")
    assert p.returncode == 0, p.stderr
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert {Path(r["path"]).name for r in rows} >= {"hk_obama.mp4", "shd_obama.mp4"}
    p = vidx(env, "enroll", out, "--name", "Obama", photo)
    assert p.returncode == 0, p.stderr
    p = vidx(env, "query", out, "--person", "Obama", "--json")
    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert p.returncode == 0 and {Path(r["path"]).name for r in rows} == {"hk_obama.mp4", "shd_obama.mp4"}
    tracks = {r["track_id"] for r in rows}
    p = vidx(env, "people", "list", out)
    assert p.returncode == 0 and "Obama" in p.stdout

    # what an embedding of his looks like in the objects before forget (float32 bytes of each vector)
    from vidx.indexing.tables import read_index_table

    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **KEYS})
    try:
        ft = read_index_table(out, "face_tracks")
        his = [np.asarray(e, np.float32).tobytes()[:64] for tid, e in zip(ft["track_id"].to_pylist(),
                                                                            ft["embedding"].to_pylist())
               if tid in tracks]
    finally:
        for k in ("AWS_ENDPOINT_URL", *KEYS):
            os.environ.pop(k, None)
    assert his and any(h in b for b in objects(fs).values() for h in his)  # the check can see them
    p = vidx(env, "forget", out, "--person", "Obama")
    assert p.returncode == 0, p.stderr
    left = objects(fs)
    assert not [n for n, b in left.items() for h in his if h in b]  # no object keeps his embeddings
    p = vidx(env, "query", out, "--person", "Obama")
    assert p.returncode != 0 and "Obama" in p.stderr


def test_a_missing_bucket_or_an_unreachable_endpoint_is_one_line(s3, tmp_path):
    endpoint, env, fs = s3
    p = vidx(env, "people", "list", "s3://nobucket/idx")
    assert p.returncode != 0 and p.stderr.strip() == (
        "vidx people list: s3://nobucket/idx: the bucket 'nobucket' does not exist")
    clip = tmp_path / "none.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypisom")
    p = vidx(env, "index", "--no-actions", clip, "--out", "s3://nobucket/idx")
    assert p.returncode != 0 and "the bucket 'nobucket'" in p.stderr and "Traceback" not in p.stderr
    bad = dict(env, AWS_ENDPOINT_URL=f"http://127.0.0.1:{_free_port()}")
    p = vidx(bad, "people", "list", "s3://archive/idx", timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode != 0 and len(lines) == 1 and "cannot reach the object store at" in lines[0]


def test_credentials_the_store_refuses_are_one_line(tmp_path):
    """A server that checks credentials (moto with its IAM auth on) and keys it does not know."""
    with open(tmp_path / "moto.log", "w") as log:
        proc, endpoint = _moto(log, INITIAL_NO_AUTH_ACTION_COUNT="0")
        try:
            env = dict(os.environ, RAY_AUTH_MODE="disabled", PYTHONWARNINGS="ignore", AWS_ENDPOINT_URL=endpoint,
                       AWS_ACCESS_KEY_ID="nobody", AWS_SECRET_ACCESS_KEY="wrong", AWS_DEFAULT_REGION="us-east-1")
            for _ in range(100):  # until the server answers (refusing)
                p = vidx(env, "people", "list", "s3://archive/idx", timeout=120)
                if "cannot reach" not in p.stderr:
                    break
                time.sleep(0.1)
            lines = p.stderr.strip().splitlines()
            assert p.returncode != 0 and len(lines) == 1, p.stderr
            assert lines[0].startswith("vidx people: the object store refused access (check AWS_ACCESS_KEY_ID")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.mark.media
def test_sigkill_on_s3_then_rerun_equals_a_local_uninterrupted_run(s3, data_dir, tmp_path):
    """The driver killed part-way while committing to the object store; the rerun resumes (does
    not redo what was committed) and the tables equal those of an uninterrupted local run."""
    endpoint, env, fs = s3
    v = data_dir / "videos"
    args = [v / "hk_obama.mp4", v / "shd_obama.mp4", v / "mma_tests_test.mp4", "--set", "chunk_seconds=1"]
    local = tmp_path / "local"
    p = vidx(env, "index", "--no-actions", *args, "--out", local)
    assert p.returncode == 0, p.stderr[-3000:]
    out = "s3://archive/killed"

    sigkill_when_committed([VIDX, "index", "--no-actions", *map(str, args), "--out", out], env,
                           lambda: committed_chunks(fs, "archive/killed"))
    p = vidx(env, "index", "--no-actions", *args, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "already done" in p.stdout and " 0 already done" not in p.stdout  # resumed
    from vidx.indexing.tables import read_index_table

    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **KEYS})
    try:
        for name, keys in (("face_detections", ["video_id", "frame", "x1", "y1"]), ("face_tracks", ["track_id"])):
            a = read_index_table(str(local), name).sort_by([(k, "ascending") for k in keys])
            b = read_index_table(out, name).sort_by([(k, "ascending") for k in keys])
            assert a.num_rows == b.num_rows > 0
            for col in ("video_id", "frame", "x1", "y1", "segment_id") if name == "face_detections" else (
                    "track_id", "start_s", "end_s", "detections"):
                assert a[col].to_pylist() == b[col].to_pylist(), (name, col)
    finally:
        for k in ("AWS_ENDPOINT_URL", *KEYS):
            os.environ.pop(k, None)
    # vidx check on the object store: whole; a data object deleted is one line; --repair redoes its chunks
    p = vidx(env, "check", out)
    assert p.returncode == 0 and "is whole" in p.stdout, p.stdout + p.stderr[-2000:]
    from vidx.indexing.delta_log import DeltaLog

    part = sorted(DeltaLog(fs, "archive/killed/face_detections").snapshot().files)[0]
    fs.delete_file(f"archive/killed/face_detections/{part}")
    p = vidx(env, "check", out)
    assert p.returncode == 1 and f"face_detections: {part} is in the table's log but missing from storage" in p.stdout
    p = vidx(env, "check", out, "--repair")
    assert p.returncode == 0 and "indexed again" in p.stdout and "is whole" in p.stdout, p.stdout + p.stderr[-3000:]
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **KEYS})
    try:
        a = read_index_table(str(local), "face_detections").sort_by([(k, "ascending") for k in ("video_id", "frame",
                                                                                                   "x1", "y1")])
        b = read_index_table(out, "face_detections").sort_by([(k, "ascending") for k in ("video_id", "frame", "x1",
                                                                                          "y1")])
        assert a.select(["video_id", "frame", "x1", "y1"]).equals(b.select(["video_id", "frame", "x1", "y1"]))
    finally:
        for k in ("AWS_ENDPOINT_URL", *KEYS):
            os.environ.pop(k, None)


@pytest.mark.media
def test_videos_on_the_store_are_indexed_and_served_with_range_requests(s3, data_dir):
    """Sources on the object store (copied to a temporary file for decoding), the index there
    too, and `vidx serve`'s stream answering byte ranges from the object itself."""
    endpoint, env, fs = s3
    clip = (data_dir / "videos" / "shd_obama.mp4").read_bytes()
    with fs.open_output_stream("archive/videos/press/shd_obama.mp4") as f:
        f.write(clip)
    out = "s3://archive/served"
    p = vidx(env, "index", "--no-actions", "s3://archive/videos", "--out", out)
    assert p.returncode == 0 and "1 ok" in p.stdout, p.stderr[-3000:]
    from fastapi.testclient import TestClient

    from vidx.jobs.serve import create_app

    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", *KEYS)}
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **KEYS})
    try:
        c = TestClient(create_app(out))
        (v,) = c.get("/api/videos").json()["items"]
        assert v["path"] == "s3://archive/videos/press/shd_obama.mp4"
        full = c.get(f"/api/videos/{v['video_id']}/stream")
        assert full.status_code == 200 and full.content == clip and full.headers["accept-ranges"] == "bytes"
        part = c.get(f"/api/videos/{v['video_id']}/stream", headers={"Range": "bytes=1000-1999"})
        assert part.status_code == 206 and part.content == clip[1000:2000]
        assert part.headers["content-range"] == f"bytes 1000-1999/{len(clip)}"
        tail = c.get(f"/api/videos/{v['video_id']}/stream", headers={"Range": "bytes=-500"})
        assert tail.status_code == 206 and tail.content == clip[-500:]
        bad = c.get(f"/api/videos/{v['video_id']}/stream", headers={"Range": f"bytes={len(clip) + 10}-"})
        assert bad.status_code == 416
    finally:
        for k, val in saved.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val


def test_a_second_writer_on_s3_is_refused(s3, tmp_path):
    """A live lease (renewed within its TTL, here from another machine) stops a second writer."""
    endpoint, env, fs = s3
    with fs.open_output_stream("archive/busy/_writer.json") as f:
        f.write(json.dumps({"owner": "x", "command": "index", "host": "elsewhere", "pid": 1,
                            "since": time.time(), "renewed": time.time()}).encode())
    clip = tmp_path / "none.mp4"
    clip.write_bytes(b"\x00\x00\x00\x18ftypisom")
    p = vidx(env, "index", "--no-actions", clip, "--out", "s3://archive/busy")
    assert p.returncode == 2 and "is being written by another vidx command (index, pid 1 on elsewhere" in p.stderr
    assert [i.path for i in fs.get_file_info(pafs.FileSelector("archive/busy"))] == ["archive/busy/_writer.json"]


@pytest.fixture
def s3_env(s3):
    """The S3 settings in this process's environment (obstore and pyarrow read them there)."""
    endpoint, env, fs = s3
    saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", *KEYS)}
    os.environ.update({"AWS_ENDPOINT_URL": endpoint, **KEYS})
    try:
        yield endpoint, env, fs
    finally:
        for k, val in saved.items():
            if val is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = val


def test_racing_commits_on_s3_lose_no_acknowledged_add_and_delta_rs_checkpoints_there(s3_env):
    import deltalake
    import pyarrow as pa
    import pyarrow.parquet as pq

    from test_delta_log import SCHEMA, race
    from vidx.indexing.delta_log import DeltaLog, FilePart, storage_options

    endpoint, env, fs = s3_env
    root = "archive/race/t"
    DeltaLog.create(fs, root, SCHEMA, uri=f"s3://{root}")
    writers = [DeltaLog(fs, root, f"s3://{root}") for _ in range(2)]
    files = {}
    for r in range(30):
        for i in range(2):
            rel = f"v{i}/{r:05d}-w.parquet"
            t = pa.table({"video_id": [f"v{i}"], "chunk": pa.array([r], pa.int32()), "t": [float(r)],
                          "box": pa.array([[0.0, 0.0, 1.0, 1.0]], pa.list_(pa.float32(), 4)), "thumb": [b"x"]},
                         schema=SCHEMA)
            with fs.open_output_stream(f"{root}/{rel}") as f:
                pq.write_table(t, f)
            files[r, i] = FilePart(rel, fs.get_file_info(f"{root}/{rel}").size, 1)
    outcome = race(writers, lambda r, i: files[r, i], 30)
    assert sorted(outcome) == list(range(1, 61))  # every race's loser retried at the next version
    opts = storage_options(f"s3://{root}", "s3")
    dt = deltalake.DeltaTable(f"s3://{root}", storage_options=opts)
    assert dt.version() == 60 and {u.split(f"{root}/")[1] for u in dt.file_uris()} == {p.path for p in files.values()}
    assert writers[0].checkpoint() == 60
    assert fs.get_file_info(f"{root}/_delta_log/{60:020d}.checkpoint.parquet").type == pafs.FileType.File
    snap = DeltaLog(fs, root, f"s3://{root}").snapshot()
    assert set(snap.files) == {p.path for p in files.values()}


def test_two_writers_on_s3_one_holds_the_lease_even_when_its_write_is_slow(s3_env, monkeypatch):
    from vidx.indexing import objects
    from vidx.indexing.delta_log import DeltaLog
    from vidx.indexing.lease import Lease, LeaseLost, WriterBusy
    from vidx.indexing.store import Store

    endpoint, env, fs = s3_env
    create = objects.Objects.create

    def slow(self, rel, data):  # each lease write takes 1.2 s
        time.sleep(1.2)
        return create(self, rel, data)

    monkeypatch.setattr(objects.Objects, "create", slow)
    import threading

    leases = [Lease(Store("s3://archive/leased"), "index") for _ in range(2)]
    got: list = [None, None]
    go = threading.Barrier(2)

    def take(i):
        go.wait()
        try:
            leases[i].acquire()
            got[i] = "held"
        except WriterBusy as e:
            got[i] = str(e)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    monkeypatch.setattr(objects.Objects, "create", create)
    assert sorted(g == "held" for g in got) == [False, True], got
    assert "is being written by another vidx command (index" in next(g for g in got if g != "held")
    holder = leases[got.index("held")]
    # the holder stalls past the TTL; another writer takes the lease over; the holder commits nothing more
    stale = json.loads(fs.open_input_stream("archive/leased/_writer.json").read())
    with fs.open_output_stream("archive/leased/_writer.json") as f:
        f.write(json.dumps({**stale, "renewed": time.time() - 999}).encode())
    holder._confirmed = 0  # its last renewal is long past
    taker = Lease(Store("s3://archive/leased"), "reindex")
    taker.acquire()
    log = DeltaLog.create(fs, "archive/leased/t", pa_schema(), uri="s3://archive/leased/t")
    log.guard = holder.check
    with pytest.raises(LeaseLost, match="write lock was taken over"):
        log.commit([])
    assert log.version == 0 and DeltaLog(fs, "archive/leased/t").version == 0
    taker.release()
    holder.release()  # not its lease any more: nothing deleted
    assert fs.get_file_info("archive/leased/_writer.json").type == pafs.FileType.NotFound


def pa_schema():
    import pyarrow as pa

    return pa.schema([("x", pa.int32())])


@pytest.mark.media
def test_two_index_runs_started_together_on_s3_one_writes_the_other_stops(s3, data_dir, tmp_path):
    endpoint, env, fs = s3
    src = tmp_path / "v"
    src.mkdir()
    shutil.copyfile(data_dir / "videos" / "shd_obama.mp4", src / "shd_obama.mp4")
    cmd = [VIDX, "index", "--no-actions", str(src), "--out", "s3://archive/together"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], outs
    loser = outs[[p.returncode for p in procs].index(2)]
    assert "is being written by another vidx command (index" in loser[1] and "Traceback" not in loser[1]
    winner = outs[[p.returncode for p in procs].index(0)]
    assert "1 ok" in winner[0]


def test_a_delivery_is_appended_on_s3_and_a_server_reads_vectors_by_range(s3_env):
    from synthetic_index import near, write_index
    from test_append import PEOPLE, SFACE, _video

    from vidx.indexing import people
    from vidx.indexing.people.files import RangedVectors
    from vidx.indexing.query import Query, QueryEngine
    from vidx.indexing.store import Store

    out = "s3://archive/appended"
    write_index(out, {f"v{i}": _video(f"v{i}", [i % 10, (i + 3) % 10], 100 * i) for i in range(8)}, embedder=SFACE)
    assert people.refresh(out).mode == "full"
    write_index(out, {"w1": _video("w1", [1, 12], 5000)}, embedder=SFACE)
    r = people.refresh(out)
    assert r.mode == "appended" and r.tracks == 8 * 4 + 4  # faces.vectors rewritten whole: no appends on S3
    store = Store(out)
    whole = people.read_vectors(store, r.tracks)
    ranged = people.read_vectors(store, r.tracks, ranged=True)
    assert isinstance(ranged, RangedVectors) and isinstance(whole, np.ndarray)
    rows = np.array([r.tracks - 1, 0, 5, 5])
    assert np.array_equal(ranged[rows], whole[rows]) and np.array_equal(np.asarray(ranged), whole)
    eng = QueryEngine(out)
    hits = eng.search(Query(face=near(PEOPLE[12], 0.1, 7)))
    assert hits and {h["track_id"].split("-")[1] for h in hits} == {"p12"}
    assert isinstance(eng.vectors, RangedVectors)


@pytest.mark.media
def test_other_engines_operations_on_s3_then_an_index_give_an_uninterrupted_runs_tables(s3_env, data_dir, tmp_path):
    """On the object store: delta-rs deletes one chunk's rows, compacts one table, updates another,
    z-orders a per-video table and overwrites one video's rows; the next `vidx index` redoes what is
    no longer vidx's, takes the old rows out of the rewritten objects in the same commits, and ends
    equal to an uninterrupted local run with no row twice for delta-rs; `vidx check` is clean, and
    stays so after delta-rs vacuums with zero retention."""
    import deltalake
    import pyarrow.compute as pc

    from vidx.indexing.delta_log import storage_options
    from vidx.indexing.tables import read_index_table

    endpoint, env, fs = s3_env  # its settings in this process too (delta-rs and vidx's readers)
    v = data_dir / "videos"
    args = [v / "hk_obama.mp4", v / "shd_obama.mp4", "--set", "chunk_seconds=1"]
    local = tmp_path / "local"
    assert vidx(env, "index", "--no-actions", *args, "--out", local).returncode == 0
    out = "s3://archive/ops"
    assert vidx(env, "index", "--no-actions", *args, "--out", out).returncode == 0
    # one writer here: delta-rs may commit without a lock (vidx's own commits use conditional writes)
    opts = {**storage_options(f"{out}/face_detections", "s3"), "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    dt = lambda name: deltalake.DeltaTable(f"{out}/{name}", storage_options=opts)  # noqa: E731
    dt("face_detections").delete("chunk = 1")
    dt("track_segments").optimize.compact()
    dt("shots").update(updates={"end_s": "end_s + 1"}, predicate="chunk = 0")
    dt("face_tracks").optimize.z_order(["start_s"])
    rows = dt("face_detections").to_pyarrow_table()
    one = rows["video_id"][0].as_py()
    deltalake.write_deltalake(f"{out}/face_detections", rows.filter(pc.equal(rows["video_id"], one)),
                              mode="overwrite", predicate=f"video_id = '{one}'", storage_options=opts)
    p = vidx(env, "index", "--no-actions", *args, "--out", out)
    assert p.returncode == 0 and "already done" in p.stdout, p.stdout + p.stderr[-3000:]
    for name, keys in (("face_detections", ["video_id", "frame", "x1", "y1"]), ("track_segments", ["segment_id"]),
                       ("face_tracks", ["track_id"])):
        a = read_index_table(str(local), name).sort_by([(k, "ascending") for k in keys])
        b = read_index_table(out, name).sort_by([(k, "ascending") for k in keys])
        assert a.select(keys).equals(b.select(keys)), name
        theirs = deltalake.DeltaTable(f"{out}/{name}", storage_options=opts).to_pyarrow_table()
        assert theirs.num_rows == a.num_rows, name  # delta-rs reads no row twice
    p = vidx(env, "check", out)
    assert p.returncode == 0 and "is whole" in p.stdout, p.stdout + p.stderr[-2000:]
    # a vacuum with zero retention by delta-rs afterwards changes nothing vidx needs
    dt("face_detections").vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    p = vidx(env, "index", "--no-actions", *args, "--out", out)
    assert p.returncode == 0 and " 0 indexed" in p.stdout, p.stdout + p.stderr[-2000:]
    p = vidx(env, "check", out)
    assert p.returncode == 0 and "is whole" in p.stdout, p.stdout + p.stderr[-2000:]
