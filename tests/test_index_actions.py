"""`vidx index` with the action stage: staged weights, segments lined up with face tracks,
--no-actions, and the early error when no weights exist (synthetic clips, no real media)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

VIDX = shutil.which("vidx", path=str(Path(sys.executable).parent)) or shutil.which("vidx")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from torchvision.models import get_model

    from vidx.jobs.demo import make_demo_video
    from vidx.workers.actions import expected_file

    d = tmp_path_factory.mktemp("act")
    (d / "videos").mkdir()
    make_demo_video(d / "videos" / "walk.mp4", seconds=5.0, fps=15, face_from=0.5, face_to=4.0)
    (d / "weights").mkdir()
    torch.manual_seed(0)
    torch.save(get_model("r3d_18", weights=None).state_dict(), d / "weights" / expected_file("r3d_18"))
    return d


def run(setup, out, *extra, weights="weights"):
    env = dict(os.environ, RAY_AUTH_MODE="disabled", VIDX_WEIGHTS_DIR=str(setup / weights), PYTHONWARNINGS="ignore")
    return subprocess.run([VIDX, "index", str(setup / "videos"), "--out", str(out), "--set", "actions.model=r3d_18",
                           "--set", "actions.min_score=0", "--set", "actions.min_duration=0", *extra],
                          capture_output=True, text=True, env=env, timeout=600)


def test_actions_are_indexed_beside_faces(setup, tmp_path):
    from vidx.indexing.tables import read_index_table

    p = run(setup, tmp_path / "idx")
    assert p.returncode == 0, p.stderr[-3000:]
    win = read_index_table(str(tmp_path / "idx"), "action_windows")
    segs = read_index_table(str(tmp_path / "idx"), "action_segments").to_pylist()
    tracks = read_index_table(str(tmp_path / "idx"), "face_tracks").to_pylist()
    # 5 s at 15 fps = 75 frames: windows of 16 frames back to back
    assert win.num_rows == 4 and win["start_s"].to_pylist()[0] == 0.0
    assert all(len(x) == 5 for x in win["label_ids"].to_pylist())
    assert segs and all(s["model"] == "r3d_18" and 0 <= s["start_s"] < s["end_s"] <= 5.0 for s in segs)
    assert all(isinstance(s["label"], str) and 0 <= s["label_id"] < 400 for s in segs)
    # the same clock as the face track: the face is on screen from 0.5 s to ~4 s
    assert len(tracks) == 1 and 0.4 <= tracks[0]["start_s"] <= 0.6 and tracks[0]["end_s"] <= 4.0
    assert min(s["start_s"] for s in segs) <= tracks[0]["start_s"] < max(s["end_s"] for s in segs)


def test_no_actions_indexes_faces_only(setup, tmp_path):
    from vidx.indexing.tables import read_index_table

    p = run(setup, tmp_path / "idx", "--no-actions", weights="missing")
    assert p.returncode == 0, p.stderr[-3000:]
    assert read_index_table(str(tmp_path / "idx"), "face_tracks").num_rows == 1
    assert read_index_table(str(tmp_path / "idx"), "action_segments").num_rows == 0
    # every table exists for other engines (empty); no action part was written
    assert read_index_table(str(tmp_path / "idx"), "action_windows").num_rows == 0
    assert not list((tmp_path / "idx" / "action_windows").rglob("*.parquet"))


def test_missing_action_weights_stop_before_any_work(setup, tmp_path):
    """With VIDX_OFFLINE (set for every test by conftest.py) weights that are not staged are refused
    by the code, never fetched: the same result with a network or without one."""
    assert os.environ.get("VIDX_OFFLINE")
    p = run(setup, tmp_path / "idx", weights="missing")
    assert p.returncode != 0
    assert "r3d_18-b3b3357e.pth" in p.stderr and "--no-actions" in p.stderr
    assert "not fetched: VIDX_OFFLINE is set" in p.stderr and "fetching them" not in p.stderr
    assert not (tmp_path / "idx").exists()
