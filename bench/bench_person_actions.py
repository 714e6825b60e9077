"""The cost of per-person actions: the index job's single-process loop over the shared videos with
``actions.per_person`` off, auto and on, side by side in one run.

    python bench/bench_person_actions.py [--data ../shared/data] [--model r3d_18]

Actions need weights; none can be downloaded here, so the model's architecture is staged with
random weights in a temporary folder (the timing is the architecture's; the labels mean
nothing).  Reported per mode: wall seconds of the loop, person windows classified from their own
tube (crop) or taken from the frame (scene), crops per second of the person stage alone (its
time measured separately), and the person stage's share of the loop.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--model", default="r3d_18")
    args = ap.parse_args(argv)
    import torch
    from torchvision.models import get_model

    from vidx.configs.config import load_config
    from vidx.jobs.index import chunk_tasks, list_inputs, plan_video
    from vidx.workers import actions
    from vidx.workers.chunk_worker import ChunkIndexer

    tmp = tempfile.mkdtemp(prefix="vidx-bench-pa-")
    torch.manual_seed(0)
    torch.save(get_model(args.model, weights=None, num_classes=400).state_dict(),
               Path(tmp) / actions.expected_file(args.model))
    os.environ["VIDX_WEIGHTS_DIR"] = tmp
    videos = sorted(str(p) for p in (Path(args.data) / "videos").iterdir())
    base = load_config(None, [f"actions.model={args.model}"])
    plans = [plan_video(i, base.chunk_seconds) for i in list_inputs(videos)]
    plans = [p for p in plans if not p.error]
    seconds = sum(p.info.duration for p in plans)
    print(f"{len(plans)} videos, {seconds:.1f} video-s, faces at {base.faces.sample_fps} fps, {args.model} "
          f"(random weights: timing only), {torch.get_num_threads()} threads")
    print("| per_person | loop s | x real time | person windows: crop / scene | person stage s | crops/s | share |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for mode in ("off", "auto", "on"):
        cfg = load_config(None, [f"actions.model={args.model}", f"actions.per_person={mode}"])
        name, wpath = actions.resolve_for_index(cfg.actions.model, "", False, allow_download=False)
        act = {"model": name, "weights_path": str(wpath), "stride": 0, "top_k": 5, "per_person": mode}
        w = ChunkIndexer(os.path.join(tmp, f"ix-{mode}"), cfg.to_dict()["faces"], cfg.to_dict()["tracking"],
                         num_cpus=torch.get_num_threads(), actions=act)
        spent = {"s": 0.0, "crop": 0, "scene": 0}
        orig = w._person_windows

        def timed(*a, **k):
            t0 = time.perf_counter()
            rows = orig(*a, **k)
            spent["s"] += time.perf_counter() - t0
            for r in rows:
                spent[r[5]] += 1
            return rows

        w._person_windows = timed
        t0 = time.perf_counter()
        for vp in plans:
            for row in chunk_tasks(vp, cfg):
                r = w.index_chunk(row)
                if not r.ok:
                    print(f"  {vp.uri}: {r.error}", file=sys.stderr)
        wall = time.perf_counter() - t0
        rate = spent["crop"] / spent["s"] if spent["s"] and spent["crop"] else 0.0
        print(f"| {mode} | {wall:.1f} | {seconds / wall:.1f} | {spent['crop']} / {spent['scene']} | {spent['s']:.1f} | "
              f"{rate:.2f} | {100 * spent['s'] / wall:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
