"""Decoding the sampled frames: decord by index (every frame decoded) beside PyAV by time (only
the sampled frames and the frames they are predicted from; groups of pictures with no sampled
frame jumped by seeking), and beside what the index job does now: every frame decoded and shown
to the shot detector (workers/shots.py) on the way, per video, at the index job's size, one run.

    python bench/bench_decode.py [--data ../shared/data] [--rates 2,0.5] [--threads 1]

Prints each video's codec, size, B-frames, mean key-frame interval, ms per sampled frame for
both and whether the pixels are byte-equal (they must be: the index's outputs may not change).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from vidx.workers import decode

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--rates", default="2,0.5", type=lambda v: [float(x) for x in v.split(",")],
                    help="comma-separated sampling rates, fps")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--max-side", type=int, default=1280)
    args = ap.parse_args(argv)
    if not (args.data / "videos").is_dir():
        ap.error(f"no videos folder under {args.data} (give the shared data folder with --data)")
    import av

    print(f"# decode benchmark: decord {__import__('decord').__version__} vs PyAV {av.__version__}, "
          f"{args.threads} decoder thread(s), frames at max side {args.max_side}")
    from vidx.workers import shots

    print("| video | codec | size | B-frames | key every s | rate fps | frames | decord ms/frame | "
          "PyAV sparse ms/frame | the index's read with cuts ms/frame | same pixels |")
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|---|")
    tot = {}
    for p in sorted((args.data / "videos").iterdir()):
        info = decode.probe(str(p))
        with av.open(str(p)) as c:
            bf = bool(c.streams.video[0].codec_context.has_b_frames)
        gop = float(np.mean(np.diff(info.keyframes))) if info.keyframes is not None and len(info.keyframes) > 1 \
            else info.duration
        for rate in args.rates:
            idx = decode.sample_indices(info.timestamps, 0.0, info.duration, rate)
            runs = {}
            for name, inf in (("decord", dataclasses.replace(info, backend="decord")), ("pyav", info),
                              ("every", info)):
                t = time.perf_counter()
                every = shots.ShotDetector().push if name == "every" else None
                frames = np.concatenate([f for _, f in decode.read_frames(str(p), inf, idx, args.max_side, 16,
                                                                        threads=args.threads, every=every)])
                runs[name] = (time.perf_counter() - t, frames)
                tot[(name, rate)] = tot.get((name, rate), 0.0) + runs[name][0]
            ms = {k: f"{1000 * v[0] / len(idx):.1f}" for k, v in runs.items()}
            same = np.array_equal(runs["decord"][1], runs["every"][1]) and (
                info.backend != "pyav" or np.array_equal(runs["decord"][1], runs["pyav"][1]))
            print(f"| {p.name} | {info.codec} | {info.width}x{info.height} | {'yes' if bf else 'no'} | "
                  f"{gop:.1f} | {rate:g} | {len(idx)} | {ms['decord']} | "
                  f"{ms['pyav'] if info.backend == 'pyav' else '(decord: packet times are not the frames)'} | "
                  f"{ms['every']} | {same} |")
    for rate in args.rates:
        print(f"\nall videos at {rate:g} fps: decord {tot[('decord', rate)]:.2f} s, PyAV sparse (the index before "
              f"cuts) {tot[('pyav', rate)]:.2f} s, the same read with cuts (the index now) "
              f"{tot[('every', rate)]:.2f} s ({tot[('every', rate)] / tot[('pyav', rate)]:.2f}x the sparse read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
