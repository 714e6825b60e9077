"""An archive folder with the usual mess, made from the shared videos: a clip with garbage over a
middle stretch, a clip cut at 60% of its bytes (index at the front), the same clip under two
names and inside a tar, a `.tar.gz` that is not an archive, a gzip bomb, a dangling symlink.
One real `vidx index` run on a terminal (a pseudo-terminal) indexes everything it can, accounts
for every input in its summary, keeps the damaged clips' intact faces, and prints only vidx's own
lines and bar: Ray's log lines go to the index folder's log file."""

from __future__ import annotations

import fcntl
import gzip
import os
import pty
import re
import select
import struct
import subprocess
import tarfile
import termios
import time
from pathlib import Path

import numpy as np
import pytest
from test_index_media import ENV, VIDX, table

pytestmark = pytest.mark.media
RAY_MARKERS = ("core_worker", "streaming_executor", "Progress bars disabled", "MapWorker", "INFO ", "WARNING ",
               "raylet", "(pid=", "token", "/github/workspace")


def _faststart(src: Path, dst: Path) -> Path:
    """The clip remuxed with its index (moov) at the front, as players stream it."""
    import av

    with av.open(str(src)) as i, av.open(str(dst), "w", options={"movflags": "faststart"}) as o:
        s = i.streams.video[0]
        os_ = o.add_stream_from_template(s)
        for pkt in i.demux(s):
            if pkt.dts is None:
                continue
            pkt.stream = os_
            o.mux(pkt)
    return dst


