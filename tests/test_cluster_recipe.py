"""The manual's cluster recipe (docs/guide/cluster.md), without a published package, on Ray's own
multi-node test cluster: a wheel built from this checkout, installed on every node, and ``vidx
index`` with RAY_ADDRESS set.  Every node here shares this machine's Python, so "installed on every
node" is the wheel installed into one folder that every node's Python puts first on its path; the
test checks that each node's workers import vidx from there, not from the checkout."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

NODES_PROBE = r"""
import json, ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
ray.init()
@ray.remote(num_cpus=1)
def where():
    import vidx.jobs.cli, vidx.workers.chunk_worker
    return ray.get_runtime_context().get_node_id(), vidx.workers.chunk_worker.__file__, vidx.jobs.cli.__file__
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
print(json.dumps(ray.get([where.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)).remote()
                          for n in nodes])))
"""


def test_the_cluster_recipe_runs_from_a_wheel_of_the_checkout(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    from vidx.jobs.demo import make_demo_video

    dist, site, src = tmp_path / "dist", tmp_path / "site", tmp_path / "checkout"
    # the checkout as git has it (tracked files, and new ones not ignored): a build/ folder left by
    # an earlier build would put its stale modules into the wheel
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, check=True).stdout.decode().split("\0")
    for f in filter(None, files):
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    # the recipe's first step, as written in the manual (offline: the build backend is already installed)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", ".",
                    "-w", str(dist)], check=True, cwd=src, timeout=300)
    (wheel,) = dist.glob("vidx-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, timeout=300)
    monkeypatch.setenv("PYTHONPATH", str(site))  # every node below starts with it: "installed on every node"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    videos = tmp_path / "videos"
    videos.mkdir()
    for i in range(3):
        make_demo_video(videos / f"clip{i}.mp4", seconds=3.0 + i)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the driver's node runs no actor
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        env = dict(os.environ, RAY_ADDRESS=cluster.address)
        probe = subprocess.run([sys.executable, "-c", NODES_PROBE], env=env, capture_output=True, text=True,
                               timeout=300)
        assert probe.returncode == 0, probe.stderr[-3000:]
        found = json.loads(probe.stdout.strip().splitlines()[-1])
        assert len({n for n, _, _ in found}) == 2  # both worker nodes answered...
        for _, worker, cli in found:  # ...importing vidx from the wheel
            assert worker.startswith(str(site)) and cli.startswith(str(site)), found
        vidx = site / "bin" / "vidx"  # the wheel's own console script
        out = tmp_path / "index"
        run = subprocess.run([str(vidx), "index", str(videos), "--out", str(out), "--no-actions"], env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        assert "videos: 3 ok, 0 partial, 0 failed" in run.stdout, run.stdout + run.stderr[-2000:]
        assert "with 2 actor(s)" in run.stderr, run.stderr[-2000:]  # one on each worker node
        check = subprocess.run([str(vidx), "check", str(out)], env=env, capture_output=True, text=True, timeout=300)
        assert check.returncode == 0, check.stdout + check.stderr
    finally:
        cluster.shutdown()
