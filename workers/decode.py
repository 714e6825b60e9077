"""Video decoding: the only module that imports decord (PyAV is the fallback).

* :func:`sniff` tells a video container from other files by its first bytes.
* :func:`probe` reads duration, frame rate, size, codec and every frame's presentation time.
* :func:`read_frames` decodes the frames sampled from a time range, in bounded pieces, at a
  capped resolution, so memory is set by the config and not by the video's length.

Times are seconds from the stream's presentation timestamps (decord's, or PyAV's packet
pts when decord's are unusable, as in some AVI files), never index / fps unless the stream
has no timestamps at all.

Damaged files are read around the damage, as ffmpeg does: a stretch decord cannot decode is
decoded by PyAV packet by packet, skipping the packets the decoder rejects; the sampled frames
that still cannot be had are reported (``lost``) so the video is marked partial with the span.
A file cut short is indexed up to where its data ends (``VideoInfo.note`` says so).  Messages
never carry a decoder's internal source paths.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from vidx.configs.errors import DecodeError  # noqa: F401 - defined there, raised here

log = logging.getLogger(__name__)


# container signatures: (offset, bytes)
_MAGIC = [
    (4, b"ftyp"),  # mp4 / mov / m4v / 3gp
    (0, b"\x1a\x45\xdf\xa3"),  # matroska / webm
    (0, b"RIFF"),  # avi (checked further below)
    (0, b"\x00\x00\x01\xba"),  # mpeg program stream
    (0, b"FLV"),
    (0, b"OggS"),
    (0, b"\x30\x26\xb2\x75"),  # asf / wmv
]
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".m2ts",
                  ".flv", ".ogv", ".wmv", ".3gp"}


def sniff(head: bytes) -> bool:
    """True when the first bytes of a file look like a video container."""
    for off, sig in _MAGIC:
        if head[off : off + len(sig)] == sig:
            return sig != b"RIFF" or head[8:12] == b"AVI "
    # MPEG transport stream: sync byte every 188 bytes
    return len(head) >= 189 * 3 and all(head[i * 188] == 0x47 for i in range(3))


@dataclass(frozen=True)
class Stream:
    """What a reader needs to decode chosen frames of a probed video without probing it again
    (:meth:`VideoInfo.stream`; a chunk's task carries it to its worker)."""

    width: int
    height: int
    backend: str  # decord or pyav
    keyframes: np.ndarray | None = None  # key frames' times (pyav), or None
    pts_offset: float = 0.0  # pyav: the stream's own time of its first frame


@dataclass
class VideoInfo:
    duration: float
    fps: float
    frames: int
    width: int
    height: int
    codec: str
    backend: str  # decord or pyav
    timestamps: np.ndarray  # (frames,) float64 presentation time of each frame, seconds
    note: str = ""  # what is wrong but readable, e.g. "truncated: data ends at 4.47 s of 7.00 s declared"
    data_end: float = 0.0  # truncated files: where the data ends (seconds); 0 when whole
    keyframes: np.ndarray | None = None  # times of the key (seekable) frames, when known (pyav backend)
    pts_offset: float = 0.0  # pyav backend: the stream's own time of the first frame (vidx's time 0)
    stream_start: float = 0.0  # the stream's own time of its first frame, whatever the backend: a player's
    #                            media time of vidx's time t is t + stream_start

    def stream(self) -> Stream:
        """The reader's part of this probe."""
        return Stream(self.width, self.height, self.backend, self.keyframes, self.pts_offset)


def stream_start(path: str, packets: int = 64) -> float:
    """The stream's own time of its first frame, from its first packets' times (no decoding): what
    a player adds to vidx's time (seconds from the first frame) to seek to the same frame."""
    av = _av()
    with av.open(path) as c:
        s = c.streams.video[0]
        tb = float(s.time_base) if s.time_base else 0.0
        pts = []
        for p in c.demux(s):
            if p.pts is not None and p.size > 0:
                pts.append(p.pts)
                if len(pts) >= packets:  # past any reordering of the first group of pictures
                    break
    return float(min(pts) * tb) if pts else 0.0


def _decord():
    """decord, with its bundled FFmpeg's log lines off."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    return decord


def _av():
    """PyAV, with FFmpeg's own log lines off (vidx reports what matters in its own words)."""
    import av

    av.logging.set_level(av.logging.PANIC)
    return av


def check_file(path: str) -> None:
    """Raise DecodeError saying why a local path cannot be a video (before any decoding)."""
    p = Path(path)
    if not p.exists():
        raise DecodeError("no such file")
    if p.is_dir():
        raise DecodeError("is a folder, not a video")
    if not os.access(p, os.R_OK):
        raise DecodeError("permission denied")
    size = p.stat().st_size
    if size == 0:
        raise DecodeError("empty file (0 bytes)")
    with open(p, "rb") as f:
        head = f.read(1024)
    if not sniff(head):
        kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head[:256]) else "binary data"
        raise DecodeError(f"not a video: no known container signature (the file starts like {kind})")


