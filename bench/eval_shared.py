"""Index the shared clips, enrol the two named people from their photos, and evaluate against the
truth written by eye (tests/truth/shared_clips.csv): the numbers of the "Identities" table (docs/internals/identities.md).

    python bench/eval_shared.py OUT [--embedder sface|dlib] [--reuse] [--json] [--set KEY=VALUE]
    python bench/eval_shared.py OUT --reuse --min-quality 0 0.1 0.25 0.4 0.6   # people.min_quality sweep

Obama is enrolled from five photos as a user would pick them: two portraits, the small 320x240
one, a briefing-room shot and the partial face cut at the image edge (the weak photo); Biden from
his two.  --reuse evaluates an index already in OUT (indexed by an older vidx, say) after
enrolling into it.  Needs ../shared/data (internal test media; never part of the quick start).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRUTH = ROOT / "tests" / "truth" / "shared_clips.csv"
ENROL = {
    "Barack Obama": ["fr_obama.jpg", "fr_obama2.jpg", "fr_obama_small.jpg", "fr_knntest_obama1.jpg",
                     "fr_obama_partial_face.jpg"],
    "Joe Biden": ["fr_biden.jpg", "fr_biden2.jpg"],
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--embedder", default="sface", choices=("sface", "dlib"))
    ap.add_argument("--reuse", action="store_true", help="evaluate the index already in OUT")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to vidx index")
    ap.add_argument("--min-quality", type=float, nargs="+", help="re-cluster at each value and report a row each")
    args = ap.parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from vidx.indexing.evaluate import evaluate, format_report
    from vidx.jobs.cli import main as vidx

    if not (DATA / "videos").is_dir():
        print(f"{DATA}/videos is missing (the shared test media)", file=sys.stderr)
        return 2
    if not args.reuse:
        rc = vidx(["index", str(DATA / "videos"), "--out", args.out, "--no-actions", "--embedder", args.embedder,
                   *[a for kv in args.set for a in ("--set", kv)]])
        if rc:
            return rc
    for name, photos in ENROL.items() if not args.min_quality else ():
        rc = vidx(["enroll", args.out, "--name", name, *[str(DATA / "faces" / p) for p in photos]])
        if rc:
            return rc
    if args.min_quality:
        from dataclasses import replace

        from vidx.indexing import people
        from vidx.indexing.store import Store

        base = people.people_config(Store(args.out).require_manifest())
        print("min_quality  people  B-cubed P  B-cubed R  named recall  false/true  overlapping")
        for v in args.min_quality:
            people.refresh(args.out, replace(base, min_quality=v), force=True)
            d = evaluate(args.out, str(TRUTH)).to_dict()
            b, n = d["bcubed"], d["named"]
            print(f"{v:11.2f} {len(people.load(args.out)[1]):7d} {b['precision']:10.3f} {b['recall']:10.3f} "
                  f"{n['recall']:13.3f} {n['false_ratio']:11.3f} {len(d['overlapping_tracks']):12d}")
        people.refresh(args.out, base, force=True)
        return 0
    rep = evaluate(args.out, str(TRUTH))
    print(json.dumps(rep.to_dict(), indent=1) if args.json else format_report(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
