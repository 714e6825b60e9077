"""Real actions, measured: the I3D model (real Kinetics-400 weights) on the labelled clips of
../shared/data/actions (one Kinetics-400 action each) and the action rows of tests/truth/shared_clips.csv
(the shared videos), raw and through vidx's windows and segment rules.

    python bench/bench_real_actions.py [--data ../shared/data] [--clip-lens 32 64] [--out bench/real_actions.json]

Per clip it reports:
- raw: the model on the labelled span as one clip (I3D averages its logits over time, as DeepMind
  evaluate): top-1 and whether the truth is in the top-5;
- windows: the share of windows (each clip length, stride = half of it) whose top-1 is the truth;
- segments: what vidx's segments say over the span (the label covering most of it), for each rule set
  of a small grid (min_score x keep_score x min_duration x stride), and tIoU >= 0.5 hits.
The chosen rules are those that give the truth as top-1 on the most clips, ties broken by the tIoU
F1 and then by the fewest false segments; the grid and every clip's answer go to the JSON file.
Window probabilities are cached beside the output (delete the cache to recompute).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def truth_rows(data: Path) -> list[dict]:
    rows = []
    with open(data / "actions" / "MANIFEST.tsv") as f:
        for r in csv.DictReader(f, delimiter="\t"):
            rows.append({"file": f"actions/{r['local_file']}", "label": r["kinetics400_label"],
                         "start": float(r["start_s"]), "end": float(r["end_s"]), "set": "actions"})
    with open(ROOT / "tests" / "truth" / "shared_clips.csv") as f:
        lines = [x for x in f if not x.startswith("#")]
    for r in csv.DictReader(lines):
        if r["action"] and not r["person"]:  # scene actions (rows with a person are per-person truth)
            rows.append({"file": f"videos/{r['video']}", "label": r["action"], "start": float(r["start_s"]),
                         "end": float(r["end_s"]), "set": "videos"})
    return rows


def gif_frames(path: Path, fps: float):
    """A GIF's frames at ``fps`` (each time shows the frame on screen then), by PyAV: vidx's decoder
    refuses GIFs (not a video container), so the two GIF clips are read by the bench itself."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        fr = [(float(f.pts * f.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(s)]
    ts = np.array([t for t, _ in fr]) - fr[0][0]
    dur = ts[-1] + (np.median(np.diff(ts)) if len(ts) > 1 else 1 / fps)
    t = np.arange(0, dur - 1e-9, 1 / fps)
    pick = np.searchsorted(ts, t + 1e-9, side="right") - 1
    return np.stack([fr[i][1] for i in pick]), t, float(dur)


def frames_at(path: Path, fps: float):
    from vidx.workers import decode

    if path.suffix.lower() == ".gif":
        return gif_frames(path, fps)
    info = decode.probe(str(path))
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration, fps)
    t = info.timestamps[idx]
    frames = np.concatenate([f for _, f in decode.read_frames(str(path), info, idx, 1280, 64, t)])
    return frames, t, info.duration


def seg_answer(segs, lo: float, hi: float, labels: list[str]):
    """(label covering most of [lo, hi] or None, segments overlapping the span)."""
    cover: dict[int, float] = {}
    for s, e, lab, _ in segs:
        ov = min(e, hi) - max(s, lo)
        if ov > 0:
            cover[lab] = cover.get(lab, 0.0) + ov
    if not cover:
        return None
    return labels[max(cover, key=cover.get)]


