"""Unit tests of the geometry behind the face engine, on tiny synthetic inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidx.workers.face_align import _TEMPLATE_5, chip_details, extract_chips, pyramid_down2
from vidx.workers.face_detector import lround, nms, tiled_pyramid_rects
from vidx.workers.face_embedder import add_prev
from vidx.workers.face_landmarks import similarity_2d


def test_tiled_pyramid_layout_512():
    # dlib: a 512x512 input tiles into 1895 x 534 with 24 levels (shared/docs/dlib-models.md)
    rects, nr, nc = tiled_pyramid_rects(512, 512, padding=10, outer_padding=11)
    assert (len(rects), nr, nc) == (24, 1895, 534)
    assert rects[0] == (11, 11, 522, 522)
    assert rects[1] == (11, 533, 436, 958)  # floor(512 * 5/6) = 426
    for l, t, r, b in rects:  # every tile inside the canvas
        assert 0 <= l <= r < nc and 0 <= t <= b < nr


def test_tiled_pyramid_tiles_do_not_overlap():
    rects, _, _ = tiled_pyramid_rects(360, 640, 10, 11)
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            assert a[2] < b[0] or b[2] < a[0] or a[3] < b[1] or b[3] < a[1]


def test_lround_is_half_away_from_zero():
    assert lround(np.array([0.5, 1.5, 2.5, -0.5, -1.5, 2.4999])).tolist() == [1, 2, 3, -1, -2, 2]


def test_nms_uses_bounding_box_overlap():
    boxes = np.array([[0, 0, 79, 79], [10, 0, 89, 79], [60, 0, 139, 79], [200, 200, 279, 279]], float)
    scores = np.array([0.9, 1.0, 0.8, 0.1])
    # box1 (best) overlaps box0 (70/90 of the union box > 0.338) and box2 (30/130 < 0.338): box2 stays
    assert nms(boxes, scores, 0.338, 1.0).tolist() == [1, 2, 3]


def test_similarity_matches_umeyama_svd():
    rng = np.random.default_rng(1)
    for reflect in (False, True):
        src = rng.normal(size=(5, 2))
        ang, s, t = 0.7, 1.9, np.array([3.0, -2.0])
        R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        dst = s * src @ R.T + t + rng.normal(scale=0.05, size=(5, 2))
        if reflect:
            dst[:, 0] *= -1
        # Umeyama with SVD, as dlib's find_similarity_transform
        ms, md = src.mean(0), dst.mean(0)
        cov = (dst - md).T @ (src - ms) / 5
        u, d, vt = np.linalg.svd(cov)
        S = np.eye(2)
        if np.linalg.det(cov) < 0:
            S[1, 1] = -1
        Rr = u @ S @ vt
        c = np.trace(np.diag(d) @ S) / ((src - ms) ** 2).sum(1).mean()
        m, tt = similarity_2d(torch.from_numpy(src)[None], torch.from_numpy(dst)[None])
        assert np.allclose(m[0].numpy(), c * Rr) and np.allclose(tt[0].numpy(), md - c * Rr @ ms)


def _pyramid_down2_reference(img: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down_2_1 for RGB, written as its loops read (uint16 sums, // 256)."""
    h, w = img.shape[:2]
    x = img.astype(np.int64)
    tmp = np.zeros((h, (w - 3) // 2, 3), np.int64)
    for c in range(tmp.shape[1]):
        oc = 2 * c
        tmp[:, c] = x[:, oc] + 4 * x[:, oc + 1] + 6 * x[:, oc + 2] + 4 * x[:, oc + 3] + x[:, oc + 4]
    out = np.zeros(((h - 3) // 2, tmp.shape[1], 3), np.int64)
    for dr, r in enumerate(range(2, h - 2, 2)):
        out[dr] = (tmp[r - 2] + 4 * tmp[r - 1] + 6 * tmp[r] + 4 * tmp[r + 1] + tmp[r + 2]) // 256
    return out.astype(np.uint8)


@pytest.mark.parametrize("shape", [(20, 31), (21, 30), (9, 9)])
def test_pyramid_down2_matches_dlib_loops(shape):
    img = np.random.default_rng(2).integers(0, 256, (*shape, 3), dtype=np.uint8)
    got = pyramid_down2(torch.from_numpy(img)).numpy()
    assert np.array_equal(got, _pyramid_down2_reference(img))


def test_chip_of_template_landmarks_is_axis_aligned():
    # landmarks placed exactly on the chip template of a 300 px square at (100, 50)
    tpl = (0.25 + _TEMPLATE_5) / 1.5
    lm = tpl * 300 + np.array([100.0, 50.0])
    d = chip_details(lm[None])
    assert abs(d.angles[0]) < 1e-12
    # scale 2, centre tform(75, 75) = (250, 200); centered_drect shrinks the width by one
    # before halving: 250 -+ (300 - 1) / 2
    assert np.allclose(d.rects[0], [100.5, 50.5, 399.5, 349.5])


def test_chip_samples_the_right_place():
    """A chip of a uniform region is that colour; a chip fully outside the image is black."""
    img = np.zeros((400, 400, 3), np.uint8)
    img[:, :] = (200, 100, 50)
    tpl = (0.25 + _TEMPLATE_5) / 1.5
    inside = tpl * 120 + 100.0  # small face: no pyramid
    large = tpl * 360 + 10.0  # large face: pyramid path
    outside = tpl * 100 + 2000.0
    chips = extract_chips([img], np.array([0, 0, 0]), np.stack([inside, large, outside])).numpy()
    assert chips.shape == (3, 150, 150, 3)
    assert (chips[0] == (200, 100, 50)).all()
    assert (chips[1][10:-10, 10:-10] == (200, 100, 50)).all()
    assert (chips[2] == 0).all()


def test_add_prev_zero_pads_at_the_end():
    a = torch.ones(1, 2, 3, 3)
    b = torch.ones(1, 1, 4, 2)
    out = add_prev(a, b)
    assert out.shape == (1, 2, 4, 3)
    assert out[0, 0, 0, 0] == 2 and out[0, 1, 0, 0] == 1 and out[0, 0, 3, 2] == 0 and out[0, 0, 3, 0] == 1
