"""``vidx serve``: an HTTP API and a web page over one index, on the same query engine as the CLI.

    app = create_app("index/", token=None)        # FastAPI; OpenAPI schema at /openapi.json
    uvicorn.run(app, host="127.0.0.1", port=8765)

Routes (JSON unless said): ``/api/health``, ``/api/people`` (list, paginated), ``/api/people/{id}``
(with its appearances), ``/api/people/{id}/rename``, ``/api/people/merge``, ``DELETE
/api/people/{id}`` (forget), ``/api/enroll`` (photo upload), ``/api/search`` (person, actions,
video, time range; paginated), ``/api/search/face`` (photo upload, same filters), ``/api/search/embedding`` (a face embedding as
JSON, same filters),
``/api/videos``, ``/api/videos/{id}/timeline``, ``/api/videos/{id}/stream`` (the video, a local
file or an object-store object, with HTTP range requests so a browser can seek), ``/api/thumbnails/{track_id}`` (JPEG),
``/api/videos/{id}/redact`` (starts a redaction job), ``/api/redactions[/{job id}]`` (its progress, then its
download link under ``/api/exports/``), and the page itself at ``/``.

Files are served only by id: a video id is looked up in the index's videos table and the path
found there is served; nothing in a request is used as a path.  Off loopback a token is
required (``Authorization: Bearer TOKEN``, an ``X-Vidx-Token`` header, or ``?token=`` once, which
sets a cookie so the page's media requests carry it), checked on every route.  Uploads are
limited in size and must decode as images.  Requests that change the index (enrol, rename,
merge, forget) run one at a time and reload the engine.  The server follows the index: when
another command commits (its manifest changes; checked at most every :data:`FOLLOW_S` seconds
on a request), the new version is loaded in the background and answers once it is ready; until
then the version already loaded answers.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import math
import tempfile
import threading
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any, Callable

import anyio
import numpy as np
import orjson
import pyarrow.compute as pc
from fastapi import FastAPI, File, Form, HTTPException, Query as Q, Request, UploadFile
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from pydantic import BaseModel

from vidx.indexing import people as people_mod
from vidx.indexing.schemas import EMBED_DIM
from vidx.indexing.query import Query, QueryEngine, QueryError
from vidx.indexing.lease import LeaseLost, WriterBusy
from vidx.indexing.store import IndexError_, Store
from vidx.jobs.engines import pick_faces
from vidx.configs.errors import ServeError
from vidx.jobs.redact_jobs import RedactJobs
from vidx.workers.sources import Source

log = logging.getLogger(__name__)

MAX_UPLOAD = 10 << 20  # bytes per photo
TOKEN_COOKIE = "vidx_token"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Rename(BaseModel):
    name: str


class Merge(BaseModel):
    people: list[str]
    force: bool = False  # merge even people seen on screen together
    check: bool = False  # only say whether it would be refused ({"refused": reason or null}), change nothing


class EmbeddingSearch(BaseModel):
    embedding: list[float]  # a face embedded by the index's embedder (e.g. by your own pipeline)
    embedder: str  # its name (sface, dlib...): checked against the index's
    action: list[str] = []
    video: str | None = None
    start: float | None = None
    end: float | None = None
    min_score: float = 0.0
    limit: int = 50
    offset: int = 0


class Tracks(BaseModel):
    tracks: list[str]
    force: bool = False  # move: even tracks on screen together with the person's
    check: bool = False  # move: only say whether it would be refused ({"refused": reason or null})


class NotPerson(BaseModel):
    tracks: list[str] = []  # these tracks are not the person
    name: str | None = None  # or: the person is not NAME


class Redact(BaseModel):  # the request for a redaction job
    keep: list[str] | None = None  # people left visible; every other face blurred ([]: blur everyone)
    only: list[str] | None = None  # people blurred; the others stay
    style: str = "blur"  # blur | pixelate | box


HEAVY_THREADS = 2  # searches the engine calls heavy, at once, off the event loop
FOLLOW_S = 1.0  # how often a request looks for a newer commit of the index (one metadata read)


class State:
    """The loaded engine, and the face engine for uploads (loaded on first use)."""

    def __init__(self, out: str, detector: str | None):
        self.out, self.detector = out, detector  # None: the index's own detector
        self.lock = threading.Lock()
        self._store, self._objects = Store(out), None
        self._seen = self._stamp()
        self._engine = QueryEngine(out)
        self._checked = time.monotonic()
        self._loading: threading.Thread | None = None
        self._faces = None

    def _stamp(self) -> str | None:
        """What says the index changed: the manifest's version tag (every command that changes the
        index writes it last; one metadata read)."""
        from vidx.indexing.objects import Objects
        from vidx.indexing.store import MANIFEST

        if self._objects is None:
            self._objects = Objects(self._store.uri, self._store.fs.type_name, self._store.root)
        return self._objects.tag(MANIFEST)

    @property
    def engine(self) -> QueryEngine:
        now = time.monotonic()
        if now - self._checked >= FOLLOW_S and (self._loading is None or not self._loading.is_alive()):
            self._checked = now
            try:
                stamp = self._stamp()
            except OSError:
                stamp = self._seen
            if stamp != self._seen:
                self._loading = threading.Thread(target=self._follow, args=(stamp,), name="vidx-follow", daemon=True)
                self._loading.start()
        return self._engine

    def _follow(self, stamp) -> None:
        try:
            engine = QueryEngine(self.out)
        except (QueryError, IndexError_, OSError) as e:  # caught mid-change: the next look tries again
            log.info("the index changed but could not be loaded yet (%s); still answering from the last version", e)
            return
        self._engine, self._seen = engine, stamp
        log.info("the index changed: answering from its new version")

    def faces(self):
        if self._faces is None:
            from vidx.jobs.engines import engine_for_index

            self._faces = engine_for_index(self.out, self.detector, device="auto")  # the index's embedder
        return self._faces

    def reload(self) -> None:
        stamp = self._stamp()
        self._engine, self._seen = QueryEngine(self.out), stamp


async def _uploaded(upload: UploadFile, read: Callable[[str], Any]) -> Any:
    """``read(path)`` of an uploaded photo saved under a generated name (never the client's), after
    the size and emptiness checks; its refusals name the upload, not the temporary file."""
    data = await upload.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise HTTPException(413, f"photo larger than {MAX_UPLOAD >> 20} MB")
    if not data:
        raise HTTPException(400, "empty upload")
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        try:
            return read(f.name)
        except people_mod.PeopleError as e:
            msg = str(e).replace(f.name, upload.filename or "the photo").replace("@N", " and choose a face")
            raise HTTPException(422, msg) from None


async def _photo(upload: UploadFile, face: int | None, state: State) -> np.ndarray:
    """The embedding of one face in an uploaded photo (size limit, content check, one face)."""
    return await _uploaded(upload, lambda path: pick_faces([(path, face)], state.faces())[0])


def _media_type(name: str) -> str | None:
    return "video/mp4" if Path(name).suffix.lower() in (".mp4", ".m4v", ".mov") else None


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``Range: bytes=...`` request, None for the whole file;
    HTTPException 416 when it lies outside the file.  Several ranges are answered whole."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    a, _, b = header[6:].strip().partition("-")
    try:
        if a == "":  # the last b bytes
            first, last = max(0, size - int(b)), size - 1
        else:
            first, last = int(a), min(int(b), size - 1) if b else size - 1
    except ValueError:
        return None
    if first > last or first >= size:
        raise HTTPException(416, headers={"Content-Range": f"bytes */{size}"})
    return first, last


def _remote_stream(src: Source, range_header: str | None) -> Response | None:
    """A video on an object store, streamed through pyarrow.fs with range requests (so a browser
    can seek); None when the object is not there."""
    from fastapi.responses import StreamingResponse
    import pyarrow.fs as pafs

    fs, path = src.resolve()
    info = fs.get_file_info(path)
    if info.type != pafs.FileType.File:
        return None
    size = info.size
    rng = _byte_range(range_header, size)
    first, last = rng if rng else (0, size - 1)

    def body(piece: int = 1 << 20):
        with fs.open_input_file(path) as f:
            f.seek(first)
            left = last - first + 1
            while left > 0:
                data = f.read(min(piece, left))
                if not data:
                    return
                left -= len(data)
                yield data

    headers = {"Accept-Ranges": "bytes", "Content-Length": str(last - first + 1)}
    if rng:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(body(), status_code=206 if rng else 200, headers=headers,
                             media_type=_media_type(path) or "application/octet-stream")


def create_app(out: str, token: str | None = None, detector: str | None = None) -> FastAPI:
    """The app over the index at ``out``; ``token`` (if given) is required on every route."""
    state = State(out, detector)
    app = FastAPI(title="vidx", version="1", description="Who did what when, in an indexed video archive.")
    web = resources.files("vidx.jobs") / "web"

    async def check_token(request: Request, call_next):
        given = (request.headers.get("x-vidx-token") or request.cookies.get(TOKEN_COOKIE)
                 or request.query_params.get("token"))
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:]
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return JSONResponse({"detail": "a token is required (Authorization: Bearer TOKEN)"}, status_code=401)
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    if token is not None:  # an HTTP middleware costs every request (~1 ms here): only when it has work
        app.middleware("http")(check_token)

    @app.exception_handler(WriterBusy)
    @app.exception_handler(LeaseLost)
    async def busy(request: Request, exc: Exception):  # another command (a vidx index...) writes the index
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(QueryError)
    @app.exception_handler(people_mod.PeopleError)
    async def bad_request(request: Request, exc: Exception):
        status = 404 if str(exc).startswith(("no person", "no indexed video", "no track")) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    _pages(app, web)
    _people_routes(app, state, out)
    _search_routes(app, state)
    _video_routes(app, state, out)
    return app


def _pages(app: FastAPI, web) -> None:
    """The page, its assets and the favicon."""
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse((web / "index.html").read_text())

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon():  # what a browser asks for by itself, whatever the page's <link rel=icon> says
        return Response((web / "favicon.svg").read_text(), media_type="image/svg+xml")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str):
        files = {"app.js": "text/javascript", "style.css": "text/css",  # a fixed list: no paths from requests
                 "favicon.svg": "image/svg+xml"}
        if name not in files:
            raise HTTPException(404, "not found")
        return Response((web / name).read_text(), media_type=files[name])


def _people_routes(app: FastAPI, state: State, out: str) -> None:
    """The index's health, people and their corrections, the review queue, a photo's faces, enrolment."""
    @app.get("/api/health")
    def health() -> dict[str, Any]:
        e = state.engine
        return {"index": str(Path(out).resolve()), "videos": e.videos.num_rows, "tracks": e.n_tracks,
                "people": e.people.num_rows, "labels": e.known_labels()}

    @app.get("/api/people")
    def list_people(offset: int = Q(0, ge=0), limit: int = Q(100, ge=1, le=1000)) -> dict[str, Any]:
        e = state.engine
        # named people first, then by appearances; each with its best track's quality, and whether
        # every track of it is below people.min_quality (a weak person: the gallery hides them)
        ppl = e.people.append_column("unnamed", pc.is_null(e.people["name"]))
        ppl = ppl.sort_by([("unnamed", "ascending"), ("tracks", "descending"), ("person_id", "ascending")])
        items = ppl.drop_columns(["unnamed"]).slice(offset, limit).to_pylist()
        for x in items:
            x["quality"] = e.person_quality.get(x["person_id"], 0.0)
            x["weak"] = x["quality"] < e.cfg.min_quality
        return {"total": ppl.num_rows, "offset": offset, "weak": e.weak_people, "items": items}

    @app.get("/api/people/{person_id}")
    def person(person_id: str, offset: int = Q(0, ge=0), limit: int = Q(100, ge=1, le=1000)) -> dict[str, Any]:
        e = state.engine
        row = e.people.filter(pc.equal(e.people["person_id"], person_id)).to_pylist()
        if not row:
            raise HTTPException(404, f"no person {person_id!r}")
        return {**row[0], "appearances": e.search(Query(person_id=person_id, limit=limit, offset=offset))}

    @app.get("/api/people/{person_id}/tracks")
    def person_tracks(person_id: str) -> dict[str, Any]:
        """The person's tracks for review: video, times (seconds from the video's first frame),
        quality, distance to the person's centre and role; the farthest first."""
        row, tracks = people_mod.person_tracks(out, person_id)
        return {**row, "items": [{**t, "name": Path(t["path"] or t["video_id"]).name} for t in tracks]}

    @app.post("/api/people/{person_id}/split")
    def split(person_id: str, body: Tracks) -> dict[str, Any]:
        """Move tracks out of a person into a new person of their own."""
        with state.lock:
            res = people_mod.correct(out, "split", [person_id], tracks=body.tracks)
            state.reload()
        return {"person_id": person_id, "moved": body.tracks, "people": res.people}

    def _refusal(attempt) -> str | None:
        """The reason a correction would be refused, or None."""
        try:
            attempt()
        except people_mod.PeopleError as e:
            return str(e)
        return None

    @app.post("/api/people/{person_id}/move")
    def move(person_id: str, body: Tracks) -> dict[str, Any]:
        """Move tracks (of any people) into this person; refused if they share the screen with it."""
        if body.check:  # a page asks first, so that a refusal is an answer, not a failed request
            return {"refused": _refusal(lambda: people_mod.correct(out, "move", [person_id], tracks=body.tracks,
                                                                   force=body.force, check=True))}
        with state.lock:
            res = people_mod.correct(out, "move", [person_id], tracks=body.tracks, force=body.force)
            state.reload()
        return {"person_id": person_id, "moved": body.tracks, "people": res.people}

    @app.get("/api/people/{person_id}/similar")
    def similar(person_id: str, k: int = Q(5, ge=1, le=50)) -> dict[str, Any]:
        """"Possibly the same person": the nearest other people, and whether a merge would be refused."""
        return {"items": people_mod.similar_people(out, person_id, k)}

    @app.get("/api/review")
    def review(offset: int = Q(0, ge=0), limit: int = Q(50, ge=1, le=500), all: bool = False) -> dict[str, Any]:
        """Appearances to review, the least certain first (margin: distance to the runner-up
        person minus distance to their own): those under the bound (``people.REVIEW_MARGIN``), or
        ``all`` open ones; accept or mark "not this person" to clear them.  ``rest``: the open
        appearances the bound leaves out."""
        q = people_mod.review_queue(out, limit, offset, bound=math.inf if all else None)
        return {"total": q.total, "rest": q.rest, "bound": q.bound, "offset": offset,
                "items": [{**x, "name_of_video": Path(x["path"] or x["video_id"]).name} for x in q.items]}

    @app.post("/api/people/{person_id}/accept")
    def accept(person_id: str, body: Tracks) -> dict[str, Any]:
        """Reviewed: these tracks are this person (kept so, out of the review queue)."""
        with state.lock:
            res = people_mod.correct(out, "accept", [person_id], tracks=body.tracks)
            state.reload()
        return {"people": res.people}

    @app.get("/api/tracks/{track_id}/frame", responses={200: {"content": {"image/jpeg": {}}}})
    def track_frame(track_id: str):
        """The frame at the track's thumbnail time, its face box drawn."""
        from vidx.jobs.redact import RedactError, face_frame

        try:
            data = face_frame(out, track_id)
        except RedactError as e:
            raise HTTPException(404, str(e)) from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.post("/api/people/{person_id}/not")
    def not_person(person_id: str, body: NotPerson) -> dict[str, Any]:
        """"Not this person": ``tracks`` of the person are not them (they leave and never come
        back), or with only ``name``: the person is not NAME (never named or suggested so)."""
        if not body.tracks and not body.name:
            raise HTTPException(400, "give the tracks that are not this person, or the name this person is not")
        with state.lock:
            res = people_mod.correct(out, "not", [person_id], tracks=body.tracks or None, name=body.name)
            state.reload()
        return {"people": res.people}

    @app.post("/api/people/{person_id}/rename")
    def rename(person_id: str, body: Rename) -> dict[str, Any]:
        with state.lock:
            people_mod.correct(out, "rename", [person_id], name=body.name)
            state.reload()
        return {"person_id": person_id, "name": body.name or None}

    @app.post("/api/people/merge")
    def merge(body: Merge) -> dict[str, Any]:
        if body.check:
            return {"refused": _refusal(lambda: people_mod.correct(out, "merge", body.people, force=body.force,
                                                                   check=True))}
        with state.lock:
            res = people_mod.correct(out, "merge", body.people, force=body.force)
            state.reload()
        return {"merged": body.people, "people": res.people}

    @app.delete("/api/people/{person_id}")
    def forget_person(person_id: str) -> dict[str, Any]:
        from vidx.indexing.forget import forget

        with state.lock:
            res = forget(out, person_id)
            state.reload()
        return {"forgot": res.names or res.person_ids, "tracks": res.tracks, "detections": res.detections,
                "gallery_photos": res.gallery_photos, "videos": res.videos}

    @app.post("/api/faces")
    async def photo_faces(photo: UploadFile = File(...)) -> dict[str, Any]:
        """The faces of an uploaded photo, numbered as /api/enroll and /api/search/face take
        ``face`` (left to right): for a picker when a photo shows several people."""
        from vidx.jobs.engines import photo_boxes

        w, h, boxes = await _uploaded(photo, lambda path: photo_boxes(path, state.faces()))
        return {"width": w, "height": h, "faces": [{"face": k, "box": b} for k, b in enumerate(boxes)]}

    @app.post("/api/enroll")
    async def enroll(name: str = Form(...), photo: UploadFile = File(...), face: int | None = Form(None)):
        picked = await _photo(photo, face, state)
        picked.photo = f"upload:{photo.filename or 'photo'}"
        with state.lock:
            res = people_mod.enroll(out, name, [picked])
            state.reload()
        named = res.named.get(name, [])
        # named no one: the nearest people, to confirm one (POST /api/people/{id}/rename)
        sug = [] if named else [asdict(x) for x in people_mod.suggestions(out, name)]
        return {"name": name, "people": named, "suggestions": sug, "warnings": res.warnings}