def tiou(a, b) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--clip-lens", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "real_actions.json")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from vidx.workers import actions

    model = actions.ActionModel(actions.I3D)
    labels = model.categories
    rows = truth_rows(args.data)
    cache_p = args.out.with_suffix(".cache.npz")
    cache = dict(np.load(cache_p)) if cache_p.is_file() else {}
    clips = []
    t_model = n_frames_model = 0.0
    for r in rows:
        key = r["file"].replace("/", "__")
        frames, t, dur = frames_at(args.data / r["file"], model.fps)
        sel = np.flatnonzero((t >= r["start"] - 1e-6) & (t < r["end"]))
        if f"{key}__raw" not in cache:
            t0 = time.perf_counter()
            with torch.inference_mode():
                lg = model.model(model.preprocess(torch.from_numpy(frames[sel])[None]))
            t_model += time.perf_counter() - t0
            n_frames_model += len(sel)
            cache[f"{key}__raw"] = lg.softmax(-1)[0].numpy()
        for L in args.clip_lens:
            k = f"{key}__w{L}"
            if k in cache:
                continue
            st = L // 2
            starts = list(range(0, max(len(frames) - L, 0) + 1, st)) if len(frames) >= L else []
            if not starts:  # shorter than one window: the whole clip, repeated to L (as vidx pads nothing, none)
                cache[k] = np.zeros((0, 400), np.float32)
                cache[k + "_t"] = np.zeros((0, 2))
                continue
            t0 = time.perf_counter()
            p = model.scores(torch.from_numpy(np.stack([frames[s : s + L] for s in starts])), batch=4).numpy()
            t_model += time.perf_counter() - t0
            n_frames_model += L * len(starts)
            cache[k] = p
            cache[k + "_t"] = np.array([[t[s], t[s + L - 1] + 1 / model.fps] for s in starts])
        np.savez(cache_p, **cache)
        clips.append({**r, "key": key, "frames": len(frames), "duration": dur,
                      "note": "GIF read by the bench (vidx index refuses GIFs)" if r["file"].endswith(".gif") else ""})
        print(f"{r['file']}: {len(frames)} frames", file=sys.stderr, flush=True)

    truth_id = {c["label"]: labels.index(c["label"]) for c in clips}
    report = {"model": "i3d", "clips": [], "grid": []}
    for c in clips:
        raw = cache[f"{c['key']}__raw"]
        top5 = np.argsort(-raw)[:5]
        c_rep = {"file": c["file"], "set": c["set"], "truth": c["label"], "span": [c["start"], c["end"]],
                 "raw_top1": labels[top5[0]], "raw_p": round(float(raw[top5[0]]), 3),
                 "raw_truth_in_top5": bool(truth_id[c["label"]] in top5), "windows": {},
                 **({"note": c["note"]} if c["note"] else {})}
        for L in args.clip_lens:
            p = cache[f"{c['key']}__w{L}"]
            c_rep["windows"][L] = {"n": len(p), "top1_is_truth": float((p.argmax(1) == truth_id[c["label"]]).mean())
                                   if len(p) else None}
        report["clips"].append(c_rep)

    grid = itertools.product(args.clip_lens, (1, 2), (0.1, 0.2, 0.3, 0.4, 0.5), (0.05, 0.1, 0.15, 0.2), (0.0, 1.0, 2.0))
    for L, step, ms, ks, md in grid:
        if ks > ms:
            continue
        params = actions.SegmentParams(min_score=ms, keep_score=ks, min_duration=md)
        right, hits, n_segs, answers = 0, 0, 0, []
        for c in clips:
            p, tt = cache[f"{c['key']}__w{L}"], cache[f"{c['key']}__w{L}_t"]
            p, tt = p[::step], tt[::step]  # step 2 = stride L (every other half-stride window)
            top = np.argsort(-p, 1)[:, :5]
            ws = actions.WindowScores(tt[:, 0], tt[:, 1], top, np.take_along_axis(p, top, 1))
            segs = actions.merge_segments(ws, params)
            ans = seg_answer(segs, c["start"], c["end"], labels)
            answers.append(ans)
            right += ans == c["label"]
            n_segs += len(segs)
            hits += any(labels[s[2]] == c["label"] and tiou((s[0], s[1]), (c["start"], c["end"])) >= 0.5 for s in segs)
        prec = hits / n_segs if n_segs else 0.0
        rec = hits / len(clips)
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        report["grid"].append({"clip_len": L, "stride": L // 2 * step, "min_score": ms, "keep_score": ks,
                               "min_duration": md, "top1_right": int(right), "segments": n_segs, "tiou50_hits": hits,
                               "precision": round(prec, 3), "recall": round(rec, 3), "f1": round(f1, 3),
                               "answers": answers})
    # vidx as shipped: `vidx actions`' own path (classify_video: decode pieces, windows at the defaults,
    # the last shorter window) and the default segment rules, on every clip vidx can read (not the GIFs)
    shipped, s_right, s_hits, s_segs = [], 0, 0, 0
    for c in clips:
        if c["note"]:
            shipped.append(None)
            continue
        k = f"{c['key']}__shipped"
        if k not in cache:
            ws = actions.classify_video(model, str(args.data / c["file"]), max_side=1280)
            cache[k] = np.concatenate([ws.start[:, None], ws.end[:, None], ws.labels, ws.scores], 1)
            np.savez(cache_p, **cache)
        a = cache[k]
        ws = actions.WindowScores(a[:, 0], a[:, 1], a[:, 2:7].astype(np.int64), a[:, 7:12])
        segs = actions.merge_segments(ws, actions.SegmentParams())
        ans = seg_answer(segs, c["start"], c["end"], labels)
        shipped.append(ans)
        s_right += ans == c["label"]
        s_segs += len(segs)
        s_hits += any(labels[x[2]] == c["label"] and tiou((x[0], x[1]), (c["start"], c["end"])) >= 0.5 for x in segs)
    n_read = sum(1 for c in clips if not c["note"])
    sp, sr = (s_hits / s_segs if s_segs else 0.0), s_hits / n_read
    report["shipped"] = {"clip_len": model.clip_len, "stride": model.stride, "rules": vars(actions.SegmentParams()),
                         "clips": n_read, "top1_right": s_right, "segments": s_segs, "tiou50_hits": s_hits,
                         "precision": round(sp, 3), "recall": round(sr, 3),
                         "f1": round(2 * sp * sr / (sp + sr), 3) if sp + sr else 0.0, "answers": shipped}
    report["raw_top1_right_readable"] = int(sum(c["raw_top1"] == c["truth"] for c in report["clips"] if "note" not in c))
    best = max(report["grid"], key=lambda g: (g["top1_right"], g["f1"], -g["segments"]))
    report["best"] = {k: v for k, v in best.items()}
    report["raw_top1_right"] = int(sum(c["raw_top1"] == c["truth"] for c in report["clips"]))
    report["raw_top5_right"] = int(sum(c["raw_truth_in_top5"] for c in report["clips"]))
    report["n_clips"] = len(clips)
    if n_frames_model:
        report["cpu_ms_per_frame"] = round(1000 * t_model / n_frames_model, 2)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print("| clip | truth | raw model on the span: top-1 (p) | truth in raw top-5 | vidx as shipped | best rules of the grid |")
    print("|---|---|---|---|---|---|")
    for c, a, v in zip(report["clips"], best["answers"], shipped):
        print(f"| {c['file']} | {c['truth']} | {c['raw_top1']} ({c['raw_p']:.2f}) | {'yes' if c['raw_truth_in_top5'] else 'no'} | "
              f"{(v or '-') if not c.get('note') else 'GIF: not indexed'} | {a or '-'} |")
    sh = report["shipped"]
    print(f"vidx as shipped (clip {sh['clip_len']}, stride {sh['stride']}, rules {sh['rules']}): top-1 {sh['top1_right']}/"
          f"{sh['clips']} (raw on the same clips {report['raw_top1_right_readable']}/{sh['clips']}), tIoU>=0.5 P "
          f"{sh['precision']} R {sh['recall']} F1 {sh['f1']}")
    print(f"raw top-1 {report['raw_top1_right']}/{len(clips)}, raw top-5 {report['raw_top5_right']}/{len(clips)}; "
          f"best rules {json.dumps({k: best[k] for k in ('clip_len', 'stride', 'min_score', 'keep_score', 'min_duration')})}: "
          f"top-1 {best['top1_right']}/{len(clips)}, tIoU>=0.5 P {best['precision']} R {best['recall']} F1 {best['f1']}")


if __name__ == "__main__":
    main()
