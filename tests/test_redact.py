"""`vidx redact` on real clips: a reference pass (RetinaFace at full resolution on every frame)
marks every visible face; blurring everyone leaves under 0.5% of those face-frames uncovered on a
crowd, keeping Obama blurs under 1% of his; the copy has the source's frames, frame times,
duration and audio; bad input gets one line and writes nothing."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from test_index_media import index
from test_query_media import vidx

pytestmark = pytest.mark.media


@pytest.fixture(scope="module")
def out(tmp_path_factory, data_dir):
    o = tmp_path_factory.mktemp("redact") / "index"
    v, f = data_dir / "videos", data_dir / "faces"
    p = index(v / "hk_obama.mp4", v / "fnp_video.mp4", "--out", o)
    assert p.returncode == 0, p.stderr[-3000:]
    assert vidx("enroll", o, "--name", "Barack Obama", f / "fr_obama.jpg", f / "fr_obama2.jpg").returncode == 0
    return o


def _streams(path: Path) -> dict:
    """Frame times (stream clock), audio packets (time, size) and stream durations."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb = float(s.time_base)
        times = sorted(round(f.pts * tb, 6) for f in c.decode(s))
    audio = []
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            audio = [(p.pts, p.size, bytes(p)) for p in c.demux(a) if p.size]
    return {"times": times, "audio": audio}


def test_blur_everyone_leaves_no_face_of_the_crowd(out, data_dir, tmp_path):
    from vidx.jobs.redact import covered, redact, reference_faces

    src = data_dir / "videos" / "fnp_video.mp4"
    ref = reference_faces(str(src))
    r = redact(str(out), "fnp_video.mp4", str(tmp_path / "crowd.mp4"), keep=[], keep_boxes=True, progress=False)
    cov = np.concatenate([covered(f, r.boxes[p]) for p, f in ref.items() if len(f)])
    assert len(cov) > 300  # a crowd: 5-10 faces a frame
    assert (cov < 0.9).mean() < 0.005, f"{(cov < 0.9).sum()} of {len(cov)} face-frames not covered"
    a, b = _streams(src), _streams(tmp_path / "crowd.mp4")
    assert a["times"] == b["times"] and len(a["times"]) == r.frames == 105  # every frame, at its own time
    assert a["audio"] and [x[1:] for x in a["audio"]] == [x[1:] for x in b["audio"]]  # audio copied untouched
    with av.open(str(tmp_path / "crowd.mp4")) as c, av.open(str(src)) as s:
        assert abs(float(c.streams.video[0].duration * c.streams.video[0].time_base)
                   - float(s.streams.video[0].duration * s.streams.video[0].time_base)) < 0.05


def test_keep_obama_leaves_him_visible(out, data_dir, tmp_path):
    from vidx.jobs.redact import covered, redact, reference_faces

    src = data_dir / "videos" / "hk_obama.mp4"
    ref = reference_faces(str(src))
    r = redact(str(out), "hk_obama.mp4", str(tmp_path / "kept.mp4"), keep=["barack obama"], keep_boxes=True,
               progress=False)
    # his face: the largest on each frame (the reference may also find a small false face)
    big = {p: f[[int(((f[:, 2] - f[:, 0]) * (f[:, 3] - f[:, 1])).argmax())]] for p, f in ref.items() if len(f)}
    cov = np.concatenate([covered(f, r.boxes[p]) for p, f in big.items()])
    assert len(cov) >= 140 and (cov > 0.1).mean() < 0.01, f"{(cov > 0.1).sum()} of {len(cov)} face-frames blurred"
    r = redact(str(out), "hk_obama.mp4", str(tmp_path / "only.mp4"), only=["Barack Obama"], keep_boxes=True,
               progress=False)  # only him: every face-frame of his covered
    cov = np.concatenate([covered(f, r.boxes[p]) for p, f in ref.items() if len(f)])
    assert (cov < 0.9).mean() < 0.005


def test_bad_input_is_one_line_and_writes_nothing(out, data_dir, tmp_path):
    src = data_dir / "videos" / "hk_obama.mp4"
    cases = [(["hk_obama.mp4", "--to", tmp_path / "a.mp4", "--keep", "Nobody"], "no person with id or name 'Nobody'"),
             (["nothere.mp4", "--to", tmp_path / "a.mp4", "--all"], "no indexed video"),
             (["hk_obama.mp4", "--to", tmp_path / "no" / "a.mp4", "--all"], "does not exist"),
             (["hk_obama.mp4", "--to", src, "--all"], "is the source video itself"),
             (["hk_obama.mp4", "--to", tmp_path / "a.mp4"], "say whose faces stay"),
             (["hk_obama.mp4", "--to", tmp_path / "a.avi", "--all"], "write to a .mp4")]
    before = src.stat().st_mtime_ns
    for args, msg in cases:
        p = vidx("redact", out, *args)
        assert p.returncode == 2 and msg in p.stderr and len(p.stderr.strip().splitlines()) == 1, (args, p.stderr)
    assert not list(tmp_path.iterdir()) and src.stat().st_mtime_ns == before
    p = vidx("redact", out, "hk_obama.mp4", "--to", tmp_path / "all.mkv", "--all", "--style", "pixelate")
    assert p.returncode == 0 and "wrote" in p.stdout, p.stderr
    assert [x.name for x in tmp_path.iterdir()] == ["all.mkv"]  # no temporary file left beside it


def test_page_exports_a_redacted_copy(out, tmp_path):
    """The person's page: export one of their videos with everyone else blurred, then download it."""
    from conftest import served_page

    with served_page(out) as (page, url, errors):
        people = page.request.get(f"{url}/api/people?limit=1000").json()["items"]
        pid = next(x["person_id"] for x in people if x["name"] == "Barack Obama")
        page.goto(f"{url}/#person/{pid}")
        page.wait_for_selector("#export-video option", state="attached")
        page.click("#export-keep")
        link = page.wait_for_selector("#export-link", timeout=120_000)
        assert "faces blurred on" in page.inner_text("#export-result")
        got = page.request.get(url + link.get_attribute("href"))
        assert got.status == 200
        (tmp_path / "x.mp4").write_bytes(got.body())
        assert page.request.get(f"{url}/api/exports/..%2Fetc").status == 404
    assert not errors, errors
    with av.open(str(tmp_path / "x.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 153  # hk_obama's frames


def test_a_video_gone_since_indexing_is_one_line(data_dir, tmp_path):
    """The clip indexed from a copy that is then deleted: redacting it and its review frame say so."""
    import shutil

    from vidx.indexing import people
    from vidx.jobs.redact import RedactError, face_frame, redact

    clip = tmp_path / "obama.mp4"
    shutil.copy(data_dir / "videos" / "shd_obama.mp4", clip)
    o = tmp_path / "index"
    p = index(clip, "--out", o)
    assert p.returncode == 0, p.stderr[-3000:]
    track = people.load(str(o))[0]["track_id"][0].as_py()
    assert face_frame(str(o), track)[:2] == b"\xff\xd8"  # a JPEG while the file is there
    clip.unlink()
    with pytest.raises(RedactError, match="cannot be read"):
        face_frame(str(o), track)
    with pytest.raises(RedactError, match="cannot be read"):
        redact(str(o), "obama.mp4", str(tmp_path / "x.mp4"), keep=[], progress=False)
    assert not (tmp_path / "x.mp4").exists()
