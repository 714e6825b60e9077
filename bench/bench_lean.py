"""The lean face pipeline against every frame detected and every face embedded, same checkout,
interleaved in one run (this machine's noise is several percent from run to run).

    python bench/bench_lean.py [--data ../shared/data] [--minutes 10] [--rounds 2]

The archive is bench_index's (the shared videos repeated to ``--minutes``, each copy distinct);
each round runs ``vidx index`` (a fresh process, local Ray, faces only) with
``faces.full_every=1 faces.embed=all`` and then with the defaults (2, needed).  Prints each
run's wall time, the time between the actors being ready and the work being done, and the
ratio of each pair.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_index as B  # noqa: E402

PIPELINES = (("every frame, every face", ["faces.full_every=1", "faces.embed=all"]), ("lean (defaults)", []))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=B.ROOT.parent / "shared" / "data")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    if not (args.data / "videos").is_dir():
        ap.error(f"no videos folder under {args.data} (give the shared data folder with --data)")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(prefix="vidx-lean-") as tmp:
        tmp = Path(tmp)
        _, secs = B.make_archive(args.data / "videos", tmp / "archive", args.minutes * 60)
        print(f"# {secs:.0f} video-s, faces only at 2 fps, {os.cpu_count()} CPUs")
        print("| round | pipeline | wall s | x real time | work s | detections | tracks |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        ratios = []
        for i in range(args.rounds):
            walls = []
            for j, (name, sets) in enumerate(PIPELINES):
                r = B.run(None, tmp / "archive", tmp / f"idx-{i}-{j}", sets)
                ph = r["phases"]
                walls.append(r["wall_s"])
                print(f"| {i + 1} | {name} | {r['wall_s']:.1f} | {secs / r['wall_s']:.2f} | "
                      f"{ph['work_done_s'] - ph['actors_ready_s']:.1f} | {r['detections']} | {r['tracks']} |", flush=True)
            ratios.append(walls[0] / walls[1])
        print("\nlean speed-up per round: " + ", ".join(f"{x:.2f}x" for x in ratios))
    return 0


if __name__ == "__main__":
    sys.exit(main())
