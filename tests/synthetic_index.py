"""Build a tiny index folder by hand (no models, no Ray): videos, chunks, segments, detections,
tracks and action segments with known times and embeddings, in the layout `vidx index` writes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from vidx.indexing import schemas
from vidx.indexing.store import Store
from vidx.indexing.tables import create_all, write_part

DIM = schemas.EMBED_DIM


def person_vectors(n_people: int, seed: int = 0) -> np.ndarray:
    """Well-separated raw-scale 'people' (pairwise distance ~1.4, like different dlib faces)."""
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n_people, DIM))
    return (c / np.linalg.norm(c, axis=1, keepdims=True)).astype(np.float32)


def near(v: np.ndarray, spread: float, seed: int) -> np.ndarray:
    """A vector at about ``spread`` euclidean distance from ``v``."""
    rng = np.random.default_rng(seed)
    d = rng.normal(size=v.shape)
    return (v + spread * d / np.linalg.norm(d)).astype(np.float32)


def crowd(n_people: int, per_video: int, seed: int):
    """video(v) -> tracks of ``per_video`` of ``n_people`` well-separated people, 40 s apart (one
    confident track each), drawn by a generator of ``seed``."""
    many = person_vectors(n_people, seed=5)
    rng = np.random.default_rng(seed)

    def video(v: int) -> list[tuple]:
        who = rng.choice(n_people, per_video, replace=False)
        return [(f"v{v:03d}-{k:02d}", 40.0 * k, 40.0 * k + 30, near(many[p], 0.2, 1000 * v + k), 0.9)
                for k, p in enumerate(who)]

    return video


def set_people_config(out, **people) -> None:
    """Record people parameters in the index's manifest, as `vidx index --set people.*` does."""
    store = Store(str(out))
    m = store.read_manifest()
    m["config"] = {"people": people}
    store.write_manifest(m)


def _fsl(x, dim):
    return pa.FixedSizeListArray.from_arrays(np.asarray(x, np.float32).ravel(), dim)


