"""Action model speed: clips per second per model on this machine, decode time separate.

    python bench/bench_actions.py [--models s3d r3d_18 ...] [--device cpu]

Speed does not depend on the weights' values, so models without staged weights are timed
with randomly initialised ones of the same architecture (said in the output); accuracy is
torchvision's published Kinetics-400 figure.  Clips are real frames: a clip of
../shared/data/videos decoded at 15 fps (decode timed on its own).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--models", nargs="+", default=["s3d", "r3d_18", "mc3_18", "r2plus1d_18", "mvit_v2_s"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clips", type=int, default=4)
    args = ap.parse_args(argv)
    from torchvision.models import get_model

    from vidx.workers import actions, decode

    path = str(args.data / "videos" / "decord_flipping_a_pancake.mkv")
    t = time.perf_counter()
    info = decode.probe(path)
    idx = decode.sample_indices(info.timestamps, 0, info.duration, actions.CLIP_FPS)
    frames = np.concatenate([f for _, f in decode.read_frames(path, info, idx, 256, 64)])
    dec = time.perf_counter() - t
    print(f"# action models on {args.device} ({torch.get_num_threads()} torch threads); decode of "
          f"{len(frames)} frames at 15 fps ({info.width}x{info.height} -> {frames.shape[2]}x{frames.shape[1]}): "
          f"{1e3 * dec / len(frames):.1f} ms/frame")
    print("| model | clip frames | input | Kinetics-400 acc@1 | ms / clip | clips / s | weights |")
    print("|---|---:|---|---:|---:|---:|---|")
    for name in args.models:
        w = actions.weights_enum(name)
        try:
            m = actions.ActionModel(name, device=args.device)
            note = "staged"
        except actions.ActionWeightsError:
            import tempfile

            tmp = Path(tempfile.mkdtemp()) / actions.expected_file(name)
            torch.save(get_model(name, weights=None).state_dict(), tmp)
            m = actions.ActionModel(name, tmp, device=args.device)
            note = "random init (timing only)"
        T = m.clip_len
        clips = torch.from_numpy(np.stack([frames[i * T : (i + 1) * T] for i in range(args.clips)]))
        m.scores(clips[:1])  # warm-up
        t = time.perf_counter()
        m.scores(clips, batch=args.clips)
        dt = (time.perf_counter() - t) / args.clips
        crop = "x".join(map(str, w.transforms().crop_size))
        print(f"| {name} | {T} | {crop} | {w.meta['_metrics']['Kinetics-400']['acc@1']:.1f} | {1e3 * dt:.0f} | "
              f"{1 / dt:.2f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