def _valid_times(ts: np.ndarray, n: int) -> bool:
    return len(ts) == n and n > 0 and bool(np.all(np.isfinite(ts))) and ts.min() >= -1e-3 \
        and bool(np.all(np.diff(ts) > 0)) and ts.max() < 1e7


@dataclass
class _Packets:
    times: np.ndarray  # every frame's time on vidx's clock: from the first frame (the stream's time - start)
    keys: np.ndarray  # the key frames' times, sorted
    codec: str
    rate: float
    width: int
    height: int
    declared: float  # the duration the header declares (0 when it does not)
    start: float  # the stream's own time of its first frame (``times`` + start = the stream's times)


def _pyav_times(path: str) -> _Packets:
    """Packet times (no decoding), key frames, codec, rate, size, and the declared duration."""
    av = _av()
    with av.open(path) as c:
        if not c.streams.video:
            raise DecodeError("no video stream (audio only?)")
        s = c.streams.video[0]
        tb = float(s.time_base) if s.time_base else 0.0
        declared = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        pts, keys = [], []
        for p in c.demux(s):
            if p.pts is not None and p.size > 0:
                pts.append(p.pts)
                if p.is_keyframe:
                    keys.append(p.pts)
        rate = float(s.average_rate or s.guessed_rate or 0.0)
        codec = s.codec_context.name
        w, h = s.codec_context.width, s.codec_context.height
    ts = np.sort(np.asarray(pts, np.float64)) * tb
    ks = np.sort(np.asarray(keys, np.float64)) * tb
    start = float(ts[0]) if len(ts) else 0.0
    ks, ts = ks - start, ts - start  # vidx's clock counts from the first frame, as players show it
    return _Packets(ts, ks, codec, rate, w, h, declared, start)


