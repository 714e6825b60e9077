"""Detecting where faces can be and embedding what identity needs (faces.full_every, faces.embed):
the tracker's claims and wants, a followed face, crops against the full frame, and the lean
pipeline beside the full one on real clips."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from vidx.workers.tracking import Tracker, TrackParams

A = np.zeros(128, np.float32)
A[0] = 1.0
B = np.zeros(128, np.float32)
B[1] = 1.0
FRAME = np.zeros((200, 600, 3), np.uint8)


def _tracker(**kw) -> Tracker:
    return Tracker(TrackParams(metric="cosine", link_distance=0.5, overlap_distance=0.55, **kw))


def test_a_face_one_track_alone_overlaps_is_claimed_and_crowded_faces_are_not():
    tr = _tracker()
    tr.update(0.0, FRAME, np.array([[100.0, 50, 150, 100], [400, 50, 450, 100]]), np.stack([A, B]), np.ones(2))
    # the first face moved a little, the second has a new face beside it
    boxes = np.array([[102.0, 52, 152, 102], [405, 50, 455, 100], [440, 55, 490, 105]])
    assert tr.claims(0.5, boxes).tolist() == [0, -1, -1]
    assert tr.claims(0.5, np.array([[300.0, 50, 350, 100]])).tolist() == [-1]  # nothing there before
    assert tr.claims(2.5, boxes[:1]).tolist() == [-1]  # past the track's gap: closed


def test_a_track_wants_its_first_better_and_periodic_faces_only():
    tr = _tracker(embed_best=1, embed_refresh_s=2.0)
    tr.update(0.0, FRAME, np.array([[100.0, 50, 150, 100]]), A[None], np.array([0.5]))
    ks = np.array([0, 0, 0, -1])
    assert tr.wants(0.5, ks, np.array([0.4, 0.5, 0.6, 0.1])).tolist() == [False, False, True, True]
    assert tr.wants(2.0, ks[:1], np.array([0.1])).tolist() == [True]  # its last embedding is 2 s old
    assert _tracker(embed_best=3).wants(0.5, np.array([-1]), np.array([0.1])).tolist() == [True]


def test_a_followed_face_continues_its_track_without_touching_its_embedding():
    tr = _tracker()
    box = np.array([[100.0, 50, 150, 100]])
    tr.update(0.0, FRAME, box, A[None], np.array([0.8]))
    nan = np.full((1, 128), np.nan, np.float32)
    k = tr.update(0.5, FRAME, box + 4, nan, np.array([0.6]), follow=np.array([0]))
    t = tr.tracks[0]
    assert k.tolist() == [0] and len(tr.tracks) == 1 and t.n == 2 and t.end == 0.5
    assert np.allclose(t.emb_sum / t.weight, A) and np.allclose(t.last_emb, A) and t.emb_qs == [0.8]
    assert np.allclose(t.last_box, box[0] + 4) and t.qs == [0.8, 0.6]
    # an embedded face beside it still links by embedding: a different person starts a track
    k = tr.update(1.0, FRAME, np.array([[104.0, 54, 154, 104], [300, 50, 350, 100]]),
                  np.stack([A, B]), np.ones(2), follow=np.array([-1, -1]))
    assert k.tolist() == [0, 1]


@pytest.fixture(scope="module")
def astronaut_frame():
    from skimage import data

    img = data.astronaut()  # 512x512, public domain; one face near (240, 100)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[100:612, 600:1112] = img
    return frame


@pytest.fixture(scope="module")
def retina():
    from vidx.workers.retinaface import RetinaFace

    return RetinaFace("cpu", score_threshold=0.5)


def test_a_crop_around_a_face_finds_it_where_the_full_frame_does(astronaut_frame, retina):
    from vidx.workers.chunk_worker import _crop_detect
    from vidx.workers.tracking import iou_matrix

    full = retina.detect([torch.from_numpy(astronaut_frame)])[0]
    assert len(full) >= 1
    face = full.boxes[np.argmax(full.scores)]
    crop = _crop_detect(retina, astronaut_frame, (face + np.array([-6, 4, -6, 4]))[None])  # predicted a bit off
    assert len(crop) == 1
    assert iou_matrix(face[None], crop.boxes)[0, 0] > 0.9 and abs(crop.scores[0] - full.scores.max()) < 0.05
    assert np.abs(crop.points[0] - full.points[np.argmax(full.scores)]).max() < 3
    # nothing predicted, nothing searched; a crop far from the face finds nothing
    assert len(_crop_detect(retina, astronaut_frame, np.zeros((0, 4)))) == 0
    assert len(_crop_detect(retina, astronaut_frame, np.array([[100.0, 500, 140, 540]]))) == 0


def test_a_face_the_crop_cuts_is_dropped(astronaut_frame, retina):
    from vidx.workers import chunk_worker as W

    full = retina.detect([torch.from_numpy(astronaut_frame)])[0]
    face = full.boxes[np.argmax(full.scores)]
    side = face[2] - face[0]
    # a small predicted box beside the face: its crop reaches only part of the face
    pred = np.array([[face[2] + 0.2 * side, face[1], face[2] + 0.5 * side, face[1] + 0.3 * side]])
    found = W._crop_detect(retina, astronaut_frame, pred)
    assert all(b[0] > face[0] + 0.3 * side for b in found.boxes)  # no partial copy of the face


@pytest.mark.media
def test_the_lean_pipeline_keeps_the_full_ones_faces_on_real_clips(data_dir, tmp_path):
    """Detection on crops between full frames and embedding only what the tracker needs, beside
    every frame detected and every face embedded, chunk by chunk on three shared clips."""
    from vidx.configs.config import load_config
    from vidx.jobs.index import chunk_tasks, list_inputs, plan_all
    from vidx.workers.chunk_worker import ChunkIndexer

    vids = [data_dir / "videos" / n for n in ("shd_obama.mp4", "hk_biden.mp4", "psd_goldeneye-vfr-drop3.mp4")]
    res = {}
    for name, sets in (("full", ["faces.full_every=1", "faces.embed=all"]), ("lean", [])):
        cfg = load_config(None, ["actions.enabled=false", *sets])
        cfg.resolve()
        assert (cfg.faces.full_every, cfg.faces.embed) == ((1, "all") if name == "full" else (0, "auto"))
        plans = plan_all(list_inputs([str(v) for v in vids]), cfg.chunk_seconds)
        w = ChunkIndexer(str(tmp_path / name), cfg.to_dict()["faces"] | {"device": "cpu"}, cfg.to_dict()["tracking"],
                         num_cpus=1)
        assert (w.full_every, w.embed_needed) == ((1, False) if name == "full" else (2, True))  # auto on a CPU
        rows = [w.index_chunk(r) for p in plans.values() for r in chunk_tasks(p, cfg)]
        assert all(r.ok for r in rows), rows
        res[name] = pa.concat_tables(pq.read_table(tmp_path / name / "face_detections" / r.parts["face_detections"].path)
                                     for r in rows)
    full, lean = res["full"], res["lean"]
    tracked = lambda d: {(v, round(t, 3)) for v, t, s in zip(d["video_id"].to_pylist(), d["t"].to_pylist(),  # noqa: E731
                                                             d["segment_id"].to_pylist()) if s is not None}
    tf, tl = tracked(full), tracked(lean)
    assert len(tf & tl) >= 0.95 * len(tf), (len(tf), len(tl), len(tf & tl))
    kept = lambda d: np.asarray(d["rejected"].is_null())  # noqa: E731
    has_e = lambda d: np.asarray(d["embedding"].is_valid())  # noqa: E731
    assert has_e(full)[kept(full)].all()  # every kept face embedded
    lk, le = kept(lean), has_e(lean)
    assert le.sum() < 0.8 * has_e(full).sum()  # far fewer embeddings...
    seg = np.asarray(lean["segment_id"].is_valid())
    assert seg[lk & ~le].all()  # ...and every kept face without one continued a track
