"""Unit tests of the index job's parts on tiny synthetic data (no Ray, no real media)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from vidx.indexing import schemas
from vidx.configs.config import ConfigError, load_config
from vidx.jobs.index import content_id, join_tracks, list_inputs
from vidx.workers import decode
from vidx.workers.tracking import Tracker, TrackParams, iou_matrix


def test_config_presets_and_overrides():
    assert load_config("gpu").ray.num_gpus == 1
    gpu, cpu, d = load_config("gpu").faces, load_config("cpu"), load_config(None)
    assert (gpu.full_every, gpu.embed) == (1, "all")  # GPUs: every frame, batched
    assert (d.faces.full_every, d.faces.embed) == (0, "auto")  # the worker's device decides
    assert (cpu.faces.full_every, cpu.faces.embed) == (2, "needed")
    assert (cpu.actions.stride, d.actions.stride, cpu.faces.device) == (64, 0, "cpu")
    cfg = load_config("default", ["faces.sample_fps=4", "ray.actors=3", "chunk_seconds=30"])
    assert (cfg.faces.sample_fps, cfg.ray.actors, cfg.chunk_seconds) == (4.0, 3, 30.0)


@pytest.mark.parametrize("embedder,detector", [("sface", "retinaface"), ("dlib", "dlib")])
def test_the_default_preset_is_the_default(embedder, detector):
    """`--config default` (a file a user copies to tune one key) equals no config, for either
    embedder: it once pinned dlib's thresholds, so copying it changed who matched whom under SFace."""
    sets = [f"faces.embedder={embedder}", f"faces.detector={detector}"]
    assert load_config("default", sets).to_dict() == load_config(None, sets).to_dict()


@pytest.mark.parametrize("bad,msg", [
    (["faces.smaple_fps=2"], "unknown config key 'faces.smaple_fps'"),
    (["faces.sample_fps=fast"], "must be float"),
    (["faces.upsample=2"], "out of range"),
    (["faces.embed=some"], "out of range"),
    (["faces.full_every=101"], "out of range"),
    (["ray.actors=1.5"], "must be int"),
    (["chunk_seconds"], "key=value"),
])
def test_config_errors_name_the_key(bad, msg):
    with pytest.raises(ConfigError, match=msg):
        load_config(None, bad)


def test_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    p = tmp_path / "c.yaml"
    p.write_text("faces: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)


def test_sniff_recognises_containers():
    assert decode.sniff(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 100)
    assert decode.sniff(b"\x1a\x45\xdf\xa3" + b"\x00" * 100)
    assert decode.sniff(b"RIFF\x00\x00\x00\x00AVI LIST" + b"\x00" * 100)
    assert not decode.sniff(b"RIFF\x00\x00\x00\x00WAVEfmt " + b"\x00" * 100)
    assert not decode.sniff(b"hello, this is text" * 10)


def test_sample_indices_follow_timestamps():
    ts = np.array([0.0, 0.1, 0.25, 0.5, 0.9, 1.0, 1.6, 2.0])  # variable frame rate
    # targets 0, 0.5, 1.0, 1.5: the first frame at or after each
    assert decode.sample_indices(ts, 0.0, 2.0, 2.0).tolist() == [0, 3, 5, 6]
    assert decode.sample_indices(ts, 1.0, 2.1, 1.0).tolist() == [5, 7]


def test_chunk_bounds_cover_the_video():
    assert decode.chunk_bounds(5.1, 2.0) == [(0.0, 2.0), (2.0, 4.0), (4.0, 5.1)]
    assert decode.chunk_bounds(4.0, 2.0) == [(0.0, 2.0), (2.0, 4.0)]


def test_scaled_size_keeps_aspect_and_even():
    assert decode.scaled_size(1920, 1080, 1280) == (1280, 720)
    assert decode.scaled_size(854, 480, 1280) == (854, 480)
    assert decode.scaled_size(1000, 333, 500) == (500, 166)


def test_tracker_links_by_embedding_and_overlap():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=128) * 0.1, rng.normal(size=128) * 0.1 + 0.05
    frame = np.zeros((100, 200, 3), np.uint8)
    tr = Tracker(TrackParams(link_distance=0.55, max_gap_s=1.0))
    box_a, box_b = np.array([10, 10, 50, 50.0]), np.array([120, 10, 160, 50.0])
    ids = []
    for t in (0.0, 0.5, 1.0):
        embs = np.stack([a + rng.normal(size=128) * 0.005, b + rng.normal(size=128) * 0.005])
        ids.append(tr.update(t, frame, np.stack([box_a + 3 * t, box_b]), embs, np.ones(2)).tolist())
    assert ids == [[0, 1], [0, 1], [0, 1]]
    # after a gap longer than max_gap_s the same face starts a new track
    ids = tr.update(3.0, frame, box_a[None], a[None], np.ones(1))
    assert ids.tolist() == [2]
    assert [t.n for t in tr.tracks] == [3, 3, 1]
    assert tr.tracks[0].thumb[:2] == b"\xff\xd8"  # JPEG


