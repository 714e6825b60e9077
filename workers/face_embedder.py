"""dlib's ResNet face embedder (``dlib_face_recognition_resnet_model_v1.dat``) in PyTorch.

Input: 150x150 RGB face chips (see :mod:`workers.face_align`).  Output: dlib's raw 128-d
descriptor (norm about 1.46, not unit length).  dlib's match rule is euclidean distance
< 0.6 between raw descriptors; :func:`unit` gives unit-length vectors for inner-product search.

The topology is dlib's ``anet_type`` (examples/dnn_face_recognition_ex.cpp); the file gives
only parameters, which are consumed in file order and checked against that topology.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vidx.workers import dlib_format, face_weights
from vidx.workers.pixels import chip_batch

CHIP_SIZE = 150


def _pad_to(x: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))


def add_prev(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: shapes that differ are zero-padded at the end of each dimension."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    return _pad_to(a, c, h, w) + _pad_to(b, c, h, w)


class _Layers:
    """Hands out a dlib file's layers in order, checking each one's kind."""

    def __init__(self, layers: list[dlib_format.Layer], name: str):
        self.layers = list(layers)
        self.i = 0
        self.name = name

    def take(self, kind: str) -> dlib_format.Layer:
        if self.i >= len(self.layers):
            raise dlib_format.DlibFormatError(f"{self.name}: too few layers for the topology")
        layer = self.layers[self.i]
        if layer.kind != kind:
            raise dlib_format.DlibFormatError(
                f"{self.name}: layer {self.i} is {layer.tag}, the topology expects {kind}"
            )
        self.i += 1
        return layer

    def done(self) -> None:
        if self.i != len(self.layers):
            raise dlib_format.DlibFormatError(f"{self.name}: {len(self.layers) - self.i} extra layers")


def conv_from(layer: dlib_format.Layer) -> nn.Conv2d:
    p = layer.params
    nf, kh, kw = p["num_filters"], p["nr"], p["nc"]
    flat = p["params"]
    n_w = len(flat) - (nf if p["use_bias"] else 0)
    cin = n_w // (nf * kh * kw)
    if cin * nf * kh * kw != n_w:
        raise dlib_format.DlibFormatError(f"conv parameter count {len(flat)} does not fit its shape")
    conv = nn.Conv2d(cin, nf, (kh, kw), (p["stride_y"], p["stride_x"]), (p["pad_y"], p["pad_x"]),
                     bias=p["use_bias"])
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(flat[:n_w].reshape(nf, cin, kh, kw)))
        if p["use_bias"]:
            conv.bias.copy_(torch.from_numpy(flat[n_w:]))
    return conv


class Affine(nn.Module):
    """Per-channel y = gamma * x + beta (dlib's affine_, or a folded bn_con)."""

    def __init__(self, gamma: np.ndarray, beta: np.ndarray):
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(np.ascontiguousarray(gamma, np.float32)).view(1, -1, 1, 1))
        self.register_buffer("beta", torch.from_numpy(np.ascontiguousarray(beta, np.float32)).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.beta, x, self.gamma)

    @classmethod
    def from_layer(cls, layer: dlib_format.Layer) -> "Affine":
        p = layer.params
        if layer.kind == "affine":
            if p["mode"] != 0:
                raise dlib_format.DlibFormatError("only convolutional-mode affine layers are supported")
            g, b = np.split(p["params"], 2)
            return cls(g, b)
        # bn_con at inference: fold the running statistics into an affine map
        g, b = np.split(p["params"].astype(np.float64), 2)
        scale = g / np.sqrt(p["running_variances"].astype(np.float64) + p["eps"])
        return cls(scale, b - scale * p["running_means"])


class _Residual(nn.Module):
    """relu(x + block(x)); with ``down``: relu(block(x) + avgpool2x2(x)), zero-padded."""

    def __init__(self, layers: _Layers, down: bool):
        super().__init__()
        self.conv1 = conv_from(layers.take("con"))
        self.aff1 = Affine.from_layer(layers.take("affine"))
        layers.take("relu")
        self.conv2 = conv_from(layers.take("con"))
        self.aff2 = Affine.from_layer(layers.take("affine"))
        self.down = down
        if down:
            pool = layers.take("avg_pool").params
            if (pool["nr"], pool["stride_y"], pool["pad_y"]) != (2, 2, 0):
                raise dlib_format.DlibFormatError("unexpected pooling in a downsampling block")
        layers.take("add_prev")
        layers.take("relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.aff2(self.conv2(F.relu(self.aff1(self.conv1(x)))))
        skip = F.avg_pool2d(x, 2, 2) if self.down else x
        return F.relu(add_prev(y, skip))


class FaceEmbedder(nn.Module):
    """Batched dlib ResNet embedder.  ``forward`` takes (N, 3, 150, 150) uint8 RGB chips."""

    name = "dlib_resnet_v1"
    dim = 128
    chip_size = CHIP_SIZE

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        path = Path(path) if path else face_weights.model_path(face_weights.EMBEDDER_FILE)
        try:
            net = dlib_format.read_dnn(path)
            if net.loss != "loss_metric_2" or net.input != "input_rgb_image_sized":
                raise dlib_format.DlibFormatError(f"not a metric-learning network ({net.loss})")
            layers = _Layers(net.layers, path.name)
            self.stem = conv_from(layers.take("con"))
            self.stem_aff = Affine.from_layer(layers.take("affine"))
            layers.take("relu")
            mp = layers.take("max_pool").params
            self.pool = (mp["nr"], mp["stride_y"], mp["pad_y"])
            # alevel4 .. alevel0: 3x32; down 64 + 3x64; down 128 + 2x128; down 256 + 2x256; down 256
            plan = [False] * 3 + [True] + [False] * 3 + [True] + [False] * 2 + [True] + [False] * 2 + [True]
            self.blocks = nn.Sequential(*[_Residual(layers, d) for d in plan])
            layers.take("avg_pool")
            fc = layers.take("fc").params
            layers.done()
        except dlib_format.DlibFormatError as e:
            raise face_weights.corrupt(path, e) from e
        n_in, n_out = fc["num_inputs"], fc["num_outputs"]
        self.fc = nn.Linear(n_in, n_out, bias=fc["bias_mode"] == 0)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(fc["params"][: n_in * n_out].reshape(n_in, n_out).T.copy()))
            if self.fc.bias is not None:
                self.fc.bias.copy_(torch.from_numpy(fc["params"][n_in * n_out :]))
        self.register_buffer("mean", torch.tensor(net.input_options["mean"], dtype=torch.float32).view(1, 3, 1, 1))
        self.threshold = float(net.loss_options["distance_threshold"])
        self.eval().requires_grad_(False)

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        x = (chips.to(self.mean.device, torch.float32) - self.mean) / 256.0
        x = F.relu(self.stem_aff(self.stem(x)))
        k, s, p = self.pool
        x = F.max_pool2d(x, k, s, p)
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))

    @torch.inference_mode()
    def embed(self, chips: torch.Tensor | np.ndarray, batch_size: int | None = 64) -> np.ndarray:
        """Raw dlib descriptors (N, 128) float32 for uint8 chips (N, 150, 150, 3) or (N, 3, 150, 150)."""
        chips = chip_batch(chips, CHIP_SIZE)
        batch_size = batch_size or 64
        out = [self(chips[i : i + batch_size]) for i in range(0, len(chips), batch_size)]
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return torch.cat(out).float().cpu().numpy()

