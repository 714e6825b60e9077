"""Same-person vs different-person distances of real video faces, SFace beside dlib.

    vidx index ../shared/data/videos --out /tmp/cal --no-actions      # defaults: RetinaFace + SFace
    python bench/calibrate_embedders.py /tmp/cal [--labels bench/calibration_tracks.csv] [--json]

Every kept detection of the index (RetinaFace boxes and 5 points) is embedded again by both
embedders from the same decoded frames: SFace aligned on RetinaFace's points, dlib on its own
5-point predictor's 150x150 chips.  Labels come from bench/calibration_tracks.csv (tracks
labelled by eye from bench/track_sheets.py's contact sheets), so both embedders are measured on
the same faces and the same tracks.  A track's embedding is the quality-weighted mean of its
detections', as vidx writes it.  Reported per embedder:

- track pairs: same-person (max) vs different-person (min) distance, and FAR at TAR 95%;
- detection pairs (across tracks and within them): FAR at TAR 95%;
- the tracker's link: distance of consecutive detections of one track vs the nearest other
  person in the same video; chunk joins use the same numbers;
- photos: the named people's photos (MANIFEST.tsv) against their own tracks and everyone else's;
- photo-pair verification (bench/verify_faces.py) and ms per face of each backend.

The thresholds in vidx.configs.spaces were chosen from these numbers (docs/internals/embedders.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PHOTOS = {  # single-face photos of people the clips show (MANIFEST.tsv), for the match threshold
    "Barack Obama": ["faces/fr_obama.jpg", "faces/fr_obama2.jpg", "faces/fr_obama3.jpg", "faces/fr_knntest_obama1.jpg"],
    "Joe Biden": ["faces/fr_biden.jpg", "faces/fr_biden2.jpg"],
}
OTHERS = ["faces/of_lennon-1.jpg", "faces/of_clapton-1.jpg", "faces/fr_rose_leslie_img1.jpg", "faces/if_Rob_Lowe_0001.jpg",
          "faces/dsf_Anthony_Hopkins_0001.jpg", "faces/fnp_angelina_jolie_1.jpg", "faces/of_adams.jpg",
          "faces/of_carell.jpg", "faces/if_Nathalie_Baye_0002.jpg", "faces/fr_kit_harington_john1.jpeg"]


def read_labels(path: Path) -> dict[str, str]:
    with open(path) as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return {r["track_id"]: r["person"] for r in rows}


def detections(out: str, labels: dict[str, str]):
    """The index's kept, labelled detections with their frames decoded at native size."""
    import pyarrow.compute as pc

    from vidx.indexing.tables import read_index_table
    from vidx.workers import decode

    videos = {v["video_id"]: v["path"] for v in read_index_table(out, "videos").to_pylist()}
    tracks = read_index_table(out, "face_tracks")
    seg2track = {s: t for t, segs in zip(tracks["track_id"].to_pylist(), tracks["segments"].to_pylist()) for s in segs}
    dets = read_index_table(out, "face_detections").filter(pc.is_valid(pc.field("segment_id")))
    rows = []
    for vid, path in videos.items():
        d = dets.filter(pc.equal(dets["video_id"], vid)).to_pylist()
        d = [r for r in d if labels.get(seg2track[r["segment_id"]], "?") != "?"]
        if not d:
            continue
        frames = np.unique([r["frame"] for r in d])
        info = decode.probe(path)
        imgs = {}
        for idx, fr in decode.read_frames(path, info, frames, 0, 16, info.timestamps[frames]):
            imgs.update(zip(idx.tolist(), fr))
        for r in d:
            r["track"] = seg2track[r["segment_id"]]
            r["person"] = labels[r["track"]]
            r["image"] = imgs[r["frame"]]
            rows.append(r)
    return rows