def _search_routes(app: FastAPI, state: State) -> None:
    """Searches: by person, action or video, by a photo, by an embedding (the heavy ones in threads)."""
    heavy = anyio.CapacityLimiter(HEAVY_THREADS)

    async def _query(person, person_id, action, video, start, end, min_score, limit, offset, face=None,
                     face_embedder=None) -> dict:
        q = Query(face=face, face_embedder=face_embedder, person=person, person_id=person_id, actions=action or [], video=video, start=start,
                  end=end, min_score=min_score, limit=limit + 1, offset=offset)
        engine = state.engine
        if engine.heavy(q):  # a long search runs in a thread (at most HEAVY_THREADS): the short ones go on
            rows = await anyio.to_thread.run_sync(engine.search, q, limiter=heavy)
        else:
            rows = engine.search(q)
        # encoded here: the rows are plain JSON types, and FastAPI's own encoder walking them cost
        # more than the query at 8 concurrent clients (bench/bench_query.py)
        body = {"offset": offset, "limit": limit, "more": len(rows) > limit, "items": rows[:limit]}
        if face is not None and not rows and not offset:  # a face that matched no one: the nearest people
            body["near_misses"] = engine.near_misses(face)
            body["rule"] = engine.cfg.match_distance
        return Response(orjson.dumps(body), media_type="application/json")

    # async: a query is a few milliseconds of work holding the GIL; run on the event loop, it skips a
    # thread hop and the GIL handoffs between threads that cost more than the query at 8 clients;
    # only a search the engine calls heavy (a deep page, a huge person) goes to a thread
    @app.get("/api/search")
    async def search(person: str | None = None, person_id: str | None = None, action: list[str] | None = Q(None),
               video: str | None = None, start: float | None = Q(None, alias="from"),
               end: float | None = Q(None, alias="to"), min_score: float = 0.0,
               limit: int = Q(50, ge=1, le=1000), offset: int = Q(0, ge=0)) -> dict[str, Any]:
        if not (person or person_id or action or video):
            raise HTTPException(400, "say what to look for: person, person_id, action or video")
        return await _query(person, person_id, action, video, start, end, min_score, limit, offset)

    @app.post("/api/search/face")
    async def search_face(photo: UploadFile = File(...), face: int | None = Form(None),
                          action: list[str] | None = Form(None), video: str | None = Form(None),
                          limit: int = Form(50), offset: int = Form(0), min_score: float = Form(0.0)):
        picked = await _photo(photo, face, state)
        return await _query(None, None, [a for a in (action or []) if a], video or None, None, None, min_score,
                      max(1, min(limit, 1000)), max(0, offset), face=picked.embedding,
                      face_embedder=picked.embedder)

    @app.post("/api/search/embedding")
    async def search_embedding(body: EmbeddingSearch) -> dict[str, Any]:
        """Search by a face embedding computed elsewhere (same filters as a photo)."""
        if len(body.embedding) != EMBED_DIM:
            raise HTTPException(400, f"an embedding has {EMBED_DIM} numbers, not {len(body.embedding)}")
        return await _query(None, None, body.action, body.video, body.start, body.end, body.min_score,
                      max(1, min(body.limit, 1000)), max(0, body.offset), face=np.asarray(body.embedding, np.float32),
                      face_embedder=body.embedder)


