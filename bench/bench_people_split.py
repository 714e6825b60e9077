"""Where `vidx index` of a new batch spends its time when the index is already large: indexing
the batch against the people refresh at its end.

    python bench/bench_people_split.py [--tracks 100000] [--data ../shared/data]

A synthetic SFace index of ``--tracks`` tracks (bench/bench_query.py's archive, refreshed in
full) gets the shared clips (``../shared/data/videos``) as a new batch, faces only, through the
real CLI; the same batch is also indexed into an empty index beside it.  The CLI's summary line
says the whole run's seconds and, of them, the people refresh's.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_query import build_index, make_archive  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = re.compile(r"tracks: (\d+);.*people: (\d+); ([\d.]+) s \(people ([\d.]+) s\)")


def index(videos: Path, out: str) -> dict:
    vidx = Path(sys.executable).with_name("vidx")
    p = subprocess.run([str(vidx), "index", str(videos), "--out", out, "--no-actions"], capture_output=True,
                       text=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    m = SUMMARY.search(p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"vidx index failed ({p.returncode}): {p.stdout[-1500:]}{p.stderr[-1500:]}")
    tracks, ppl, wall, people_s = int(m[1]), int(m[2]), float(m[3]), float(m[4])
    return {"tracks": tracks, "people": ppl, "wall_s": wall, "people_s": people_s, "indexing_s": wall - people_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, default=100_000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)
    videos = args.data / "videos"
    if not videos.is_dir():
        ap.error(f"no videos folder under {args.data} (give the shared data folder with --data)")
    from vidx.indexing import people
    from vidx.indexing.store import Store

    with tempfile.TemporaryDirectory(prefix="vidx-bench-split-") as tmp:
        big = os.path.join(tmp, "big")
        t = time.perf_counter()
        emb, _, q, tracks = make_archive(args.tracks)
        build_index(big, emb, q, tracks, np.arange(args.tracks))
        m = Store(big).read_manifest()
        m["config"] = {}  # the batch's own config is recorded by vidx index
        Store(big).write_manifest(m)
        people.refresh(big)
        print(f"synthetic index: {args.tracks} tracks, built and refreshed in {time.perf_counter() - t:.0f} s")
        n_videos = len([p for p in videos.iterdir() if p.is_file()])
        for name, out in (("into the large index", big), ("into an empty index", os.path.join(tmp, "empty"))):
            r = index(videos, out)
            print(f"{n_videos} shared videos {name}: {r['wall_s']:.1f} s, of which people {r['people_s']:.1f} s "
                  f"and indexing the batch {r['indexing_s']:.1f} s; {r['tracks']} tracks, {r['people']} people")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
