"""The index on disk (or an object store): files through one ``pyarrow.fs`` filesystem.

    OUT/manifest.json      the index's settings (models, config, embedder), its videos' names and
                           states, what the people and FAISS index were built from (atomic)
    OUT/<table>/           the tables (data, identities, people, gallery) as Delta Lake tables
                           (indexing/tables.py)
    OUT/corrections.json   people corrections; OUT/faces.*: the FAISS index

Every file is written to a temporary name and moved into place (on object stores an upload is
atomic by itself).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import uuid
from typing import Any, Callable

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidx.indexing import schemas
from vidx.configs.errors import IndexError_  # noqa: F401 - defined there, raised here

MANIFEST = "manifest.json"


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path) for a local path or any URI pyarrow.fs understands (s3://, gs://...)."""
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError):
        fs, path = pafs.LocalFileSystem(), os.path.abspath(uri)
    return fs, path


_BUCKET_MISSING = "the bucket {bucket} does not exist (vidx never creates buckets: create it first)"
_STORE_ERRORS = [  # (what pyarrow's S3 / GCS message holds, what the user reads)
    (("NETWORK_CONNECTION", "Could not resolve host"), "cannot reach the object store{endpoint}: {detail}"),
    (("NO_SUCH_BUCKET", "not found. To create buckets"), _BUCKET_MISSING),
    (("ACCESS_DENIED",), "the object store refused access (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and "
                         "the bucket's policy): {detail}"),
    (("INVALID_ACCESS_KEY_ID",), "the object store does not know this access key (AWS_ACCESS_KEY_ID): {detail}"),
    (("SIGNATURE_DOES_NOT_MATCH",), "the object store refused the secret key (AWS_SECRET_ACCESS_KEY): {detail}"),
]


def uri_query(uri: str) -> dict[str, str]:
    """A URI's query options (``endpoint_override``, ``scheme``, ``region``: pyarrow.fs's), last one wins."""
    from urllib.parse import parse_qs, urlparse

    return {k: v[-1] for k, v in parse_qs(urlparse(uri).query).items()} if "://" in uri else {}


def s3_endpoint(uri: str = "") -> str | None:
    """The S3 endpoint every client of vidx uses (pyarrow, obstore, delta-rs): the URI's
    ``endpoint_override`` query, else ``AWS_ENDPOINT_URL_S3``, else ``AWS_ENDPOINT_URL``, with a
    scheme (the URI's ``scheme``, https by default); None for AWS itself."""
    q = uri_query(uri)
    endpoint = q.get("endpoint_override") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get(
        "AWS_ENDPOINT_URL")
    if endpoint and "://" not in endpoint:
        endpoint = f"{q.get('scheme', 'https')}://{endpoint}"
    return endpoint or None


def storage_error(e: OSError) -> str | None:
    """One line for an object-store failure pyarrow raised (None: not one; let it through)."""
    text = str(e)
    if "AWS Error" not in text and "GCS" not in text and "bucket" not in text.lower():
        return None
    bucket = re.search(r"[Bb]ucket '([^']+)'", text)
    endpoint = s3_endpoint()
    detail = re.sub(r"\s*\(Request ID: [^)]*\)", "", text.split("Details:")[-1] if "Details:" in text
                    else text.split(": ", 1)[-1]).strip()[:200]
    for keys, msg in _STORE_ERRORS:
        if any(k in text for k in keys):
            return msg.format(bucket=repr(bucket.group(1)) if bucket else "", detail=detail,
                              endpoint=f" at {endpoint}" if endpoint else "")
    return f"object store error: {detail}"


# index root -> the check of the write lease this process holds on it (set and cleared by
# indexing.lease): tables and the lease use the store, never the other way round
WRITER_CHECKS: dict[str, Callable[[], None]] = {}


class Store:
    def __init__(self, out: str):
        self.uri = out
        self.fs, self.root = resolve(out)

    # ------------------------------------------------------------------ paths
    def path(self, rel: str) -> str:
        return posixpath.join(self.root, rel)

    # ------------------------------------------------------------------ io
    def _atomic(self, rel: str, write) -> None:
        final = self.path(rel)
        if self.fs.type_name in ("s3", "gcs"):  # an object appears whole when its upload completes:
            write(final)  # no temporary object, copy and delete (bench/bench_object_store.py)
            return
        self.fs.create_dir(posixpath.dirname(final), recursive=True)
        tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            write(tmp)
            self.fs.move(tmp, final)
        finally:
            if self.fs.get_file_info(tmp).type != pafs.FileType.NotFound:
                self.fs.delete_file(tmp)

    def missing_bucket(self) -> str | None:
        """On an object store whose bucket does not exist: that bucket's name (else None)."""
        if self.fs.type_name == "local":
            return None
        bucket = self.root.split("/", 1)[0]
        return bucket if self.fs.get_file_info(bucket).type == pafs.FileType.NotFound else None

    def write_bytes(self, rel: str, data: bytes) -> None:
        def write(p):
            with self.fs.open_output_stream(p) as f:
                f.write(data)

        self._atomic(rel, write)

    def read_bytes(self, rel: str) -> bytes:
        with self.fs.open_input_stream(self.path(rel)) as f:
            return f.read()

    def read_table(self, rel: str, schema: pa.Schema | None = None) -> pa.Table:
        """One Parquet file, without pyarrow.dataset (whose import - pandas with it - costs a
        server's start a quarter of a second)."""
        with self.fs.open_input_file(self.path(rel)) as f:
            t = pq.ParquetFile(f).read()
        return t if schema is None else t.cast(schema)

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(self.path(rel)).type == pafs.FileType.File

    def read_manifest(self) -> dict[str, Any] | None:
        if not self.exists(MANIFEST):
            return None
        try:
            m = json.loads(self.read_bytes(MANIFEST))
        except (OSError, ValueError) as e:
            raise IndexError_(f"{self.path(MANIFEST)} is unreadable ({e}); move it away to re-index") from None
        if m.get("schema_version") != schemas.SCHEMA_VERSION:
            raise IndexError_(f"{self.uri} was written by another vidx version "
                              f"(schema {m.get('schema_version')}, this vidx reads {schemas.SCHEMA_VERSION}); "
                              "index the videos again into a new folder (vidx index SRC... --out NEW)")
        return m

    def require_manifest(self, hint: str = "not a vidx index (or nothing committed yet)") -> dict[str, Any]:
        """The manifest, or IndexError_ saying the folder is not an index."""
        m = self.read_manifest()
        if m is None:
            bucket = self.missing_bucket()  # say so when the bucket itself is missing
            if bucket:
                raise IndexError_(f"{self.uri}: the bucket {bucket!r} does not exist")
            raise IndexError_(f"{self.uri} has no {MANIFEST}: {hint}")
        return m

    def check_writer(self) -> None:
        """Before a commit, a compaction, a deletion or the manifest: a writer whose lease was taken
        over (or cannot be confirmed) stops here (LeaseLost). The lease module registers the check
        of the lease this process holds (``WRITER_CHECKS``): the store does not import it."""
        check = WRITER_CHECKS.get(self.path(""))
        if check is not None:
            check()

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.check_writer()
        self.write_bytes(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True).encode())
