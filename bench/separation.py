"""Same-person vs different-person distances of the tracks two indexes of the shared clips wrote.

    python bench/separation.py REFERENCE [OTHER ...] [--labels bench/calibration_tracks.csv] [--json]

REFERENCE is an index of ../shared/data/videos made with the pipeline the labels were written
on (bench/calibration_tracks.csv: who each track is, by eye); an OTHER index of the same videos
(another pipeline, say detection on crops and embedding only what identity needs) gets each
track's person from the reference detections it shares (same video, same sampled time, box IoU
>= 0.5; the majority of its faces).  For each index, on the track embeddings as written
(``face_tracks.embedding``, the embedder's metric): the largest same-person distance, the
smallest different-person distance, how many different-person pairs fall below that largest
same-person distance, and the same/different split at 95% of same-person pairs accepted.
Unlike bench/calibrate_embedders.py nothing is embedded again: this measures what the index keeps.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

LABELS = Path(__file__).with_name("calibration_tracks.csv")


def read_labels(path: Path = LABELS) -> dict[str, str]:
    with open(path, newline="") as f:
        return {r["track_id"]: r["person"] for r in csv.DictReader(line for line in f if not line.startswith("#"))}


def _detections(out: str):
    from vidx.indexing.tables import read_index_table

    d = read_index_table(out, "face_detections").select(["video_id", "t", "x1", "y1", "x2", "y2", "segment_id",
                                                           "embedding"])
    tr = read_index_table(out, "face_tracks")
    seg2track = {s: t for t, segs in zip(tr["track_id"].to_pylist(), tr["segments"].to_pylist()) for s in segs}
    return d.to_pylist(), seg2track, tr


def track_people(reference: str, other: str, labels: dict[str, str]) -> dict[str, str]:
    """Each of ``other``'s tracks -> the labelled person of the reference faces it shares."""
    from vidx.workers.tracking import iou_matrix

    ref, ref_s2t, _ = _detections(reference)
    oth, oth_s2t, _ = _detections(other)
    by_frame: dict[tuple, list] = {}
    for r in ref:
        person = labels.get(ref_s2t.get(r["segment_id"], ""), "?")
        if r["segment_id"] is not None and person != "?":
            by_frame.setdefault((r["video_id"], round(r["t"], 3)), []).append(r | {"person": person})
    votes: dict[str, Counter] = {}
    for r in oth:
        cands = by_frame.get((r["video_id"], round(r["t"], 3)))
        if r["segment_id"] is None or not cands:
            continue
        box = lambda x: np.array([[x["x1"], x["y1"], x["x2"], x["y2"]]])  # noqa: E731
        iou = iou_matrix(box(r), np.concatenate([box(c) for c in cands]))[0]
        if iou.max() >= 0.5:
            votes.setdefault(oth_s2t[r["segment_id"]], Counter())[cands[int(iou.argmax())]["person"]] += 1
    return {t: c.most_common(1)[0][0] for t, c in votes.items()}


def separation(out: str, people: dict[str, str], metric: str = "cosine") -> dict:
    from vidx.configs.spaces import pairwise

    _, _, tr = _detections(out)
    ids = tr["track_id"].to_pylist()
    keep = [i for i, t in enumerate(ids) if people.get(t, "?") != "?"]
    emb = np.stack(tr["embedding"].to_numpy(zero_copy_only=False))[keep].astype(np.float32)
    who = np.array([people[ids[i]] for i in keep])
    dist = pairwise(emb, emb, metric)
    iu = np.triu_indices(len(keep), 1)
    same = who[iu[0]] == who[iu[1]]
    ds, dd = dist[iu][same], dist[iu][~same]
    thr = float(np.quantile(ds, 0.95)) if len(ds) else float("nan")
    res = {"tracks": len(keep), "people": len(set(who.tolist())), "same_pairs": int(len(ds)), "diff_pairs": int(len(dd)),
           "same_max": float(ds.max()) if len(ds) else float("nan"), "diff_min": float(dd.min()),
           "diff_below_same_max": int((dd <= ds.max()).sum()) if len(ds) else 0,
           "thr_at_tar95": thr, "far_at_tar95": float((dd <= thr).mean()) if len(ds) else float("nan")}
    # the faces that carry an embedding, across tracks: the same person's faces vs others'
    dets, s2t, _ = _detections(out)
    rows = [(people[s2t[r["segment_id"]]], s2t[r["segment_id"]], r["embedding"]) for r in dets
            if r["embedding"] is not None and r["segment_id"] is not None and people.get(s2t[r["segment_id"]], "?") != "?"]
    e = np.asarray([r[2] for r in rows], np.float32)
    p = np.array([r[0] for r in rows])
    t = np.array([r[1] for r in rows])
    dist = pairwise(e, e, metric)
    iu = np.triu_indices(len(rows), 1)
    across = t[iu[0]] != t[iu[1]]
    same = (p[iu[0]] == p[iu[1]])[across]
    dv = dist[iu][across]
    ds, dd = dv[same], dv[~same]
    thr = float(np.quantile(ds, 0.95))
    res |= {"faces": len(rows), "face_same_p95": thr, "face_diff_min": float(dd.min()),
            "face_far_at_tar95": float((dd <= thr).mean())}
    return res


def table(rows: dict[str, dict]) -> str:
    out = ["| index | labelled tracks | people | tracks: same max / different min | different below same max | "
           "embedded faces | faces across tracks: same p95 / different min | FAR at TAR 95% |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for k, r in rows.items():
        out.append(f"| {k} | {r['tracks']} | {r['people']} | {r['same_max']:.3f} / {r['diff_min']:.3f} | "
                   f"{r['diff_below_same_max']} | {r['faces']} | {r['face_same_p95']:.3f} / {r['face_diff_min']:.3f} | "
                   f"{r['face_far_at_tar95']:.4f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference")
    ap.add_argument("other", nargs="*")
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    for out in (args.reference, *args.other):
        if not (Path(out) / "manifest.json").is_file():
            ap.error(f"{out} is not a vidx index (no manifest.json): give indexes of ../shared/data/videos")
    labels = read_labels(args.labels)
    rows = {args.reference: separation(args.reference, labels)}
    for o in args.other:
        rows[o] = separation(o, track_people(args.reference, o, labels))
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
