"""Where videos come from: local paths, pyarrow.fs URIs, and members of .tar / .zip archives.

A source is parsed once into a :class:`Source` (what it names, whether it is remote or a member
of an archive) and handed on as that value: discovery (:func:`list_inputs`, each found video an
:class:`Input`), content ids (:func:`content_id`, :func:`member_id`), the planner, the chunk
tasks and the workers' :func:`local_file` all take it.

A member of an archive is named ``ARCHIVE::MEMBER`` (e.g. ``clips.tar::day1/cam2.mp4``).
Member names are only labels: nothing is ever written under a member's name.  A member is
read as a stream, or copied to a temporary file with a generated name (decoders need a
file), at most ``MAX_MEMBER_BYTES`` and never beyond the free space of the temporary folder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from typing import IO, Iterator

import pyarrow.fs as pafs

from vidx.indexing.store import resolve
from vidx.workers import decode
from vidx.configs.errors import ArchiveRefused, SourceError  # noqa: F401 - defined there, raised here

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Source:
    """A video's name, parsed once: a local path, a pyarrow.fs URI (``s3://bucket/key``), or a
    member of an archive (``ARCHIVE::MEMBER``, the archive itself local or remote).  ``uri`` is the
    name as given (what the tables keep); ``base`` the file to open (the archive for a member)."""

    uri: str
    base: str
    member: str | None = None

    @classmethod
    def parse(cls, uri: "str | Source") -> "Source":
        if isinstance(uri, Source):
            return uri
        uri = str(uri)
        if SEP in uri:
            base, member = uri.split(SEP, 1)
            return cls(uri, base, member)
        return cls(uri, uri)

    @property
    def remote(self) -> bool:
        """Whether its file is on an object store (or any pyarrow.fs URI), not this machine's disk."""
        return "://" in self.base

    @property
    def local_path(self) -> str | None:
        """The path of a plain local file (what a player or ``os.path`` can open), else None."""
        return None if self.remote or self.member is not None else self.base

    def resolve(self) -> tuple[pafs.FileSystem, str]:
        """The filesystem and path of its file (the archive, for a member)."""
        return resolve(self.base)

    def __str__(self) -> str:
        return self.uri


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
def open_member(uri: str | Source) -> Iterator[tuple[IO[bytes], int]]:
    """(binary stream, size) of ARCHIVE::MEMBER."""
    src = Source.parse(uri)
    archive, name = src.base, src.member
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
def local_file(uri: str | Source) -> Iterator[str]:
    """A local path for a video: itself, or a bounded temporary copy (remote object, archive member)."""
    src = Source.parse(uri)
    uri, member = src.uri, src.member
    fs, path = src.resolve()
    if member is None and fs.type_name == "local":
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="vidx-")
    try:
        dst = os.path.join(tmp, "video")  # a generated name: member names are never used as paths
        if member is None:
            size = fs.get_file_info(path).size or 0
            _check_room(tmp, size, uri)
            with fs.open_input_stream(path) as stream, open(dst, "wb") as out:
                shutil.copyfileobj(stream, out, 8 << 20)
        else:
            with open_member(src) as (stream, size):
                _check_room(tmp, size, uri)
                with open(dst, "wb") as out:
                    copied = 0
                    while chunk := stream.read(8 << 20):
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


# ---------------------------------------------------------------------------- discovery

_SAMPLE = 4 << 20  # bytes hashed from the start, the middle and the end of a file


