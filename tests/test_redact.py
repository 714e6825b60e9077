"""`vidx redact` on real clips: a reference pass (RetinaFace at full resolution on every frame)
marks every visible face; blurring everyone leaves under 0.5% of those face-frames uncovered on a
crowd, keeping Obama blurs under 1% of his; the copy has the source's frames, frame times,
duration and audio; bad input gets one line and writes nothing."""

from __future__ import annotations

import os
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
    """The person's page: export one of their videos with everyone else blurred and with them
    blurred, both at once.  The requests are answered at once with jobs that run one after the
    other; the page shows a progress bar, finds the jobs again after a reload, and links each copy,
    which downloads."""
    from conftest import ROOT, served_page

    shots = Path(os.environ.get("VIDX_SCREENSHOTS", ROOT / "test-artifacts"))
    with served_page(out) as (page, url, errors):
        people = page.request.get(f"{url}/api/people?limit=1000").json()["items"]
        pid = next(x["person_id"] for x in people if x["name"] == "Barack Obama")
        page.goto(f"{url}/#person/{pid}")
        page.wait_for_selector("#export-video option", state="attached")
        page.click("#export-keep")
        page.click("#export-only")
        page.wait_for_selector(".export-job progress", timeout=60_000)
        page.screenshot(path=str(shots / "vidx-serve-redact-job.png"), full_page=True)
        jobs = page.request.get(f"{url}/api/redactions").json()["items"]
        assert len(jobs) == 2 and {j["state"] for j in jobs} <= {"queued", "running", "done"}, jobs
        assert [j["state"] for j in jobs].count("running") <= 1  # never two at once
        page.reload()  # the jobs are the server's: the page finds them again
        page.wait_for_selector("#export-video option", state="attached")
        page.wait_for_function("document.querySelectorAll('.export-job.done .export-link').length === 2",
                               timeout=240_000)
        jobs = sorted(page.request.get(f"{url}/api/redactions").json()["items"], key=lambda j: j["started_at"])
        assert jobs[1]["started_at"] >= jobs[0]["finished_at"] - 1e-3, jobs  # one after the other
        assert all(j["percent"] == 100.0 and j["result"]["frames"] == 153 for j in jobs), jobs
        again = page.request.post(f"{url}/api/videos/{jobs[0]['video_id']}/redact",
                                  data={"keep" if jobs[0]["keep"] else "only": jobs[0]["keep"] or jobs[0]["only"]})
        assert again.json()["id"] == jobs[0]["id"]  # the same request: the same job, not the work again
        link = page.locator(".export-job.done .export-link").first
        got = page.request.get(url + link.get_attribute("href"))
        assert got.status == 200
        (tmp_path / "x.mp4").write_bytes(got.body())
        assert page.request.get(f"{url}/api/exports/..%2Fetc").status == 404
        page.screenshot(path=str(shots / "vidx-serve-redact-done.png"), full_page=True)
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
    # as a job of the server: it fails, and the job says why in one line
    import time

    from fastapi.testclient import TestClient

    from vidx.jobs.serve import create_app

    with TestClient(create_app(str(o))) as c:
        vid = c.get("/api/videos").json()["items"][0]["video_id"]
        r = c.post(f"/api/videos/{vid}/redact", json={"keep": []})
        assert r.status_code == 202 and r.json()["state"] in ("queued", "running", "failed"), r.text
        for _ in range(600):
            job = c.get(f"/api/redactions/{r.json()['id']}").json()
            if job["state"] == "failed":
                break
            time.sleep(0.1)
        assert job["state"] == "failed" and "cannot be read" in job["error"] and "\n" not in job["error"], job
        assert c.post(f"/api/videos/{vid}/redact", json={"keep": ["Nobody"]}).status_code == 404  # refused at once
        assert c.get("/api/redactions/nope").status_code == 404
