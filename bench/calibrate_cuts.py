"""The shot-change scores of the shared clips at vidx's face sampling rate, for choosing
``workers.shots.CUT_DISTANCE``.

    python bench/calibrate_cuts.py [VIDEO_DIR] [--fps 2] [--max-side 1280]

Prints, per video, every sampled frame's distance to the one before (times on vidx's clock,
from the first frame) and marks those above the threshold; the film clip's known cuts (PySceneDetect's
goldens: frames 90 and 210 at 24 fps, ~3.75 s and ~8.76 s) must score above it and nothing else should.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("videos", nargs="?", default=str(ROOT.parent / "shared" / "data" / "videos"))
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--max-side", type=int, default=1280)
    args = ap.parse_args(argv)
    from vidx.workers import decode, shots

    within, cuts = [], []
    for path in sorted(Path(args.videos).iterdir()):
        try:
            info = decode.probe(str(path))
        except decode.DecodeError as e:
            print(f"{path.name}: skipped ({e})")
            continue
        idx = decode.sample_indices(info.timestamps, 0.0, info.duration + 1, args.fps)
        times = info.timestamps[idx]
        frames = np.concatenate([f for _, f in decode.read_frames(str(path), info, idx, args.max_side, 16, times)])
        s = shots.cut_scores(shots.colour_histograms(frames))
        t0 = float(times[0])
        marks = [f"{t - t0:.2f}s:{v:.2f}{'*' if v >= shots.CUT_DISTANCE else ''}" for t, v in zip(times[1:], s[1:])]
        print(f"{path.name}: max {s.max():.2f}  " + " ".join(marks))
        is_cut = np.zeros(len(s), bool)
        if "goldeneye" in path.name:
            for c in (3.75, 8.76):  # the golden cuts: the first sample at or after each
                is_cut[np.searchsorted(times - t0, c - 1e-3)] = True
        within += s[1:][~is_cut[1:]].tolist()
        cuts += s[is_cut].tolist()
    print(f"within shots: max {max(within):.3f}, 99th percentile {np.percentile(within, 99):.3f} "
          f"({len(within)} pairs); cuts: {', '.join(f'{c:.3f}' for c in cuts)}; threshold {shots.CUT_DISTANCE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
