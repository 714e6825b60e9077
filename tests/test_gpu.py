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