def content_id(fs: pafs.FileSystem, path: str, size: int) -> str:
    """Stable id from the file's content: its size and 3 samples of 4 MiB (whole file if small)."""
    h = hashlib.blake2b(digest_size=10)
    h.update(str(size).encode())
    with fs.open_input_file(path) as f:
        if size <= 3 * _SAMPLE:
            h.update(f.read())
        else:
            for off in (0, size // 2 - _SAMPLE // 2, size - _SAMPLE):
                f.seek(off)
                h.update(f.read(_SAMPLE))
    return "v" + h.hexdigest()


def member_id(uri: str | Source) -> str:
    """Content id of an archive member: its size and first 12 MiB (members are streams; compressed
    ones cannot seek).  A member equal to a plain file gets the plain file's id when both are
    at most 12 MiB."""
    with open_member(uri) as (f, size):
        h = hashlib.blake2b(digest_size=10)
        h.update(str(size).encode())
        h.update(f.read(3 * _SAMPLE))
    return "v" + h.hexdigest()


def _path_id(uri: str) -> str:
    return "p" + hashlib.blake2b(uri.encode(), digest_size=10).hexdigest()


@dataclass(frozen=True)
class Input:
    """A video the sources hold (or a thing pointed at that is not indexed, with ``skip`` saying why)."""

    source: Source  # a str given here is parsed once (Source.parse)
    skip: str = ""  # why it is not indexed (not an archive, too large, dangling symlink...): reported, not planned

    def __post_init__(self):
        if not isinstance(self.source, Source):
            object.__setattr__(self, "source", Source.parse(self.source))

    @property
    def uri(self) -> str:
        return self.source.uri


def _is_video(name: str, head: bytes) -> bool:
    return posixpath.splitext(name)[1].lower() in decode.VIDEO_SUFFIXES or decode.sniff(head)


def _archive_inputs(uri: str, limit: int) -> list[Input]:
    try:
        found = [(name, head) for name, _, head in members(uri, limit)]
    except ArchiveRefused as e:
        return [Input(uri, skip=str(e))]
    except (OSError, EOFError, SourceError, tarfile.TarError, zipfile.BadZipFile) as e:
        return [Input(uri, skip=f"unreadable archive: {e}")]
    videos = [Input(Source(f"{uri}{SEP}{name}", uri, name)) for name, head in found if _is_video(name, head)]
    return videos or [Input(uri, skip=f"archive holds no videos ({len(found)} file(s))")]


def _dangling(path: str) -> str | None:
    if os.path.islink(path) and not os.path.exists(path):
        return f"dangling symlink (points to {os.readlink(path)})"
    return None


def list_inputs(srcs: list[str], max_archive_bytes: int = MAX_ARCHIVE_BYTES) -> list[Input]:
    """Files named explicitly, the videos found in folders (by extension or content), and the
    videos inside .tar / .zip archives (named or found).  Everything the user pointed at that is
    not indexed comes back with ``skip`` saying why: a file named like an archive that is not
    one, an archive that would expand beyond ``max_archive_bytes``, one with no videos, a
    dangling symlink."""
    out: list[Input] = []
    for src in srcs:
        fs, path = resolve(src)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            sel = pafs.FileSelector(path, recursive=True)
            for fi in sorted(fs.get_file_info(sel), key=lambda i: i.path):
                if fi.type != pafs.FileType.File:
                    continue
                uri = fi.path if fs.type_name == "local" else f"{src.split('://')[0]}://{fi.path}"
                try:
                    head = read_head(fs, fi.path, 1024)
                except OSError:
                    head = b""
                out += _one(uri, fi.path, head, max_archive_bytes, named=False)
            if fs.type_name == "local":  # the listing leaves dangling symlinks out: account for them
                for root, dirs, files in os.walk(path):
                    for name in sorted(dirs + files):
                        why = _dangling(os.path.join(root, name))
                        if why:
                            out.append(Input(os.path.join(root, name), skip=why))
        else:
            uri = src if fs.type_name != "local" else path
            why = _dangling(path) if fs.type_name == "local" else None
            if why:
                out.append(Input(uri, skip=why))
                continue
            head = b""
            if info.type == pafs.FileType.File:
                try:
                    head = read_head(fs, path, 1024)
                except OSError:
                    pass
            out += _one(uri, path, head, max_archive_bytes, named=True)
    return out


def _one(uri: str, path: str, head: bytes, limit: int, named: bool) -> list[Input]:
    """The inputs a file stands for: an archive's videos, the file itself (a video, or any file
    named explicitly: planning says what is wrong with it), or nothing for other files of a folder."""
    if is_archive(path, head):
        return _archive_inputs(uri, limit)
    why = not_an_archive(path, head)
    if why:
        return [Input(uri, skip=why)]
    return [Input(uri)] if named or _is_video(path, head) else []
