"""The engine on CUDA gives the CPU's answers (run on a GPU host; skipped elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gpu


def _photos():
    from vidx.jobs.demo import astronaut

    a = astronaut()
    return [a, np.ascontiguousarray(a[::-1, ::-1][::-1]), np.ascontiguousarray(a[:400, 50:450])]


@pytest.mark.parametrize("upsample", [0, 1])
def test_cuda_matches_cpu(upsample):
    from vidx.workers.faces import FaceEngine

    imgs = _photos()
    cpu = FaceEngine(device="cpu", upsample=upsample)(imgs, keep_chips=True)
    gpu = FaceEngine(device="cuda", upsample=upsample)(imgs, keep_chips=True)
    assert len(cpu) == len(gpu) >= 3
    assert np.array_equal(cpu.boxes, gpu.boxes)
    assert np.allclose(cpu.scores, gpu.scores, atol=1e-3)
    assert np.abs(cpu.landmarks - gpu.landmarks).max() <= 1
    assert np.abs(cpu.chips.astype(int) - gpu.chips.astype(int)).max() <= 1
    assert np.abs(cpu.embeddings - gpu.embeddings).max() <= 1e-3


def test_cuda_batch_of_video_frames():
    import torch

    from vidx.workers.faces import FaceEngine

    a = _photos()[0]
    frames = torch.from_numpy(np.stack([a] * 16)).cuda()
    faces = FaceEngine(device="cuda")(list(frames))
    assert len(faces) == 16 and np.ptp(faces.embeddings, axis=0).max() < 1e-3


def test_faiss_trains_ivf_on_the_gpu_when_faiss_gpu_is_installed():
    from vidx.indexing import faces_index

    if not faces_index.gpu_available():
        pytest.skip("faiss-gpu not installed (pip install -e '.[gpu]' after removing faiss-cpu)")
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(500, 128)).astype(np.float32)
    x = centres[rng.integers(0, 500, 20_000)] + 0.3 * rng.normal(size=(20_000, 128)).astype(np.float32)
    idx = faces_index.FaceIndex.build(x, [str(i) for i in range(len(x))], exact_below=0)
    exact = faces_index.FaceIndex.build(x, [str(i) for i in range(len(x))])
    _, got = idx.search(centres[:50], 10)
    _, want = exact.search(centres[:50], 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, want)])
    assert idx.meta.kind == "ivf" and recall >= 0.9