def test_tracker_keeps_a_face_that_stays_in_place_through_a_noisy_embedding():
    rng = np.random.default_rng(1)
    a = rng.normal(size=128)
    a *= 1.3 / np.linalg.norm(a)
    step = rng.normal(size=128)
    noisy = a + 0.62 * step / np.linalg.norm(step)  # 0.62 away: beyond link_distance 0.55
    frame = np.zeros((100, 200, 3), np.uint8)
    box = np.array([10, 10, 60, 60.0])
    tr = Tracker(TrackParams(link_distance=0.55, max_gap_s=1.0))
    assert tr.update(0.0, frame, box[None], a[None], np.ones(1)).tolist() == [0]
    assert tr.update(0.5, frame, (box + 2)[None], noisy[None], np.ones(1)).tolist() == [0]  # IoU 0.86
    step2 = rng.normal(size=128)
    noisy2 = noisy + 0.62 * step2 / np.linalg.norm(step2)
    far = np.array([120, 10, 170, 60.0])  # as far in embedding, but elsewhere in the frame: a new track
    assert tr.update(1.0, frame, far[None], noisy2[None], np.ones(1)).tolist() == [1]


def test_weak_faces_continue_the_tracks_they_overlap_and_start_none():
    rng = np.random.default_rng(2)
    a = rng.normal(size=128)
    frame = np.zeros((100, 200, 3), np.uint8)
    box, elsewhere = np.array([10, 10, 50, 50.0]), np.array([120, 10, 160, 50.0])
    tr = Tracker(TrackParams(link_distance=0.55, max_gap_s=1.0))
    k, kw = tr.update(0.0, frame, box[None], a[None], np.ones(1), weak=np.zeros((0, 4)))
    assert k.tolist() == [0] and kw.tolist() == []
    # the next frame: the face only weakly detected (moved a little), and a weak box elsewhere
    k, kw = tr.update(0.5, frame, np.zeros((0, 4)), np.zeros((0, 128)), np.zeros(0), weak=np.stack([elsewhere, box + 8]))
    assert kw.tolist() == [-1, 0] and len(tr.tracks) == 1  # continued; the other starts nothing
    t0 = tr.tracks[0]
    assert t0.end == 0.5 and np.array_equal(t0.last_box, box + 8) and t0.n == 1 and t0.qs == [1.0]
    assert np.array_equal(t0.emb_sum, a)  # nothing of the weak face in the embedding
    # a frame where the track is continued by a confident face: the weak box there is left alone
    k, kw = tr.update(1.0, frame, (box + 9)[None], a[None], np.ones(1), weak=(box + 10)[None])
    assert k.tolist() == [0] and kw.tolist() == [-1] and tr.tracks[0].n == 2


def test_iou_matrix():
    m = iou_matrix(np.array([[0, 0, 9, 9.0]]), np.array([[0, 0, 9, 9.0], [5, 0, 14, 9], [20, 20, 29, 29]]))
    assert np.allclose(m, [[1.0, 50 / 150, 0.0]])


def _segments(rows):
    cols = {k: [] for k in schemas.TRACK_SEGMENTS.names}
    for r in rows:
        for k in cols:
            cols[k].append(r.get(k))
    f = lambda k, d: pa.FixedSizeListArray.from_arrays(np.asarray(cols[k], np.float32).ravel(), d)  # noqa: E731
    for k in ("embedding", "first_embedding", "last_embedding"):
        cols[k] = f(k, 128)
    for k in ("first_box", "last_box"):
        cols[k] = f(k, 4)
    return pa.table(cols, schema=schemas.TRACK_SEGMENTS)


def test_join_tracks_across_chunk_boundary():
    cfg = load_config()  # SFace: cosine distance
    e1, e2 = np.eye(128)[0], np.eye(128)[1]  # cosine distance 1 (euclidean 1.41): different people
    seg = lambda sid, c, s, e, emb, q: dict(  # noqa: E731
        segment_id=sid, video_id="v", chunk=c, start_s=s, end_s=e, detections=4, weight=2.0, embedding=emb,
        first_box=[0, 0, 1, 1], last_box=[0, 0, 1, 1], first_embedding=emb, last_embedding=emb,
        best_quality=q, quality=q, thumbnail=sid.encode(), thumbnail_t=s)
    segs = _segments([seg("a0", 0, 0.0, 1.5, e1, 0.5), seg("b0", 0, 1.0, 1.5, e2, 0.9),
                      seg("a1", 1, 2.0, 3.0, e1, 0.9), seg("c1", 1, 3.5, 4.0, e2, 0.1)])
    out = join_tracks("v", segs, [(0, 2.0), (2.0, 4.0)], cfg).to_pylist()
    by_id = {r["track_id"]: r for r in out}
    assert set(by_id) == {"a0", "b0", "c1"}  # a0 + a1 joined; b0 -> c1 is a 2 s gap (> 1.5)
    assert by_id["a0"]["segments"] == ["a0", "a1"] and by_id["a0"]["end_s"] == 3.0
    assert by_id["a0"]["detections"] == 8 and by_id["a0"]["thumbnail"] == b"a1"