def _video_routes(app: FastAPI, state: State, out: str) -> None:
    """Videos: the list, each one's timeline and stream, redaction jobs and their copies, thumbnails."""
    starts: dict[str, float] = {}  # measured here for videos of indexes that predate the manifest's record

    def _stream_start(v: dict[str, Any]) -> float:
        """The stream's own time of the video's first frame: the page seeks a player to vidx's time
        plus this (a player's clock is the file's presentation time; vidx's counts from the first frame)."""
        got = state.engine.stream_starts.get(v["video_id"], starts.get(v["video_id"]))
        if got is None:
            got = 0.0
            for n in dict.fromkeys([v["path"], *(v.get("paths") or [])]):
                if Source.parse(n).local_path is not None and Path(n).is_file():
                    from vidx.workers import decode

                    try:
                        got = decode.stream_start(n)
                    except Exception:  # noqa: BLE001 - unreadable here: the player's own clock is used
                        continue
                    break
            starts[v["video_id"]] = got
        return got

    @app.get("/api/videos")
    def videos() -> dict[str, Any]:
        rows = state.engine.videos.select(["video_id", "path", "paths", "status", "duration_s", "width", "height",
                                           "tracks"]).to_pylist()
        known = state.engine.stream_starts  # the timeline measures the others (one file each) on demand
        return {"total": len(rows), "items": [{**{k: x for k, x in r.items() if k != "paths"},
                                               "name": Path(r["path"]).name,
                                               "stream_start_s": known.get(r["video_id"], starts.get(r["video_id"]))}
                                              for r in rows]}

    def _video(video_id: str) -> dict[str, Any]:
        v = state.engine.videos
        rows = v.filter(pc.equal(v["video_id"], video_id)).to_pylist()
        if not rows:
            raise HTTPException(404, f"no video {video_id!r} in this index")
        return rows[0]

    @app.get("/api/videos/{video_id}/timeline")
    def timeline(video_id: str) -> dict[str, Any]:
        v = _video(video_id)
        e = state.engine
        rows = e.search(Query(video=video_id, limit=100_000))
        lanes: dict[str, dict[str, Any]] = {}
        lane_of: dict[str, dict[str, Any]] = {}
        for r in rows:
            lane = lanes.setdefault(r["person_id"], {"person_id": r["person_id"], "person": r["person"], "tracks": [],
                                                      "actions": []})
            lane["tracks"].append({"track_id": r["track_id"], "start_s": r["start_s"], "end_s": r["end_s"]})
            lane_of[r["track_id"]] = lane
        own = e.person_actions.filter(pc.equal(e.person_actions["video_id"], video_id))
        for a in own.select(["track_id", "start_s", "end_s", "label", "score", "source"]).sort_by("start_s").to_pylist():
            if a["track_id"] in lane_of:  # what this person does (their own part of the frame, or alone in it)
                lane_of[a["track_id"]]["actions"].append({k: a[k] for k in ("start_s", "end_s", "label", "score", "source")})
        segs = e.segments.filter(pc.equal(e.segments["video_id"], video_id))
        actions = segs.select(["start_s", "end_s", "label", "score"]).sort_by("start_s").to_pylist()
        return {"video_id": video_id, "name": Path(v["path"]).name, "duration_s": v["duration_s"],
                "stream_start_s": _stream_start(v), "people": list(lanes.values()), "actions": actions,
                "cuts": _cuts(video_id)}

    def _cuts(video_id: str) -> list[dict[str, float]]:
        """The video's cuts (times on vidx's clock, PySceneDetect's score) from the shots table; an
        index written before that table has none to show."""
        from vidx.indexing.tables import read_video_rows

        try:
            rows = read_video_rows(state.out, "shots", video_id, ["start_s", "score"])
        except Exception:  # noqa: BLE001 - no shots table (an older index)
            return []
        rows = rows.filter(pc.is_valid(rows["score"])).sort_by("start_s").to_pylist()
        return [{"t": r["start_s"], "score": round(float(r["score"]), 1)} for r in rows]

    @app.get("/api/videos/{video_id}/stream")
    def stream(video_id: str, request: Request):
        v = _video(video_id)
        names = list(dict.fromkeys([v["path"], *(v.get("paths") or [])]))  # the latest name first, then the others
        playable = [src for src in map(Source.parse, names) if src.member is None]
        if not playable:
            raise HTTPException(409, "this video is inside an archive; playback serves files and object-store videos")
        for src in playable:
            n = src.uri
            if src.remote:
                resp = _remote_stream(src, request.headers.get("range"))
                if resp is not None:
                    return resp
            elif Path(n).is_file():
                return FileResponse(n, media_type=_media_type(n))
        raise HTTPException(410, f"the video is no longer at {', '.join(map(str, playable))}")

    exports = Path(tempfile.mkdtemp(prefix="vidx-exports-"))  # redacted copies, for this server's lifetime

    def _redact(job, progress) -> dict[str, Any]:
        from vidx.jobs.redact import redact

        r = redact(out, job.video_id, str(exports / job.file), keep=job.keep, only=job.only, style=job.style,
                   progress=progress)
        return {"frames": r.frames, "redacted_frames": r.redacted_frames, "faces_found": r.faces_found,
                "unattributed": r.unattributed, "kept": r.kept, "verified": r.verified,
                "verified_kept": r.verified_kept, "wall_s": round(r.wall_s, 2)}

    redactions = RedactJobs(_redact)

    @app.post("/api/videos/{video_id}/redact", status_code=202)
    def redact_video(video_id: str, body: Redact) -> dict[str, Any]:
        """Start a copy of the video with faces blurred (see `vidx redact`): answered at once with the
        job (``GET /api/redactions/{id}``: progress, then ``url`` to download, or ``error``).  Jobs
        run one after another; the same request again gives the same job."""
        from vidx.jobs.redact import STYLES

        v = _video(video_id)
        if (body.keep is None) == (body.only is None):
            raise HTTPException(400, "say whose faces stay: keep (blur everyone else) or only (blur just them)")
        if body.style not in STYLES:
            raise HTTPException(400, f"unknown style {body.style!r} (choose from {', '.join(STYLES)})")
        for who in (body.keep or []) + (body.only or []):  # a person unknown now fails now, not in the queue
            people_mod.resolve_people(state.engine.people, who)
        job = redactions.submit(video_id, Path(v["path"]).stem, body.keep, body.only, body.style)
        return redactions.view(job)

    @app.get("/api/redactions")
    def redaction_jobs(video: str | None = None) -> dict[str, Any]:
        """Every redaction job of this server (of one video), oldest first: a page finds its jobs again."""
        return {"items": redactions.views(video)}

    @app.get("/api/redactions/{job_id}")
    def redaction_job(job_id: str) -> dict[str, Any]:
        job = redactions.get(job_id)
        if job is None:
            raise HTTPException(404, f"no redaction job {job_id!r}")
        return redactions.view(job)

    @app.get("/api/exports/{name}")
    def export(name: str):
        f = exports / name
        if "/" in name or "\\" in name or name.startswith(".") or not f.is_file():  # only files this server wrote
            raise HTTPException(404, f"no export named {name!r}")
        return FileResponse(f, media_type="video/mp4", filename=name)

    @app.get("/api/thumbnails/{track_id}", responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(track_id: str):
        try:
            data = state.engine.thumbnail(track_id)
        except QueryError as e:
            raise HTTPException(404, str(e)) from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})


def serve(out: str, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
          detector: str | None = None) -> None:
    import uvicorn

    if not is_loopback(host) and not token:
        raise ServeError(f"binding to {host} needs a token (--token or VIDX_TOKEN); without one, serve on 127.0.0.1")
    app = create_app(out, token, detector)  # an index it cannot open: a VidxError, one line from the CLI
    log.info("serving %s on http://%s:%d/", out, host, port)
    uvicorn.run(app, host=host, port=port, log_level="warning")
