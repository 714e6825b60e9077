"""People and query at archive scale: refresh (FAISS build + clustering into people + writing),
engine load, and query latency (p50 / p95) by person, face photo and action, on synthetic
indexes of N face tracks.

    python bench/bench_query.py [--tracks 10000 100000] [--queries 200]

Synthetic archive: N/20 people with 20 tracks each, spread over videos of 100 tracks;
a track is its person's vector plus noise (within-person distance ~0.35, between ~1.4, the
scale of dlib descriptors); each video has 10 action segments of 5 labels.  Clustering purity
= share of people whose 20 tracks form exactly one cluster with nothing else in it.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time

import numpy as np
import pyarrow as pa

from vidx.indexing import schemas
from vidx.indexing.store import Store
from vidx.indexing.tables import create_all, write_part

LABELS = ["talking", "dancing ballet", "clapping", "waving hand", "playing guitar"]


def make_index(out: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    people = rng.normal(size=(n // 20, 128))
    people /= np.linalg.norm(people, axis=1, keepdims=True)
    who = np.repeat(np.arange(len(people)), 20)
    rng.shuffle(who)
    emb = (people[who] + 0.25 / np.sqrt(128) * rng.normal(size=(n, 128))).astype(np.float32)
    store = Store(out)
    man = {"schema_version": schemas.SCHEMA_VERSION, "commit": 1, "videos": {}}
    tables = create_all(store)
    adds = {"face_tracks": [], "action_segments": []}
    per = 100
    vids = []
    for v in range(0, n, per):
        vid = f"v{v // per:06d}"
        vids.append(vid)
        m = min(per, n - v)
        start = np.arange(m) * 61.0 + rng.uniform(0, 1, m)  # one after another: one person is never in two places
        tracks = pa.table({
            "track_id": [f"{vid}-{i:04d}" for i in range(m)], "video_id": [vid] * m, "start_s": start,
            "end_s": start + rng.uniform(1, 60, m), "detections": pa.array(rng.integers(2, 100, m), pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(emb[v : v + m].ravel(), 128),
            "thumbnail": [b"\xff\xd8" + bytes(2000)] * m, "thumbnail_t": start,
            "segments": [[f"{vid}-{i:04d}"] for i in range(m)], "quality": pa.array(np.ones(m), pa.float32())},
            schema=schemas.FACE_TRACKS)
        a0 = rng.uniform(0, 61.0 * per, 10)
        acts = pa.table({"video_id": [vid] * 10, "start_s": a0, "end_s": a0 + rng.uniform(2, 30, 10),
                         "label": [LABELS[i % 5] for i in range(10)], "label_id": pa.array(np.arange(10) % 5, pa.int32()),
                         "score": pa.array(rng.uniform(0.3, 1, 10), pa.float32()), "model": ["s3d"] * 10},
                        schema=schemas.ACTION_SEGMENTS)
        adds["face_tracks"].append(write_part(store, "face_tracks", tracks, vid))
        adds["action_segments"].append(write_part(store, "action_segments", acts, vid))
        man["videos"][vid] = {"path": f"/archive/{vid}.mp4"}
    videos = pa.table({"video_id": vids, "path": [f"/archive/{v}.mp4" for v in vids], "status": ["ok"] * len(vids)})
    videos = pa.table({f.name: videos[f.name] if f.name in videos.column_names else pa.nulls(len(vids), f.type)
                       for f in schemas.VIDEOS}, schema=schemas.VIDEOS)
    for name, parts in adds.items():
        tables[name].commit(parts)
    tables["videos"].commit([write_part(store, "videos", videos)])
    store.write_manifest(man)
    return people, who


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tracks", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from vidx.indexing import people as people_mod
    from vidx.indexing.query import Query, QueryEngine

    print("| tracks | refresh s (FAISS + clustering + write) | people found / true | purity | engine load s "
          "| by person p50 / p95 ms | by face p50 / p95 ms | by action p50 / p95 ms |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.tracks:
        tmp = tempfile.mkdtemp(prefix="vidx-bench-query-")
        try:
            centres, who = make_index(tmp, n)
            t = time.perf_counter()
            res = people_mod.refresh(tmp)
            t_refresh = time.perf_counter() - t
            ident, _ = people_mod.load(tmp)
            tid = ident["track_id"].to_pylist()
            pos = {f"v{i // 100:06d}-{i % 100:04d}": i for i in range(n)}
            truth = who[[pos[x] for x in tid]]
            pid = np.array(ident["person_id"].to_pylist())
            pure = sum(len(set(pid[truth == p])) == 1 and (pid == pid[truth == p][0]).sum() == 20
                       for p in range(len(centres)))
            t = time.perf_counter()
            eng = QueryEngine(tmp)
            t_load = time.perf_counter() - t
            rng = np.random.default_rng(1)
            persons = rng.choice(pid, args.queries)
            faces = (centres[rng.integers(0, len(centres), args.queries)]
                     + 0.25 / np.sqrt(128) * rng.normal(size=(args.queries, 128))).astype(np.float32)
            lat = {"person": [], "face": [], "action": []}
            for i in range(args.queries):
                for kind, q in (("person", Query(person_id=persons[i])), ("face", Query(face=faces[i])),
                                ("action", Query(actions=[LABELS[i % 5]], limit=50))):
                    t = time.perf_counter()
                    eng.search(q)
                    lat[kind].append(1e3 * (time.perf_counter() - t))
            cells = " | ".join(f"{np.percentile(v, 50):.1f} / {np.percentile(v, 95):.1f}" for v in lat.values())
            print(f"| {n} | {t_refresh:.1f} | {res.people} / {len(centres)} | {pure / len(centres):.3f} | {t_load:.2f} "
                  f"| {cells} |", flush=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