def embed_all(rows, engines):
    """{embedder: (N, 128)} for the detections, each embedder through its own alignment."""
    images = [r["image"] for r in rows]
    boxes = np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows], np.float64)
    points = np.array([r["points"] for r in rows], np.float64).reshape(-1, 5, 2)
    out = {}
    for name, eng in engines.items():
        embs = []
        for s in range(0, len(rows), 32):
            f = eng.describe(images[s : s + 32], np.arange(len(images[s : s + 32])), boxes[s : s + 32],
                             points=points[s : s + 32])
            embs.append(f.embeddings)
        out[name] = np.concatenate(embs)
    return out


def far_at_tar(same: np.ndarray, diff: np.ndarray, tar: float = 0.95) -> tuple[float, float]:
    thr = float(np.quantile(same, tar))
    return thr, float((diff <= thr).mean())


def pct(x: np.ndarray, q) -> str:
    return " / ".join(f"{v:.3f}" for v in np.quantile(x, q))


def analyse(name, sp, rows, emb, photos) -> dict:
    from vidx.workers.tracking import face_quality

    person = np.array([r["person"] for r in rows])
    track = np.array([r["track"] for r in rows])
    video = np.array([r["video_id"] for r in rows])
    t = np.array([r["t"] for r in rows])
    boxes = np.array([[r["x1"], r["y1"], r["x2"], r["y2"]] for r in rows])
    q = face_quality(boxes, np.array([r["score"] for r in rows]), np.array([r["sharpness"] for r in rows]),
                     np.array([r["points"] for r in rows], np.float64)) ** 2
    # tracks as vidx writes them: the mean of their detections weighted by quality squared
    tids = sorted(set(track.tolist()))
    temb = np.stack([(emb[track == k] * q[track == k, None]).sum(0) / q[track == k].sum() for k in tids])
    tper = np.array([person[track == k][0] for k in tids])
    D = sp.pairwise(temb, temb)
    iu = np.triu_indices(len(tids), 1)
    same_t = tper[iu[0]] == tper[iu[1]]
    ts, td = D[iu][same_t], D[iu][~same_t]
    # detections
    Dd = sp.pairwise(emb, emb)
    ju = np.triu_indices(len(rows), 1)
    same_d = person[ju[0]] == person[ju[1]]
    ds, dd = Dd[ju][same_d], Dd[ju][~same_d]
    # the tracker's view: consecutive detections of one track vs other people in the same video
    link_same, link_other = [], []
    for k in tids:
        m = np.flatnonzero(track == k)
        m = m[np.argsort(t[m])]
        link_same += [Dd[a, b] for a, b in zip(m[:-1], m[1:])]
        others = np.flatnonzero((video == video[m[0]]) & (person != person[m[0]]))
        if len(others):
            link_other += Dd[np.ix_(m, others)].min(1).tolist()
    link_same, link_other = np.array(link_same), np.array(link_other)
    # photos against tracks
    ph_same, ph_diff = [], []
    for who, pe in photos.items():
        dist = sp.pairwise(pe, temb)
        for row in dist:
            ph_same += row[tper == who].tolist()
            ph_diff += row[tper != who].tolist()
    ph_same, ph_diff = np.array(ph_same), np.array(ph_diff)
    thr_t, far_t = far_at_tar(ts, td)
    thr_d, far_d = far_at_tar(ds, dd)
    return {
        "embedder": name, "metric": sp.metric, "tracks": len(tids), "detections": len(rows),
        "track_pairs_same": int(len(ts)), "track_pairs_diff": int(len(td)),
        "track_same_max": float(ts.max()), "track_diff_min": float(td.min()),
        "track_diff_below_same_max": int((td <= ts.max()).sum()),
        "track_far_at_tar95": far_t, "track_thr_at_tar95": thr_t,
        "det_pairs_same": int(len(ds)), "det_pairs_diff": int(len(dd)),
        "det_far_at_tar95": far_d, "det_thr_at_tar95": thr_d,
        "det_same_pct_50_95_99": pct(ds, [0.5, 0.95, 0.99]), "det_diff_pct_1_5_50": pct(dd, [0.01, 0.05, 0.5]),
        "link_same_pct_50_95_max": pct(link_same, [0.5, 0.95, 1.0]),
        "link_other_pct_min_1_5": pct(link_other, [0.0, 0.01, 0.05]) if len(link_other) else "-",
        "photo_same_max": float(ph_same.max()) if len(ph_same) else None,
        "photo_diff_min": float(ph_diff.min()) if len(ph_diff) else None,
        "thresholds": {k: getattr(sp, k) for k in ("link_distance", "overlap_distance", "join_distance",
                                                    "cluster_distance", "match_distance", "same_person")},
    }