def probe(path: str) -> VideoInfo:
    """Stream facts and all frame times; raises DecodeError with a specific reason.

    Backend ``pyav`` means the frames are found by presentation time and only the sampled ones
    (and the frames they are predicted from) are decoded; it is chosen when PyAV's packet times
    are exactly decord's frame times, so a frame's time names the same picture decord's index
    does.  Backend ``decord`` (frames by index) is kept where the times disagree (some AVI
    files) and the stream starts below time 0."""
    check_file(path)
    keys = None
    offset = 0.0
    try:
        decord = _decord()
        vr = decord.VideoReader(path, ctx=decord.cpu(0), num_threads=1)
        n = len(vr)
        fps = float(vr.get_avg_fps())
        h, w = vr[0].shape[:2] if n else (0, 0)
        ts = vr.get_frame_timestamp(np.arange(n))[:, 0].astype(np.float64) if n else np.zeros(0)
        del vr
        backend = "decord"
        try:
            pk = _pyav_times(path)
        except Exception:  # noqa: BLE001 - codec name and packet times are best effort here
            pk = None
        codec, declared = (pk.codec, pk.declared) if pk else ("", 0.0)
        if not _valid_times(ts, n):
            if pk is not None and len(pk.times) == n and _valid_times(pk.times, n):
                ts = pk.times
            else:
                log.debug("%s: no usable timestamps; using frame index / fps", path)
                ts = np.arange(n) / (fps or 25.0)
        elif (pk is not None and pk.start >= 0 and len(pk.times) == n and (pk.width, pk.height) == (w, h)
              and np.allclose(ts - ts[0], pk.times, rtol=0.0, atol=1e-6)):
            backend, keys, offset, ts = "pyav", pk.keys, pk.start, pk.times
    except Exception as e:  # decord cannot open it (e.g. AV1): try PyAV
        if isinstance(e, DecodeError):
            raise
        log.debug("decord cannot open %s (%s); trying PyAV", path, e)
        try:
            pk = _pyav_times(path)
        except DecodeError:
            raise
        except Exception as e2:  # noqa: BLE001
            raise DecodeError(f"cannot decode: {_short(e2) or _short(e)} (corrupt or truncated?)") from None
        ts, keys, codec, fps, w, h, declared = pk.times, pk.keys, pk.codec, pk.rate, pk.width, pk.height, pk.declared
        n = len(ts)
        backend = "pyav"
        if n == 0:
            raise DecodeError("no decodable video frames (corrupt or truncated?)")
        offset = pk.start  # the stream's own times are these plus the offset
        fps = fps or (n - 1) / max(ts[-1] - ts[0], 1e-6)
    if n == 0:
        raise DecodeError("the video stream has no frames")
    step = float(np.median(np.diff(ts))) if n > 1 else 1.0 / (fps or 25.0)
    note = ""
    if declared > 1.0 and ts[-1] + step < 0.9 * declared:  # cut short: index what is there
        note = f"truncated: data ends at {ts[-1] + step:.2f} s of {declared:.2f} s declared"
    return VideoInfo(duration=float(ts[-1] + step), fps=fps, frames=n, width=int(w), height=int(h),
                     codec=codec, backend=backend, timestamps=ts, note=note,
                     data_end=float(ts[-1] + step) if note else 0.0, keyframes=keys, pts_offset=offset,
                     stream_start=float(pk.start) if pk is not None else 0.0)


_INTERNAL = re.compile(r"\[\d{2}:\d{2}:\d{2}\]\s*\S+\.(?:cc|c|h|cpp):\d+:\s*")


def _short(e: Exception) -> str:
    """The last line of an error, without decoder-internal source locations."""
    msg = (getattr(e, "strerror", None) or str(e)).strip().splitlines()
    text = _INTERNAL.sub("", msg[-1] if msg else "").strip()
    if not text or text.startswith(("Check failed", "Thread worker")) or "avcodec_" in text:
        return "the decoder rejected the stream's data"
    return text[:200]


def sample_indices(ts: np.ndarray, start: float, end: float, rate: float) -> np.ndarray:
    """Indices of the frames nearest after start + k / rate for k = 0, 1, ... within [start, end)."""
    if rate <= 0:
        sel = np.flatnonzero((ts >= start) & (ts < end))
        return sel
    targets = start + np.arange(0, max(0.0, end - start) * rate + 1e-9) / rate
    idx = np.searchsorted(ts, targets - 1e-6)
    idx = idx[(idx < len(ts))]
    idx = np.unique(idx)
    return idx[(ts[idx] >= start - 1e-6) & (ts[idx] < end)]


