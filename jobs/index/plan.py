"""Planning: each video probed and split into chunks, each chunk a task for a worker."""

from __future__ import annotations

import dataclasses
import logging
import os
import tarfile
import zipfile
from dataclasses import dataclass, field

import numpy as np
import pyarrow.fs as pafs

from vidx.configs.config import Config
from vidx.workers import decode, sources
from vidx.workers.chunks import ChunkTask
from vidx.workers.sources import Input, Source, _path_id, content_id, member_id

log = logging.getLogger(__name__)


@dataclass
class VideoPlan:
    video_id: str
    source: Source
    size: int = 0
    info: decode.VideoInfo | None = None
    error: str = ""
    chunks: list[tuple[float, float]] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # other inputs with the same content

    @property
    def uri(self) -> str:
        """The name it was given (what the tables keep)."""
        return self.source.uri


def plan_video(inp: Input, chunk_s: float) -> VideoPlan:
    src = inp.source
    if src.member is not None:  # a member of an archive
        try:
            vp = VideoPlan(member_id(src), src)
            with sources.local_file(src) as lp:
                vp.info = decode.probe(lp)
                vp.size = os.path.getsize(lp)
            vp.chunks = decode.chunk_bounds(vp.info.duration, chunk_s)
        except (sources.SourceError, decode.DecodeError, OSError, tarfile.TarError, zipfile.BadZipFile) as e:
            vp = VideoPlan(_path_id(src.uri), src, error=str(e))
        return vp
    fs, path = src.resolve()
    try:
        if fs.type_name == "local":  # missing, folder, unreadable, empty, not a video: before hashing
            decode.check_file(path)
        fi = fs.get_file_info(path)
        if fi.type != pafs.FileType.File:
            raise decode.DecodeError("no such file" if fi.type == pafs.FileType.NotFound else "not a file")
        vid = content_id(fs, path, fi.size)
    except decode.DecodeError as e:
        return VideoPlan(_path_id(src.uri), src, error=str(e))
    except OSError as e:
        return VideoPlan(_path_id(src.uri), src, error=f"unreadable: {e}")
    vp = VideoPlan(vid, src, size=fi.size)
    try:
        with sources.local_file(src) as lp:
            vp.info = decode.probe(lp)
        vp.chunks = decode.chunk_bounds(vp.info.duration, chunk_s)
    except (decode.DecodeError, sources.SourceError) as e:
        vp.error = str(e)
    return vp


def plan_all(inputs: list[Input], chunk_s: float) -> dict[str, VideoPlan]:
    """Plans by content id; an input with the same content as an earlier one becomes its alias."""
    log.info("planning %d input(s)", len(inputs))
    plans: dict[str, VideoPlan] = {}
    for inp in inputs:
        vp = plan_video(inp, chunk_s)
        if vp.video_id in plans:
            log.info("%s is the same video as %s; indexing it once, both names kept", inp.uri,
                     plans[vp.video_id].uri)
            plans[vp.video_id].aliases.append(inp.uri)
            continue
        plans[vp.video_id] = vp
    return plans


def chunk_tasks(vp: VideoPlan, cfg: Config) -> list[ChunkTask]:
    """One task per chunk, carrying what the worker needs to decode without probing: the
    sampled frames' indices and presentation times (faces; actions at their clip rate), the
    frame size, the decoder and the key frames the chunk may seek to."""
    info = vp.info
    tasks = []
    for c, (s, e) in enumerate(vp.chunks):
        idx = decode.sample_indices(info.timestamps, s, e, cfg.faces.sample_fps)
        a = None
        wanted = idx
        if cfg.actions.enabled:
            from vidx.workers.actions import clip_fps, resolve_name

            a = decode.sample_indices(info.timestamps, s, e, clip_fps(resolve_name(cfg.actions.model, cfg.ray.num_gpus > 0)))
            wanted = np.union1d(idx, a)
        keys = None
        if info.keyframes is not None and len(wanted):  # the key frames this chunk may seek to
            t0, t1 = info.timestamps[wanted[0]], info.timestamps[wanted[-1]]
            lo = max(0, int(np.searchsorted(info.keyframes, t0 + 1e-6)) - 1)
            keys = np.asarray(info.keyframes[lo : int(np.searchsorted(info.keyframes, t1 + 1e-6))], np.float64)
        stream = dataclasses.replace(info.stream(), keyframes=keys)
        tasks.append(ChunkTask(vp.video_id, vp.source, c, s, e, stream, np.asarray(idx, np.int64),
                               np.asarray(info.timestamps[idx], np.float64),
                               None if a is None else np.asarray(a, np.int64),
                               None if a is None else np.asarray(info.timestamps[a], np.float64)))
    return tasks
