"""Create-if-absent (``If-None-Match: *``) and compare-and-swap (``If-Match``) writes on an S3 API:
obstore beside boto3, side by side in one run.

    python bench/bench_conditional_put.py [--n 300]

Starts moto's S3 server (``moto_server``, from the test extra) on a free port and times, in
alternating rounds, small creates of new keys (a Delta commit file), a create of a key that
exists (a lost race: both must refuse) and a conditional replace (a lease renewal).  moto keeps
objects in memory on this machine: this measures each client's cost per request, not a
network's latency.  Prints one table (ms per request, medians).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="requests of each kind per client")
    args = ap.parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                      AWS_DEFAULT_REGION="us-east-1")
    server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import boto3
        import obstore
        from botocore.exceptions import ClientError
        from obstore.exceptions import AlreadyExistsError
        from obstore.store import S3Store

        client = boto3.client("s3", endpoint_url=endpoint)
        for _ in range(100):
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:  # noqa: BLE001 - the server is still starting
                time.sleep(0.1)
        store = S3Store("bench", client_options={"allow_http": True})
        body = b"x" * 400  # about a commit of a few files

        def ob_create(k):
            obstore.put(store, k, body, mode="create")

        def bo_create(k):
            client.put_object(Bucket="bench", Key=k, Body=body, IfNoneMatch="*")

        def ob_taken(k):
            try:
                obstore.put(store, k, body, mode="create")
            except AlreadyExistsError:
                return
            raise AssertionError("obstore overwrote an existing key")

        def bo_taken(k):
            try:
                client.put_object(Bucket="bench", Key=k, Body=body, IfNoneMatch="*")
            except ClientError as e:
                assert e.response["Error"]["Code"] == "PreconditionFailed"
                return
            raise AssertionError("boto3 overwrote an existing key")

        tags = {"ob": obstore.put(store, "lease-ob", body, mode="create")["e_tag"],
                "bo": client.put_object(Bucket="bench", Key="lease-bo", Body=body)["ETag"]}

        def ob_swap(_):
            tags["ob"] = obstore.put(store, "lease-ob", body, mode={"e_tag": tags["ob"]})["e_tag"]

        def bo_swap(_):
            tags["bo"] = client.put_object(Bucket="bench", Key="lease-bo", Body=body, IfMatch=tags["bo"])["ETag"]

        ob_create("taken")
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(args.n):  # alternate the clients within each round: the same machine state for both
            for kind, ob, bo in (("create", ob_create, bo_create), ("create, key exists", ob_taken, bo_taken),
                                 ("replace if unchanged", ob_swap, bo_swap)):
                for who, fn in (("obstore", ob), ("boto3", bo)):
                    key = f"{who}/{i:06d}" if kind == "create" else "taken"
                    t = time.perf_counter()
                    fn(key)
                    times.setdefault((kind, who), []).append((time.perf_counter() - t) * 1000)
        print(f"moto S3 server, {args.n} requests of each kind per client, median ms per request")
        print("| request | obstore | boto3 | boto3 / obstore |")
        print("|---|---:|---:|---:|")
        for kind in ("create", "create, key exists", "replace if unchanged"):
            a, b = (statistics.median(times[kind, w]) for w in ("obstore", "boto3"))
            print(f"| {kind} | {a:.2f} | {b:.2f} | {b / a:.2f}x |")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
