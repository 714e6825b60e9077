"""Where dlib's CC0 face weights live, and clear errors when they are missing or corrupt.

The files ship in the PyPI package ``face-recognition-models`` (an sdist of about 96 MB);
``VIDX_FACE_MODELS_DIR`` points at another folder holding the same file names (for a cluster
whose workers cannot install that package, copy the three files there).  Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DETECTOR_FILE = "mmod_human_face_detector.dat"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
EMBEDDER_FILE = "dlib_face_recognition_resnet_model_v1.dat"

PACKAGE = "face-recognition-models"
ENV_DIR = "VIDX_FACE_MODELS_DIR"


class WeightsError(RuntimeError):
    """A model file is missing or unreadable; the message says which and how to get it."""


def models_dir() -> Path | None:
    """The folder holding dlib's face model files, or None when none is configured."""
    env = os.environ.get(ENV_DIR)
    if env:
        return Path(env)
    # find_spec does not import the package (its __init__ imports the deprecated pkg_resources)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(filename: str) -> Path:
    """Path of one of dlib's model files; raises WeightsError naming the file and the fix."""
    d = models_dir()
    how = (
        f"install the PyPI package '{PACKAGE}' (pip install {PACKAGE}; it needs setuptools<81), "
        f"or copy {filename} into a folder and set {ENV_DIR} to it"
    )
    if d is None:
        raise WeightsError(f"face model file {filename} not found: {how}")
    p = d / filename
    if not p.is_file():
        raise WeightsError(f"face model file {filename} not found in {d}: {how}")
    if not os.access(p, os.R_OK):
        raise WeightsError(f"face model file {p} is not readable: check its permissions")
    return p


def corrupt(path: Path, err: Exception) -> WeightsError:
    return WeightsError(
        f"face model file {path} is corrupt or not the expected dlib model ({err}); "
        f"reinstall '{PACKAGE}' (pip install --force-reinstall --no-cache-dir {PACKAGE})"
    )