def write_index(out, videos: dict[str, list[tuple]],
                actions: dict[str, list[tuple[float, float, str, float]]] | None = None,
                embedder: str | None = None) -> Store:
    """Add videos to the index at ``out`` (created if new), as a run of `vidx index` would.

    videos: video_id -> [(track_id, start_s, end_s, embedding[, quality[, x_centre]])]; one chunk per
    video, one segment per track and one detection per second of track (quality: the track's, default 1;
    x_centre: where its face is across the 640 px frame, default 5).  actions: video_id -> [(start, end,
    label, score)].  embedder: the model the index records (default: none, read as dlib's)."""
    store = Store(str(out))
    man = store.read_manifest() or {"schema_version": schemas.SCHEMA_VERSION, "commit": 1, "videos": {}}
    tables = create_all(store)
    adds: dict[str, list] = {n: [] for n in tables}
    if embedder:
        man["embedder"] = embedder
    if actions:  # the action model's vocabulary, as the index job records it (I3D: Kinetics-400's)
        from vidx.workers.actions import kinetics400

        man["action_labels"] = kinetics400()
    vrows = {k: [] for k in schemas.VIDEOS.names}
    for vid, tracks in videos.items():
        n = len(tracks)
        tid = [t[0] for t in tracks]
        emb = np.stack([t[3] for t in tracks]) if n else np.zeros((0, DIM), np.float32)
        start = [float(t[1]) for t in tracks]
        end = [float(t[2]) for t in tracks]
        qual = [float(t[4]) if len(t) > 4 else 1.0 for t in tracks]
        xc = {t[0]: float(t[5]) if len(t) > 5 else 4.5 for t in tracks}
        segs = pa.table({
            "segment_id": tid, "video_id": [vid] * n, "chunk": pa.array([0] * n, pa.int32()),
            "start_s": start, "end_s": end, "detections": pa.array([1] * n, pa.int32()),
            "weight": pa.array([1.0] * n, pa.float32()), "embedding": _fsl(emb, DIM),
            "first_box": _fsl(np.zeros((n, 4)), 4), "last_box": _fsl(np.zeros((n, 4)), 4),
            "first_embedding": _fsl(emb, DIM), "last_embedding": _fsl(emb, DIM),
            "best_quality": pa.array(qual, pa.float32()), "quality": pa.array(qual, pa.float32()),
            "thumbnail": [f"jpeg:{t}".encode() for t in tid], "thumbnail_t": start}, schema=schemas.TRACK_SEGMENTS)
        det = [(t[0], s) for t in tracks for s in np.arange(t[1], t[2], 1.0)]
        dets = pa.table({
            "video_id": [vid] * len(det), "chunk": pa.array([0] * len(det), pa.int32()),
            "frame": pa.array(range(len(det)), pa.int64()), "t": [float(d[1]) for d in det],
            "x1": pa.array([xc[d[0]] - 4.5 for d in det], pa.float32()), "y1": pa.array([0.0] * len(det), pa.float32()),
            "x2": pa.array([xc[d[0]] + 4.5 for d in det], pa.float32()), "y2": pa.array([9.0] * len(det), pa.float32()),
            "score": pa.array([1.0] * len(det), pa.float32()), "landmarks": _fsl(np.zeros((len(det), 10)), 10),
            "points": _fsl(np.zeros((len(det), 10)), 10),
            "embedding": _fsl(np.stack([emb[tid.index(d[0])] for d in det]) if det else np.zeros((0, DIM)), DIM),
            "segment_id": [d[0] for d in det], "sharpness": pa.array([100.0] * len(det), pa.float32()),
            "rejected": pa.nulls(len(det), pa.string()),
            "quality": pa.array([qual[tid.index(d[0])] for d in det], pa.float32())}, schema=schemas.FACE_DETECTIONS)
        ft = pa.table({
            "track_id": tid, "video_id": [vid] * n, "start_s": start, "end_s": end,
            "detections": pa.array([max(1, int(e - s)) for s, e in zip(start, end)], pa.int32()),
            "embedding": _fsl(emb, DIM), "thumbnail": [f"jpeg:{t}".encode() for t in tid], "thumbnail_t": start,
            "segments": [[t] for t in tid], "quality": pa.array(qual, pa.float32())}, schema=schemas.FACE_TRACKS)
        shots = pa.table({"video_id": [vid], "chunk": pa.array([0], pa.int32()), "shot": pa.array([0], pa.int32()),
                          "start_s": [0.0], "end_s": [max(end) if len(end) else 0.0],
                          "score": pa.nulls(1, pa.float32())}, schema=schemas.SHOTS)  # one shot, no cut
        adds["shots"].append(write_part(store, "shots", shots, vid, (0, 0)))
        adds["track_segments"].append(write_part(store, "track_segments", segs, vid, (0, 0)))
        adds["face_detections"].append(write_part(store, "face_detections", dets, vid, (0, 0)))
        adds["face_tracks"].append(write_part(store, "face_tracks", ft, vid))
        entry = {"path": f"/videos/{vid}.mp4", "status": "ok"}
        acts = (actions or {}).get(vid)
        if acts is not None:
            a = pa.table({"video_id": [vid] * len(acts), "start_s": [float(x[0]) for x in acts],
                          "end_s": [float(x[1]) for x in acts], "label": [x[2] for x in acts],
                          "label_id": pa.array(range(len(acts)), pa.int32()),
                          "score": pa.array([x[3] for x in acts], pa.float32()), "model": ["test"] * len(acts)},
                         schema=schemas.ACTION_SEGMENTS)
            adds["action_segments"].append(write_part(store, "action_segments", a, vid))
        man["videos"][vid] = entry
        for k, v in {"video_id": vid, "path": entry["path"], "paths": [entry["path"]], "size_bytes": 1, "status": "ok",
                     "error": None,
                     "duration_s": 60.0, "fps": 25.0, "frames": 1500, "width": 640, "height": 360, "codec": "h264",
                     "decoder": "decord", "chunks": 1, "chunks_done": 1, "tracks": n}.items():
            vrows[k].append(v)
    table = pa.table(vrows, schema=schemas.VIDEOS)
    old = list(tables["videos"].snapshot().files.values())
    if old:  # another "index run": the videos table grows
        table = pa.concat_tables([tables["videos"].read(old), table])
    for name, parts in adds.items():  # a video written again replaces its parts
        tables[name].commit(parts, [p for p in tables[name].snapshot().files.values()
                                    if p.tags.get("video_id") in videos] if parts else [])
    tables["videos"].commit([write_part(store, "videos", table)], old)
    man["commit"] += 1
    store.write_manifest(man)
    return store
