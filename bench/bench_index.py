"""Index job benchmark: `vidx index` over Ray beside a plain single-process loop, one run.

    python bench/bench_index.py [--data ../shared/data] [--set key=value ...] [--embedders sface,dlib]

Faces only (actions.enabled=false) unless --set actions.enabled=true.

Both index the same videos (../shared/data/videos) with the same config and engine: the
Ray job (local Ray, actor pool, decode overlapped with inference) and a loop that runs the
same ChunkIndexer on each chunk in this process, one after the other.  Prints video-seconds
per wall-second, sampled frames per second and where the time went.  With several
``--embedders`` the single-process loop runs once per embedder (same frames, same RetinaFace
detections), side by side, and reports faces embedded per second.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="vidx index over Ray vs a single-process loop")
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--embedders", default="", help="e.g. sface,dlib: the loop once per embedder, side by side")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    from vidx.configs.config import load_config
    from vidx.jobs.index import chunk_rows, list_inputs, plan_video, run_index
    from vidx.workers.chunk_worker import ChunkIndexer

    cfg = load_config(None, ["actions.enabled=false", *args.set])  # faces; actions: bench/bench_actions.py
    videos = [str(args.data / "videos")]
    t = time.perf_counter()
    plans = [plan_video(i, cfg.chunk_seconds) for i in list_inputs(videos)]
    plan_s = time.perf_counter() - t
    chunks = [row for p in plans if not p.error for row in chunk_rows(p, cfg)]
    total_s = sum(c["end_s"] - c["start_s"] for c in chunks)

    with tempfile.TemporaryDirectory() as tmp:
        # 0. the loop once per other embedder, for the side-by-side line
        side = []
        for name in [e for e in args.embedders.split(",") if e and e != cfg.faces.embedder]:
            c2 = load_config(None, ["actions.enabled=false", *args.set, f"faces.embedder={name}"])
            w2 = ChunkIndexer(os.path.join(tmp, f"loop-{name}"), c2.to_dict()["faces"], c2.to_dict()["tracking"],
                              num_cpus=os.cpu_count() or 1)
            t = time.perf_counter()
            r2 = [w2.index_chunk(c) for c in chunks]
            side.append((name, time.perf_counter() - t, sum(r["detections"] for r in r2)))
        # 1. plain loop, this process, same worker code
        t = time.perf_counter()
        w = ChunkIndexer(os.path.join(tmp, "loop"), cfg.to_dict()["faces"], cfg.to_dict()["tracking"],
                         num_cpus=os.cpu_count() or 1)
        load_s = time.perf_counter() - t
        t = time.perf_counter()
        rs = [w.index_chunk(c) for c in chunks]
        loop_s = time.perf_counter() - t
        frames = sum(r["sampled_frames"] for r in rs)
        dets = sum(r["detections"] for r in rs)
        dec = sum(r["decode_s"] for r in rs)
        mod = sum(r["model_s"] for r in rs)
        # 2. the Ray job (includes starting a local Ray and the actors)
        t = time.perf_counter()
        s = run_index(videos, os.path.join(tmp, "ray"), cfg, progress=False)
        ray_s = time.perf_counter() - t

    print(f"# vidx index benchmark: {len(plans)} videos, {len(chunks)} chunks, {total_s:.1f} video-s, "
          f"{frames} sampled frames ({cfg.faces.sample_fps:g} fps, max side {cfg.faces.max_side}), "
          f"{os.cpu_count()} CPUs")
    print("| run | wall s | video-s / s | sampled frames / s | detections / s |")
    print("|---|---:|---:|---:|---:|")
    print(f"| single-process loop, {cfg.faces.embedder} (models loaded once, {load_s:.1f} s, not counted) | "
          f"{loop_s:.1f} | {total_s / loop_s:.2f} | {frames / loop_s:.2f} | {dets / loop_s:.1f} |")
    for name, sec, n in side:
        print(f"| single-process loop, {name} | {sec:.1f} | {total_s / sec:.2f} | {frames / sec:.2f} | {n / sec:.1f} |")
    print(f"| vidx index over Ray, {cfg.faces.embedder} (incl. Ray start, {s.chunks_run} chunks) | {ray_s:.1f} | "
          f"{total_s / ray_s:.2f} | {frames / ray_s:.2f} | {dets / ray_s:.1f} |")
    print(f"\nloop time: decode {100 * dec / loop_s:.0f}% (decoder thread, overlapped), models + tracking "
          f"{100 * mod / loop_s:.0f}%, other {100 * max(0.0, loop_s - mod) / loop_s:.0f}% "
          f"(probe, waiting on decode, Parquet writes)")
    print(f"planning (list, hash, probe; inside the Ray run's wall time, before the loop's): {plan_s:.1f} s")
    print(f"Ray / loop wall-time ratio: {ray_s / loop_s:.2f}; "
          f"(Ray - planning) / loop: {(ray_s - plan_s) / loop_s:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
