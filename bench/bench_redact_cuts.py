"""Redaction across cuts and in-shot swaps: does ``--keep`` show only the kept person?

    python bench/make_cuts.py            # once: out/cuts (never committed)
    python bench/bench_redact_cuts.py [--cuts out/cuts] [--data ../shared/data] [--json FILE]

Indexes the cuts set's ``cut_*`` and ``swap_*`` clips (faces only), names Obama and Biden from their
photos, then for each clip, against a reference pass (RetinaFace at full resolution on every
frame, score >= 0.8; each frame's largest face, which the truth gives to the clip's first person
before the join and to the second after it):

* ``--keep P`` (P: the clip's named person, its first if both are named): the other person's
  face-frames left visible (less than 90% of the face inside the blurred regions: a leak) and P's
  face-frames blurred (more than 10% of the face inside them);
* ``--all``: face-frames left visible.

Prints one row per clip and the totals; times are seconds from each video's first frame.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_redact import PHOTOS, coverage, largest, vidx  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cuts", type=Path, default=ROOT / "out" / "cuts")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, help="write the numbers here")
    args = ap.parse_args(argv)
    if not (args.cuts / "truth.csv").is_file():
        print(f"{args.cuts}/truth.csv is missing: run python bench/make_cuts.py first", file=sys.stderr)
        return 2
    from vidx.jobs.redact import redact, reference_faces

    truth: dict[str, list[tuple[str, float, float]]] = {}
    with open(args.cuts / "truth.csv") as f:
        for r in csv.DictReader(ln for ln in f if not ln.startswith("#")):
            truth.setdefault(r["video"], []).append((r["person"], float(r["start_s"]), float(r["end_s"])))
    clips = sorted(v for v in truth if v.startswith(("cut_", "swap_")))
    work = Path(tempfile.mkdtemp(prefix="vidx-redact-cuts-"))
    out = work / "index"
    print(vidx("index", "--no-actions", *[args.cuts / "videos" / c for c in clips], "--out", out)
          .stdout.strip().splitlines()[-1], file=sys.stderr)
    for name, photos in PHOTOS.items():
        vidx("enroll", out, "--name", name, *[args.data / "faces" / p for p in photos])
    rows = []
    for clip in clips:
        (first, _, join), (second, _, _) = sorted(truth[clip], key=lambda r: r[1])
        keep = first if first in PHOTOS else second
        path = str(args.cuts / "videos" / clip)
        ref = {p: largest(f) for p, f in reference_faces(path).items()}
        import av

        with av.open(path) as c:
            tb = float(c.streams.video[0].time_base)
        kept = {p: f for p, f in ref.items() if ((p * tb < join - 1e-3) == (keep == first))}
        others = {p: f for p, f in ref.items() if p not in kept}
        r = redact(str(out), clip, str(work / f"keep-{clip}"), keep=[keep], keep_boxes=True, progress=False)
        leak_other = coverage(others, r.boxes) < 0.9
        kept_blurred = coverage(kept, r.boxes) > 0.1
        a = redact(str(out), clip, str(work / f"all-{clip}"), keep=[], keep_boxes=True, progress=False)
        leak_all = coverage(ref, a.boxes) < 0.9
        rows.append({"clip": clip, "keep": keep, "other_face_frames": int(len(leak_other)),
                     "other_visible": int(leak_other.sum()), "kept_face_frames": int(len(kept_blurred)),
                     "kept_blurred": int(kept_blurred.sum()), "face_frames": int(len(leak_all)),
                     "all_visible": int(leak_all.sum())})
    print(f"{'clip':<40} {'keep':<14} {'others visible':>15} {'kept blurred':>13} {'--all visible':>14}")
    for r in rows:
        print(f"{r['clip']:<40} {r['keep']:<14} {r['other_visible']:>7} of {r['other_face_frames']:<5} "
              f"{r['kept_blurred']:>5} of {r['kept_face_frames']:<5} {r['all_visible']:>5} of {r['face_frames']:<5}")
    tot = {k: sum(r[k] for r in rows) for k in rows[0] if k not in ("clip", "keep")}
    pct = lambda a, b: f"{100 * a / b:.2f}%" if b else "-"  # noqa: E731
    print(f"total: others visible under --keep {tot['other_visible']} of {tot['other_face_frames']} "
          f"({pct(tot['other_visible'], tot['other_face_frames'])}); kept blurred {tot['kept_blurred']} of "
          f"{tot['kept_face_frames']} ({pct(tot['kept_blurred'], tot['kept_face_frames'])}); --all visible "
          f"{tot['all_visible']} of {tot['face_frames']} ({pct(tot['all_visible'], tot['face_frames'])})")
    if args.json:
        args.json.write_text(json.dumps({"clips": rows, "totals": tot}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