def test_content_id_is_stable_across_renames(tmp_path):
    import pyarrow.fs as pafs

    fs = pafs.LocalFileSystem()
    a = tmp_path / "a.mp4"
    a.write_bytes(b"x" * 1000)
    id1 = content_id(fs, str(a), 1000)
    b = tmp_path / "renamed.mp4"
    a.rename(b)
    assert content_id(fs, str(b), 1000) == id1
    b.write_bytes(b"y" * 1000)
    assert content_id(fs, str(b), 1000) != id1


def test_list_inputs_recognises_videos_by_content(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "clip.bin").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 2000)
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "fake.mp4").write_text("not a video")  # extension says video: reported as failed later
    found = sorted(i.uri.split("/")[-1] for i in list_inputs([str(tmp_path)]))
    assert found == ["clip.bin", "fake.mp4"]


def _clip(tmp_path):
    from vidx.jobs.demo import make_demo_video

    return make_demo_video(tmp_path / "clip.mp4", seconds=2.0)


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_archive_members_are_inputs_and_names_are_not_paths(tmp_path, kind):
    import tarfile
    import zipfile

    from vidx.jobs.index import plan_video
    from vidx.workers import sources

    clip = _clip(tmp_path)
    arc = tmp_path / f"clips.{kind}"
    evil = "../../escape/clip.mp4"
    if kind == "zip":
        with zipfile.ZipFile(arc, "w") as z:
            z.write(clip, evil)
            z.writestr("readme.txt", "not a video")
    else:
        with tarfile.open(arc, "w:gz" if kind.endswith("gz") else "w") as t:
            t.add(clip, evil)
            t.add(clip, "sub/again.mp4")
    inputs = list_inputs([str(arc)])
    names = sorted(i.source.member for i in inputs)
    assert names == ([evil] if kind == "zip" else ["../../escape/clip.mp4", "sub/again.mp4"])
    vp = plan_video(inputs[0], 60.0)
    assert vp.error == "" and abs(vp.info.duration - 2.0) < 0.2
    # same bytes as the plain file: same video id (small files hash whole)
    import pyarrow.fs as pafs

    assert vp.video_id == content_id(pafs.LocalFileSystem(), str(clip), clip.stat().st_size)
    with sources.local_file(inputs[0].source) as p:
        assert p.endswith("/video") and "escape" not in p
    assert not (tmp_path.parent / "escape").exists() and not (tmp_path / "escape").exists()


def test_missing_member_and_broken_archive(tmp_path):
    from vidx.jobs.index import Input, plan_video

    clip = _clip(tmp_path)
    import tarfile

    arc = tmp_path / "a.tar"
    with tarfile.open(arc, "w") as t:
        t.add(clip, "clip.mp4")
    vp = plan_video(Input(f"{arc}::nope.mp4"), 60.0)
    assert "no member 'nope.mp4'" in vp.error
    broken = tmp_path / "b.tar"
    broken.write_bytes(arc.read_bytes()[:700])  # header of the first member, no data
    vps = [plan_video(i, 60.0) for i in list_inputs([str(broken)])]
    assert vps and all(v.error for v in vps)


def test_every_input_pointed_at_is_indexed_or_skipped_with_a_reason(tmp_path):
    import gzip
    import os
    import zipfile

    d = tmp_path / "in"
    d.mkdir()
    (d / "notes.tar.gz").write_text("not gzip")
    (d / "scan.zip").write_bytes(b"%PDF-1.4 not a zip")
    with gzip.open(d / "bomb.tar.gz", "wb") as f:
        f.write(bytes(3 << 20))  # 3 MiB of zeros
    with zipfile.ZipFile(d / "docs.zip", "w") as z:
        z.writestr("readme.txt", "no videos here")
    os.symlink(tmp_path / "nowhere.mp4", d / "lost.mp4")
    (d / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 2000)
    got = {os.path.basename(i.uri): i.skip for i in list_inputs([str(d)], max_archive_bytes=1 << 20)}
    assert got["clip.mp4"] == ""
    assert got["notes.tar.gz"] == "not an archive: bad gzip header"
    assert got["scan.zip"] == "not an archive: bad zip header"
    assert got["bomb.tar.gz"].startswith("archive expands beyond 0.000976562 GB: refused (3 MiB declared")
    assert got["docs.zip"] == "archive holds no videos (1 file(s))"
    assert got["lost.mp4"] == f"dangling symlink (points to {tmp_path / 'nowhere.mp4'})"
    named = list_inputs([str(d / "lost.mp4")])
    assert [i.skip for i in named] == [f"dangling symlink (points to {tmp_path / 'nowhere.mp4'})"]


