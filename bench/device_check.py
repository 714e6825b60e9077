"""One command for a GPU machine: the GPU tests, then the index job's throughput at 720p, one table.

    python bench/device_check.py [--minutes 3] [--json bench/device_check.json] [--cpu]

1. ``pytest -m gpu``: the tests that need CUDA (GPU against CPU results).
2. An archive of 720p clips, ``--minutes`` long in all: the shared clips scaled to 1280x720 when
   ``../shared/data/videos`` is there, else the demo clip made at 1280x720.
3. ``vidx index --config gpu --no-actions`` over it (a local Ray, one actor per GPU) while
   ``nvidia-smi`` is sampled twice a second: video-hours per GPU-hour, GPU utilisation (mean,
   peak) and memory; then the same with actions when the I3D weights are in the weights folder.
4. Where the time goes: one 720p clip's sampled frames decoded, then run through the face
   engine on the GPU (detection and embedding), timed apart.

Prints one summary table and writes it to ``--json``. Without CUDA it says so and exits 0 (on a
machine without a GPU there is nothing to check); ``--cpu`` runs every step on the CPU anyway,
to check the script itself (the suite does, with a few seconds of video).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _gpu_tests(timeout: float) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider", str(ROOT / "tests")],
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|deselected)", p.stdout)}
    return {"rc": p.returncode, **counts, "wall_s": round(time.perf_counter() - t, 1),
            "tail": p.stdout.strip().splitlines()[-1] if p.stdout.strip() else p.stderr[-300:]}


def _archive(folder: Path, minutes: float, data: Path) -> list[Path]:
    """720p clips, ``minutes`` of video in all."""
    import av

    from vidx.jobs.demo import make_demo_video

    folder.mkdir(parents=True, exist_ok=True)
    srcs = sorted((data / "videos").glob("*.mp4")) if (data / "videos").is_dir() else []
    out, total, i = [], 0.0, 0
    if not srcs:
        secs = max(2.0, minutes * 60)
        out.append(make_demo_video(folder / "demo720.mp4", seconds=secs, fps=30, size=(1280, 720),
                                   face_from=0.0))
        return out
    while total < minutes * 60:  # the shared clips, scaled to 1280x720, repeated
        src = srcs[i % len(srcs)]
        dst = folder / f"{i:03d}-{src.stem}.mp4"
        with av.open(str(src)) as ic, av.open(str(dst), "w") as oc:
            s = ic.streams.video[0]
            o = oc.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=s.average_rate or 25)
            o.width, o.height, o.pix_fmt = 1280, 720, "yuv420p"
            for f in ic.decode(s):
                g = f.reformat(width=1280, height=720, format="yuv420p")
                g.pts = None
                for pkt in o.encode(g):
                    oc.mux(pkt)
            for pkt in o.encode():
                oc.mux(pkt)
            total += float(s.duration * s.time_base) if s.duration else 5.0
        out.append(dst)
        i += 1
    return out


class _Smi(threading.Thread):
    """nvidia-smi sampled every ``every`` seconds: GPU utilisation (%) and memory (MiB)."""

    def __init__(self, every: float = 0.5):
        super().__init__(daemon=True)
        self.every, self.util, self.mem, self.stop = every, [], [], threading.Event()

    def run(self):
        smi = shutil.which("nvidia-smi")
        while smi and not self.stop.is_set():
            try:
                line = subprocess.run([smi, "--query-gpu=utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=5).stdout.splitlines()[0]
                u, m = (float(x) for x in line.split(","))
                self.util.append(u)
                self.mem.append(m)
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                pass
            self.stop.wait(self.every)

    def summary(self) -> dict:
        if not self.util:
            return {"gpu_util_mean": None, "gpu_util_peak": None, "gpu_mem_peak_mib": None}
        return {"gpu_util_mean": round(sum(self.util) / len(self.util), 1), "gpu_util_peak": max(self.util),
                "gpu_mem_peak_mib": max(self.mem)}


def _index(clips: list[Path], out: Path, config: str, actions: bool, seconds: float, timeout: float) -> dict:
    env = dict(os.environ, RAY_AUTH_MODE=os.environ.get("RAY_AUTH_MODE", "disabled"))
    cmd = [str(BIN / "vidx"), "index", *map(str, clips), "--out", str(out), "--config", config]
    if not actions:
        cmd.append("--no-actions")
    smi = _Smi()
    smi.start()
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    wall = time.perf_counter() - t
    smi.stop.set()
    smi.join(timeout=5)
    line = next((x for x in p.stdout.splitlines() if x.startswith("videos:")), p.stderr.strip()[-300:])
    return {"rc": p.returncode, "wall_s": round(wall, 1), "video_s": round(seconds, 1),
            "video_h_per_gpu_h": round(seconds / wall, 2) if p.returncode == 0 else None, "summary": line,
            **smi.summary()}


def _stages(clip: Path, device: str, fps: float = 4.0, frames: int = 64) -> dict:
    """One clip's sampled frames: decode, then the face engine (detect + embed), timed apart."""
    import numpy as np
    import torch

    from vidx.workers import decode
    from vidx.workers.faces import FaceEngine

    info = decode.probe(str(clip))
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration, fps)[:frames]
    t = time.perf_counter()
    batches = [f for _, f in decode.read_frames(str(clip), info, idx, max_side=1280, piece=16)]
    dec = time.perf_counter() - t
    eng = FaceEngine(device=device, detector="retinaface", embedder="sface")
    eng(list(batches[0][:2]))  # warm-up: kernels, caches
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t = time.perf_counter()
    faces = 0
    for b in batches:
        faces += len(eng(list(b)))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    model = time.perf_counter() - t
    n = int(sum(len(b) for b in batches))
    return {"frames": n, "faces": faces, "decode_ms_per_frame": round(1000 * dec / max(1, n), 1),
            "faces_ms_per_frame": round(1000 * model / max(1, n), 1), "device": device,
            "frame_size": f"{int(np.asarray(batches[0]).shape[2])}x{int(np.asarray(batches[0]).shape[1])}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=3.0, help="minutes of 720p video to index")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--json", type=Path, default=ROOT / "bench" / "device_check.json", help="where to write the table")
    ap.add_argument("--cpu", action="store_true", help="run every step on the CPU (checks this script)")
    ap.add_argument("--timeout", type=float, default=420, help="seconds each step may take")
    args = ap.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.cpu:
        print(f"no CUDA: torch {torch.__version__} sees no GPU on this machine, so there is nothing to check "
              "(run it where a GPU is; --cpu checks the script itself)")
        return 0
    device = "cpu" if args.cpu else "cuda"
    name = "cpu" if args.cpu else torch.cuda.get_device_name(0)
    work = Path(tempfile.mkdtemp(prefix="vidx-device-"))
    t0 = time.perf_counter()
    res: dict = {"device": name, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    res["gpu_tests"] = _gpu_tests(args.timeout)
    clips = _archive(work / "archive", args.minutes, args.data)
    from vidx.workers import decode

    seconds = sum(decode.probe(str(c)).duration for c in clips)
    config = "default" if args.cpu else "gpu"
    res["faces"] = _index(clips, work / "faces", config, False, seconds, args.timeout)
    from vidx.workers import actions as actions_mod

    if args.cpu:  # I3D on a CPU costs minutes even here; bench/bench_real_actions.py measures it
        res["faces_actions"] = {"skipped": "not with --cpu"}
    elif (actions_mod.weights_dir() / actions_mod.expected_file(actions_mod.I3D)).is_file():
        res["faces_actions"] = _index(clips, work / "both", config, True, seconds, args.timeout)
    else:
        res["faces_actions"] = {"skipped": "no I3D weights in the weights folder (vidx models pull i3d)"}
    res["stages"] = _stages(clips[0], device)
    res["wall_s"] = round(time.perf_counter() - t0, 1)
    shutil.rmtree(work, ignore_errors=True)

    g, f, a, st = res["gpu_tests"], res["faces"], res["faces_actions"], res["stages"]
    rows = [("device", f"{name} (torch {torch.__version__})"),
            ("GPU tests", f"{g.get('passed', 0)} passed, {g.get('failed', 0)} failed, {g.get('skipped', 0)} skipped "
                          f"in {g['wall_s']} s"),
            ("archive", f"{len(clips)} clip(s), {seconds / 60:.1f} min of 1280x720"),
            ("faces only", f"{f['wall_s']} s: {f['video_h_per_gpu_h']} video-hours per GPU-hour; GPU util mean "
                           f"{f['gpu_util_mean']}%, peak {f['gpu_util_peak']}%, memory peak {f['gpu_mem_peak_mib']} MiB"),
            ("faces + actions", a.get("skipped") or f"{a['wall_s']} s: {a['video_h_per_gpu_h']} video-hours per GPU-hour; "
                                                    f"GPU util mean {a['gpu_util_mean']}%"),
            ("where time goes", f"decode {st['decode_ms_per_frame']} ms/frame, faces (detect + embed) "
                                f"{st['faces_ms_per_frame']} ms/frame at {st['frame_size']}, {st['faces']} faces in "
                                f"{st['frames']} frames"),
            ("total", f"{res['wall_s']} s")]
    w = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{w}}  {v}")
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"written to {args.json}")
    return 0 if g["rc"] in (0, 5) and f["rc"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
