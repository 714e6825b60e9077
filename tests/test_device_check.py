"""bench/device_check.py, the one-command GPU check: without CUDA it says so and exits 0; with
--cpu every step runs on the CPU (the GPU tests are then skipped), which checks the script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "bench" / "device_check.py"


def test_without_cuda_it_says_so_and_exits_cleanly():
    if __import__("torch").cuda.is_available():
        pytest.skip("this machine has CUDA: the script runs for real (see the gpu marker)")
    p = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("no CUDA"), p.stdout + p.stderr


@pytest.mark.media
def test_every_step_runs_on_the_cpu(tmp_path, data_dir):
    out = tmp_path / "check.json"
    p = subprocess.run([sys.executable, str(SCRIPT), "--cpu", "--minutes", "0.05", "--json", str(out),
                        "--data", str(data_dir)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["gpu_tests"]["rc"] == 0 and r["gpu_tests"].get("skipped", 0) >= 1  # no GPU: skipped, not failed
    assert r["faces"]["rc"] == 0 and r["faces"]["video_h_per_gpu_h"] > 0 and "videos: 1 ok" in r["faces"]["summary"]
    assert r["stages"]["frames"] > 0 and r["stages"]["frame_size"] == "1280x720"
    for k in ("GPU tests", "faces only", "where time goes"):
        assert k in p.stdout
