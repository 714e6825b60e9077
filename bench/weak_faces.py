"""Can a weak face's embedding tell whose track it continues?  Every weak face (a detector score
under the gate) that overlaps an open track is logged with its embedding's distance to that track's
own faces (the check ``tracking.verify_distance`` applies), over the shared clips and the cut and swap
clips of the cuts set, and labelled by the truth: the same person as the track (the truth person at
the face's time and place is the one at the track's last face) or another.  Then, for a few bounds,
how many same-person faces would continue their track and how many other people's would.

    python bench/make_cuts.py                      # once: out/cuts/ (never committed)
    python bench/weak_faces.py [--bounds 0.55 0.6 0.65 0.7]

The library is not changed: the tracker's weak-face step is wrapped here to record what it weighs.
Needs ../shared/data (internal test media) and out/cuts/.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "videos"
CUTS = ROOT / "out" / "cuts"
TRUTHS = [ROOT / "tests" / "truth" / "shared_clips.csv", CUTS / "truth.csv"]


def read_truth() -> dict[str, list[tuple[str, float, float, float, float]]]:
    """video file name -> (person, start, end, x_min, x_max) rows (x over the whole width when blank)."""
    out: dict[str, list] = {}
    for path in TRUTHS:
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        for r in csv.DictReader(lines):
            if not r.get("person"):
                continue
            out.setdefault(Path(r["video"]).name, []).append(
                (r["person"], float(r["start_s"]), float(r["end_s"]), float(r.get("x_min") or 0.0),
                 float(r.get("x_max") or 1.0)))
    return out


def who(rows, t: float, x: float) -> str | None:
    """The one truth person at time t and across-frame position x, or None (nobody, or several)."""
    got = {p for p, s, e, x0, x1 in rows if s - 1e-6 <= t <= e + 1e-6 and x0 <= x < x1}
    return got.pop() if len(got) == 1 else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bounds", type=float, nargs="+", default=[0.55, 0.6, 0.65, 0.7])
    args = ap.parse_args(argv)
    from vidx.configs.config import load_config
    from vidx.configs.spaces import pairwise
    from vidx.jobs.index import chunk_tasks, list_inputs, plan_all
    from vidx.workers import tracking
    from vidx.workers.chunk_worker import ChunkIndexer

    if not SHARED.is_dir() or not (CUTS / "videos").is_dir():
        print(f"needs {SHARED} and {CUTS / 'videos'} (python bench/make_cuts.py)", file=sys.stderr)
        return 2
    truth = read_truth()
    videos = sorted(p for p in SHARED.iterdir() if p.name in truth) + sorted(
        p for p in (CUTS / "videos").iterdir() if p.name.startswith(("cut_", "swap_")))
    # (video, face time, distance, track's last time, face and track's last box: centre across the frame 0-1)
    seen: list[tuple[str, float, float, float, float, float]] = []
    now: dict = {}
    original = tracking.Tracker._extend

    def recording(self, t, weak, taken, rows=None, embs=None):
        free = [tr for tr in self.open if tr.k not in taken and tr.end < t]
        if embs is not None and len(weak) and free and self.p.verify_distance:
            iou = self._overlaps(t, free, weak)[2]
            e = np.asarray(embs, np.float64)
            d = pairwise(np.stack([tr.mean() for tr in free]), np.nan_to_num(e), self.p.metric)
            w = now["width"]
            for i, j in zip(*np.nonzero(iou >= self.p.extend_iou)):
                if np.isfinite(e[j]).all():
                    fx = (weak[j][0] + weak[j][2]) / 2 / w
                    tx = (free[i].last_box[0] + free[i].last_box[2]) / 2 / w
                    seen.append((now["video"], float(t), float(d[i, j]), float(free[i].end), fx, tx))
        return original(self, t, weak, taken, rows, embs)

    tracking.Tracker._extend = recording
    cfg = load_config(None, ["actions.enabled=false"])
    cfg.resolve()
    plans = plan_all(list_inputs([str(v) for v in videos]), cfg.chunk_seconds)
    with tempfile.TemporaryDirectory() as scratch:  # the parts the worker writes are not needed
        w = ChunkIndexer(scratch, cfg.to_dict()["faces"] | {"device": "cpu"}, cfg.to_dict()["tracking"], num_cpus=1)
        for vp in plans.values():
            now.update(video=Path(vp.uri).name, width=float(vp.info.width))
            for task in chunk_tasks(vp, cfg):
                w.index_chunk(task)
    same, other, unknown = [], [], 0
    for video, t, d, t_track, fx, tx in seen:
        a, b = who(truth[video], t, fx), who(truth[video], t_track, tx)
        if a is None or b is None:
            unknown += 1
        else:
            (same if a == b else other).append(d)
    same, other = np.array(same), np.array(other)
    print(f"weak faces overlapping an open track: {len(seen)} in {len(videos)} videos "
          f"({len(same)} the track's own person, {len(other)} another person, {unknown} the truth cannot tell)")
    for name, x in (("same person", same), ("another person", other)):
        if len(x):
            print(f"  {name}: distance {x.min():.2f}-{x.max():.2f}, median {np.median(x):.2f}")
    print("| bound | same person continue | another person continue |\n|---:|---:|---:|")
    for b in args.bounds:
        print(f"| {b:.2f} | {(same <= b).sum()} of {len(same)} | {(other <= b).sum()} of {len(other)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
