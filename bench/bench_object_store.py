"""An index on an S3 API beside one on the local disk, one run: the object store's overhead.

    python bench/bench_object_store.py [--data ../shared/data] [--chunk-seconds 60]

Starts moto's S3 server (``moto_server``, from the test extra) on a free port, then runs
``vidx index --no-actions`` over the shared videos (local sources) twice: into a local folder
and into ``s3://bench/idx`` on that server, then the same query against both.  Reports the
wall-time ratio and the requests the server answered per chunk (from its access log), by
method.  moto keeps objects in memory on this machine, so this measures vidx's request
pattern and the S3 client's cost, not a network's latency.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--chunk-seconds", type=float, default=60)
    args = ap.parse_args(argv)
    if not (args.data / "videos").is_dir():
        ap.error(f"no videos folder under {args.data} (give the shared data folder with --data)")
    import pyarrow.fs as pafs

    vidx = shutil.which("vidx", path=str(BIN)) or "vidx"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    keys = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    with tempfile.TemporaryDirectory(prefix="vidx-s3-") as tmp:
        log_path = Path(tmp) / "moto.log"
        log = open(log_path, "w")
        server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
        try:
            fs = pafs.S3FileSystem(endpoint_override=endpoint, access_key="bench", secret_key="bench",
                                   region="us-east-1", allow_bucket_creation=True)
            for _ in range(100):
                try:
                    fs.create_dir("bench")
                    break
                except OSError:
                    time.sleep(0.1)
            env = dict(os.environ, RAY_AUTH_MODE="disabled", AWS_ENDPOINT_URL=endpoint, **keys)
            runs = {}
            for name, out in (("local folder", str(Path(tmp) / "idx")), ("S3 (moto server)", "s3://bench/idx")):
                log.flush()
                before = log_path.read_text().count("\n")
                t = time.perf_counter()
                p = subprocess.run([vidx, "index", "--no-actions", str(args.data / "videos"), "--out", out,
                                    "--set", f"chunk_seconds={args.chunk_seconds:g}"], env=env, capture_output=True,
                                   text=True)
                wall = time.perf_counter() - t
                if p.returncode:
                    raise SystemExit(f"bench: {name} failed:\n{p.stderr[-2000:]}")
                t = time.perf_counter()
                q = subprocess.run([vidx, "query", out, "--face", str(args.data / "faces" / "fr_obama.jpg")], env=env,
                                   capture_output=True, text=True)
                query_s = time.perf_counter() - t
                time.sleep(0.5)
                log.flush()
                lines = log_path.read_text().splitlines()[before:]
                methods = collections.Counter(m.group(1) for ln in lines
                                              if (m := re.search(r'"(GET|PUT|POST|HEAD|DELETE) ', ln)))
                chunks = int(re.search(r"chunks: (\d+) indexed", p.stdout).group(1))
                runs[name] = (wall, query_s, chunks, methods, q.returncode)
        finally:
            server.terminate()
            server.wait(timeout=30)
            log.close()
    print(f"# vidx index of {args.data / 'videos'} (faces only, chunk_seconds {args.chunk_seconds:g}) into a local "
          f"folder and into moto's S3 server, one run")
    print("| output | index wall s | query wall s | chunks | S3 requests (index + query) | per chunk | by method |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, (wall, qs, chunks, methods, rc) in runs.items():
        n = sum(methods.values())
        print(f"| {name} | {wall:.1f} | {qs:.1f} | {chunks} | {n} | {n / max(chunks, 1):.1f} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(methods.items()))} |")
    (lw, lq, *_), (sw, sq, *_) = runs.values()
    print(f"\nobject store / local: index {sw / lw:.2f}x, query {sq / lq:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
