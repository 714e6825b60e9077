"""Who did what: actions attributed to the person doing them.

No Kinetics weights are needed to prove attribution: synthetic people (faces from
../shared/data/faces on coloured bodies), one bouncing and one still, side by side; a head trained
with vidx's own trainer on single-person clips of those motions (drawn as vidx's person tube sees
a person) on a randomly initialised r3d_18; the two-person clip indexed.  Each person gets their
own action for >= 90% of their seconds, where the frame-level join gives both the same label.
(The randomly initialised network's features are dominated by appearance, so everyone in this
test has the same face and body: a head trained on them can only learn the motion.)
Then the shared two-person clip end to end with a randomly initialised r3d_18 staged as the
weights (plumbing only: its labels mean nothing): the table, the query rows' scope, the page's
lane."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from conftest import served_page
from test_index_media import ENV, VIDX, table

pytestmark = pytest.mark.media
FACES = {"fr_obama.jpg": (351, 129, 601, 379), "fr_biden2.jpg": (383, 213, 866, 696)}  # RetinaFace's boxes
BODY = (200, 60, 60)


@pytest.fixture(scope="module")
def faces(data_dir):
    return {k: np.asarray(Image.open(data_dir / "faces" / k).convert("RGB").crop(b)) for k, b in FACES.items()}


def _tube_clip(path: Path, tmp: Path, face: np.ndarray, motion: str, seed: int, detector) -> Path:
    """A single-person clip cut as the index job cuts a person tube: RetinaFace's box at the
    2 fps face samples, interpolated between them, the body region around it, letterboxed."""
    from vidx.jobs.demo import make_people_clip, write_clip
    from vidx.workers import decode, tubes

    x = 0.3 + 0.4 * np.random.default_rng(seed).random()
    full = make_people_clip(tmp / f"full-{seed}-{motion}.mp4", [face], [motion], xs=[x], seconds=2.2, seed=seed,
                            colour=BODY)
    info = decode.probe(str(full))
    idx = decode.sample_indices(info.timestamps, 0, info.duration, 15.0)
    frames = np.concatenate([f for _, f in decode.read_frames(str(full), info, idx, 0, 64)])
    t = info.timestamps[idx]
    sampled = np.arange(0, len(t), 7)  # the face samples: 2 fps of 15
    found = detector.detect([frames[i] for i in sampled])
    b = np.stack([d.boxes[np.argmax(d.scores)] for d in found])
    face_at = tubes.boxes_at(t, t[sampled], b)
    regions = tubes.body_regions(face_at, frames.shape[2], frames.shape[1])
    return write_clip(path, tubes.crops(frames, np.arange(len(frames)), regions, 128).numpy())


def test_each_person_gets_their_own_action(tmp_path, faces, random_r3d):
    from vidx.jobs.demo import make_people_clip
    from vidx.workers import action_training as at
    from vidx.workers import actions
    from vidx.workers.faces import make_detector

    detector = make_detector("retinaface", score_threshold=0.5)
    face = faces["fr_obama.jpg"]  # one look for everyone: with random features, only the motion may differ
    for motion in ("bounce", "still"):  # single-person clips, as the tube sees a person
        (tmp_path / "train" / motion).mkdir(parents=True)
        for i in range(10):
            _tube_clip(tmp_path / "train" / motion / f"{i}.mp4", tmp_path, face, motion, seed=i, detector=detector)
    head = tmp_path / "head.pt"
    rep = at.train(tmp_path / "train", "r3d_18", head, base_weights=str(random_r3d / actions.expected_file("r3d_18")),
                   epochs=60, val_split=0.25)
    assert rep["loss_last"] < 0.5 * rep["loss_first"]
    clip = make_people_clip(tmp_path / "two.mp4", [face, face], ["bounce", "still"], xs=[0.25, 0.75], seed=3,
                            colour=BODY)  # two people who look alike: only what each does tells them apart
    out = tmp_path / "index"
    p = subprocess.run([VIDX, "index", str(clip), "--out", str(out), "--set", "actions.model=r3d_18",
                        "--set", f"actions.weights={head}", "--set", "actions.min_duration=0"],  # per_person: auto
                       capture_output=True, text=True, env=ENV, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    tracks = table(out, "face_tracks").to_pylist()
    dets = table(out, "face_detections").to_pylist()
    assert len(tracks) == 2
    x = {t["track_id"]: np.mean([(d["x1"] + d["x2"]) / 2 for d in dets if d["segment_id"] in t["segments"]])
         for t in tracks}
    truth = {t["track_id"]: "bounce" if x[t["track_id"]] < 320 else "still" for t in tracks}
    own = table(out, "person_actions").to_pylist()
    assert {r["source"] for r in own} == {"crop"}  # two faces on screen: each person's own part classified
    for t in tracks:
        span = t["end_s"] - t["start_s"]
        right = sum(min(r["end_s"], t["end_s"]) - max(r["start_s"], t["start_s"]) for r in own
                    if r["track_id"] == t["track_id"] and r["label"] == truth[t["track_id"]])
        assert right >= 0.9 * span, (t["track_id"], truth[t["track_id"]], own)
    scene = table(out, "action_segments").to_pylist()
    assert len({r["label"] for r in scene}) == 1  # the frame has one label: the scene-level join gives both the same
    # the question: the still person is found still only through their own actions
    p = subprocess.run([VIDX, "query", str(out), "--action", "still", "--json"], capture_output=True, text=True,
                       env=ENV)
    rows = [json.loads(r) for r in p.stdout.splitlines()]
    assert [truth[r["track_id"]] for r in rows] == ["still"] and rows[0]["scope"] == "person"
    assert rows[0]["actions"][0]["source"] == "crop"
    # vidx eval scores what each person does from truth rows with a person and an action
    from vidx.indexing.evaluate import evaluate

    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("video,person,action,start_s,end_s,x_min,x_max\n"
                         "two.mp4,left,,0,6,0,0.5\ntwo.mp4,right,,0,6,0.5,1\n"
                         "two.mp4,left,bounce,0,6,0,0.5\ntwo.mp4,right,still,0,6,0.5,1\n")
    rep = evaluate(str(out), str(truth_csv))
    assert [(a.label, a.matched, a.truth) for a in rep.person_actions] == [("left: bounce", 1, 1), ("right: still", 1, 1)]


def test_shared_two_person_clip_end_to_end(tmp_path, data_dir, random_r3d):
    """Plumbing with staged weights (a randomly initialised r3d_18: no Kinetics weights exist here)."""
    from fastapi.testclient import TestClient

    from vidx.jobs.serve import create_app

    out = tmp_path / "index"
    env = dict(ENV, VIDX_WEIGHTS_DIR=str(random_r3d))
    p = subprocess.run([VIDX, "index", str(data_dir / "videos" / "mma_demo_skeleton.mp4"), "--out", str(out),
                        "--set", "actions.model=r3d_18", "--set", "actions.per_person=on",
                        "--set", "actions.min_score=0", "--set", "actions.keep_score=0", "--set", "actions.min_duration=0"],
                       capture_output=True, text=True, env=env, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    tracks = {t["track_id"] for t in table(out, "face_tracks").to_pylist()}
    own = table(out, "person_actions").to_pylist()
    assert len(tracks) >= 2 and {r["track_id"] for r in own} == tracks
    assert all(r["source"] == "crop" and 0 <= r["start_s"] < r["end_s"] for r in own)
    p = subprocess.run([VIDX, "query", str(out), "--video", "mma_demo_skeleton.mp4", "--json"], capture_output=True,
                       text=True, env=ENV)
    rows = [json.loads(r) for r in p.stdout.splitlines()]
    assert rows and all(r["scope"] == "person" and r["actions"] for r in rows)
    c = TestClient(create_app(str(out)))
    vid = table(out, "videos")["video_id"][0].as_py()
    lanes = c.get(f"/api/videos/{vid}/timeline").json()["people"]
    assert lanes and all(lane["actions"] and lane["actions"][0]["source"] == "crop" for lane in lanes)
    _page_shows_person_lanes(out, len(lanes))
    # forget one man: what he was seen doing goes with him
    from vidx.indexing.forget import forget

    gone = lanes[0]["person_id"]
    his = {t["track_id"] for t in lanes[0]["tracks"]}
    forget(str(out), gone)
    assert not his & {r["track_id"] for r in table(out, "person_actions").to_pylist()}
    left = {r["segment_id"] for r in table(out, "person_windows").to_pylist()}
    assert left and not his & left  # the tracks here are single segments: their ids are the segments'


def _page_shows_person_lanes(out: Path, n_people: int) -> None:
    """The page's timeline draws each person's own actions in a lane under their faces (headless
    Chromium, as tests/test_serve.py drives it)."""
    with served_page(out, env=ENV) as (page, url, errors):
        page.goto(f"{url}/#search")
        page.wait_for_selector("#video option:nth-child(2)", state="attached")
        # the action box completes the labels this index holds (the trained head's)
        held = page.eval_on_selector_all("#action-labels option", "os => os.map(o => o.value)")
        assert held and set(held) <= set(table(out, "action_segments")["label"].to_pylist()
                                         + table(out, "person_actions")["label"].to_pylist())
        assert not page.is_disabled("#actions")
        page.select_option("#video", index=1)
        page.click("#search-btn")
        page.wait_for_selector("#results .card", timeout=60_000).click()
        page.wait_for_selector("#timeline .lane.person-actions .bar.action", timeout=60_000)
        assert page.locator("#timeline .lane.person-actions").count() == n_people
    assert not errors, errors
