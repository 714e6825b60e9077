"""Decoding only what is sampled: the PyAV path (non-reference frames skipped, whole groups of
pictures jumped by seeking) gives exactly decord's frames, picked by the same sampling rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from vidx.workers import decode


def _numbered_h264(path: Path, n: int = 90, fps: int = 30, gop: int = 12, bframes: int = 3,
                   size: tuple[int, int] = (160, 96)) -> Path:
    """H.264 with B-frames and a key frame every ``gop`` frames; frame i is a flat grey of level
    40 + 2 i with a moving bar, so a frame's picture names its number."""
    import av

    w, h = size
    with av.open(str(path), "w") as c:
        st = c.add_stream("libx264", rate=fps, options={"g": str(gop), "keyint_min": str(gop), "bf": str(bframes),
                                                        "sc_threshold": "0", "crf": "10", "preset": "ultrafast"})
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(n):
            img = np.full((h, w, 3), 40 + 2 * i, np.uint8)
            img[:, (3 * i) % w : (3 * i) % w + 8] = 250
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)
    return path


def _frames(path, info, idx, **kw):
    parts = list(decode.read_frames(str(path), info, idx, **kw))
    return np.concatenate([i for i, _ in parts]), np.concatenate([f for _, f in parts])


@pytest.fixture(scope="module")
def numbered(tmp_path_factory) -> Path:
    return _numbered_h264(tmp_path_factory.mktemp("dec") / "numbered.mp4")


def test_probe_finds_frames_by_time_and_knows_the_key_frames(numbered):
    info = decode.probe(str(numbered))
    assert info.backend == "pyav" and info.frames == 90
    assert np.allclose(info.keyframes, np.arange(0, 90, 12) / 30, atol=1e-6)


@pytest.mark.parametrize("rate", [0.4, 2.0, 7.0, 30.0])
@pytest.mark.parametrize("threads", [1, 2])
def test_sparse_decoding_equals_decord_frame_for_frame(numbered, rate, threads):
    """Every sampling rate (one frame in several groups of pictures, a few per group, all frames)
    and decoder thread count: the same indices and the same pixels as decord by index, and each
    picture is the frame its time names."""
    info = decode.probe(str(numbered))
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration, rate)
    i_old, f_old = _frames(numbered, dataclasses.replace(info, backend="decord"), idx, piece=5)
    i_new, f_new = _frames(numbered, info, idx, piece=5, threads=threads)
    assert np.array_equal(i_old, idx) and np.array_equal(i_new, idx)
    assert np.array_equal(f_old, f_new)
    level = f_new[:, :, :, 0].astype(int)
    level = np.median(level.reshape(len(idx), -1), axis=1)
    assert np.abs(level - (40 + 2 * idx)).max() <= 3  # frame i's own grey (codec noise aside)


def test_sparse_decoding_of_a_later_stretch_and_scaled(numbered):
    """A chunk that starts mid-video (seek to the key frame before it), scaled down."""
    info = decode.probe(str(numbered))
    idx = decode.sample_indices(info.timestamps, 1.3, 2.9, 3.0)
    _, f_old = _frames(numbered, dataclasses.replace(info, backend="decord"), idx, max_side=100)
    i_new, f_new = _frames(numbered, info, idx, max_side=100)
    assert np.array_equal(i_new, idx) and f_new.shape[1:] == (60, 100, 3)
    assert np.array_equal(f_old, f_new)


def test_sparse_decoding_redoes_a_stretch_when_a_wanted_frame_was_skipped(numbered, monkeypatch, caplog):
    """Should the packet times not name the frames (a container that lies), a wanted frame
    missing from the skipping decoder makes it decode on in full: the same frames."""
    info = decode.probe(str(numbered))
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration, 30.0)  # every frame: B-frames too
    _, f_old = _frames(numbered, dataclasses.replace(info, backend="decord"), idx)
    monkeypatch.setattr(decode, "_wanted_pts", lambda raw, tb: set())  # no packet looks wanted
    with caplog.at_level("DEBUG", logger="vidx.workers.decode"):
        i_new, f_new = _frames(numbered, info, idx)
    assert "decoding on in full" in caplog.text
    assert np.array_equal(i_new, idx) and np.array_equal(f_old, f_new)


@pytest.mark.media
def test_shared_videos_decode_to_the_same_pixels_as_decord(data_dir):
    """The shared clips (H.264 main/high with and without B-frames, 240p to 1080p, VFR; MPEG-4
    and H.264 in AVI): the PyAV path where the probe chose it, byte-equal to decord's frames at
    the index job's size and rates; AVI files whose packet times are not decord's stay on decord."""
    chose = {}
    for p in sorted((data_dir / "videos").iterdir()):
        info = decode.probe(str(p))
        chose[p.name] = info.backend
        if info.backend != "pyav":
            continue
        old = dataclasses.replace(info, backend="decord")
        for rate in (2.0, 0.5):
            idx = decode.sample_indices(info.timestamps, 0.0, info.duration, rate)
            i_old, f_old = _frames(p, old, idx, max_side=1280)
            i_new, f_new = _frames(p, info, idx, max_side=1280)
            assert np.array_equal(i_old, i_new), p.name
            assert np.array_equal(f_old, f_new), (p.name, rate)
    assert sum(b == "pyav" for b in chose.values()) >= 9, chose
    assert all(b == "decord" for n, b in chose.items() if n.endswith(".avi")), chose
