"""One track, one person: cuts on every decoded frame end tracks, a track whose face becomes someone
else's inside a shot is split, weak faces continue only their own person's track, and `vidx eval`
measures identity the way multi-object tracking does (IDF1, switches, transfers, purity)."""

from __future__ import annotations

import importlib.util
import os
from fractions import Fraction

import numpy as np
import pytest
from synthetic_index import person_vectors

from vidx.indexing import evaluate
from vidx.indexing.evaluate import TruthRow
from vidx.workers import decode, shots
from vidx.workers.tracking import Tracker, TrackParams

A, B = person_vectors(2, seed=11)
FRAME = np.zeros((64, 64, 3), np.uint8)
BOX = np.array([[10.0, 10.0, 40.0, 40.0]])


def _unit(v):
    return (v / np.linalg.norm(v)).astype(np.float32)


def _params():
    return TrackParams(link_distance=0.5, overlap_distance=0.55, verify_distance=0.55, metric="cosine")


# ------------------------------------------------------------------ tracker


def test_a_face_that_becomes_someone_else_in_place_starts_a_new_track_even_under_the_overlap_rule():
    a, b = _unit(A), _unit(B)
    tr = Tracker(_params())
    tr.update(0.0, FRAME, BOX, a[None], np.ones(1))
    tr.update(0.5, FRAME, BOX, a[None], np.ones(1))
    # a face at the same place whose embedding sits between the two: close enough to the last face
    # for the overlap rule alone, but far from the track's own faces
    mid = _unit(0.6 * a + 0.4 * b)
    far_from_mean = float(1 - _unit(tr.tracks[0].mean()) @ mid)
    k = tr.update(1.0, FRAME, BOX, mid[None], np.ones(1))
    if far_from_mean > 0.55:
        assert k[0] != 0
    k = tr.update(1.5, FRAME, BOX, b[None], np.ones(1))
    assert k[0] != 0 and len(tr.tracks) >= 2


def test_a_split_moves_the_unembedded_faces_of_the_new_person_to_a_new_track():
    a, b = _unit(A), _unit(B)
    tr = Tracker(_params())
    nan = np.full((1, len(a)), np.nan, np.float32)
    chip = np.zeros((1, 8, 8, 3), np.uint8)
    tr.update(0.0, FRAME, BOX, a[None], np.ones(1), rows=np.array([0]))
    # three faces continued on overlap alone (unembedded): rows 1 (still A), 2 and 3 (already B)
    for row, t in ((1, 0.5), (2, 1.0), (3, 1.5)):
        tr.update(t, FRAME, BOX, nan, np.ones(1), follow=np.array([0]), chips=chip, rows=np.array([row]))
    assert [p[0] for p in tr.tracks[0].pending] == [1, 2, 3]
    # the check at 2.0 s finds B: the pending faces, now embedded, split where they become B
    new = tr.split(0, 1, np.stack([a, b, b]))
    assert new is not None and tr.moved == {2: new, 3: new}
    old, moved = tr.track(0), tr.track(new)
    assert (old.start, old.end, old.n) == (0.0, 0.5, 2)
    assert (moved.start, moved.end, moved.n) == (1.0, 1.5, 2)
    assert float(1 - _unit(moved.mean()) @ b) < 1e-5 and float(1 - _unit(old.mean()) @ a) < 1e-5
    assert moved.thumb  # made from the moved face's chip
    assert [t.k for t in tr.open] == [new]  # the old track ended; the new one goes on
    k = tr.update(2.0, FRAME, BOX, b[None], np.ones(1), follow=np.array([new]))
    assert k[0] == new


def test_a_weak_face_does_not_continue_another_persons_track():
    a, b = _unit(A), _unit(B)
    for emb, joins in ((a, True), (b, False), (np.full(len(a), np.nan, np.float32), True)):
        tr = Tracker(_params())
        tr.update(0.0, FRAME, BOX, a[None], np.ones(1))
        _, kw = tr.update(0.5, FRAME, np.zeros((0, 4)), np.zeros((0, len(a)), np.float32), np.zeros(0), weak=BOX,
                          weak_embs=emb[None])
        assert (kw[0] == 0) == joins


# ------------------------------------------------------------------ cuts on every frame


def _scene(seed: int, shift: int = 0) -> np.ndarray:
    """A 96 x 160 picture of coloured blocks; the same blocks shuffled give the same colours elsewhere."""
    rng = np.random.default_rng(seed)
    colours = np.random.default_rng(0).integers(0, 255, (40, 3))
    order = rng.permutation(40)
    img = np.repeat(np.repeat(colours[order].reshape(5, 8, 3), 20, 0), 20, 1)[:96, :160].astype(np.uint8)
    return np.roll(img, shift, axis=1)