def scaled_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(w, h) with the longer side capped at max_side, even, aspect kept (0 = no cap)."""
    if max_side <= 0 or max(width, height) <= max_side:
        return width, height
    s = max_side / max(width, height)
    return max(2, 2 * round(width * s / 2)), max(2, 2 * round(height * s / 2))


def read_frames(path: str, info: VideoInfo | Stream, indices: np.ndarray, max_side: int = 0, piece: int = 16,
                times: np.ndarray | None = None, lost: list[float] | None = None, threads: int = 1,
                every: Callable[[float, object], None] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (frame indices, frames (n, h, w, 3) uint8 RGB) for the given frames, `piece` at a time.

    ``info``: the probe, or only its :class:`Stream` (then ``times`` are required).
    ``times`` are those frames' presentation times (default: from ``info.timestamps``); only the
    PyAV path needs them, so a caller that knows them need not hold every frame's time.  With
    ``lost`` (a list), damage is read around: the times of sampled frames that cannot be decoded
    are appended to it and the rest are yielded; without it, damage raises :class:`DecodeError`.
    ``threads``: the decoder's threads (FFmpeg's frame and slice threads).
    ``every(t, frame)``: called with every frame the reader decodes from the first wanted frame to the
    last, in order, before the piece that holds the frames up to it is yielded (shot detection): a
    PyAV ``VideoFrame``, or an RGB array at the wanted size where decord decodes; ``t`` on vidx's
    clock.  The wanted frames are among them, and so is every frame they are predicted from (the
    reference frames; non-reference frames are skipped as before); groups of pictures are then never
    jumped over.  ``bench/bench_decode.py`` measures what that costs against the sparse read.

    Either way the pixels are decord's: the same libavfilter ``scale`` (bilinear) to packed RGB."""
    w, h = scaled_size(info.width, info.height, max_side)
    if len(indices) == 0:
        return
    indices = np.asarray(indices)
    if times is None:
        times = info.timestamps[indices]
    times = np.asarray(times, np.float64)
    info = info.stream() if isinstance(info, VideoInfo) else info
    if info.backend == "decord":
        decord = _decord()
        vr = decord.VideoReader(path, ctx=decord.cpu(0), width=w if w != info.width else -1,
                                height=h if h != info.height else -1, num_threads=max(1, threads))
        if every is not None:  # decord decodes by index: every frame between the wanted ones, then the wanted
            yield from _decord_every(vr, path, indices, times, w, h, piece, lost, threads, every)
            return
        for s in range(0, len(indices), piece):
            part = indices[s : s + piece]
            frames = _decord_batch(vr, path, part, lost)
            if frames is None:  # damage: PyAV reads on from here
                del vr
                yield from _pyav_safe(path, indices[s:], times[s:], w, h, piece, lost, threads=threads)
                return
            yield part, frames
        return
    yield from _pyav_safe(path, indices, times, w, h, piece, lost, info.keyframes, info.pts_offset, threads,
                          skip=True, every=every)


def _decord_batch(vr, path: str, part: np.ndarray, lost: list[float] | None) -> np.ndarray | None:
    """decord's frames of ``part``; None where decord stops at damage and ``lost`` asks for the rest
    to be read around it (PyAV), else the failure as a DecodeError."""
    try:
        return vr.get_batch(part.tolist()).asnumpy()
    except Exception as e:  # noqa: BLE001
        if lost is None:
            raise DecodeError(f"decoding failed near frame {part[0]}: {_short(e)}") from None
        log.debug("%s: decord stopped near frame %d (%s); PyAV reads on around the damage", path, part[0], _short(e))
        return None


def _decord_every(vr, path, indices, times, w, h, piece, lost, threads, every):
    """decord's reading when every frame is wanted by ``every``: the frames from the first wanted
    index to the last, a piece at a time (times between wanted frames interpolated by index)."""
    want = set(np.asarray(indices).tolist())
    span = np.arange(int(indices[0]), int(indices[-1]) + 1)
    span_t = np.interp(span, indices, times)
    buf_i, buf_f = [], []
    for s in range(0, len(span), piece):
        part = span[s : s + piece]
        frames = _decord_batch(vr, path, part, lost)
        if frames is None:  # damage: what is decoded goes out, PyAV reads on from here
            if buf_i:
                yield np.asarray(buf_i), np.stack(buf_f)
            sel = np.asarray(indices) >= part[0]  # the wanted frames not yielded yet
            yield from _pyav_safe(path, indices[sel], times[sel], w, h, piece, lost, threads=threads)
            return
        for i, t, f in zip(part.tolist(), span_t[s : s + piece].tolist(), frames):
            every(t, f)
            if i in want:
                buf_i.append(i)
                buf_f.append(f)
                if len(buf_i) == piece:
                    yield np.asarray(buf_i), np.stack(buf_f)
                    buf_i, buf_f = [], []
    if buf_i:
        yield np.asarray(buf_i), np.stack(buf_f)


