"""Input discovery: the videos under the sources (local paths, pyarrow.fs URIs, archives),
each with a content-derived id."""

from __future__ import annotations

import hashlib
import logging
import os
import posixpath
import tarfile
import zipfile
from dataclasses import dataclass

import pyarrow.fs as pafs

from vidx.indexing.store import resolve
from vidx.workers import decode, sources

log = logging.getLogger(__name__)


_SAMPLE = 4 << 20  # bytes hashed from the start, the middle and the end of a file


# ---------------------------------------------------------------------------- plan


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


def member_id(uri: str) -> str:
    """Content id of an archive member: its size and first 12 MiB (members are streams; compressed
    ones cannot seek).  A member equal to a plain file gets the plain file's id when both are
    at most 12 MiB."""
    with sources.open_member(uri) as (f, size):
        h = hashlib.blake2b(digest_size=10)
        h.update(str(size).encode())
        h.update(f.read(3 * _SAMPLE))
    return "v" + h.hexdigest()


def _path_id(uri: str) -> str:
    return "p" + hashlib.blake2b(uri.encode(), digest_size=10).hexdigest()


@dataclass
class Input:
    uri: str  # a path, a pyarrow.fs URI, or ARCHIVE::MEMBER
    skip: str = ""  # why it is not indexed (not an archive, too large, dangling symlink...): reported, not planned


def _is_video(name: str, head: bytes) -> bool:
    return posixpath.splitext(name)[1].lower() in decode.VIDEO_SUFFIXES or decode.sniff(head)


def _archive_inputs(uri: str, limit: int) -> list[Input]:
    try:
        found = [(name, head) for name, _, head in sources.members(uri, limit)]
    except sources.ArchiveRefused as e:
        return [Input(uri, skip=str(e))]
    except (OSError, EOFError, sources.SourceError, tarfile.TarError, zipfile.BadZipFile) as e:
        return [Input(uri, skip=f"unreadable archive: {e}")]
    videos = [Input(f"{uri}{sources.SEP}{name}") for name, head in found if _is_video(name, head)]
    return videos or [Input(uri, skip=f"archive holds no videos ({len(found)} file(s))")]


def _dangling(path: str) -> str | None:
    if os.path.islink(path) and not os.path.exists(path):
        return f"dangling symlink (points to {os.readlink(path)})"
    return None


def list_inputs(srcs: list[str], max_archive_bytes: int = sources.MAX_ARCHIVE_BYTES) -> list[Input]:
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
                    head = sources.read_head(fs, fi.path, 1024)
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
                    head = sources.read_head(fs, path, 1024)
                except OSError:
                    pass
            out += _one(uri, path, head, max_archive_bytes, named=True)
    return out


def _one(uri: str, path: str, head: bytes, limit: int, named: bool) -> list[Input]:
    """The inputs a file stands for: an archive's videos, the file itself (a video, or any file
    named explicitly: planning says what is wrong with it), or nothing for other files of a folder."""
    if sources.is_archive(path, head):
        return _archive_inputs(uri, limit)
    why = sources.not_an_archive(path, head)
    if why:
        return [Input(uri, skip=why)]
    return [Input(uri)] if named or _is_video(path, head) else []
