"""kill -9 during a checkpoint and during a vacuum: the table stays readable by delta-rs and by
vidx with the same rows, and running the step again finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import deltalake
import pyarrow.fs as pafs
import pytest

from test_delta_log import SCHEMA, part
from vidx.indexing.delta_log import DeltaLog

STEP = textwrap.dedent("""
    import sys
    import pyarrow.fs as pafs
    from vidx.indexing.delta_log import DeltaLog
    from vidx.indexing.store import Store
    from vidx.indexing.tables import IndexTable
    root, what = sys.argv[1], sys.argv[2]
    log = DeltaLog(pafs.LocalFileSystem(), root)
    print("go", flush=True)
    if what == "checkpoint":
        log.checkpoint()
    else:  # what `vidx vacuum --retention-hours 0` runs on each table
        import os
        import pyarrow as pa
        IndexTable(Store(os.path.dirname(root)), os.path.basename(root), pa.schema([])).vacuum(0)
    print("done", flush=True)
""")


def _table(tmp_path, n: int = 120) -> tuple[str, list]:
    root = str(tmp_path / "t")
    log = DeltaLog.create(pafs.LocalFileSystem(), root, SCHEMA)
    live = []
    for c in range(n):  # every file replaced once: n live, n removed
        a, _ = part(root, "v1", c, tag="a")
        b, _ = part(root, "v1", c, tag="b")
        log.commit([a])
        log.commit([b], removes=[a])
        live.append(b.path)
    return root, sorted(live)


def _check(root: str, live: list) -> None:
    dt = deltalake.DeltaTable(root)
    assert sorted(os.path.relpath(u, root) for u in dt.file_uris()) == live
    assert dt.to_pyarrow_table().num_rows == 5 * len(live)
    assert sorted(DeltaLog(pafs.LocalFileSystem(), root).snapshot().files) == live


@pytest.mark.parametrize("what", ["checkpoint", "vacuum"])
def test_kill_9_during_housekeeping_leaves_a_readable_table(tmp_path, what):
    root, live = _table(tmp_path)
    killed = 0
    for delay in (0.0, 0.005, 0.02, 0.05, 0.1, 0.2):
        proc = subprocess.Popen([sys.executable, "-c", STEP, root, what], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "go"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        rest = proc.communicate()[0]
        killed += "done" not in rest
        _check(root, live)
    assert killed >= 1, f"every {what} finished before the kill: give it more work"
    p = subprocess.run([sys.executable, "-c", STEP, root, what], capture_output=True, text=True)
    assert p.returncode == 0 and "done" in p.stdout, p.stderr
    _check(root, live)
    if what == "vacuum":
        on_disk = sorted(str(f.relative_to(root)) for f in (tmp_path / "t").rglob("*.parquet") if "_delta_log" not in f.parts)
        assert on_disk == live
