"""`vidx serve`: every API route on a small index of real clips (FastAPI's test client),
pagination, the token off loopback, range requests, refusing paths, and the page itself in
headless Chromium (Debian's chromium, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import served_page
from test_index_media import index
from test_query_media import vidx

pytestmark = pytest.mark.media
ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("VIDX_SCREENSHOTS", ROOT / "test-artifacts"))


@pytest.fixture(scope="module")
def out(tmp_path_factory, data_dir):
    o = tmp_path_factory.mktemp("serve") / "index"
    v = data_dir / "videos"
    p = index(v / "hk_obama.mp4", v / "shd_obama.mp4", v / "hk_biden.mp4", "--out", o)
    assert p.returncode == 0, p.stderr[-3000:]
    f = data_dir / "faces"
    assert vidx("enroll", o, "--name", "Barack Obama", f / "fr_obama.jpg", f / "fr_obama2.jpg").returncode == 0
    assert vidx("enroll", o, "--name", "Joe Biden", f / "fr_biden.jpg").returncode == 0
    return o


@pytest.fixture()
def client(out, tmp_path):
    from fastapi.testclient import TestClient

    from vidx.jobs.serve import create_app

    copy = tmp_path / "index"  # routes that change the index work on a copy
    shutil.copytree(out, copy)
    return TestClient(create_app(str(copy))), copy


def test_people_search_videos_timeline_thumbnails(client, faces_dir):
    c, _ = client
    h = c.get("/api/health").json()
    assert (h["videos"], h["people"]) == (3, 2)
    people = c.get("/api/people").json()
    assert people["total"] == 2 and {p["name"] for p in people["items"]} == {"Barack Obama", "Joe Biden"}
    page = c.get("/api/people", params={"limit": 1, "offset": 1}).json()
    assert len(page["items"]) == 1 and page["items"][0] == people["items"][1]
    obama = next(p for p in people["items"] if p["name"] == "Barack Obama")
    d = c.get(f"/api/people/{obama['person_id']}").json()
    assert {a["path"].rsplit("/", 1)[-1] for a in d["appearances"]} == {"hk_obama.mp4", "shd_obama.mp4"}
    r = c.get("/api/search", params={"person": "joe biden"}).json()
    assert [x["person"] for x in r["items"]] == ["Joe Biden"] and r["more"] is False
    r1 = c.get("/api/search", params={"person": "Barack Obama", "limit": 1}).json()
    r2 = c.get("/api/search", params={"person": "Barack Obama", "limit": 1, "offset": 1}).json()
    assert r1["more"] and not r2["more"] and r1["items"][0]["track_id"] != r2["items"][0]["track_id"]
    with open(faces_dir / "fr_biden2.jpg", "rb") as f:
        r = c.post("/api/search/face", files={"photo": ("b.jpg", f, "image/jpeg")}).json()
    assert {x["person"] for x in r["items"]} == {"Joe Biden"} and all(x["distance"] < 0.6 for x in r["items"])
    from vidx.indexing.query import QueryEngine  # the same face as an embedding computed elsewhere

    e = QueryEngine(str(client[1]))
    row = e.identities["track_id"].to_pylist().index(r["items"][0]["track_id"])
    emb = np.asarray(e.vectors[row]).tolist()
    by_emb = c.post("/api/search/embedding", json={"embedding": emb, "embedder": "sface", "limit": 5}).json()
    assert by_emb["items"][0]["track_id"] == r["items"][0]["track_id"] and by_emb["items"][0]["distance"] < 1e-4
    wrong = c.post("/api/search/embedding", json={"embedding": emb, "embedder": "dlib"})
    assert wrong.status_code == 400 and "sface" in wrong.json()["detail"]
    assert c.post("/api/search/embedding", json={"embedding": [0.0] * 3, "embedder": "sface"}).status_code == 400
    vids = c.get("/api/videos").json()["items"]
    biden = next(v for v in vids if v["name"] == "hk_biden.mp4")
    t = c.get(f"/api/videos/{biden['video_id']}/timeline").json()
    assert [p["person"] for p in t["people"]] == ["Joe Biden"] and t["duration_s"] == pytest.approx(7.0, abs=0.1)
    th = c.get(f"/api/thumbnails/{t['people'][0]['tracks'][0]['track_id']}")
    assert th.status_code == 200 and th.headers["content-type"] == "image/jpeg" and th.content[:2] == b"\xff\xd8"
    schema = c.get("/openapi.json").json()
    assert {"/api/search", "/api/search/face", "/api/videos/{video_id}/stream", "/api/enroll"} <= set(schema["paths"])


def test_errors_are_clear(client, faces_dir, tmp_path):
    c, _ = client
    r = c.get("/api/search", params={"person": "Nobody"})
    assert r.status_code == 404 and "no person with id or name 'Nobody'" in r.json()["detail"]
    assert c.get("/api/search").status_code == 400
    assert c.get("/api/people/P00000000").status_code == 404
    r = c.post("/api/search/face", files={"photo": ("x.jpg", b"not an image at all", "image/jpeg")})
    assert r.status_code == 422 and "x.jpg" in r.json()["detail"]
    with open(faces_dir / "fr_two_people.jpg", "rb") as f:
        r = c.post("/api/search/face", files={"photo": ("two.jpg", f, "image/jpeg")})
    assert r.status_code == 422 and "2 faces" in r.json()["detail"]
    r = c.post("/api/search/face", files={"photo": ("big.jpg", b"\xff" * ((10 << 20) + 1), "image/jpeg")})
    assert r.status_code == 413
    from fastapi.testclient import TestClient

    from vidx.jobs.serve import create_app
    from vidx.indexing.query import QueryError

    with pytest.raises(QueryError, match="not a vidx index"):
        TestClient(create_app(str(tmp_path / "nothing")))


def test_range_requests_and_files_only_by_id(client):
    c, _ = client
    vid = c.get("/api/videos").json()["items"][0]["video_id"]
    full = c.get(f"/api/videos/{vid}/stream")
    assert full.status_code == 200 and full.headers["accept-ranges"] == "bytes"
    part = c.get(f"/api/videos/{vid}/stream", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(full.content)}"
    for bad in ("/api/videos/..%2F..%2F..%2Fetc%2Fpasswd/stream", "/api/videos/%2Fetc%2Fpasswd/stream",
                "/api/thumbnails/..%2Fmanifest.json", "/static/..%2F..%2Fpyproject.toml", "/static/index.html"):
        r = c.get(bad)
        assert r.status_code == 404, bad
        assert b"root:" not in r.content and b"[project]" not in r.content


def test_enroll_rename_merge_forget(client, faces_dir):
    c, copy = client
    with open(faces_dir / "fr_knntest_obama1.jpg", "rb") as f:
        r = c.post("/api/enroll", data={"name": "Obama (press)"}, files={"photo": ("o.jpg", f, "image/jpeg")})
    assert r.status_code == 200, r.text
    people = {p["person_id"]: p for p in c.get("/api/people").json()["items"]}
    # both names are Obama's: the person takes the one whose photos are nearer (embedder-dependent)
    obama = next(p for p, x in people.items() if x["name"] in ("Barack Obama", "Obama (press)"))
    biden = next(p for p, x in people.items() if x["name"] == "Joe Biden")
    assert c.post(f"/api/people/{biden}/rename", json={"name": "President Biden"}).status_code == 200
    assert c.get("/api/search", params={"person": "President Biden"}).json()["items"]
    r = c.post("/api/people/merge", json={"people": [obama, obama]})
    assert r.status_code == 400 and "already one person" in r.json()["detail"]
    r = c.delete(f"/api/people/{biden}")
    assert r.status_code == 200 and r.json()["tracks"] >= 1
    assert c.get("/api/search", params={"person": "President Biden"}).status_code == 404
    with open(faces_dir / "fr_biden2.jpg", "rb") as f:
        assert c.post("/api/search/face", files={"photo": ("b.jpg", f, "image/jpeg")}).json()["items"] == []


def test_token_is_required_off_loopback(out):
    from fastapi.testclient import TestClient

    from vidx.jobs.serve import create_app, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    c = TestClient(create_app(str(out), token="s3cret"))
    assert c.get("/api/health").status_code == 401
    assert c.get("/").status_code == 401
    assert c.get("/api/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert c.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/api/health", headers={"X-Vidx-Token": "s3cret"}).status_code == 200
    r = c.get("/", params={"token": "s3cret"})  # the page link sets a cookie for media requests
    assert r.status_code == 200 and "vidx_token" in r.headers.get("set-cookie", "")
    p = vidx("serve", out, "--host", "0.0.0.0", "--port", "1")
    assert p.returncode != 0 and "needs a token" in p.stderr


def test_page_in_headless_chromium(out, faces_dir, tmp_path):
    """The page opens on the people gallery; a person's view lists every appearance and moves one
    out to a new person; search by an uploaded photo, see the person's card, open the timeline."""
    copy = tmp_path / "index"  # the page corrects people: on a copy
    shutil.copytree(out, copy)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served_page(copy) as (page, url, errors):
        page.goto(f"{url}/")  # the landing page: the people gallery
        page.wait_for_selector("#stats:has-text('appearance')")
        page.wait_for_selector("#view-people:not([hidden]) #people .card")
        obama = page.locator("#people .card", has_text="Barack Obama")
        assert obama.count() == 1 and "2 appearances" in obama.inner_text()
        page.screenshot(path=str(SHOTS / "vidx-serve-people.png"), full_page=True)
        obama.locator("img").click()  # the person view: both Obama clips, with video and times
        page.wait_for_selector("#view-person:not([hidden]) #person-tracks .card")
        assert page.locator("#person-tracks .card").count() == 2
        text = page.inner_text("#person-tracks")
        assert "hk_obama.mp4" in text and "shd_obama.mp4" in text and "quality" in text
        page.screenshot(path=str(SHOTS / "vidx-serve-person.png"), full_page=True)
        page.locator("#person-tracks .card", has_text="shd_obama.mp4").locator(".pick").check()
        page.click("#split-btn")  # move that appearance out to a new person
        page.wait_for_function("document.querySelectorAll('#person-tracks .card').length === 1")
        assert "hk_obama.mp4" in page.inner_text("#person-tracks")
        page.goto(f"{url}/#search")
        page.wait_for_selector("#view-search:not([hidden])")
        # indexed with --no-actions: the action box says so instead of answering nothing
        page.wait_for_selector("#actions[placeholder='no actions in this index']:disabled")
        page.set_input_files("#photo", str(faces_dir / "fr_biden2.jpg"))
        page.click("#search-btn")
        card = page.wait_for_selector(".card[data-person='Joe Biden']", timeout=60_000)
        assert page.locator("#results .card").count() == page.locator("#results .card[data-person='Joe Biden']").count()
        card.click()
        page.wait_for_selector("#timeline .lane[data-person='Joe Biden'] .bar")
        page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=30_000)
        page.screenshot(path=str(SHOTS / "vidx-serve-search.png"), full_page=True)
    assert not errors, errors
    assert (SHOTS / "vidx-serve-search.png").stat().st_size > 10_000


