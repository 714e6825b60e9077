"""A worker node lost part-way through a job on Ray's own multi-node test cluster costs no chunk:
the chunks its actor held go to the live actor, and the tables equal an uninterrupted run's."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import pyarrow.fs as pafs
import pytest

from conftest import committed_chunks
from test_index_media import ENV, VIDX, _kill_args, _same_tables, uninterrupted  # noqa: F401 (a fixture)

pytestmark = pytest.mark.media


def test_a_worker_node_killed_part_way_costs_no_chunk(tmp_path, data_dir, uninterrupted):  # noqa: F811
    os.environ["RAY_AUTH_MODE"] = "disabled"
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the driver's node runs no actor
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        out = tmp_path / "node-lost"
        env = dict(ENV, RAY_ADDRESS=cluster.address)
        proc = subprocess.Popen([VIDX, "-v", "index", "--no-actions", *map(str, _kill_args(data_dir)), "--out", str(out)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        local = pafs.LocalFileSystem()
        deadline, killed = time.time() + 300, False
        while time.time() < deadline and proc.poll() is None:
            try:
                n = committed_chunks(local, str(out))
            except (OSError, ValueError):
                n = 0
            if n >= 1:  # both actors are at work: one machine goes, with the chunks its actor holds
                import psutil

                raylet = psutil.Process(workers[1].all_processes["raylet"][0].process.pid)
                doomed = raylet.children(recursive=True)  # its worker processes go with it, as on a lost machine
                cluster.remove_node(workers[1], allow_graceful=False)
                for q in doomed:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        q.kill()
                killed = True
                break
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=900)
        assert killed, "the job ended before a node could be killed; give it more work"
        assert proc.returncode == 0, stderr[-3000:]
        assert "0 partial, 0 failed" in stdout, stdout + stderr[-2000:]
        assert "a worker was lost with its node" in stderr  # the chunks it held went to the live actor
        _same_tables(uninterrupted, out)
    finally:
        cluster.shutdown()
