"""Per-video results from the chunks' rows: tracks joined across chunk boundaries, action
windows merged into segments, each person's actions."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from vidx.configs.config import Config
from vidx.configs.spaces import space
from vidx.indexing import schemas
from vidx.workers.tracking import track_quality

log = logging.getLogger(__name__)


def action_segments(video_id: str, windows: pa.Table, labels: list[str], cfg: Config) -> pa.Table:
    """Merge a video's windows (all chunks, in time order) into segments."""
    from vidx.workers.actions import SegmentParams, WindowScores, merge_segments

    w = windows.sort_by("start_s")
    k = cfg.actions.top_k
    lab = np.array([x + [-1] * (k - len(x)) for x in w["label_ids"].to_pylist()], np.int64).reshape(-1, k)
    sc = np.array([x + [0.0] * (k - len(x)) for x in w["scores"].to_pylist()], np.float64).reshape(-1, k)
    ws = WindowScores(w["start_s"].to_numpy(), w["end_s"].to_numpy(), lab, sc)
    p = SegmentParams(cfg.actions.min_score, cfg.actions.keep_score, cfg.actions.min_duration)
    segs = merge_segments(ws, p)
    model = w["model"][0].as_py() if w.num_rows else ""
    return pa.table({
        "video_id": [video_id] * len(segs), "start_s": [x[0] for x in segs], "end_s": [x[1] for x in segs],
        "label": [labels[x[2]] for x in segs], "label_id": pa.array([x[2] for x in segs], pa.int32()),
        "score": pa.array([x[3] for x in segs], pa.float32()), "model": [model] * len(segs),
    }, schema=schemas.ACTION_SEGMENTS)


def person_actions(video_id: str, windows: pa.Table, tracks: pa.Table, labels: list[str], cfg: Config) -> pa.Table:
    """Each face track's windows (its chunk segments joined, in time order) merged into segments by
    the rules of :func:`action_segments`."""
    seg_track = {sg: t for t, sgs in zip(tracks["track_id"].to_pylist(), tracks["segments"].to_pylist()) for sg in sgs}
    rows: dict[str, list] = {k: [] for k in schemas.PERSON_ACTIONS.names}
    tid = np.array([seg_track.get(s, s) for s in windows["segment_id"].to_pylist()], dtype=object)
    for track in sorted(set(tid.tolist())):
        mine = windows.filter(pa.array(tid == track))
        segs = action_segments(video_id, mine.drop_columns(["segment_id", "source"]), labels, cfg)
        crop = {(a, b) for a, b, src in zip(mine["start_s"].to_pylist(), mine["end_s"].to_pylist(),
                                            mine["source"].to_pylist()) if src == "crop"}
        for r in segs.to_pylist():
            rows["track_id"].append(track)
            for k in ("video_id", "start_s", "end_s", "label", "label_id", "score", "model"):
                rows[k].append(r[k])
            rows["source"].append("crop" if any(r["start_s"] <= a < r["end_s"] for a, _ in crop) else "scene")
    return pa.table(rows, schema=schemas.PERSON_ACTIONS)


# ---------------------------------------------------------------------------- commit


def _fsl(values: np.ndarray, dim: int) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(np.asarray(values, np.float32).ravel(), dim)


def join_tracks(video_id: str, segs: pa.Table, bounds: list[tuple[float, float]], cfg: Config) -> pa.Table:
    """Join segments that a chunk boundary cut: same person (embedding distance below
    tracking.join_distance) and at most tracking.max_gap_s between the end of one and the
    start of the next.  Union-find over segments; aggregates weighted by detection quality."""
    n = segs.num_rows
    if n == 0:
        return schemas.FACE_TRACKS.empty_table()
    d = segs.to_pydict()
    chunk = np.asarray(d["chunk"])
    start, end = np.asarray(d["start_s"]), np.asarray(d["end_s"])
    first_e = np.asarray(d["first_embedding"], np.float32)
    last_e = np.asarray(d["last_embedding"], np.float32)
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    gap = cfg.tracking.max_gap_s  # the tracker's own rule for a continuing track
    sp = space(cfg.faces.embedder)
    for c in range(len(bounds) - 1):
        edge = bounds[c][1]
        a = np.flatnonzero((chunk == c) & (end >= edge - gap))
        b = np.flatnonzero((chunk == c + 1) & (start <= edge + gap))
        if len(a) == 0 or len(b) == 0:
            continue
        dist = sp.pairwise(last_e[a], first_e[b])
        dist[dist >= cfg.tracking.join_distance] = np.inf
        dist[(start[b][None] - end[a][:, None]) > gap] = np.inf
        while np.isfinite(dist).any():
            i, j = np.unravel_index(np.argmin(dist), dist.shape)
            parent[find(b[j])] = find(a[i])
            dist[i, :] = np.inf
            dist[:, j] = np.inf
    roots = np.array([find(i) for i in range(n)])
    emb = np.asarray(d["embedding"], np.float32)
    w = np.asarray(d["weight"], np.float64)
    q = np.asarray(d["best_quality"])
    top = np.asarray(d["quality"], np.float64)
    det = np.asarray(d["detections"])
    rows = {k: [] for k in schemas.FACE_TRACKS.names}
    order = np.lexsort((start, roots))
    for r in dict.fromkeys(roots[order]):  # one row per joined track, by first appearance
        m = np.flatnonzero(roots == r)
        m = m[np.argsort(start[m])]
        best = m[np.argmax(q[m])]
        rows["track_id"].append(d["segment_id"][m[0]])
        rows["video_id"].append(video_id)
        rows["start_s"].append(float(start[m].min()))
        rows["end_s"].append(float(end[m].max()))
        rows["detections"].append(int(det[m].sum()))
        rows["embedding"].append((emb[m] * w[m, None]).sum(0) / max(w[m].sum(), 1e-9))
        rows["thumbnail"].append(d["thumbnail"][best])
        rows["thumbnail_t"].append(float(d["thumbnail_t"][best]))
        rows["segments"].append([d["segment_id"][i] for i in m])
        rows["quality"].append(float(track_quality(top[m].max(), det[m].sum())))
    rows["embedding"] = _fsl(np.stack(rows["embedding"]), schemas.EMBED_DIM)
    rows["detections"] = pa.array(rows["detections"], pa.int32())
    rows["quality"] = pa.array(rows["quality"], pa.float32())
    return pa.table(rows, schema=schemas.FACE_TRACKS)


# ---------------------------------------------------------------------------- run
