"""What each face track does, by the real action model, against the scene truth of its clip: for an
index of ../shared/data/videos built with actions (``--set actions.per_person=on`` classifies every
track's own tube), one line per track: its span, its own longest action segments, and whether the
clip's labelled action (tests/truth/shared_clips.csv, rows without a person) is among them.

    vidx index ../shared/data/videos --out /tmp/shared-idx --set actions.per_person=on
    python bench/person_actions_report.py /tmp/shared-idx [--min-s 1.0]

Times are seconds from each video's first frame.
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--min-s", type=float, default=1.0, help="tracks shorter than this are left out")
    args = ap.parse_args()
    from vidx.indexing.tables import read_index_table

    lines = [x for x in open(ROOT / "tests" / "truth" / "shared_clips.csv") if not x.startswith("#")]
    scene = {r["video"]: r["action"] for r in csv.DictReader(lines) if r["action"] and not r["person"]}
    videos = {r["video_id"]: Path(r["path"]).name for r in read_index_table(args.out, "videos").to_pylist()}
    tracks = read_index_table(args.out, "face_tracks").select(["track_id", "video_id", "start_s", "end_s"]).to_pylist()
    pacts = defaultdict(list)
    for r in read_index_table(args.out, "person_actions").to_pylist():
        pacts[r["track_id"]].append(r)
    print("| video | scene truth | track | span s | the track's own actions (longest first, s) | truth among them |")
    print("|---|---|---|---|---|---|")
    hit = n = 0
    for t in sorted(tracks, key=lambda t: (videos[t["video_id"]], t["start_s"])):
        if t["end_s"] - t["start_s"] < args.min_s:
            continue
        name = videos[t["video_id"]]
        dur = defaultdict(float)
        for a in pacts[t["track_id"]]:
            dur[a["label"]] += a["end_s"] - a["start_s"]
        own = sorted(dur.items(), key=lambda kv: -kv[1])
        truth = scene.get(name, "")
        ok = "" if not truth else ("yes" if truth in dur else "no")
        if truth:
            n += 1
            hit += truth in dur
        acts = ", ".join(f"{k} {v:.1f}" for k, v in own[:3]) or "-"
        print(f"| {name} | {truth or '-'} | {t['track_id'][-10:]} | {t['start_s']:.1f}-{t['end_s']:.1f} | {acts} | {ok} |")
    print(f"\ntracks in clips with a scene truth whose own actions include it: {hit}/{n}")


if __name__ == "__main__":
    main()
