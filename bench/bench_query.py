"""An archive of N face tracks: an incremental people refresh against a full one, and queries by
person, face and action, in process and against `vidx serve` (one client and 8 at once).

    python bench/bench_query.py [--tracks 100000 1000000] [--add 1000] [--queries 200] [--json]

The archive: bench/bench_people.py's synthetic SFace tracks (people as far apart as the shared
clips' real tracks, quality uniform in 0-1, weaker tracks farther from their person and nearer
the average face), laid out as a broadcaster's: videos of 30-60 minutes with 3-8 people of
5-24 tracks each (about 100 tracks a video), people recurring across videos; 10 action
segments of 5 labels a video; a 2 KB thumbnail a track.

For each N: the index is built without its last videos (three deliveries of about ``--add``
tracks each), refreshed in full; the deliveries are then committed one after another, each
refreshed incrementally (what the end of `vidx index` does); `vidx reindex --full` on the same
index gives the full clustering to compare with (B-cubed F between the two partitions, each
one's B-cubed precision / recall against the true people, and how far the tracks' distances to
their person's centre differ).  Queries: QueryEngine.search in process, then
HTTP against a `vidx serve` subprocess (first answer from its start, p50 / p95 with one client
and with 8 concurrent clients, the server's resident memory).
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_people import archive, bcubed  # noqa: E402

from vidx.indexing import schemas  # noqa: E402
from vidx.indexing.store import Store  # noqa: E402
from vidx.indexing.tables import IndexTable, create_all, write_part  # noqa: E402

DEEP = 100_000  # the offset of the deep pages one client asks for while the others query
DELIVERIES = 3  # refreshed one after another: the median is the incremental refresh's time
LABELS = ["talking", "dancing ballet", "clapping", "waving hand", "playing guitar"]


def make_archive(n: int, seed: int = 0):
    emb, person, q, tracks = archive(n, seed, "sface", cast=(3, 9), per_person=(5, 25), length=(1800, 3600))
    return emb, person, q, tracks


def write_videos(out: str, emb: np.ndarray, q: np.ndarray, tracks: pa.Table, rows: np.ndarray, seed: int) -> None:
    """Commit the face tracks and action segments of the videos holding ``rows`` (whole videos)."""
    rng = np.random.default_rng(seed)
    store = Store(out)
    t = tracks.take(pa.array(rows))
    vid = np.array(t["video_id"].to_pylist())
    adds = {"face_tracks": [], "action_segments": []}
    bounds = np.flatnonzero(np.r_[True, vid[1:] != vid[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        m, v, r = b - a, vid[a], rows[a:b]
        start = t["start_s"].to_numpy()[a:b]
        part = pa.table({
            "track_id": t["track_id"].slice(a, m), "video_id": [v] * m, "start_s": start,
            "end_s": t["end_s"].to_numpy()[a:b], "detections": pa.array(rng.integers(2, 100, m), pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(emb[r].ravel(), 128),
            "thumbnail": [b"\xff\xd8" + rng.bytes(8) + bytes(1990)] * m, "thumbnail_t": start,
            "segments": [[x] for x in t["track_id"].slice(a, m).to_pylist()],
            "quality": pa.array(q[r], pa.float32())}, schema=schemas.FACE_TRACKS)
        a0 = rng.uniform(0, 3000, 10)
        acts = pa.table({"video_id": [v] * 10, "start_s": a0, "end_s": a0 + rng.uniform(2, 30, 10),
                         "label": [LABELS[i % 5] for i in range(10)], "label_id": pa.array(np.arange(10) % 5, pa.int32()),
                         "score": pa.array(rng.uniform(0.3, 1, 10), pa.float32()), "model": ["s3d"] * 10},
                        schema=schemas.ACTION_SEGMENTS)
        adds["face_tracks"].append(write_part(store, "face_tracks", part, v))
        adds["action_segments"].append(write_part(store, "action_segments", acts, v))
    for name, parts in adds.items():
        IndexTable(store, name).commit(parts)


def build_index(out: str, emb, q, tracks, rows) -> None:
    store = Store(out)
    create_all(store)
    store.write_manifest({"schema_version": schemas.SCHEMA_VERSION, "commit": 1, "videos": {},
                          "embedder": "sface_2021dec", "config": {"people": {}}})
    write_videos(out, emb, q, tracks, rows, seed=1)
    set_videos(out, tracks)


def set_videos(out: str, tracks: pa.Table) -> None:
    vids = sorted(set(tracks["video_id"].to_pylist()))
    videos = pa.table({"video_id": vids, "path": [f"/archive/{v}.mp4" for v in vids], "status": ["ok"] * len(vids)})
    videos = pa.table({f.name: videos[f.name] if f.name in videos.column_names else pa.nulls(len(vids), f.type)
                       for f in schemas.VIDEOS}, schema=schemas.VIDEOS)
    t = IndexTable(Store(out), "videos")
    t.commit([write_part(Store(out), "videos", videos)], list(t.snapshot().files.values()))


def partition(out: str, tids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each track's person id and its distance to its person's centre, in ``tids``' order."""
    from vidx.indexing import people

    ident, _ = people.load(out)
    pos = {t: i for i, t in enumerate(ident["track_id"].to_pylist())}
    at = np.array([pos[t] for t in tids])
    return np.array(ident["person_id"].to_pylist(), dtype=object)[at], ident["distance"].to_numpy()[at]