def test_page_seeks_to_the_index_frame_on_a_late_starting_clip(data_dir, tmp_path):
    """A clip whose first frame is at 0.852 s on its own clock (the shared film clip, remuxed):
    clicking an appearance shows the frame the index means. The player's media time is the file's
    presentation time, so the page seeks to vidx's time plus the stream's start, which the API
    serves per video; the shown frame's pixels are vidx's frame at the appearance's start, not the
    frame 0.85 s before it (across the clip's cut, another shot).  The timeline shows the clip's
    two cuts."""
    from test_damage_frames import _remux

    from vidx.indexing.tables import read_index_table
    from vidx.workers import decode

    shift = 0.852
    clip = _remux(data_dir / "videos" / "psd_goldeneye-vfr-drop3.mp4", tmp_path / "late.mp4", shift_s=shift)
    out = tmp_path / "index"
    p = index(clip, "--out", out)
    assert p.returncode == 0, p.stderr[-3000:]
    tracks = read_index_table(str(out), "face_tracks").to_pylist()
    late = min((t for t in tracks if t["start_s"] > 8.8), key=lambda t: t["start_s"])  # after the cut at 8.76 s
    with served_page(out) as (page, url, errors):
        item = page.request.get(f"{url}/api/videos").json()["items"][0]
        assert abs(item["stream_start_s"] - shift) < 1e-3, item
        people = page.request.get(f"{url}/api/people?limit=1000").json()["items"]
        pid = next(x["person_id"] for x in people if late["track_id"] in
                   {t["track_id"] for t in page.request.get(f"{url}/api/people/{x['person_id']}/tracks").json()["items"]})
        page.goto(f"{url}/#person/{pid}")
        # the player does not start playing, so the frame the seek shows stays for the test to read
        page.evaluate("""() => { const v = document.getElementById('player');
            v.play = () => Promise.resolve();
            v.addEventListener('seeked', () => { window.seekedAt = v.currentTime; }, { once: true }); }""")
        page.locator(f"#person-tracks .card[data-track='{late['track_id']}'] img").click()
        page.wait_for_function("window.seekedAt !== undefined && document.getElementById('player').readyState >= 2",
                               timeout=30_000)
        seeked = page.evaluate("window.seekedAt")
        assert abs(seeked - (late["start_s"] + shift)) < 1e-3, (seeked, late["start_s"])
        page.wait_for_function("document.getElementById('playhead-time').textContent === "
                               f"'{late['start_s']:.1f} s'")  # the playhead is on vidx's clock
        # the film's two cuts (PySceneDetect's goldens: ~3.75 s and ~8.76 s on vidx's clock, whatever
        # the file's own clock says) in the API and on the timeline, as a shots lane
        cuts = page.request.get(f"{url}/api/videos/{item['video_id']}/timeline").json()["cuts"]
        assert [round(c["t"], 1) for c in cuts] == [3.8, 8.8], cuts
        assert page.locator("#timeline .lane.shots .cut").count() == 2
        assert page.locator("#timeline .lane.shots .bar.shot").count() == 3
        page.screenshot(path=str(SHOTS / "vidx-serve-cuts.png"), full_page=True)
        w, h = 160, 68
        shown = np.asarray(page.evaluate(f"""() => {{ const v = document.getElementById('player');
            const c = document.createElement('canvas'); c.width = {w}; c.height = {h};
            const g = c.getContext('2d'); g.drawImage(v, 0, 0, {w}, {h});
            return Array.from(g.getImageData(0, 0, {w}, {h}).data); }}"""), np.float32).reshape(h, w, 4)[..., :3]
        page.screenshot(path=str(tmp_path / "late.png"))
    assert not errors, errors
    info = decode.probe(str(clip))
    at = lambda t: int(np.searchsorted(info.timestamps, t + 1e-3) - 1)  # noqa: E731 - the frame shown at time t
    want = [at(late["start_s"]), at(late["start_s"] - shift)]
    frames = {int(i): f for ix, fs in decode.read_frames(str(clip), info, np.sort(want)) for i, f in zip(ix, fs)}
    from PIL import Image

    small = {i: np.asarray(Image.fromarray(frames[i]).resize((w, h), Image.BILINEAR), np.float32) for i in want}
    right, early = (float(np.abs(shown - small[i]).mean()) for i in want)
    assert right < 12 and right < early / 3, (right, early)  # the index's frame, not the one 0.85 s before