def _run_on_a_terminal(args: list[str], timeout: float = 900) -> tuple[int, str]:
    """Run a command with stdout and stderr on a pseudo-terminal; (exit status, what it printed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal 120 columns wide
    p = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=ENV, close_fds=True)
    os.close(slave)
    out = bytearray()
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            out += data
        elif p.poll() is not None:
            break
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, out.decode(errors="replace")


@pytest.fixture(scope="module")
def mess(tmp_path_factory, data_dir):
    d = tmp_path_factory.mktemp("mess")
    work = tmp_path_factory.mktemp("work")
    whole = _faststart(data_dir / "videos" / "hk_biden.mp4", d / "biden_whole.mp4")
    data = whole.read_bytes()
    rng = np.random.default_rng(0)
    g = bytearray(data)
    mid = len(g) // 2
    g[mid : mid + 65536] = rng.integers(0, 256, 65536, dtype=np.uint8).tobytes()  # 64 KB of garbage mid-file
    (d / "biden_garbage.mp4").write_bytes(bytes(g))
    (d / "biden_cut.mp4").write_bytes(data[: int(len(data) * 0.6)])  # cut at 60% of its bytes
    obama = (data_dir / "videos" / "shd_obama.mp4").read_bytes()
    (d / "obama.mp4").write_bytes(obama)
    (d / "obama_copy.mp4").write_bytes(obama)  # the same clip under another name...
    with tarfile.open(d / "press.tar", "w") as t:  # ...and inside a tar
        t.add(data_dir / "videos" / "shd_obama.mp4", "2024/obama_dinner.mp4")
    (d / "notes.tar.gz").write_text("meeting notes, not an archive\n")
    with gzip.open(d / "bomb.tar.gz", "wb", compresslevel=9) as f:  # 64 MiB of zeros in 64 KiB on disk
        z = bytes(1 << 20)
        for _ in range(64):
            f.write(z)
    os.symlink(work / "gone.mp4", d / "gone.mp4")  # dangling
    out = work / "index"
    rc, text = _run_on_a_terminal([VIDX, "index", str(d), "--out", str(out), "--no-actions",
                                   "--set", "max_archive_gb=0.03"])
    return d, out, rc, text


def test_every_input_is_accounted_for(mess):
    d, out, rc, text = mess
    assert rc == 0, text[-3000:]
    lines = text.replace("\r", "\n")
    assert re.search(r"videos: 2 ok, 2 partial, 0 failed", lines), lines[-2000:]
    assert f"skipped: {d / 'notes.tar.gz'}: not an archive: bad gzip header" in lines
    assert f"skipped: {d / 'bomb.tar.gz'}: archive expands beyond 0.03 GB: refused" in lines
    assert f"skipped: {d / 'gone.mp4'}: dangling symlink (points to " in lines
    assert f"partial: {d / 'biden_garbage.mp4'}: undecodable " in lines
    assert f"partial: {d / 'biden_cut.mp4'}: truncated: data ends at " in lines


def test_only_vidx_lines_on_the_terminal_and_ray_in_its_log(mess):
    d, out, rc, text = mess
    for marker in RAY_MARKERS:
        assert marker not in text, f"{marker!r} on the terminal:\n{text[-3000:]}"
    assert "video-s" in text  # the progress bar, on a terminal
    logs = list((out / "logs").glob("ray-*.log"))
    assert len(logs) == 1 and f"Ray's own log: {logs[0]}" in text
    assert logs[0].read_text().startswith("# vidx index, pid ")  # Ray's stderr, if it wrote any, follows


def test_every_name_of_a_duplicate_is_kept(mess):
    d, out, rc, text = mess
    v = {r["path"]: r for r in table(out, "videos").to_pylist()}
    obama = next(r for r in v.values() if "obama" in r["path"])
    assert sorted(obama["paths"]) == sorted([str(d / "obama.mp4"), str(d / "obama_copy.mp4"),
                                             f"{d / 'press.tar'}::2024/obama_dinner.mp4"])
    p = subprocess.run([VIDX, "query", str(out), "--video", "obama_copy.mp4", "--all-paths", "--json"],
                       capture_output=True, text=True, env=ENV)
    assert p.returncode == 0, p.stderr
    import json

    rows = [json.loads(x) for x in p.stdout.splitlines()]
    assert rows and set(rows[0]["other_paths"]) | {rows[0]["path"]} == set(obama["paths"])


def _faces_by_time(out, name: str) -> dict[float, int]:
    vids = {r["video_id"]: r["path"] for r in table(out, "videos").to_pylist()}
    det = table(out, "face_detections")
    counts: dict[float, int] = {}
    for vid, t, rej in zip(det["video_id"].to_pylist(), det["t"].to_pylist(), det["rejected"].to_pylist()):
        if vids[vid].endswith(name) and rej is None:
            counts[round(t, 2)] = counts.get(round(t, 2), 0) + 1
    return counts


def test_damaged_clips_keep_the_faces_of_their_intact_parts(mess):
    d, out, rc, text = mess
    v = {Path(r["path"]).name: r for r in table(out, "videos").to_pylist()}
    whole = _faces_by_time(out, "biden_whole.mp4")
    assert v["biden_whole.mp4"]["status"] == "ok" and len(whole) >= 12  # 7 s at 2 fps: a face in each
    garbage = _faces_by_time(out, "biden_garbage.mp4")
    m = re.search(r"undecodable (\d+\.\d+)-(\d+\.\d+) s", v["biden_garbage.mp4"]["error"])
    lo, hi = float(m.group(1)), float(m.group(2))
    intact = {t: n for t, n in whole.items() if not lo - 1e-6 <= t < hi}
    assert all(garbage.get(t) == n for t, n in intact.items()), (intact, garbage)  # every intact sample's face
    cut = _faces_by_time(out, "biden_cut.mp4")
    end = float(re.search(r"data ends at (\d+\.\d+) s", v["biden_cut.mp4"]["error"]).group(1))
    assert 3.5 < end < 5.5 and v["biden_cut.mp4"]["duration_s"] == pytest.approx(end, abs=0.1)
    assert {t: n for t, n in whole.items() if t < end - 0.5} == {t: n for t, n in cut.items() if t < end - 0.5}
    assert "github" not in v["biden_garbage.mp4"]["error"] and ".cc:" not in v["biden_garbage.mp4"]["error"]
