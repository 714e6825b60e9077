"""Cut scores on every frame the index decodes, for choosing ``workers.shots.THRESHOLD``.

    python bench/calibrate_cuts.py [--videos ../shared/data/videos] [--cuts out/cuts]

Runs :class:`vidx.workers.shots.ShotDetector` (PySceneDetect's ContentDetector on the thumbnails
vidx takes from every frame its reader decodes on the way to the 2 fps sample: every reference
frame, and the sampled ones) over the shared clips and the cuts set of
``bench/make_cuts.py``, and prints: per video the highest scores, the cuts it reports, and overall
the largest score inside a shot against the smallest at a true cut.  True cuts: the film clip's
PySceneDetect goldens (frames 90 and 210 at 24 fps: ~3.75 s and ~8.76 s) and the join of every
``cut_*`` clip (its truth rows).  A swap inside a shot (``swap_*``) may be reported as a cut when
the face is most of the picture: that splits the track there, which is right.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def scores(path: Path, fps: float = 2.0):
    """Every frame the index job's reader decodes on the way to its sampled frames (at ``fps``), as
    the index shows them to the detector: (time, score) pairs and the cuts found."""
    from vidx.workers import decode, shots

    det = shots.ShotDetector(keep_scores=True)
    info = decode.probe(str(path))
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration + 1, fps)
    for _ in decode.read_frames(str(path), info, idx, 1280, 16, every=det.push):
        pass
    return np.asarray(det.scores), [t for t, _ in det.cuts]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", default=str(ROOT.parent / "shared" / "data" / "videos"))
    ap.add_argument("--cuts", default=str(ROOT / "out" / "cuts"), help="bench/make_cuts.py's folder (skipped if absent)")
    args = ap.parse_args(argv)
    from vidx.workers import shots

    truth: dict[str, list[float]] = {"psd_goldeneye-vfr-drop3.mp4": [3.75, 8.76]}
    paths = sorted(p for p in Path(args.videos).iterdir() if p.suffix in (".mp4", ".avi", ".mkv"))
    cuts_dir = Path(args.cuts)
    if (cuts_dir / "truth.csv").is_file():
        paths += sorted((cuts_dir / "videos").glob("*.mp4"))
        with open(cuts_dir / "truth.csv") as f:
            for r in csv.DictReader(ln for ln in f if not ln.startswith("#")):
                if r["video"].startswith("cut_") and float(r["start_s"]) > 0:
                    truth.setdefault(r["video"], []).append(float(r["start_s"]))
    within, at_cut, wrong, missed = [], [], [], []
    for p in paths:
        sc, found = scores(p)
        t, s = sc[1:, 0], sc[1:, 1]
        true = truth.get(p.name, [])
        is_cut = np.zeros(len(s), bool)
        for c in true:
            is_cut[np.argmin(np.abs(t - c))] = True
        within += s[~is_cut].tolist()
        at_cut += s[is_cut].tolist()
        wrong += [(p.name, round(x, 2)) for x in found if not any(abs(x - c) < 0.06 for c in true)]
        missed += [(p.name, c) for c in true if not any(abs(x - c) < 0.06 for x in found)]
        top = np.argsort(-s)[:3]
        print(f"{p.name}: top {' '.join(f'{t[i]:.2f}s:{s[i]:.1f}' for i in top)}; cuts {[round(x, 2) for x in found]}")
    print(f"inside shots: max {max(within):.1f} ({len(within)} frame pairs); at true cuts: min {min(at_cut):.1f} "
          f"({len(at_cut)} cuts); threshold {shots.THRESHOLD}")
    print(f"cuts reported where none is: {wrong or 'none'}; true cuts missed: {missed or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
