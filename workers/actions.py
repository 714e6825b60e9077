"""Action classification: torchvision's Kinetics-400 video classifiers over sliding windows.

Model builders, label sets and preprocessing come from torchvision's weight enums (never a
copied list).  Weights are resolved offline first:

1. an explicit path (config ``actions.weights``);
2. the weights folder: ``VIDX_WEIGHTS_DIR``, by default torch's hub cache
   (``$TORCH_HOME/hub/checkpoints``), under torchvision's own file name (e.g. ``r3d_18-b3b3357e.pth``);
3. a download through torchvision, only when allowed (``vidx models pull NAME``).

A missing file is an :class:`ActionWeightsError` naming the file, the folder and how to stage
it; there is no fallback to random weights.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models import get_model, get_model_weights, list_models
from torchvision.models import video as tv_video

CPU_DEFAULT = "s3d"  # best Kinetics-400 accuracy per GFLOP (68.4% at 18 GFLOPs)
GPU_DEFAULT = "mvit_v2_s"  # most accurate (80.8%) at 64 GFLOPs
CLIP_FPS = 15.0  # torchvision's Kinetics reference trains on clips sampled at 15 fps


class ActionWeightsError(RuntimeError):
    pass


def known_models() -> list[str]:
    return sorted(list_models(module=tv_video))


def weights_enum(name: str):
    if name not in known_models():
        raise ActionWeightsError(f"unknown action model {name!r} (known: {', '.join(known_models())})")
    return get_model_weights(name).DEFAULT


def expected_file(name: str) -> str:
    return weights_enum(name).url.rsplit("/", 1)[-1]


def weights_dir() -> Path:
    env = os.environ.get("VIDX_WEIGHTS_DIR")
    return Path(env) if env else Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(name: str, path: str | os.PathLike | None = None) -> Path:
    """The weights file for a model, or ActionWeightsError saying where to put it."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise ActionWeightsError(f"action weights {p} (actions.weights) not found")
        return p
    fname = expected_file(name)
    p = weights_dir() / fname
    if p.is_file():
        return p
    url = weights_enum(name).url
    raise ActionWeightsError(
        f"weights for action model {name} not found: expected {p}. On a machine with internet run "
        f"'vidx models pull {name}' (or download {url}) and copy {fname} into {weights_dir()} "
        f"(set VIDX_WEIGHTS_DIR to use another folder)")


def pull(name: str) -> Path:
    """Download a model's weights into the weights folder (checks torchvision's hash)."""
    w = weights_enum(name)
    d = weights_dir()
    d.mkdir(parents=True, exist_ok=True)
    torch.hub.load_state_dict_from_url(w.url, model_dir=str(d), progress=True, check_hash=True)
    return d / expected_file(name)


def categories(name: str, path: str | os.PathLike) -> list[str]:
    """The label set for a weights file: torchvision's, or the one a vidx-trained file carries."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "categories" in state and "state_dict" in state:
        return list(state["categories"])
    return list(weights_enum(name).meta["categories"])


def resolve_for_index(model: str, weights: str, gpu: bool, allow_download: bool = True) -> tuple[str, Path]:
    """(model name, weights file) for the index job, before any work: config path, weights
    folder, then a download through torchvision when the network allows."""
    name = model if model != "auto" else (GPU_DEFAULT if gpu else CPU_DEFAULT)
    try:
        return name, resolve_weights(name, weights or None)
    except ActionWeightsError as e:
        if weights or not allow_download:
            raise
        try:
            return name, pull(name)
        except Exception:  # noqa: BLE001 - offline: report the staging instructions
            raise ActionWeightsError(f"{e}; the download failed too (no network?). Or index faces only "
                                     "with --no-actions") from None


@dataclass
class WindowScores:
    """Per-window top-k: start/end seconds (W,), labels (W, k) int, scores (W, k) float."""

    start: np.ndarray
    end: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


class ActionModel:
    """A torchvision video classifier with its labels and preprocessing, loaded once."""

    def __init__(self, name: str, weights_path: str | os.PathLike | None = None, device: str = "cpu"):
        w = weights_enum(name)
        path = resolve_weights(name, weights_path)
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
        self.name = name
        self.categories = categories
        self.transforms = w.transforms()
        self.clip_len = int(w.meta.get("min_temporal_size") or 16)
        self.device = torch.device(device)
        self.model.eval().requires_grad_(False).to(self.device)

    def preprocess(self, clips: torch.Tensor) -> torch.Tensor:
        """(N, T, H, W, 3) uint8 -> (N, 3, T, h, w) float, with the weights' own transforms."""
        x = clips.permute(0, 1, 4, 2, 3)  # N, T, C, H, W as torchvision's VideoClassification expects
        return self.transforms(x)

    @torch.inference_mode()
    def scores(self, clips: torch.Tensor, batch: int = 8) -> torch.Tensor:
        out = []
        for s in range(0, len(clips), batch):
            x = self.preprocess(clips[s : s + batch].to(self.device))
            out.append(F.softmax(self.model(x), dim=-1).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, len(self.categories)))

    def classify_frames(self, frames: np.ndarray, times: np.ndarray, stride: int | None = None,
                        k: int = 5) -> WindowScores:
        """Sliding windows of clip_len frames (sampled at CLIP_FPS) with the given stride."""
        stride = stride or self.clip_len
        n = len(frames)
        starts = list(range(0, max(n - self.clip_len, 0) + 1, stride)) if n >= self.clip_len else []
        if not starts:
            z = np.zeros((0, k))
            return WindowScores(np.zeros(0), np.zeros(0), z.astype(np.int64), z)
        clips = torch.from_numpy(np.stack([frames[s : s + self.clip_len] for s in starts]))
        p = self.scores(clips)
        top = torch.topk(p, min(k, p.shape[1]), dim=1)
        step = 1.0 / CLIP_FPS
        st = np.array([times[s] for s in starts])
        en = np.array([times[s + self.clip_len - 1] + step for s in starts])
        return WindowScores(st, en, top.indices.numpy(), top.values.numpy())


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


def classify_video(model: ActionModel, path: str, stride: int | None = None, max_side: int = 256,
                   piece: int = 64) -> WindowScores:
    """Windows over a whole video, frames sampled at CLIP_FPS and decoded in bounded pieces
    (a rolling buffer of one window plus one piece)."""
    from vidx.workers import decode

    info = decode.probe(path)
    idx = decode.sample_indices(info.timestamps, 0.0, info.duration, CLIP_FPS)
    times = info.timestamps[idx]
    stride = stride or model.clip_len
    buf: list[np.ndarray] = []
    buf_t: list[float] = []
    parts: list[WindowScores] = []
    for part, frames in decode.read_frames(path, info, idx, max_side, piece, times):
        buf.extend(frames)
        buf_t.extend(info.timestamps[part])
        usable = (len(buf) - model.clip_len) // stride * stride + model.clip_len if len(buf) >= model.clip_len else 0
        if usable:
            parts.append(model.classify_frames(np.stack(buf[:usable]), np.asarray(buf_t[:usable]), stride))
            keep = usable - model.clip_len + stride
            buf, buf_t = buf[keep:], buf_t[keep:]
    if not parts:
        z = np.zeros((0, 5))
        return WindowScores(np.zeros(0), np.zeros(0), z.astype(np.int64), z)
    return WindowScores(*(np.concatenate([getattr(p, f) for p in parts])
                          for f in ("start", "end", "labels", "scores")))
