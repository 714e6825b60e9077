"""Shared fixtures and the rules for the `media` and `gpu` markers.

* `media` tests read real photos and clips from ../shared/data (relative to the repository
  root).  Locally they skip when it is missing; in CI (CI=true) they fail, so a missing data
  folder can never turn into a green run.
* `gpu` tests skip when torch sees no CUDA device.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("VIDX_TEST_DATA", ROOT.parent / "shared" / "data"))


def pytest_collection_modifyitems(config, items):
    import torch

    has_cuda = torch.cuda.is_available()
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA / "MANIFEST.tsv").is_file():
        msg = f"real media not found at {DATA} (expected MANIFEST.tsv there)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI must have ../shared/data", pytrace=False)
        pytest.skip(msg)
    return DATA


@pytest.fixture(scope="session")
def faces_dir(data_dir) -> Path:
    return data_dir / "faces"


@pytest.fixture(scope="session")
def engine():
    from vidx.workers.faces import FaceEngine

    return FaceEngine(device="cpu")


@pytest.fixture(scope="session")
def sface_engine():
    """The index's default pipeline for photos: RetinaFace and SFace (cosine distances)."""
    from vidx.workers.faces import FaceEngine

    return FaceEngine(device="cpu", detector="retinaface", embedder="sface")