def test_a_cut_between_pictures_of_the_same_colours_is_found_and_motion_is_not():
    det = shots.ShotDetector()
    frames = [_scene(1, s) for s in range(0, 10, 2)] + [_scene(2, s) for s in range(0, 10, 2)]
    for i, f in enumerate(frames):
        det.push(i / 25, f)
    assert [round(t, 2) for t, _ in det.cuts] == [0.2]  # the 6th frame (index 5) at 25 fps
    # the sampled-frame colour histogram (what found cuts before) cannot see it: same colours
    h = shots.colour_histograms(np.stack([frames[4], frames[5]]))
    assert shots.histogram_distance(h[0], h[1]) < 0.05
    assert det.between(0.0, 0.2) and not det.between(0.2, 0.4)


def _video(path, frames, fps=25):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=Fraction(fps))
        s.width, s.height, s.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def test_the_decoder_shows_every_frame_between_the_sampled_ones_before_their_piece(tmp_path):
    frames = [_scene(1, s) for s in range(0, 40, 2)] + [_scene(2, s) for s in range(0, 40, 2)]
    path = tmp_path / "cut.mp4"
    _video(path, frames)
    info = decode.probe(str(path))
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration + 1, 2.0)
    seen = []
    det = shots.ShotDetector()

    def every(t, f):
        seen.append(t)
        det.push(t, f)

    got = []
    for part, fr in decode.read_frames(str(path), info, idx, 0, 2, every=every):
        got.extend(part.tolist())
        assert seen[-1] >= info.timestamps[part[-1]] - 1e-6  # the piece's frames were all shown first
    assert got == idx.tolist()
    span = info.timestamps[idx[0] : idx[-1] + 1]
    # every frame the reader decodes between the first sampled frame and the last, once, in order:
    # the sampled ones and every frame they are predicted from (non-reference frames are skipped)
    assert np.all(np.diff(seen) > 0) and np.isin(np.round(seen, 6), np.round(span, 6)).all()
    assert np.isin(np.round(info.timestamps[idx], 6), np.round(seen, 6)).all()
    assert len(seen) >= len(span) // 2
    assert [round(t, 2) for t, _ in det.cuts] == [0.8]
    # the same pixels as without ``every`` (sampled frames decoded the usual way)
    plain = np.concatenate([f for _, f in decode.read_frames(str(path), info, idx, 0, 2)])
    with_every = np.concatenate([f for _, f in decode.read_frames(str(path), info, idx, 0, 2, every=lambda t, f: None)])
    assert np.array_equal(plain, with_every)


# ------------------------------------------------------------------ eval's identity measures


def _rows(spec):
    return [TruthRow(i, "v", p, None, s, e, False, x0, x1) for i, (p, s, e, x0, x1) in enumerate(spec)]


def test_identity_measures_on_a_hand_counted_case():
    """Person A for 5 samples then B for 5, at one place.  One track over all 10: the best one-to-one
    mapping gives it to one person (IDTP 5, IDFP 5, IDFN 5): IDF1 = 2*5 / (2*5 + 5 + 5) = 0.5, one
    transfer, purity 0.5.  Two tracks split at the change: IDF1 1, no switch, no transfer."""
    rows = _rows([("A", 0.0, 5.0, 0.0, 1.0), ("B", 5.0, 10.0, 0.0, 1.0)])
    t = np.arange(10.0)
    one = {"v": (t, np.full(10, 0.5), ["T1"] * 10)}
    r = evaluate.identity_measures("", rows, 1.0, faces=one)
    assert (r["idf1"], r["idp"], r["idr"], r["transfers"]) == (0.5, 0.5, 0.5, 1)
    assert (r["pure_tracks"], r["tracks"], r["purity_min"]) == (0, 1, 0.5)
    two = {"v": (t, np.full(10, 0.5), ["T1"] * 5 + ["T2"] * 5)}
    r = evaluate.identity_measures("", rows, 1.0, faces=two)
    assert (r["idf1"], r["switches"], r["transfers"], r["pure_tracks"]) == (1.0, 0, 0, 2)
    # a person's track that restarts is a switch (CLEAR-MOT), not a transfer; a missed sample is a miss
    # A: T1 at 0-1 s, missed at 3 s, T3 at 2 and 4 s; B: T2 at 5-9 s
    frag = {"v": (np.r_[t[:3], t[4:]], np.full(9, 0.5), ["T1"] * 2 + ["T3"] * 2 + ["T2"] * 5)}
    r = evaluate.identity_measures("", rows, 1.0, faces=frag)
    assert (r["switches"], r["transfers"], r["misses"]) == (1, 0, 1)
    # labelled by person (eval's identity["people"]): T1 and T3 are one person P1, so no switch there;
    # a person P1 holding both A's and B's tracks is a transfer and half pure
    by_person = {"v": (frag["v"][0], frag["v"][1], ["P1"] * 4 + ["P2"] * 5)}
    r = evaluate.identity_measures("", rows, 1.0, faces=by_person)
    assert (r["switches"], r["transfers"], r["pure_tracks"]) == (0, 0, 2)
    mixed = {"v": (frag["v"][0], frag["v"][1], ["P1"] * 9)}
    r = evaluate.identity_measures("", rows, 1.0, faces=mixed)
    assert (r["transfers"], r["pure_tracks"], r["purity_min"]) == (1, 0, 0.5556)