def _pyav_safe(path, indices, times, w, h, piece, lost, keys=None, offset=0.0, threads=1, skip=False, every=None):
    read = _pyav_frames if lost is None else _recovering
    try:
        yield from read(path, indices, times, w, h, piece, lost, keys, offset, threads, skip, every)
    except DecodeError:
        raise
    except Exception as e:  # noqa: BLE001 - PyAV raises many error types for broken streams
        raise DecodeError(f"decoding failed: {_short(e)} (corrupt or truncated?)") from None


class _Rgb:
    """decord's conversion, to the bit: libavfilter's ``scale=W:H`` (bilinear, as decord's FFmpeg
    does by default) into packed RGB.  The graph is built for the first frame and again if a
    frame's size or pixel format changes."""

    def __init__(self, stream, w: int, h: int):
        self.stream, self.w, self.h, self.key, self.graph = stream, w, h, None, None

    def __call__(self, frame) -> np.ndarray:
        key = (frame.width, frame.height, frame.format.name)
        if key != self.key:
            g = _av().filter.Graph()
            cc = self.stream.codec_context
            if key == (cc.width, cc.height, cc.format.name if cc.format else None):  # as decord sets it up
                src = g.add_buffer(template=self.stream)
            else:
                src = g.add_buffer(width=frame.width, height=frame.height, format=frame.format,
                                   time_base=self.stream.time_base)
            scale = g.add("scale", f"{self.w}:{self.h}:flags=bilinear")
            fmt = g.add("format", "rgb24")
            sink = g.add("buffersink")
            src.link_to(scale)
            scale.link_to(fmt)
            fmt.link_to(sink)
            g.configure()
            self.key, self.graph = key, g
        self.graph.push(frame)
        return self.graph.pull().to_ndarray()


def _wanted_pts(raw: np.ndarray, tb: float) -> set[int]:
    """The stream's own timestamps (time-base units) of the wanted frames."""
    return set(np.round(raw / tb).astype(np.int64).tolist())


def _recovering(path, indices, times, w, h, piece, lost, keys=None, offset=0.0, threads=1, skip=False, every=None):
    """The PyAV read, then, before a piece with sampled frames lost to damage is yielded, those
    frames read again by :func:`_collect` (a damaged key frame, the skipping of the first read, or
    a frame the decoder puts out late after damage may have hidden frames a sequential decode
    gets), merged in frame order."""
    first_lost: list[float] = []
    seen = 0
    pos = {float(t): i for i, t in enumerate(np.asarray(times, np.float64))}

    def again(ts: list[float]):
        sel = np.asarray(sorted(pos[t] for t in ts if t in pos), np.int64)
        got = _collect(path, indices[sel], times[sel], w, h, keys, offset, threads) if len(sel) else {}
        lost.extend(float(times[j]) for j in sel if int(indices[j]) not in got)
        return got.items()

    for ids, frames in _pyav_frames(path, indices, times, w, h, piece, first_lost, keys, offset, threads, skip, every):
        if len(first_lost) > seen:
            merged = sorted([*zip(ids.tolist(), frames), *again(first_lost[seen:])], key=lambda x: x[0])
            seen = len(first_lost)
            for s in range(0, len(merged), piece):
                part = merged[s : s + piece]
                yield np.asarray([i for i, _ in part]), np.stack([f for _, f in part])
        else:
            yield ids, frames
    if len(first_lost) > seen:  # the last frames, after everything yielded
        rest = sorted(again(first_lost[seen:]), key=lambda x: x[0])
        for s in range(0, len(rest), piece):
            part = rest[s : s + piece]
            yield np.asarray([i for i, _ in part]), np.stack([f for _, f in part])


