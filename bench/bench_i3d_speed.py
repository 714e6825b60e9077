"""I3D's cost per window, side by side in one run: PyTorch against onnxruntime on the CPU (same
graph exported once per clip length, logits compared), and on a GPU (when torch sees one) float32
against float16 / bfloat16 autocast, kept only where the top-5 labels stay the same on real clips.

    python bench/bench_i3d_speed.py [--clip-lens 32 64] [--repeats 3] [--data ../shared/data]

Runs alternate (torch, ort, torch, ort, ...) so that the machine's noise hits both; each figure is
the median of the repeats.  Per window and per video-second of actions (25 fps, stride = clip).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ("actions/kinetics_abseiling_k400.mp4", "actions/askany_yoga.mp4", "actions/hmdb51_punch_28.mp4",
         "videos/decord_flipping_a_pancake.mkv")


def real_windows(data: Path, L: int) -> torch.Tensor:
    """The first L frames at 25 fps of each clip, preprocessed: (N, 3, L, 224, 224)."""
    from vidx.workers import decode, i3d

    out = []
    for c in CLIPS:
        info = decode.probe(str(data / c))
        idx = decode.sample_indices(info.timestamps, 0.0, info.duration, i3d.FPS)[:L]
        f = np.concatenate([x for _, x in decode.read_frames(str(data / c), info, idx, 1280, L, info.timestamps[idx])])
        out.append(i3d.Preprocess()(torch.from_numpy(f).permute(0, 3, 1, 2)[None]))
    return torch.cat(out)


def timed(fn, *a) -> float:
    t0 = time.perf_counter()
    fn(*a)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clip-lens", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "i3d_speed.json")
    args = ap.parse_args()
    import onnxruntime as ort

    from vidx.workers import actions, i3d

    model = i3d.load_model(actions.resolve_weights(actions.I3D)).eval()
    threads = torch.get_num_threads()
    rows = []
    for L in args.clip_lens:
        x = real_windows(args.data, L)
        x1 = x[:1]
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = f"{tmp}/i3d_{L}.onnx"
            torch.onnx.export(model, (x1,), onnx_path, dynamo=False, input_names=["x"], output_names=["logits"],
                              opset_version=17)
            so = ort.SessionOptions()
            so.intra_op_num_threads = threads
            sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
            with torch.inference_mode():
                ref = model(x1).numpy()
            got = sess.run(None, {"x": x1.numpy()})[0]
            diff = float(np.abs(got - ref).max())
            t_torch, t_ort = [], []
            with torch.inference_mode():
                model(x1)  # warm-up both
                sess.run(None, {"x": x1.numpy()})
                for _ in range(args.repeats):
                    t_torch.append(timed(model, x1))
                    t_ort.append(timed(sess.run, None, {"x": x1.numpy()}))
        for name, t in (("torch cpu float32", t_torch), ("onnxruntime cpu float32", t_ort)):
            s = statistics.median(t)
            rows.append({"clip_len": L, "backend": name, "threads": threads, "s_per_window": round(s, 3),
                         "ms_per_frame": round(1000 * s / L, 1), "s_per_video_s": round(s / L * i3d.FPS, 2),
                         **({"max_abs_logit_diff_vs_torch": diff} if "onnx" in name else {})})
        print(json.dumps(rows[-2:]), file=sys.stderr, flush=True)
        if torch.cuda.is_available():
            g = model.cuda()
            xb = x.cuda()
            with torch.inference_mode():
                ref = g(xb).float()
                top_ref = ref.topk(5, 1).indices.cpu()
                for dt, label in ((None, "torch cuda float32"), (torch.float16, "torch cuda float16 autocast"),
                                  (torch.bfloat16, "torch cuda bfloat16 autocast")):
                    def run(b, dt=dt):
                        with torch.autocast("cuda", dtype=dt, enabled=dt is not None):
                            y = g(b)
                        torch.cuda.synchronize()
                        return y

                    for batch in (1, 8):
                        b = xb[:1].repeat(batch, 1, 1, 1, 1)
                        run(b)
                        ts = [timed(run, b) for _ in range(args.repeats)]
                        s = statistics.median(ts)
                        same = bool((run(xb).float().topk(5, 1).indices.cpu() == top_ref).all())
                        rows.append({"clip_len": L, "backend": label, "batch": batch, "s_per_window": round(s / batch, 4),
                                     "ms_per_frame": round(1000 * s / batch / L, 2),
                                     "windows_per_s": round(batch / s, 1), "top5_same_as_float32": same,
                                     "gpu": torch.cuda.get_device_name()})
            model = g.cpu()
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    print("| clip | backend | batch | s / window | ms / frame | s per video-s | note |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for r in rows:
        note = (f"logits within {r['max_abs_logit_diff_vs_torch']:.1e} of torch" if "max_abs_logit_diff_vs_torch" in r
                else (f"top-5 same as float32: {r['top5_same_as_float32']}" if "top5_same_as_float32" in r else ""))
        print(f"| {r['clip_len']} | {r['backend']} | {r.get('batch', 1)} | {r['s_per_window']} | {r['ms_per_frame']} | "
              f"{r.get('s_per_video_s', round(r['ms_per_frame'] * 25 / 1000, 3))} | {note} |")


if __name__ == "__main__":
    main()
