"""Where videos come from: local paths, pyarrow.fs URIs, and members of .tar / .zip archives.

A member of an archive is named ``ARCHIVE::MEMBER`` (e.g. ``clips.tar::day1/cam2.mp4``).
Member names are only labels: nothing is ever written under a member's name.  A member is
read as a stream, or copied to a temporary file with a generated name (decoders need a
file), at most ``MAX_MEMBER_BYTES`` and never beyond the free space of the temporary folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from typing import IO, Iterator

import pyarrow.fs as pafs

from vidx.indexing.store import resolve
from vidx.configs.errors import ArchiveRefused, SourceError  # noqa: F401 - defined there, raised here

SEP = "::"
MAX_MEMBER_BYTES = 64 << 30  # refuse absurd members (zip bombs declare what they like)
MAX_ARCHIVE_BYTES = 64 << 30  # default bound on what an archive may expand to (config: max_archive_gb)
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip")
_HEADERS = {".tar.gz": "gzip", ".tgz": "gzip", ".tar.bz2": "bzip2", ".tar.xz": "xz", ".zip": "zip", ".tar": "tar"}


def archive_suffix(name: str) -> str | None:
    low = name.lower()
    return next((sfx for sfx in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True) if low.endswith(sfx)), None)


def not_an_archive(name: str, head: bytes) -> str | None:
    """Why a file named like an archive is not one ("not an archive: bad gzip header"), or None."""
    sfx = archive_suffix(name)
    if sfx is None or is_archive(name, head):
        return None
    return f"not an archive: bad {_HEADERS[sfx]} header" if sfx != ".tar" else "not an archive: no tar header"


class _Bounded:
    """A decompressed stream that refuses to expand beyond ``limit`` bytes (gzip / bzip2 / xz bombs)."""

    def __init__(self, f, limit: int, uri: str):
        self.f, self.limit, self.uri = f, limit, uri

    def _check(self):
        if self.f.tell() > self.limit:
            raise ArchiveRefused(f"archive expands beyond {_gb(self.limit)}: refused")

    def read(self, n=-1):
        data = self.f.read(n)
        self._check()
        return data

    def seek(self, off, whence=0):
        pos = self.f.seek(off, whence)
        self._check()
        return pos

    def tell(self):
        return self.f.tell()

    def seekable(self):
        return True


def _gb(n: int) -> str:
    return f"{n / (1 << 30):g} GB"


def split(uri: str) -> tuple[str, str | None]:
    """(archive or file uri, member name or None)."""
    if SEP in uri:
        a, m = uri.split(SEP, 1)
        return a, m
    return uri, None


def is_archive(name: str, head: bytes) -> str | None:
    """'zip', 'tar' or None, by content (and name for compressed tars)."""
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    low = name.lower()
    if low.endswith((".tar.gz", ".tgz")) and head[:2] == b"\x1f\x8b":
        return "tar"
    if low.endswith(".tar.bz2") and head[:3] == b"BZh":
        return "tar"
    if low.endswith(".tar.xz") and head[:6] == b"\xfd7zXZ\x00":
        return "tar"
    return None


@contextlib.contextmanager
def _open_archive(uri: str, limit: int = MAX_ARCHIVE_BYTES):
    import bz2
    import gzip
    import lzma

    fs, path = resolve(uri)
    with fs.open_input_file(path) as raw:
        head = raw.read(512)
        raw.seek(0)
        kind = is_archive(path, head)
        if kind == "zip":
            with zipfile.ZipFile(raw) as z:
                declared = sum(i.file_size for i in z.infolist())
                if declared > limit:
                    raise ArchiveRefused(f"archive expands beyond {_gb(limit)}: refused ({declared >> 20} MiB declared)")
                yield kind, z
        elif kind == "tar":
            if head[:2] == b"\x1f\x8b":  # gzip: its trailer declares the size (mod 4 GiB), checked before reading
                size = raw.size()
                raw.seek(max(0, size - 4))
                declared = int.from_bytes(raw.read(4), "little")
                raw.seek(0)
                if declared > limit:
                    raise ArchiveRefused(f"archive expands beyond {_gb(limit)}: refused ({declared >> 20} MiB declared "
                                         f"by a {size >> 10} KiB file)")
                inner = gzip.GzipFile(fileobj=raw)
            elif head[:3] == b"BZh":
                inner = bz2.BZ2File(raw)
            elif head[:6] == b"\xfd7zXZ\x00":
                inner = lzma.LZMAFile(raw)
            else:
                inner = raw
            with tarfile.open(fileobj=_Bounded(inner, limit, uri) if inner is not raw else raw, mode="r:") as t:
                yield kind, t
        else:
            raise SourceError(f"{uri}: not a tar or zip archive")


def members(uri: str, limit: int = MAX_ARCHIVE_BYTES) -> Iterator[tuple[str, int, bytes]]:
    """(member name, size, first 1 KiB) of every regular file in an archive; an archive that
    would expand beyond ``limit`` bytes raises :class:`ArchiveRefused`."""
    with _open_archive(uri, limit) as (kind, a):
        if kind == "zip":
            for info in a.infolist():
                if info.is_dir():
                    continue
                with a.open(info) as f:
                    yield info.filename, info.file_size, f.read(1024)
        else:
            for info in a:
                if not info.isfile():
                    continue
                f = a.extractfile(info)
                yield info.name, info.size, f.read(1024) if f else b""


@contextlib.contextmanager
def open_member(uri: str) -> Iterator[tuple[IO[bytes], int]]:
    """(binary stream, size) of ARCHIVE::MEMBER."""
    archive, name = split(uri)
    with _open_archive(archive) as (kind, a):
        try:
            if kind == "zip":
                info = a.getinfo(name)
                with a.open(info) as f:
                    yield f, info.file_size
            else:
                info = a.getmember(name)
                if not info.isfile():
                    raise KeyError(name)
                yield a.extractfile(info), info.size
        except KeyError:
            raise SourceError(f"no member {name!r} in {archive}") from None


@contextlib.contextmanager
def local_file(uri: str) -> Iterator[str]:
    """A local path for a video: itself, or a bounded temporary copy (remote object, archive member)."""
    base, member = split(uri)
    fs, path = resolve(base)
    if member is None and fs.type_name == "local":
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="vidx-")
    try:
        dst = os.path.join(tmp, "video")  # a generated name: member names are never used as paths
        if member is None:
            size = fs.get_file_info(path).size or 0
            _check_room(tmp, size, uri)
            with fs.open_input_stream(path) as src, open(dst, "wb") as out:
                shutil.copyfileobj(src, out, 8 << 20)
        else:
            with open_member(uri) as (src, size):
                _check_room(tmp, size, uri)
                with open(dst, "wb") as out:
                    copied = 0
                    while chunk := src.read(8 << 20):
                        copied += len(chunk)
                        if copied > size or copied > MAX_MEMBER_BYTES:
                            raise SourceError(f"{uri}: member is larger than the archive declares")
                        out.write(chunk)
        yield dst
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_room(folder: str, size: int, uri: str) -> None:
    if size > MAX_MEMBER_BYTES:
        raise SourceError(f"{uri}: {size} bytes is more than vidx copies to a temporary file ({MAX_MEMBER_BYTES})")
    free = shutil.disk_usage(folder).free
    if size > free - (256 << 20):
        raise SourceError(f"{uri}: needs {size >> 20} MiB of temporary space, {free >> 20} MiB free in {folder}")


def read_head(fs: pafs.FileSystem, path: str, n: int = 1024) -> bytes:
    with fs.open_input_file(path) as f:
        return f.read(n)