REORDER_S = 2.0  # how far past the last wanted frame a recovery reads: a damaged stream's frames come out late


def _collect(path, indices, times, w, h, keys=None, offset=0.0, threads=1) -> dict[int, np.ndarray]:
    """Frame index -> RGB frame of the wanted frames a sequential decode gives, from the key frame
    before the previous one: every packet decoded, frames taken by their exact timestamp in
    whatever order the decoder puts them out (after damage it may put a frame out after later
    ones), until :data:`REORDER_S` past the last wanted time."""
    av = _av()
    raw = np.asarray(times, np.float64) + offset
    keys_raw = None if keys is None or len(keys) == 0 else np.asarray(keys, np.float64) + offset
    out: dict[int, np.ndarray] = {}
    with av.open(path) as c:
        s = c.streams.video[0]
        tb = float(s.time_base)
        cc = s.codec_context
        cc.thread_count = max(1, int(threads))
        cc.thread_type = "AUTO" if threads > 1 else "SLICE"
        want = dict(zip(np.round(raw / tb).astype(np.int64).tolist(), (int(i) for i in indices)))
        rgb = _Rgb(s, w, h)
        at = None
        if keys_raw is not None:
            j = int(np.searchsorted(keys_raw, raw.min() + 1e-6)) - 2
            at = float(keys_raw[max(j, 0)])
        c.seek(int(round(at / tb)) if at is not None else 0, stream=s, backward=True, any_frame=False)
        stop = raw.max() + REORDER_S

        def take(frames) -> None:
            for f in frames:
                i = want.get(f.pts) if f.pts is not None else None
                if i is not None and i not in out:
                    out[i] = rgb(f)

        for packet in c.demux(s):
            if packet.pts is not None and packet.pts * tb > stop:
                break
            try:
                take(packet.decode())
            except av.error.FFmpegError:
                continue
            if len(out) == len(want):
                break
        with contextlib.suppress(av.error.FFmpegError, ValueError):
            take(cc.decode(None))  # what the decoder still holds
    return out


