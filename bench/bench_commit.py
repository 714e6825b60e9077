"""The index job's driver-side commit path alone (no decoding): the manifest of schema 4 beside
two ways of committing to a Delta Lake log, at growing archive sizes, one run (open-tables
issue, #13; the index commits with the third since schema 5).

    pip install deltalake        # (the bench extra: pip install -e ".[bench]")
    python bench/bench_commit.py [--sizes 1000,10000,100000] [--per-commit 100]

Synthetic chunk results: each chunk is one small Parquet part (20 detection rows, as a worker
writes it), named by video and chunk.  Every ``--per-commit`` finished chunks the driver
commits (today: every 2 s, whatever finished; 100 chunks per commit is a cluster finishing 50
chunks a second).

* manifest (schema 4): the dict that named every chunk's parts, rewritten whole and atomically.
* Delta: the workers' part files are added to a Delta table by the driver in one transaction
  (``create_write_transaction`` with ``AddAction`` s: metadata only, the driver never reads the
  rows); delta-rs writes a checkpoint every 100 commits.
* Delta, vidx writer: the same parts committed by :class:`vidx.indexing.delta_log.DeltaLog`,
  which writes each commit file itself (its own add lines only); delta-rs reads the table and
  writes one checkpoint at the end of a job (timed apart: once per job, not per chunk).

At each size: ms per chunk of one more commit (median of 5), what a reader pays to learn the
committed parts (parse the manifest / open the Delta table), the log's size, and for Delta the
files left after ``optimize.compact()`` and its time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROWS = 20
CHUNKS_PER_VIDEO = 30  # 30-minute videos in 60-s chunks


def part_table(vid: str, chunk: int) -> pa.Table:
    rng = np.random.default_rng(chunk)
    return pa.table({"video_id": [vid] * ROWS, "chunk": np.full(ROWS, chunk, np.int32),
                     "t": np.sort(rng.uniform(chunk * 60, chunk * 60 + 60, ROWS)),
                     "x1": rng.uniform(0, 1000, ROWS).astype(np.float32),
                     "score": rng.uniform(0.5, 1, ROWS).astype(np.float32)})


def ids(i: int) -> tuple[str, int]:
    return f"v{i // CHUNKS_PER_VIDEO:08x}", i % CHUNKS_PER_VIDEO


class Manifest:
    def __init__(self, root: Path):
        from vidx.indexing.store import Store

        self.store = Store(str(root))
        self.m = {"schema_version": 4, "commit": 0, "videos": {}, "tables": {}}

    def add(self, i: int) -> None:
        vid, c = ids(i)
        self.m["videos"].setdefault(vid, {"chunks": {}, "path": f"/archive/{vid}.mp4", "chunk_seconds": 60})
        self.m["videos"][vid]["chunks"][str(c)] = {
            "detections": f"face_detections/{vid}/{c:05d}.parquet", "segments": f"track_segments/{vid}/{c:05d}.parquet",
            "detections_n": ROWS, "segments_n": 3}

    def commit(self) -> None:
        self.m["commit"] += 1
        self.store.write_manifest(self.m)

    def read(self) -> int:
        m = json.loads((Path(self.store.uri) / "manifest.json").read_bytes())
        return sum(len(v["chunks"]) for v in m["videos"].values())

    def size(self) -> int:
        return (Path(self.store.uri) / "manifest.json").stat().st_size


class Delta:
    def __init__(self, root: Path):
        from deltalake import DeltaTable, write_deltalake

        self.root = root
        write_deltalake(str(root), part_table("v0", 0).slice(0, 0), mode="append")  # empty table: the schema
        self.dt = DeltaTable(str(root))
        self.schema = part_table("v0", 0).schema
        self.pending: list = []

    def add(self, i: int) -> None:
        from deltalake.transaction import AddAction

        vid, c = ids(i)
        rel = f"part-{vid}-{c:05d}.parquet"
        t = part_table(vid, c)
        pq.write_table(t, self.root / rel)  # what the worker does
        st = os.stat(self.root / rel)
        stats = json.dumps({"numRecords": t.num_rows, "minValues": {"chunk": c}, "maxValues": {"chunk": c},
                            "nullCount": {"chunk": 0}})
        self.pending.append(AddAction(rel, st.st_size, {}, int(st.st_mtime * 1000), True, stats))

    def commit(self) -> None:
        self.dt.create_write_transaction(self.pending, "append", self.schema)
        self.pending = []

    def read(self) -> int:
        from deltalake import DeltaTable

        return len(DeltaTable(str(self.root)).file_uris())

    def size(self) -> int:
        return sum(p.stat().st_size for p in (self.root / "_delta_log").iterdir())


class DeltaVidx(Delta):
    def __init__(self, root: Path):
        import pyarrow.fs as pafs

        from vidx.indexing.delta_log import DeltaLog

        self.root = root
        self.schema = part_table("v0", 0).schema
        self.log = DeltaLog.create(pafs.LocalFileSystem(), str(root), self.schema)
        self.pending: list = []

    def add(self, i: int) -> None:
        from vidx.indexing.delta_log import FilePart, file_stats

        vid, c = ids(i)
        rel = f"part-{vid}-{c:05d}.parquet"
        t = part_table(vid, c)
        pq.write_table(t, self.root / rel)  # what the worker does, and it reports the part's metadata
        self.pending.append(FilePart(rel, os.path.getsize(self.root / rel), t.num_rows,
                                     file_stats(t, ["video_id", "chunk"])))

    def commit(self) -> None:
        self.log.commit(self.pending)
        self.pending = []

    def checkpoint(self) -> float:
        from deltalake import DeltaTable

        t = time.perf_counter()
        DeltaTable(str(self.root)).create_checkpoint()
        return time.perf_counter() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="manifest vs Delta log: the driver's commit path alone")
    ap.add_argument("--sizes", default="1000,10000,100000", type=lambda v: sorted(int(x) for x in v.split(",")),
                    help="comma-separated archive sizes, chunks")
    ap.add_argument("--per-commit", type=int, default=100)
    args = ap.parse_args(argv)
    sizes = args.sizes
    k = args.per_commit
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidx-commit-") as tmp:
        tmp = Path(tmp)
        (tmp / "manifest").mkdir()
        (tmp / "delta").mkdir()
        logs = {"manifest": Manifest(tmp / "manifest"), "Delta (delta-rs commit)": Delta(tmp / "delta"),
                "Delta (vidx writer)": DeltaVidx(tmp / "delta-vidx")}
        checkpoints = []
        done = 0
        fill_s = {name: 0.0 for name in logs}
        for n in sizes:
            while done < n:  # grow both to n chunks, committing every k
                batch = range(done, min(n, done + k))
                for name, lg in logs.items():
                    t = time.perf_counter()
                    for i in batch:
                        lg.add(i)
                    lg.commit()
                    fill_s[name] += time.perf_counter() - t
                done = batch[-1] + 1
            for name, lg in logs.items():
                times = []
                for r in range(5):  # five more commits of k chunks each, timed (commit only)
                    for i in range(done + r * k, done + (r + 1) * k):
                        lg.add(i)
                    t = time.perf_counter()
                    lg.commit()
                    times.append(time.perf_counter() - t)
                if isinstance(lg, DeltaVidx):  # the job's end: one checkpoint, then readers open it
                    checkpoints.append((n, lg.checkpoint()))
                t = time.perf_counter()
                seen = lg.read()
                read_s = time.perf_counter() - t
                rows.append({"chunks": n, "log": name, "commit_ms_per_chunk": 1000 * statistics.median(times) / k,
                             "reader_open_s": read_s, "log_bytes": lg.size(), "parts_seen": seen})
            done += 5 * k
        from deltalake import DeltaTable

        dt = DeltaTable(str(tmp / "delta"))
        before = len(dt.file_uris())
        t = time.perf_counter()
        dt.optimize.compact()
        compact_s = time.perf_counter() - t
        dt = DeltaTable(str(tmp / "delta"))
        after = len(dt.file_uris())
    print(f"# commit path: {k} chunks per commit, {ROWS} rows per chunk part, {CHUNKS_PER_VIDEO} chunks per video")
    print("| chunks in the archive | log | commit ms per chunk | a reader opens the log s | log bytes |")
    print("|---:|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['chunks']:,} | {r['log']} | {r['commit_ms_per_chunk']:.3f} | {r['reader_open_s']:.3f} | "
              f"{r['log_bytes']:,} |")
    print("\nfilling (add + commit, every log; the Delta logs write the part files too): "
          + ", ".join(f"{n} {s:.1f} s" for n, s in fill_s.items()))
    print("Delta (vidx writer), one checkpoint at the job's end: "
          + ", ".join(f"{n:,} chunks {s:.2f} s" for n, s in checkpoints))
    print(f"Delta optimize.compact(): {before:,} files -> {after:,} in {compact_s:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
