"""Damaged files built from the shared clips (64 KiB of garbage at several byte offsets, cuts at
several points; the index at the end or at the front; a stream whose first frame is at 0.852 s):
every sampled frame that a clean frame-by-frame decode of the same file gives, vidx reads too,
and every time is on vidx's clock (seconds from the first frame)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from vidx.workers import decode

pytestmark = pytest.mark.media
CLIPS = ("hk_biden.mp4", "psd_goldeneye-vfr-drop3.mp4")


def _remux(src: Path, dst: Path, shift_s: float = 0.0, faststart: bool = True) -> Path:
    """The clip's video packets in a new MP4 (index at the front when ``faststart``), their times moved by ``shift_s``."""
    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"} if faststart else {}) as o:
        s = i.streams.video[0]
        out = o.add_stream_from_template(s)
        d = int(round(shift_s / s.time_base))
        for pkt in i.demux(s):
            if pkt.dts is None:
                continue
            pkt.pts, pkt.dts, pkt.stream = pkt.pts + d, pkt.dts + d, out
            o.mux(pkt)
    return dst


def _clean(path: str) -> set[float] | None:
    """Presentation times (stream clock) of every frame FFmpeg decodes packet by packet; None: it cannot open it."""
    got = set()
    try:
        with av.open(path) as c:
            s = c.streams.video[0]
            tb = float(s.time_base)
            for p in c.demux(s):
                try:
                    got.update(round(f.pts * tb, 4) for f in p.decode() if f.pts is not None)
                except av.error.FFmpegError:
                    continue
    except av.error.FFmpegError:
        return None
    return got


def _variants(data_dir: Path, tmp: Path):
    for name in CLIPS:
        src = data_dir / "videos" / name
        bases = {"index at the end": src.read_bytes(),
                 "index at the front": _remux(src, tmp / f"fs-{name}").read_bytes(),
                 "first frame at 0.852 s": _remux(src, tmp / f"late-{name}", shift_s=0.852).read_bytes()}
        for kind, data in bases.items():
            for frac in (0.2, 0.5, 0.8):
                b = bytearray(data)
                at = int(len(b) * frac)
                b[at : at + 65536] = np.random.default_rng(int(frac * 10)).integers(0, 256, 65536, np.uint8).tobytes()
                yield f"{name}, {kind}, garbage at {frac:.0%}", bytes(b)
            for frac in (0.3, 0.6):
                yield f"{name}, {kind}, cut at {frac:.0%}", data[: int(len(data) * frac)]


def test_every_frame_ffmpeg_can_decode_is_read_on_vidx_s_clock(data_dir, tmp_path):
    checked = 0
    for label, data in _variants(data_dir, tmp_path):
        path = tmp_path / "case.mp4"
        path.write_bytes(data)
        clean = _clean(str(path))
        try:
            info = decode.probe(str(path))
        except decode.DecodeError as e:
            assert not clean, f"{label}: vidx refused ({e}) what FFmpeg decodes ({len(clean or ())} frames)"
            continue
        assert info.timestamps[0] == 0.0, label  # vidx's clock: from the first frame
        if info.note:
            end = float(info.note.split("data ends at ")[1].split(" s")[0])
            assert abs(end - info.duration) < 1e-2, (label, info.note)  # both numbers on vidx's clock
        raw = info.timestamps + info.pts_offset
        for a, b in decode.chunk_bounds(info.duration, 3.0):
            idx = decode.sample_indices(info.timestamps, a, b, 2.0)
            lost: list[float] = []
            got = {int(i) for ids, _ in decode.read_frames(str(path), info, idx, max_side=320, lost=lost) for i in ids}
            can = {int(i) for i in idx if round(float(raw[i]), 4) in clean}
            assert can <= got, (label, sorted(round(float(info.timestamps[i]), 3) for i in can - got))
            assert set(lost) == {float(info.timestamps[i]) for i in idx if int(i) not in got}, label
        checked += 1
    assert checked >= 20
