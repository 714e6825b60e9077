"""Unit tests of the dlib file readers on tiny synthetic files."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dlib_writer as w
from vidx.workers import dlib_format
from vidx.workers.dlib_format import DlibFormatError, _Reader


@pytest.mark.parametrize("v", [0, 1, -1, 127, 255, 256, -300, 2**40 + 5, -(2**62)])
def test_integers_round_trip(v):
    r = _Reader(w.int_(v), "x")
    assert r.int() == v
    assert r.pos == len(r.buf)


def test_zero_is_01_00():
    assert w.int_(0) == b"\x01\x00"


@pytest.mark.parametrize("v", [0.0, 1.0, -2.5, 0.3382761351109955, 1e-30, 122.782])
def test_floats_round_trip(v):
    assert _Reader(w.float_(v), "x").float() == v


def test_special_floats():
    r = _Reader(w.float_(math.inf) + w.float_(-math.inf) + w.float_(math.nan), "x")
    assert r.float() == math.inf and r.float() == -math.inf and math.isnan(r.float())


def test_bad_control_byte_and_truncation_are_reported():
    with pytest.raises(DlibFormatError, match="control byte"):
        _Reader(b"\x71\x00", "f.dat").int()
    with pytest.raises(DlibFormatError, match="end of file"):
        _Reader(b"\x04\x01\x02", "f.dat").int()


def test_tensor_reads_float32_payload():
    vals = np.arange(6, dtype="<f4")
    buf = w.int_(2) + b"".join(w.int_(x) for x in (1, 2, 3, 1)) + vals.tobytes()
    t = _Reader(buf, "x").tensor()
    assert t.shape == (1, 2, 3, 1) and np.array_equal(t.ravel(), vals)


def _two_point_predictor():
    initial = [[0.25, 0.5], [0.75, 0.5]]
    # Both trees compare the pixel at point 0 with the pixel at point 1.
    t0 = ([(0, 1, 0.0)], [[0.10, 0.0, 0.0, 0.05], [-0.10, 0.0, 0.0, -0.05]])
    t1 = ([(0, 1, 100.0)], [[0.05, 0.0, 0.0, 0.0], [-0.05, 0.0, 0.0, 0.0]])
    return w.shape_predictor(initial, [[t0, t1]], anchors=[[0, 1]], deltas=[[(0.0, 0.0), (0.0, 0.0)]])


def test_shape_predictor_reader(tmp_path):
    p = tmp_path / "sp.dat"
    p.write_bytes(_two_point_predictor())
    sp = dlib_format.read_shape_predictor(p)
    assert sp.initial_shape.tolist() == [[0.25, 0.5], [0.75, 0.5]]
    assert sp.splits_idx1.shape == (1, 2, 1) and sp.leaves.shape == (1, 2, 2, 4)
    assert sp.splits_thresh[0, 1, 0] == 100.0
    assert sp.anchor_idx.tolist() == [[0, 1]]


def test_shape_predictor_truncated(tmp_path):
    p = tmp_path / "sp.dat"
    p.write_bytes(_two_point_predictor()[:-3])
    with pytest.raises(DlibFormatError):
        dlib_format.read_shape_predictor(p)


def test_landmark_cascade_known_answer(tmp_path):
    """A bright left half sends both trees left; a bright right half sends both right."""
    from vidx.workers.face_landmarks import LandmarkPredictor

    p = tmp_path / "sp.dat"
    p.write_bytes(_two_point_predictor())
    lp = LandmarkPredictor(p)
    img = np.zeros((101, 101, 3), np.uint8)
    img[:, :50] = 255
    mirrored = img[:, ::-1].copy()
    out = lp.predict([img, mirrored], np.array([0, 1]), np.array([[0, 0, 100, 100], [0, 0, 100, 100]]))
    # left: x0 = (0.25 + 0.10 + 0.05) * 100 = 40, y1 = (0.5 + 0.05) * 100 = 55
    assert out[0].tolist() == [[40, 50], [75, 55]]
    # right: x0 = (0.25 - 0.15) * 100 = 10, y1 = 45
    assert out[1].tolist() == [[10, 50], [75, 45]]


def test_real_detector_file_truncated_is_a_clear_error(tmp_path):
    from vidx.workers import face_weights
    from vidx.workers.face_detector import FaceDetector

    src = face_weights.model_path(face_weights.DETECTOR_FILE)
    bad = tmp_path / face_weights.DETECTOR_FILE
    bad.write_bytes(src.read_bytes()[:5000])
    with pytest.raises(face_weights.WeightsError, match="corrupt.*face-recognition-models"):
        FaceDetector(bad)


def test_missing_weights_name_file_and_package(tmp_path, monkeypatch):
    from vidx.workers import face_weights

    monkeypatch.setenv(face_weights.ENV_DIR, str(tmp_path))
    with pytest.raises(face_weights.WeightsError) as e:
        face_weights.model_path(face_weights.EMBEDDER_FILE)
    msg = str(e.value)
    assert face_weights.EMBEDDER_FILE in msg and "face-recognition-models" in msg and str(tmp_path) in msg


def test_real_files_parse_completely():
    """The three CC0 files parse to their end with the layer kinds dlib's topologies need."""
    from vidx.workers import face_weights as fw

    det = dlib_format.read_dnn(fw.model_path(fw.DETECTOR_FILE))
    assert [l.kind for l in det.layers].count("con") == 7
    assert det.loss_options["window_width"] == 80
    emb = dlib_format.read_dnn(fw.model_path(fw.EMBEDDER_FILE))
    assert [l.kind for l in emb.layers].count("con") == 29
    assert emb.layers[-1].kind == "fc" and emb.layers[-1].params["num_outputs"] == 128
    sp = dlib_format.read_shape_predictor(fw.model_path(fw.LANDMARKS_FILE))
    assert sp.num_parts == 5 and sp.leaves.shape[:2] == (15, 500)