def _pyav_frames(path, indices, times, w, h, piece, lost=None, keys=None, offset=0.0, threads=1, skip=False,
                 every=None):
    """Decode from the key frame before each wanted time; keep the first frame at or after each
    wanted time.  Packets the decoder rejects are skipped when ``lost`` collects the sampled
    times that went undecoded (else the first one raises).

    With ``skip`` (the wanted times are frames' own presentation times), only what the wanted
    frames need is decoded: a packet that is not wanted is decoded only if other frames are
    predicted from it (FFmpeg's ``skip_frame`` = non-reference), and with ``keys`` (the key
    frames' times) whole groups of pictures between wanted frames are jumped over by seeking.
    Should a wanted frame not come out that way, the stretch is decoded again in full.
    ``every``: see :func:`read_frames` (groups of pictures are then never jumped over)."""
    av = _av()
    times = np.asarray(times, np.float64)
    raw = times + offset  # the stream's own times
    n = len(times)
    keys_raw = None if keys is None or len(keys) == 0 else np.asarray(keys, np.float64) + offset
    buf_i, buf_f = [], []
    k = 0
    with av.open(path) as c:
        s = c.streams.video[0]
        tb = float(s.time_base)
        cc = s.codec_context
        cc.thread_count = max(1, int(threads))
        cc.thread_type = "AUTO" if threads > 1 else "SLICE"
        want = _wanted_pts(raw, tb) if skip else set()
        rgb = _Rgb(s, w, h)

        def key_before(t: float) -> float | None:
            if keys_raw is None:
                return None
            j = int(np.searchsorted(keys_raw, t + 1e-6)) - 1
            return float(keys_raw[j]) if j >= 0 else None

        def seek(t: float) -> float:
            """To the key frame at or before the stream time t; returns where it aimed."""
            at = key_before(t)
            c.seek(int(round(at / tb)) if at is not None else int(t / tb) - 1, stream=s, backward=True,
                   any_frame=False)
            return t if at is None else at

        seek_at = seek(raw[0])
        seen_t = -math.inf  # the last frame given to ``every`` (a stretch decoded again is not given twice)
        ended = False
        while k < n and not ended:
            maxp = -math.inf  # the latest packet time given to the decoder since the last seek
            jump = key_before(raw[k]) if every is None else None
            redo = False
            for packet in c.demux(s):
                if skip:
                    cc.skip_frame = "NONREF" if packet.pts is not None and packet.pts not in want else "DEFAULT"
                if packet.pts is not None:
                    maxp = max(maxp, packet.pts * tb)
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    if lost is None:
                        raise
                    log.debug("%s: skipped a packet the decoder rejected (pts %s)", path, packet.pts)
                    continue
                for frame in frames:
                    if frame.pts is None or k == n:
                        continue
                    t = frame.pts * tb
                    if every is not None and raw[0] - 1e-4 <= t <= raw[-1] + 1e-4 and t > seen_t + 1e-6:
                        every(t - offset, frame)
                        seen_t = t
                    if t < raw[k] - 1e-4:
                        continue
                    if skip and t > raw[k] + 1e-4:  # a wanted frame did not come out: decode in full
                        redo = True
                        break
                    while lost is not None and k < n and raw[k] < t - 1e-4:  # passed over: undecodable
                        lost.append(float(times[k]))
                        k += 1
                    if k == n:
                        break
                    buf_i.append(int(indices[k]))
                    buf_f.append(rgb(frame))
                    k += 1
                    while k < n and raw[k] <= t + 1e-4:  # frames the stream does not have
                        k += 1
                    if len(buf_i) == piece:
                        yield np.asarray(buf_i), np.stack(buf_f)
                        buf_i, buf_f = [], []
                    if k < n and every is None:
                        jump = key_before(raw[k])
                if k == n or redo:
                    break
                if jump is not None and jump > seek_at + 1e-6 and jump > maxp + 1e-6:
                    break  # the next wanted frame is past a key frame not yet read: seek to it
            else:
                ended = True
            if k < n and not ended:
                if redo:
                    log.debug("%s: the frame at %.3f s was skipped; decoding on in full", path, times[k])
                    skip = False
                    cc.skip_frame = "DEFAULT"
                seek_at = seek(raw[k])
    if buf_i:
        yield np.asarray(buf_i), np.stack(buf_f)
    if k < n:
        if lost is None:
            raise DecodeError(f"{n - k} sampled frames from {times[k]:.2f} s on could not be decoded "
                              "(truncated?)")
        lost.extend(float(x) for x in times[k:])


def describe_spans(spans: list[tuple[float, float]]) -> str:
    """'4.00-4.50 s, at 6.10 s' (times from the first frame)."""
    return ", ".join(f"{a:.2f}-{b:.2f} s" if b > a else f"at {a:.2f} s" for a, b in spans)


def lost_spans(lost: list[float], times: np.ndarray) -> list[tuple[float, float]]:
    """Spans (start, end) of consecutive lost sampled times; a span ends at the next sampled time
    that was decoded (or its last lost time when none follows)."""
    if not lost:
        return []
    times = np.asarray(times, np.float64)
    gone = np.isin(times, np.asarray(lost))
    spans = []
    i = 0
    while i < len(times):
        if not gone[i]:
            i += 1
            continue
        j = i
        while j + 1 < len(times) and gone[j + 1]:
            j += 1
        end = float(times[j + 1]) if j + 1 < len(times) else float(times[j])
        spans.append((float(times[i]), end))
        i = j + 1
    return spans


def chunk_bounds(duration: float, chunk_s: float) -> list[tuple[float, float]]:
    """Split [0, duration) into chunks of chunk_s seconds (the last one may be shorter)."""
    n = max(1, math.ceil(duration / chunk_s - 1e-9))
    return [(i * chunk_s, min(duration, (i + 1) * chunk_s)) for i in range(n)]
