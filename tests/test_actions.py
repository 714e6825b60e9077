"""Action models: weights resolution, the real loading path, windows, and segment merging."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from vidx.workers import actions
from vidx.workers.actions import SegmentParams, WindowScores, merge_segments

VIDX = shutil.which("vidx", path=str(Path(sys.executable).parent)) or shutil.which("vidx")


def ws(labels, scores, step=1.0):
    """Windows of 1 s back to back, top-2 per window: labels / scores as (W, 2)."""
    n = len(labels)
    return WindowScores(np.arange(n) * step, np.arange(n) * step + step, np.asarray(labels), np.asarray(scores))


P = SegmentParams(min_score=0.5, keep_score=0.2, min_duration=1.5)


def test_steady_action_is_one_segment():
    s = merge_segments(ws([[3, 1]] * 5, [[0.9, 0.05]] * 5), P)
    assert [(a, b, lab) for a, b, lab, _ in s] == [(0.0, 5.0, 3)]
    assert s[0][3] == pytest.approx(0.9)


def test_flicker_within_hysteresis_does_not_split():
    # label 3 drops to second place at 0.3 for one window: still above keep_score
    s = merge_segments(ws([[3, 1], [3, 1], [1, 3], [3, 1]], [[0.8, 0.1], [0.7, 0.2], [0.5, 0.3], [0.8, 0.1]]), P)
    assert [(a, b, lab) for a, b, lab, _ in s] == [(0.0, 4.0, 3)]


def test_two_actions_and_short_blip():
    labels = [[3, 0], [3, 0], [7, 0], [7, 0], [7, 0], [9, 0]]
    scores = [[0.9, 0.0], [0.9, 0.0], [0.8, 0.0], [0.8, 0.0], [0.8, 0.0], [0.9, 0.0]]
    s = merge_segments(ws(labels, scores), P)
    assert [(a, b, lab) for a, b, lab, _ in s] == [(0.0, 2.0, 3), (2.0, 5.0, 7)]  # the 1 s blip of 9 is dropped


def test_gap_between_windows_ends_a_segment():
    w = WindowScores(np.array([0.0, 1.0, 5.0, 6.0]), np.array([1.0, 2.0, 6.0, 7.0]),
                     np.array([[3, 0]] * 4), np.array([[0.9, 0.0]] * 4))
    s = merge_segments(w, P)
    assert [(a, b) for a, b, _, _ in s] == [(0.0, 2.0), (5.0, 7.0)]


def test_low_scores_give_no_segment():
    assert merge_segments(ws([[3, 1]] * 5, [[0.3, 0.2]] * 5), P) == []


def test_missing_weights_error_names_file_folder_and_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDX_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(actions.ActionWeightsError) as e:
        actions.ActionModel("r3d_18")
    msg = str(e.value)
    assert "r3d_18-b3b3357e.pth" in msg and str(tmp_path) in msg and "vidx models pull r3d_18" in msg
    with pytest.raises(actions.ActionWeightsError, match="unknown action model"):
        actions.ActionModel("resnet50")


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """A randomly initialised r3d_18 saved where staged weights go, under torchvision's file name."""
    from torchvision.models import get_model

    d = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    torch.save(get_model("r3d_18", weights=None, num_classes=400).state_dict(), d / actions.expected_file("r3d_18"))
    return d


def test_loader_finds_staged_weights_and_classifies(staged, monkeypatch):
    monkeypatch.setenv("VIDX_WEIGHTS_DIR", str(staged))
    m = actions.ActionModel("r3d_18")
    assert len(m.categories) == 400 and m.categories[0] == "abseiling"  # from the weights' metadata
    frames = np.random.default_rng(0).integers(0, 255, (40, 120, 160, 3), dtype=np.uint8)
    times = np.arange(40) / 15.0
    w = m.classify_frames(frames, times, stride=8)
    assert len(w.start) == 4 and w.labels.shape == (4, 5)
    assert np.allclose(w.start, times[[0, 8, 16, 24]]) and np.all(w.end > w.start)
    assert np.all(np.diff(w.scores, axis=1) <= 0) and np.all(w.scores <= 1)


def test_weights_that_do_not_fit_are_refused(tmp_path, monkeypatch):
    from torchvision.models import get_model

    monkeypatch.setenv("VIDX_WEIGHTS_DIR", str(tmp_path))
    torch.save(get_model("mc3_18", weights=None).state_dict(), tmp_path / actions.expected_file("r3d_18"))
    with pytest.raises(actions.ActionWeightsError, match="does not fit r3d_18"):
        actions.ActionModel("r3d_18")


def test_cli_models_list_and_actions(staged, tmp_path):
    from vidx.jobs.demo import make_demo_video

    env = dict(os.environ, VIDX_WEIGHTS_DIR=str(staged))
    p = subprocess.run([VIDX, "models", "list"], capture_output=True, text=True, env=env, timeout=120)
    assert p.returncode == 0
    row = [line for line in p.stdout.splitlines() if line.startswith("r3d_18 ")][0]
    assert "r3d_18-b3b3357e.pth" in row and " yes " in row
    assert " no " in [line for line in p.stdout.splitlines() if line.startswith("s3d ")][0]
    clip = make_demo_video(tmp_path / "clip.mp4", seconds=4.0, fps=15)
    p = subprocess.run([VIDX, "actions", str(clip), "--model", "r3d_18", "--json", "--min-score", "0"],
                       capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr
    segs = [json.loads(x) for x in p.stdout.splitlines()]
    assert segs and set(segs[0]) == {"video", "start", "end", "label", "label_id", "score", "model"}
    assert segs[0]["start"] == 0.0 and segs[-1]["end"] <= 4.1 and segs[0]["model"] == "r3d_18"
    p = subprocess.run([VIDX, "actions", str(clip), "--model", "s3d"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 2 and "s3d-d76dad2f.pth" in p.stderr