def test_page_review_loop(data_dir, tmp_path):
    """Enrol from a photo of several people through the face picker; the rule (tightened to 0.2
    for a near miss) names no one, so the page suggests the nearest people: "Not NAME" drops Biden
    for good, "This is NAME" names Obama's person; the gallery puts him first and counts right;
    "not this person" on one of his appearances keeps it apart (merging it back is refused, with
    the reason); a merge refreshes the gallery; forget lives on the person's page behind a
    confirmation."""
    from vidx.jobs.engines import engine_for_index, photo_boxes, pick_faces

    out = tmp_path / "index"
    v, f = data_dir / "videos", data_dir / "faces"
    p = index(v / "hk_obama.mp4", v / "shd_obama.mp4", v / "hk_biden.mp4", "--out", out,
              "--set", "people.match_distance=0.2")
    assert p.returncode == 0, p.stderr[-3000:]
    group = f / "fr_knntest_obama_and_biden.jpg"
    eng = engine_for_index(str(out))
    ref = pick_faces([(str(f / "fr_obama.jpg"), None)], eng)[0].embedding
    n = len(photo_boxes(str(group), eng)[2])  # Obama, Biden and someone behind them
    embs = [pick_faces([(str(group), k)], eng)[0].embedding for k in range(n)]
    obama_face = int(np.argmin([eng.space.distance(ref[None], e[None])[0] for e in embs]))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with served_page(out) as (page, url, errors):
        page.goto(f"{url}/")
        page.wait_for_selector("#people .card")
        before = page.locator("#people .card").count()
        page.fill("#enroll-name", "Barack Obama")
        page.set_input_files("#enroll-photo", str(group))
        page.click("#enroll-btn")
        page.wait_for_selector("#enroll-picker .face-pick", timeout=60_000)
        assert page.locator("#enroll-picker .face-pick").count() == n >= 2
        page.screenshot(path=str(SHOTS / "vidx-serve-enroll-picker.png"), full_page=True)
        page.click(f"#enroll-picker .face-pick[data-face='{obama_face}']")
        sug = page.wait_for_selector("#enroll-result .suggestion", timeout=60_000)
        first = page.locator("#enroll-result .suggestion").first
        assert "2 appearances in 2 videos" in first.inner_text() and "over the rule" in first.inner_text()
        page.screenshot(path=str(SHOTS / "vidx-serve-suggestions.png"), full_page=True)
        pid = sug.get_attribute("data-person-id")
        biden = page.locator("#enroll-result .suggestion").nth(1)
        biden_id = biden.get_attribute("data-person-id")
        biden.locator("button.not").click()  # "Not Barack Obama": gone, and never suggested so again
        page.wait_for_function(f"!document.querySelector(\"#enroll-result .suggestion[data-person-id='{biden_id}']\")")
        sugs = page.request.post(f"{url}/api/enroll", multipart={"name": "Barack Obama", "face": str(obama_face),
                                 "photo": {"name": "g.jpg", "mimeType": "image/jpeg", "buffer": group.read_bytes()}}).json()
        assert biden_id not in {x["person_id"] for x in sugs["suggestions"]}
        first.locator("button.confirm").click()
        page.wait_for_selector(f"#people .card[data-person-id='{pid}'] .who:has-text('Barack Obama')")
        cards = page.locator("#people .card")
        assert cards.first.get_attribute("data-person-id") == pid  # named people first
        assert "2 appearances in 2 videos" in cards.first.inner_text()
        assert page.locator("#people .card:has-text('1 appearance in 1 video')").count() >= 1  # counts spelled right
        weak = page.request.get(f"{url}/api/people").json()["weak"]
        assert f"show {weak} " in page.inner_text("#weak-label")
        page.screenshot(path=str(SHOTS / "vidx-serve-gallery.png"), full_page=True)
        page.goto(f"{url}/#person/{pid}")  # one of his appearances marked "not this person"
        page.wait_for_selector("#person-tracks .card")
        page.locator("#person-tracks .card", has_text="shd_obama.mp4").locator(".pick").check()
        page.click("#not-btn")
        page.wait_for_function("document.querySelectorAll('#person-tracks .card').length === 1")
        page.goto(f"{url}/#people")
        page.wait_for_function(f"document.querySelectorAll('#people .card').length === {before + 1}")
        apart = [c.get_attribute("data-person-id") for c in page.locator("#people .card").all()
                 if c.get_attribute("data-person-id") not in (pid, biden_id)][0]
        page.goto(f"{url}/#person/{pid}")  # "possibly the same person": the nearest people, nearest first
        page.wait_for_selector(f"#similar .card[data-person-id='{apart}']")
        assert "cannot merge: marked not the same person" in page.inner_text(f"#similar .card[data-person-id='{apart}']")
        assert page.locator(f"#similar .card[data-person-id='{biden_id}'] button.merge-similar").count() == 1
        page.goto(f"{url}/#people")
        page.wait_for_selector(f"#people .card[data-person-id='{apart}']")
        # the gallery drawn before this visit is still there until the fresh one replaces it (its ticks
        # with it): tick only once the page's requests are done
        page.wait_for_load_state("networkidle")
        page.check(f"#people .card[data-person-id='{pid}'] .merge")
        page.check(f"#people .card[data-person-id='{apart}'] .merge")
        page.click("#merge-btn")  # merging it back is refused, saying why
        page.wait_for_selector("#error:not([hidden]):has-text('marked as not being')")
        page.uncheck(f"#people .card[data-person-id='{apart}'] .merge")
        page.check(f"#people .card[data-person-id='{biden_id}'] .merge")
        page.click("#merge-btn")  # Obama and Biden were never on screen together: the merge goes through
        page.wait_for_function(f"document.querySelectorAll('#people .card').length === {before}")
        assert "2 appearances in 2 videos" in page.locator(f"#people .card[data-person-id='{pid}']").inner_text()
        assert page.locator("#people .card button:has-text('Forget')").count() == 0  # not on the gallery
        page.goto(f"{url}/#person/{pid}")
        page.wait_for_selector("#person-tracks .card")
        page.once("dialog", lambda d: d.dismiss())  # the confirmation: dismissed, nothing happens
        page.click("#forget-btn")
        page.goto(f"{url}/#people")
        page.wait_for_selector(f"#people .card[data-person-id='{pid}']")
        page.goto(f"{url}/#person/{pid}")
        page.wait_for_selector("#person-tracks .card")
        page.once("dialog", lambda d: d.accept())
        page.click("#forget-btn")
        page.wait_for_selector("#view-people:not([hidden])")
        page.wait_for_function(f"!document.querySelector(\"#people .card[data-person-id='{pid}']\")", timeout=60_000)
    assert not errors, errors