def photo_embeddings(engine, data: Path) -> dict[str, np.ndarray]:
    from vidx.workers.images import load_rgb

    out = {}
    for who, files in {**PHOTOS, **{f: [f] for f in OTHERS}}.items():
        embs = []
        for f in files:
            faces = engine([load_rgb(data / f)])
            if len(faces):
                b = faces.boxes
                embs.append(faces.embeddings[np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))])
        if embs:
            out[who] = np.stack(embs)
    return out


def speed(n: int = 64, repeat: int = 3) -> dict[str, float]:
    """ms per face of each embedder backend on random 8-bit chips, measured side by side."""
    import torch

    from vidx.workers.face_embedder import FaceEmbedder
    from vidx.workers.sface import BACKENDS, SFace

    rng = np.random.default_rng(0)
    res = {}
    models = {f"sface/{b}": (SFace("cpu", backend=b), 112) for b in BACKENDS}
    models["dlib/torch"] = (FaceEmbedder(), 150)
    for name, (m, size) in models.items():
        chips = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        m.embed(chips[:8])
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            m.embed(torch.from_numpy(chips))
            best = min(best, time.perf_counter() - t0)
        res[name] = 1000 * best / n
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="an index of ../shared/data/videos made with the defaults")
    ap.add_argument("--labels", type=Path, default=Path(__file__).with_name("calibration_tracks.csv"))
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--no-speed", action="store_true")
    args = ap.parse_args(argv)
    import torch

    from vidx.workers.faces import PHOTO_SIDE, FaceEngine

    sys.path.insert(0, str(Path(__file__).parent))
    from verify_faces import evaluate

    torch.set_num_threads(2)
    engines = {"sface": FaceEngine(detector="retinaface", embedder="sface", photo_side=PHOTO_SIDE),
               "dlib": FaceEngine(detector="retinaface", embedder="dlib", photo_side=PHOTO_SIDE)}
    rows = detections(args.out, read_labels(args.labels))
    embs = embed_all(rows, engines)
    report = {"embedders": [], "speed_ms_per_face": {} if args.no_speed else speed()}
    for name, eng in engines.items():
        r = analyse(name, eng.space, rows, embs[name], photo_embeddings(eng, args.data))
        v = evaluate(args.data, FaceEngine(detector="dlib" if name == "dlib" else "retinaface", embedder=name,
                                           photo_side=PHOTO_SIDE))
        r["photo_pairs"] = {k: v[k] for k in ("pairs", "same_pairs", "threshold", "accuracy", "best_threshold",
                                              "best_accuracy")}
        report["embedders"].append(r)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    keys = [k for k in report["embedders"][0] if k not in ("embedder", "thresholds", "photo_pairs")]
    print(f"{'':<32}" + "".join(f"{r['embedder']:>26}" for r in report["embedders"]))
    for k in keys:
        print(f"{k:<32}" + "".join(f"{(f'{r[k]:.4f}' if isinstance(r[k], float) else str(r[k])):>26}"
                                   for r in report["embedders"]))
    for r in report["embedders"]:
        p = r["photo_pairs"]
        print(f"{r['embedder']}: photo pairs {p['pairs']} ({p['same_pairs']} same): accuracy {p['accuracy']:.4f} at "
              f"{p['threshold']}, best {p['best_accuracy']:.4f} at {p['best_threshold']}; thresholds {r['thresholds']}")
    for k, v in report["speed_ms_per_face"].items():
        print(f"{k:<20} {v:6.1f} ms/face")
    return 0


if __name__ == "__main__":
    sys.exit(main())