def f_score(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r else 0.0


def pct(x: list[float]) -> tuple[float, float]:
    return float(np.percentile(x, 50)), float(np.percentile(x, 95))


def queries(n: int, seed: int, ident, emb, tracks, person_truth):
    """(kind, in-process Query, HTTP request) triples: by person, by face (a track's face plus
    noise, as a new photo of someone indexed), by action; half with a time window and a video."""
    from vidx.indexing.query import Query

    rng = np.random.default_rng(seed)
    pids = ident["person_id"].to_numpy(zero_copy_only=False)
    vids = ident["video_id"].to_numpy(zero_copy_only=False)
    out = []
    for i in range(n):
        filt = i % 2 == 1
        t0 = float(rng.uniform(0, 1800))
        win = {"start": t0, "end": t0 + 900} if filt else {}
        r = int(rng.integers(len(pids)))
        video = str(vids[r]) if filt else None
        p = str(pids[r])
        qs = "&".join([f"person_id={p}"] + ([f"video={video}", f"from={t0}", f"to={t0 + 900}"] if filt else []))
        out.append(("person", filt, Query(person_id=p, video=video, **win), ("GET", f"/api/search?{qs}", None)))
        face = emb[r] + 0.05 * rng.normal(size=emb.shape[1])
        face = (face / np.linalg.norm(face)).astype(np.float32)
        body = {"embedding": face.tolist(), "embedder": "sface", **({"video": video} if filt else {}), **win}
        out.append(("face", filt, Query(face=face, face_embedder="sface", video=video, **win),
                    ("POST", "/api/search/embedding", body)))
        lab = LABELS[i % 5]
        qs = "&".join([f"action={lab.replace(' ', '+')}"] + ([f"video={video}", f"from={t0}", f"to={t0 + 900}"]
                                                             if filt else []))
        out.append(("action", filt, Query(actions=[lab], video=video, **win), ("GET", f"/api/search?{qs}", None)))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(conn: http.client.HTTPConnection, method: str, path: str, body) -> int:
    if body is None:
        conn.request(method, path)
    else:
        conn.request(method, path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    resp.read()
    return resp.status


def rss(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out


def serve_bench(out: str, qs, clients: int = 8, vidx: list[str] | None = None) -> dict:
    """``vidx``: the command that starts vidx (default this environment's ``vidx``)."""
    port = free_port()
    vidx = vidx or [str(Path(sys.executable).with_name("vidx"))]
    t0 = time.perf_counter()
    proc = subprocess.Popen([*vidx, "serve", out, "--port", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    try:
        first = None
        _, _, _, (m, path, body) = qs[0]
        while first is None and proc.poll() is None and time.perf_counter() - t0 < 120:
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                if request(c, m, path, body) == 200:
                    first = time.perf_counter() - t0
            except OSError:
                time.sleep(0.05)
        if first is None:
            raise RuntimeError(f"vidx serve did not answer: {proc.stderr.read().decode()[-2000:] if proc.poll() is not None else ''}")
        for kind, _, _, req in qs[:30]:  # warm: FAISS index and embeddings loaded on first use
            request(c, *req)
        res = {"first_answer_s": first}
        for phase, n_clients, deep in (("clients_1", 1, False), (f"clients_{clients}", clients, False),
                                       (f"clients_{clients}_deep", clients, True)):
            lat: dict[str, list[float]] = {"person": [], "face": [], "action": [], "deep": []}
            bad = []
            share = [qs[i::n_clients] for i in range(n_clients)]
            done = threading.Event()

            def client(mine):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                for kind, _, _, req in mine:
                    t = time.perf_counter()
                    st = request(conn, *req)
                    lat[kind].append(1e3 * (time.perf_counter() - t))
                    if st != 200:
                        bad.append((req, st))

            def digger():  # one more client paging deep into an action's answers, all the while
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                while not done.is_set():
                    t = time.perf_counter()
                    st = request(conn, "GET", f"/api/search?action={LABELS[0].replace(' ', '+')}&offset={DEEP}", None)
                    lat["deep"].append(1e3 * (time.perf_counter() - t))
                    if st != 200:
                        bad.append(("deep", st))

            threads = [threading.Thread(target=client, args=(s,)) for s in share]
            extra = threading.Thread(target=digger) if deep else None
            t = time.perf_counter()
            for th in threads + ([extra] if extra else []):
                th.start()
            for th in threads:
                th.join()
            wall = time.perf_counter() - t
            done.set()
            if extra:
                extra.join()
            if bad:
                raise RuntimeError(f"{len(bad)} request(s) failed, e.g. {bad[0]}")
            res[phase] = {k: pct(v) for k, v in lat.items() if v}
            res[phase]["qps"] = len(qs) / wall
        res["rss_mb"] = rss(proc.pid)
        return res
    finally:
        proc.terminate()
        proc.wait(30)


def run(n: int, add: int, n_queries: int, seed: int, keep: str | None = None) -> dict:
    from vidx.indexing import people
    from vidx.indexing.query import QueryEngine

    res: dict = {"tracks": n}
    t = time.perf_counter()
    emb, person, q, tracks = make_archive(n, seed)
    vid = np.array(tracks["video_id"].to_pylist())
    deliveries = []  # whole videos at the end, about ``add`` tracks each, oldest first
    end = n
    for _ in range(DELIVERIES if add else 0):
        start = int(np.searchsorted(vid, vid[end - add]))
        deliveries.insert(0, np.arange(start, end))
        end = start
    first = np.arange(end)
    tmp = tempfile.mkdtemp(prefix="vidx-bench-query-", dir=keep)
    out = os.path.join(tmp, "idx")
    try:
        build_index(out, emb, q, tracks, first)
        res.update(videos=int(len(set(vid.tolist()))), people_true=int(len(set(person.tolist()))),
                   build_s=time.perf_counter() - t, added_tracks=[int(len(d)) for d in deliveries])
        t = time.perf_counter()
        people.refresh(out)
        res["full_before_s"] = time.perf_counter() - t
        res["incremental_s"], res["incremental_mode"] = [], []
        for k, rows in enumerate(deliveries):
            write_videos(out, emb, q, tracks, rows, seed=2 + k)
            set_videos(out, tracks)
            t = time.perf_counter()
            r = people.refresh(out)
            res["incremental_s"].append(time.perf_counter() - t)
            res["incremental_mode"].append(r.mode)
        tids = tracks["track_id"].to_pylist()
        inc, inc_d = partition(out, tids)
        t = time.perf_counter()
        people.refresh(out, force=True)
        res["full_s"] = time.perf_counter() - t
        full, full_d = partition(out, tids)
        p, rcl = bcubed(inc, full)
        res["agreement_f"] = f_score(p, rcl)
        # a track already indexed keeps its distance to its person's centre from the refresh that placed it
        same = inc == full  # tracks the two put in the same person (by id)
        drift = np.abs(inc_d - full_d)[same]
        res["distance_drift"] = pct(drift.tolist()) + (float(drift.max()),)
        for name, lab in (("incremental", inc), ("full", full)):
            p, rcl = bcubed(lab, person)
            res[f"{name}_vs_truth"] = (p, rcl)
        res["index_gb"] = sum(f.stat().st_size for f in Path(out).rglob("*") if f.is_file()) / 1e9

        t = time.perf_counter()
        eng = QueryEngine(out)
        res["engine_load_s"] = time.perf_counter() - t
        ident = eng.identities
        qs = queries(n_queries, seed + 1, ident, np.asarray(eng.vectors), tracks, person)
        for kind, filt, qq, _ in qs[:9]:
            eng.search(qq)  # first use loads the FAISS index
        lat: dict[str, list[float]] = {}
        for kind, filt, qq, _ in qs:
            t = time.perf_counter()
            eng.search(qq)
            lat.setdefault(f"{kind}{'_filtered' if filt else ''}", []).append(1e3 * (time.perf_counter() - t))
        res["in_process"] = {k: pct(v) for k, v in lat.items()}
        del eng
        res["serve"] = serve_bench(out, qs)
        return res
    finally:
        if keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--add", type=int, default=1000, help="tracks of the delivery added incrementally")
    ap.add_argument("--queries", type=int, default=200, help="queries of each kind")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="build the indexes under DIR and keep them")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    for n in args.tracks:
        t = time.perf_counter()
        r = run(n, args.add, args.queries, args.seed, args.keep)
        r["bench_s"] = time.perf_counter() - t
        if args.json:
            print(json.dumps(r), flush=True)
            continue
        print(f"{n} tracks, {r['videos']} videos, {r['people_true']} people, index {r['index_gb']:.2f} GB "
              f"(built in {r['build_s']:.0f} s)")
        print(f"  people: full {r['full_before_s']:.1f} s before the deliveries; deliveries of "
              f"{'/'.join(map(str, r['added_tracks']))} tracks: " + ", ".join(
                  f"{x:.2f} s ({m})" for x, m in zip(r["incremental_s"], r["incremental_mode"]))
              + f" (median {np.median(r['incremental_s']):.2f} s); full refresh of the same index {r['full_s']:.1f} s; "
              f"agreement B-cubed F {r['agreement_f']:.4f}; vs truth P/R incremental "
              f"{r['incremental_vs_truth'][0]:.4f}/{r['incremental_vs_truth'][1]:.4f}, full "
              f"{r['full_vs_truth'][0]:.4f}/{r['full_vs_truth'][1]:.4f}; distance to centre, |incremental - full| "
              "(tracks of the same person in both) p50/p95/max {:.4f}/{:.4f}/{:.4f}".format(*r["distance_drift"]))
        print(f"  engine load {r['engine_load_s']:.2f} s; in process p50/p95 ms: "
              + ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in r["in_process"].items()))
        s = r["serve"]
        print(f"  serve: first answer {s['first_answer_s']:.2f} s after start; RSS {s['rss_mb']['VmRSS']:.0f} MB "
              f"(anon {s['rss_mb']['RssAnon']:.0f}, file {s['rss_mb']['RssFile']:.0f}; peak {s['rss_mb']['VmHWM']:.0f})")
        for c in ("clients_1", "clients_8", "clients_8_deep"):
            print(f"  serve {c.replace('_', ' ').replace(' deep', ' + 1 paging deep')}: {s[c]['qps']:.0f} q/s; "
                  "p50/p95 ms " + ", ".join(f"{k} {s[c][k][0]:.1f}/{s[c][k][1]:.1f}"
                                           for k in ("person", "face", "action", "deep") if k in s[c]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