def test_identity_measures_tell_two_people_on_screen_together_apart_by_position():
    rows = _rows([("A", 0.0, 4.0, 0.0, 0.5), ("B", 0.0, 4.0, 0.5, 1.0)])
    t = np.repeat(np.arange(4.0), 2)
    x = np.tile([0.25, 0.75], 4)
    swapped = ["T1", "T2", "T1", "T2", "T2", "T1", "T2", "T1"]  # the two tracks swap people at 2 s
    r = evaluate.identity_measures("", rows, 1.0, faces={"v": (t, x, swapped)})
    assert r["transfers"] == 2 and r["switches"] == 2 and r["purity_min"] == 0.5
    kept = ["T1", "T2"] * 4
    r = evaluate.identity_measures("", rows, 1.0, faces={"v": (t, x, kept)})
    assert (r["idf1"], r["switches"], r["transfers"]) == (1.0, 0, 0)


# ------------------------------------------------------------------ real clips


def _make_cuts():
    path = os.path.join(os.path.dirname(__file__), "..", "bench", "make_cuts.py")
    spec = importlib.util.spec_from_file_location("make_cuts", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.media
def test_two_people_joined_at_a_hard_cut_and_swapped_inside_a_shot_are_never_one_track(data_dir, tmp_path,
                                                                                         sface_engine):
    """The real index job on two clips built from the shared media: Biden then Obama at a cut made
    hard (Obama colour-matched to Biden's last frame, his face where Biden's was: main before this
    change gave one track over both), and Obama whose face becomes Biden's inside one shot.  Every
    track holds one person; the cut is in the shots table, which delta-rs reads."""
    from deltalake import DeltaTable

    from vidx.jobs.cli import main as vidx

    mc = _make_cuts()
    vids = data_dir / "videos"
    w, h, fps = 640, 360, 25
    a = mc._read(vids / "hk_biden.mp4", w, h, fps, mc.SEG)
    b = mc._read(vids / "hk_obama.mp4", w, h, fps, mc.SEG)
    box_a, box_b = mc._face(sface_engine, a[-1]), mc._face(sface_engine, b[0])
    cut = np.concatenate([a, mc._apply(mc._match_lut(b[0], a[-1]), mc._align(b, box_b, box_a))])
    src = tmp_path / "videos"
    mc._write(src / "cut.mp4", cut, fps)
    o = mc._read(vids / "hk_obama.mp4", w, h, fps, 2 * mc.SEG)
    box_o = mc._face(sface_engine, o[len(a)])
    bi = mc._read(vids / "hk_biden.mp4", w, h, fps, mc.SEG)
    b_in = mc._apply(mc._match_lut(bi[0], o[len(a)]), mc._align(bi, mc._face(sface_engine, bi[0]), box_o))
    mask, _ = mc._feather(h, w, box_o)
    rest = o[len(a):]
    swap = np.concatenate([o[: len(a)], (rest * (1 - mask) + b_in[: len(rest)] * mask).round().clip(0, 255).astype(np.uint8)])
    mc._write(src / "swap.mp4", swap, fps)
    cut_s = len(a) / fps
    truth = tmp_path / "truth.csv"
    truth.write_text("video,person,start_s,end_s\n"
                     f"cut.mp4,Joe Biden,0,{cut_s}\ncut.mp4,Barack Obama,{cut_s},{2 * cut_s}\n"
                     f"swap.mp4,Barack Obama,0,{cut_s}\nswap.mp4,Joe Biden,{cut_s},{len(swap) / fps}\n")
    out = tmp_path / "index"
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    assert vidx(["index", str(src), "--out", str(out), "--no-actions"]) == 0
    from vidx.indexing.tables import read_index_table

    videos = read_index_table(str(out), "videos").to_pylist()
    rows = evaluate.read_truth(str(truth), read_index_table(str(out), "videos"))
    r = evaluate.identity_measures(str(out), [x for x in rows if x.person], 2.0)
    assert r["tracks"] >= 4 and r["pure_tracks"] == r["tracks"], r  # every track one person, both clips
    assert r["transfers"] == 0, r
    tracks = read_index_table(str(out), "face_tracks").to_pylist()
    cut_id = next(v["video_id"] for v in videos if v["path"].endswith("cut.mp4"))
    assert not [t for t in tracks if t["video_id"] == cut_id and t["start_s"] < cut_s - 0.1 and t["end_s"] > cut_s]
    shots_tbl = DeltaTable(str(out / "shots")).to_pyarrow_table().to_pylist()
    cuts = [s for s in shots_tbl if s["video_id"] == cut_id and s["score"] is not None]
    assert len(cuts) == 1 and abs(cuts[0]["start_s"] - cut_s) < 1.5 / fps and cuts[0]["score"] >= shots.THRESHOLD
    swap_id = next(v["video_id"] for v in videos if v["path"].endswith("swap.mp4"))
    assert not [s for s in shots_tbl if s["video_id"] == swap_id and s["score"] is not None]  # no cut: in-shot


def test_redaction_holds_a_tracks_box_past_its_ends_but_never_across_a_cut():
    from vidx.jobs.redact import _at, _Tracks

    box = np.array([[10.0, 10.0, 50.0, 50.0], [12.0, 10.0, 52.0, 50.0]])
    tr = _Tracks(["t"], np.array([True]), [np.array([1.0, 2.0])], [box], np.array([1.0]), np.array([2.0]),
                 cuts=np.array([2.2]))
    times = np.array([0.6, 0.9, 1.5, 2.1, 2.19, 2.2, 2.4])
    held = ~np.isnan(_at(tr, times, 0.5)[:, 0, 0])
    assert held.tolist() == [True, True, True, True, True, False, False]  # 0.5 s before; after, up to the cut
    tr.cuts = np.zeros(0)
    assert (~np.isnan(_at(tr, times, 0.5)[:, 0, 0])).tolist() == [True] * 7
    # inside one shot, another face takes the place at 2.2 s (its own track): the hold gives way there
    two = _Tracks(["t", "u"], np.array([True, False]), [np.array([1.0, 2.0]), np.array([2.2, 3.0])], [box, box + 1],
                  np.array([1.0, 2.2]), np.array([2.0, 3.0]))
    held = ~np.isnan(_at(two, times, 0.5)[:, 0, 0])
    assert held.tolist() == [True, True, True, True, True, False, False]


def test_a_face_before_a_kept_tracks_first_sample_is_blurred():
    """Under --keep, a found face that only the kept track's box held backwards explains (before its
    first sample) may be whoever had the place before: blurred. Inside the track and after its last
    sample (the same face going on) it stays visible."""
    from vidx.jobs.redact import Redaction, _regions, _Tracks

    box = np.array([[10.0, 10.0, 50.0, 50.0], [10.0, 10.0, 50.0, 50.0]])
    kept = _Tracks(["k"], np.array([False]), [np.array([1.0, 2.0])], [box], np.array([1.0]), np.array([2.0]))
    times = np.array([1.5, 0.7, 2.3])
    found = {0: box[:1], 1: box[:1], 2: box[:1]}  # the same place: inside the track, 0.3 s before it, 0.3 s after
    res = Redaction(output="x")
    regions = _regions(found, times, kept, 0, 0.5, 0.0, 100, 100, res)
    assert len(regions[0]) == 0 and len(regions[2]) == 0  # inside the kept track and after it: visible
    assert len(regions[1]) >= 1 and (regions[1] == box[0].astype(np.int64)).all()  # before it: blurred


def test_a_face_the_boxes_cannot_attribute_follows_its_embedding_verdict():
    """Between a kept track's last sample (1.0 s) and a redacted track's first (1.5 s) at one place
    (an in-shot swap), the boxes cannot tell whose face a found face is: both tracks' held boxes
    cover it and it is blurred.  The verifier's verdict decides: a face found to be the kept
    person's stays visible and the redacted track's held box gives way on that frame; a face
    found not to be stays blurred; an unchecked face stays blurred."""
    from vidx.jobs.redact import Redaction, _regions, _Tracks

    box = np.array([[10.0, 10.0, 50.0, 50.0], [10.0, 10.0, 50.0, 50.0]])
    tr = _Tracks(["k", "r"], np.array([False, True]), [np.array([0.5, 1.0]), np.array([1.5, 2.0])], [box, box],
                 np.array([0.5, 1.5]), np.array([1.0, 2.0]))
    times = np.array([1.05, 1.1, 1.2, 1.3, 1.4])
    found = {i: box[:1] for i in range(5)}
    blurred = lambda regions: [len(r) > 0 for r in regions]  # noqa: E731
    assert blurred(_regions(found, times, tr, 1, 0.5, 0.0, 100, 100, Redaction(output="x"))) == [True] * 5
    verdict = {i: np.array([v], np.int8) for i, v in enumerate([1, 1, 1, 0, -1])}
    res = Redaction(output="x")
    # each frame also takes its neighbours' blurred faces: frame 2 is blurred for frame 3's face
    assert blurred(_regions(found, times, tr, 1, 0.5, 0.0, 100, 100, res, verdict)) == [False, False, True, True, True]