def test_review_queue_by_keyboard(out, tmp_path):
    """The review tab: the least certain appearance first on its frame with the face boxed; n marks
    it not their person, x selects, j moves on, a accepts the selection; each leaves the queue."""
    copy = tmp_path / "index"
    shutil.copytree(out, copy)
    with served_page(copy) as (page, url, errors):
        queue = page.request.get(f"{url}/api/review").json()
        # the queue holds the open appearances (no one reviewed or corrected them by hand) whose margin
        # is under the bound, the others are counted; ?all=true lists every open one
        from vidx.indexing import people as people_mod

        ident, _ = people_mod.load(str(copy))
        open_ = sum(r not in ("manual", "reviewed") for r in ident["role"].to_pylist())
        assert open_ == ident.num_rows >= 3
        every = page.request.get(f"{url}/api/review?all=true").json()
        assert every["total"] == open_ and every["rest"] == 0
        assert every["items"] == sorted(every["items"], key=lambda x: x["margin"])
        assert all(x["distance"] >= 0 and x["other_distance"] >= 0 for x in every["items"])  # no -0.000
        under = [x["track_id"] for x in every["items"] if x["margin"] < queue["bound"]]
        assert [x["track_id"] for x in queue["items"]] == under and queue["rest"] == open_ - len(under)
        page.goto(f"{url}/#review")
        page.wait_for_selector("#review-summary")
        page.wait_for_function("document.getElementById('review-summary').textContent.includes('to review')")
        if queue["rest"]:  # the page says how many the bound leaves out and shows them on request
            assert f"{queue['rest']} other open" in page.inner_text("#review-summary")
            page.click("#review-all")
            page.wait_for_function(f"document.querySelectorAll('#review-list .card').length === {open_}")
        queue = every
        page.wait_for_selector("#review-list .card.current")
        page.wait_for_function("document.getElementById('review-frame').complete && "
                               "document.getElementById('review-frame').naturalWidth > 0", timeout=60_000)
        first = page.locator("#review-list .card.current").get_attribute("data-track")
        assert first == queue["items"][0]["track_id"]
        page.screenshot(path=str(SHOTS / "vidx-serve-review.png"), full_page=True)
        page.keyboard.press("n")  # not this person
        page.wait_for_function("document.querySelectorAll('#review-list .card').length === 2")
        assert page.locator(f"#review-list .card[data-track='{first}']").count() == 0
        page.keyboard.press("x")
        page.keyboard.press("j")
        page.keyboard.press("x")
        assert page.locator("#review-list .rsel:checked").count() == 2
        page.keyboard.press("a")  # accept both
        page.wait_for_selector("#review-current:has-text('nothing left to review')")
    assert not errors, errors
    p = vidx("people", "list", copy, "--json")
    assert p.returncode == 0
    from vidx.indexing import people

    ident, _ = people.load(str(copy))
    assert set(ident["role"].to_pylist()) <= {"reviewed", "manual"}
