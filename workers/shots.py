"""Shot changes between sampled frames: a hard cut ends every open face track.

Two people filmed in the same place across a cut must not share a track, so the tracker is told
where the picture changes as a whole.  The test is cheap and runs on the frames already decoded
for faces: the distance between consecutive sampled frames' colour histograms (8 levels per
channel, every 4th pixel), half the L1 distance of the normalised histograms (0: same colours,
1: nothing in common).  The threshold was chosen on the shared clips (``bench/calibrate_cuts.py``;
README "Identities"), biased to split: a missed cut can put two people in one track, a false one only
splits a track that people clustering joins again.  At 2 fps the film clip's cut to the two actors
scores 0.62; its zoom cut onto the same screen (same colours, same face) only 0.23 and is not seen;
within shots everything scores below 0.41 except the pool clip's opening camera swing (0.55, no
faces), which counts as a cut.
"""

from __future__ import annotations

import numpy as np

LEVELS = 8  # per channel: 512 colour bins
STEP = 4  # every 4th pixel of every 4th row
CUT_DISTANCE = 0.5


def colour_histograms(frames: np.ndarray) -> np.ndarray:
    """(N, 512) normalised colour histograms of (N, H, W, 3) uint8 RGB frames, in one bincount."""
    frames = np.asarray(frames)
    n = len(frames)
    if n == 0:
        return np.zeros((0, LEVELS ** 3), np.float32)
    sub = (frames[:, ::STEP, ::STEP] >> 5).astype(np.int32)  # 0..7
    idx = (sub[..., 0] << 6) | (sub[..., 1] << 3) | sub[..., 2]
    flat = idx.reshape(n, -1) + (np.arange(n) * LEVELS ** 3)[:, None]
    h = np.bincount(flat.ravel(), minlength=n * LEVELS ** 3).reshape(n, -1).astype(np.float32)
    return h / np.maximum(h.sum(1, keepdims=True), 1.0)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Half the L1 distance between histograms (rows), in [0, 1]."""
    return 0.5 * np.abs(np.asarray(a) - np.asarray(b)).sum(-1)


def cut_scores(hists: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """Distance of each sampled frame to the one before it (the first compares with ``previous``,
    the last frame of the previous piece; 0 when there is none)."""
    if len(hists) == 0:
        return np.zeros(0)
    prev = np.concatenate([hists[:1] if previous is None else previous[None], hists[:-1]])
    return histogram_distance(hists, prev)