def test_decoder_messages_lose_their_internal_paths_and_lost_frames_make_spans():
    err = RuntimeError("[08:38:35] /github/workspace/src/video/ffmpeg/threaded_decoder.cc:292: [08:38:35] "
                       "/github/workspace/src/video/ffmpeg/threaded_decoder.cc:218: Check failed: "
                       "avcodec_send_packet(dec_ctx_.get(), pkt.get()) >= 0 (-1094995529 vs. 0)")
    assert decode._short(err) == "the decoder rejected the stream's data"
    assert decode._short(RuntimeError("Invalid data found when processing input")) == \
        "Invalid data found when processing input"
    times = np.arange(10) * 0.5
    assert decode.lost_spans([2.0, 2.5, 4.5], times) == [(2.0, 3.0), (4.5, 4.5)]
    assert decode.describe_spans([(2.0, 3.0), (4.5, 4.5)]) == "2.00-3.00 s, at 4.50 s"


def test_chunk_tasks_and_results_cross_the_ray_boundary_as_typed_values(tmp_path):
    """A chunk goes to its worker as a ChunkTask (the frames it samples, the stream it reads, no
    dict of keys) and a pickled copy is the same task; damage spans travel as numbers and only the
    part file's tag is a string, read back to the same spans."""
    import pickle

    from vidx.configs.config import load_config
    from vidx.indexing.delta_log import FilePart
    from vidx.jobs.index import Input, chunk_tasks, plan_video
    from vidx.workers import decode
    from vidx.workers.chunks import ChunkResult, ChunkTask, parse_spans, spans_tag

    cfg = load_config(None, ["actions.enabled=false", "chunk_seconds=1"])
    vp = plan_video(Input(str(_clip(tmp_path))), cfg.chunk_seconds)
    tasks = chunk_tasks(vp, cfg)
    assert len(tasks) == len(vp.chunks) >= 2 and all(isinstance(t, ChunkTask) for t in tasks)
    t = tasks[1]
    assert t.key == (vp.video_id, 1) and t.seconds == pytest.approx(t.end_s - t.start_s)
    assert isinstance(t.stream, decode.Stream) and (t.stream.width, t.stream.height) == (vp.info.width, vp.info.height)
    assert np.array_equal(t.frame_t, vp.info.timestamps[t.frame_idx]) and t.start_s <= t.frame_t.min() < t.end_s
    assert t.action_idx is None  # faces only
    back = pickle.loads(pickle.dumps(t))
    assert back.key == t.key and back.stream.backend == t.stream.backend and np.array_equal(back.frame_idx, t.frame_idx)
    spans = [(4.0, 4.5), (6.1, 6.1)]
    assert spans_tag(spans) == "4.00-4.50;6.10-6.10" and parse_spans(spans_tag(spans)) == spans
    r = ChunkResult(t.video_id, t.chunk, t.seconds, parts={"shots": FilePart("a.parquet", 10, 1)}, damaged=spans)
    back = pickle.loads(pickle.dumps(r))
    assert back.ok and back.parts["shots"] == FilePart("a.parquet", 10, 1) and back.damaged == spans
    failed = ChunkResult.failed(t, "boom")
    assert not failed.ok and failed.error == "boom" and failed.seconds == t.seconds


def test_a_source_is_parsed_once_into_what_it_names():
    from vidx.workers.sources import Input, Source

    local = Source.parse("/data/a.mp4")
    assert (local.base, local.member, local.remote, local.local_path) == ("/data/a.mp4", None, False, "/data/a.mp4")
    remote = Source.parse("s3://bucket/videos/a.mp4?endpoint_override=http://127.0.0.1:9000")
    assert remote.remote and remote.local_path is None and remote.member is None
    member = Source.parse("s3://bucket/clips.tar::day1/cam2.mp4")
    assert (member.base, member.member, member.remote) == ("s3://bucket/clips.tar", "day1/cam2.mp4", True)
    assert member.local_path is None and str(member) == "s3://bucket/clips.tar::day1/cam2.mp4"
    assert Source.parse(member) is member  # a parsed source is never parsed again
    inp = Input("/x/clips.zip::a::b.mp4")  # the first separator splits; member names may hold it
    assert inp.source.member == "a::b.mp4" and inp.uri == "/x/clips.zip::a::b.mp4"
