"""Reader for dlib's serialization format (pure Python + numpy).

dlib writes integers as one control byte (low nibble = number of magnitude bytes, 0x80 = negative)
followed by the magnitude little-endian; floats as two such integers (mantissa, exponent:
value = m * 2**e); strings as a length then raw bytes; bools as one ASCII byte; tensors as
``2, n, k, nr, nc`` then raw little-endian float32.  See ``shared/docs/dlib-models.md``.

Two readers live here:

* :func:`read_dnn` parses a dlib DNN file (``mmod_human_face_detector.dat``,
  ``dlib_face_recognition_resnet_model_v1.dat``) into the loss options, the input layer and
  the list of computational layers from the input towards the output.  Tag and skip layers
  carry no payload, so the topology is the caller's (it comes from dlib's C++ type).
* :func:`read_shape_predictor` parses a regression-tree cascade
  (``shape_predictor_5_face_landmarks.dat``) into dense numpy arrays.  Those files are
  nothing but integers and floats, so the whole file is decoded at once with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from vidx.configs.errors import DlibFormatError  # noqa: F401 - defined there, raised here


_SPECIAL_EXP = {32000: np.inf, 32001: -np.inf, 32002: np.nan}


class _Reader:
    """Sequential reader over a bytes buffer (used for the DNN files: few, large fields)."""

    def __init__(self, buf: bytes, name: str):
        self.buf = buf
        self.pos = 0
        self.name = name

    def fail(self, what: str) -> DlibFormatError:
        return DlibFormatError(f"{self.name}: {what} at byte {self.pos} of {len(self.buf)}")

    def int(self) -> int:
        if self.pos >= len(self.buf):
            raise self.fail("unexpected end of file")
        ctrl = self.buf[self.pos]
        n = ctrl & 0x0F
        if ctrl & 0x70 or not 1 <= n <= 8:
            raise self.fail(f"bad integer control byte 0x{ctrl:02x}")
        end = self.pos + 1 + n
        if end > len(self.buf):
            raise self.fail("unexpected end of file")
        value = int.from_bytes(self.buf[self.pos + 1 : end], "little")
        self.pos = end
        return -value if ctrl & 0x80 else value

    def float(self) -> float:
        m = self.int()
        e = self.int()
        if e in _SPECIAL_EXP:
            return float(_SPECIAL_EXP[e])
        return float(np.ldexp(np.float64(m), e))

    def string(self) -> str:
        n = self.int()
        if n < 0 or self.pos + n > len(self.buf):
            raise self.fail(f"bad string length {n}")
        s = self.buf[self.pos : self.pos + n]
        self.pos += n
        return s.decode("latin-1")

    def peek_string(self) -> str | None:
        pos = self.pos
        try:
            return self.string()
        except DlibFormatError:
            return None
        finally:
            self.pos = pos

    def bool(self) -> bool:
        if self.pos >= len(self.buf):
            raise self.fail("unexpected end of file")
        b = self.buf[self.pos]
        if b not in (ord("0"), ord("1")):
            raise self.fail(f"bad bool byte 0x{b:02x}")
        self.pos += 1
        return b == ord("1")

    def tensor(self) -> np.ndarray:
        version = self.int()
        if version != 2:
            raise self.fail(f"unsupported tensor version {version}")
        shape = tuple(self.int() for _ in range(4))
        if any(s < 0 for s in shape):
            raise self.fail(f"bad tensor shape {shape}")
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.buf):
            raise self.fail("unexpected end of file inside a tensor")
        data = np.frombuffer(self.buf, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos = end
        return data.astype(np.float32)

    def alias_tensor(self) -> tuple[int, ...]:
        version = self.int()
        if version != 1:
            raise self.fail(f"unsupported alias_tensor version {version}")
        return tuple(self.int() for _ in range(4))


@dataclass
class Layer:
    """One computational layer of a dlib network, in file order (input towards output)."""

    kind: str  # con, bn_con, affine, relu, max_pool, avg_pool, add_prev, fc
    tag: str  # dlib's version string, e.g. "con_5"
    params: dict = field(default_factory=dict)


@dataclass
class DnnFile:
    loss: str
    loss_options: dict
    input: str
    input_options: dict
    layers: list[Layer]


def _layer(r: _Reader, tag: str) -> Layer:
    p: dict = {}
    if tag in ("con_4", "con_5", "con_6"):
        p["params"] = r.tensor().ravel()
        for k in ("num_filters", "nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x"):
            p[k] = r.int()
        r.alias_tensor()
        r.alias_tensor()
        for _ in range(4):
            r.float()
        p["use_bias"] = r.bool() if tag != "con_4" else True
        p["use_relu"] = r.bool() if tag == "con_6" else False
        return Layer("con", tag, p)
    if tag == "bn_con2":
        p["params"] = r.tensor().ravel()
        r.alias_tensor()
        r.alias_tensor()
        for k in ("means", "invstds", "running_means", "running_variances"):
            p[k] = r.tensor().ravel()
        r.int()  # num_updates
        r.int()  # running_stats_window_size
        for _ in range(4):
            r.float()
        p["eps"] = r.float()
        return Layer("bn_con", tag, p)
    if tag in ("affine_", "affine_2"):
        p["params"] = r.tensor().ravel()
        r.alias_tensor()
        r.alias_tensor()
        p["mode"] = r.int()
        p["disabled"] = r.bool() if tag == "affine_2" else False
        return Layer("affine", tag, p)
    if tag in ("relu_", "relu_2"):
        p["disabled"] = r.bool() if tag == "relu_2" else False
        return Layer("relu", tag, p)
    if tag in ("max_pool_2", "avg_pool_2"):
        for k in ("nr", "nc", "stride_y", "stride_x", "pad_y", "pad_x"):
            p[k] = r.int()
        return Layer(tag[:-2], tag, p)
    if tag == "add_prev_":
        return Layer("add_prev", tag, p)
    if tag in ("fc_2", "fc_3"):
        p["num_outputs"] = r.int()
        p["num_inputs"] = r.int()
        p["params"] = r.tensor().ravel()
        r.alias_tensor()
        r.alias_tensor()
        p["bias_mode"] = r.int()
        for _ in range(4):
            r.float()
        p["use_bias"] = r.bool() if tag == "fc_3" else True
        return Layer("fc", tag, p)
    raise r.fail(f"unsupported layer type {tag!r}")


def _skip_layer_state(r: _Reader) -> None:
    """Skip what add_layer writes after a layer's payload: 3 bools and 3 tensors."""
    for _ in range(3):
        r.bool()
    for _ in range(3):
        r.tensor()


def _loss(r: _Reader) -> tuple[str, dict]:
    version = r.int()
    if version != 1:
        raise r.fail(f"unsupported loss layer version {version}")
    tag = r.string()
    o: dict = {}
    if tag == "loss_mmod_":
        ov = r.int()
        if ov != 1:
            raise r.fail(f"unsupported mmod_options version {ov}")
        o["window_width"] = r.int()
        o["window_height"] = r.int()
        o["loss_per_false_alarm"] = r.float()
        o["loss_per_missed_target"] = r.float()
        o["truth_match_iou_threshold"] = r.float()
        o["nms_iou"] = r.float()
        o["nms_percent_covered"] = r.float()
        o["ignore_iou"] = r.float()
        o["ignore_percent_covered"] = r.float()
    elif tag == "loss_metric_2":
        o["margin"] = r.float()
        o["distance_threshold"] = r.float()
    else:
        raise r.fail(f"unsupported loss type {tag!r}")
    return tag, o


def _input(r: _Reader) -> tuple[str, dict]:
    tag = r.string()
    o: dict = {}
    if tag in ("input_rgb_image_sized", "input_rgb_image_pyramid"):
        o["mean"] = (r.float(), r.float(), r.float())
        if tag == "input_rgb_image_sized":
            o["nr"] = r.int()
            o["nc"] = r.int()
        else:
            # Older files lack the paddings; dlib's defaults are 10 and 11.
            o["padding"], o["outer_padding"] = 10, 11
    elif tag in ("input_rgb_image_pyramid2",):
        o["mean"] = (r.float(), r.float(), r.float())
        o["padding"] = r.int()
        o["outer_padding"] = r.int()
    else:
        raise r.fail(f"unsupported input layer {tag!r}")
    return tag, o


def read_dnn(path: str | Path) -> DnnFile:
    """Parse a dlib DNN file into its loss, input and layers (input towards output)."""
    path = Path(path)
    r = _Reader(path.read_bytes(), path.name)
    loss, loss_opts = _loss(r)
    # Version integers, one per layer from the output towards the input: 2 = ordinary
    # layer, 1 = tag or skip.  The input-level layer's version (2 or 3) is the last one,
    # directly before the input layer's name string.
    versions: list[int] = []
    while True:
        s = r.peek_string()
        if s is not None and s.startswith("input"):
            break
        v = r.int()
        if v not in (1, 2, 3):
            raise r.fail(f"unexpected layer version {v}")
        versions.append(v)
        if len(versions) > 100_000:
            raise r.fail("no input layer found")
    if not versions:
        raise r.fail("no layers before the input layer")
    input_level_version = versions.pop()
    input_tag, input_opts = _input(r)
    n_ordinary = 1 + sum(1 for v in versions if v == 2)
    layers: list[Layer] = []
    # The input-level layer: payload, 3 bools, grad_final / cached_output / params_grad...
    tag = r.string()
    layers.append(_layer(r, tag))
    _skip_layer_state(r)
    if input_level_version == 3:
        r.int()  # sample_expansion_factor
    for _ in range(n_ordinary - 1):
        tag = r.string()
        layers.append(_layer(r, tag))
        _skip_layer_state(r)
    if r.pos != len(r.buf):
        raise r.fail(f"{len(r.buf) - r.pos} unread bytes after the last layer")
    return DnnFile(loss, loss_opts, input_tag, input_opts, layers)


# --------------------------------------------------------------------------- shape predictor


def _varint_starts(b: np.ndarray, k: int = 8) -> np.ndarray:
    """Start offsets of the integers in a buffer made only of dlib integers.

    Each integer's length is known from its control byte, so the starts are the orbit of 0
    under ``step(i) = i + 1 + (b[i] & 15)``.  ``step`` composed 2**k times gives every
    2**k-th start in a short scalar walk; 2**k vectorised single steps fill the gaps.
    """
    n = len(b)
    if n >= 2**31 - 16:
        raise DlibFormatError("file too large for this reader")
    step = np.empty(n + 1, dtype=np.int32)
    np.add(np.arange(n, dtype=np.int32), 1 + (b & 0x0F).astype(np.int32), out=step[:n])
    np.minimum(step, n, out=step)
    step[n] = n  # index n is the sink
    far = step
    for _ in range(k):
        far = far[far]
    anchors = [0]
    i = 0
    while True:
        i = int(far[i])
        if i >= n:
            break
        anchors.append(i)
    cur = np.asarray(anchors, dtype=np.int32)
    rows = [cur]
    for _ in range((1 << k) - 1):
        cur = step[cur]
        rows.append(cur)
    starts = np.stack(rows, axis=1).ravel()
    return starts[starts < n].astype(np.int64)


def _decode_ints(b: np.ndarray, starts: np.ndarray, name: str) -> np.ndarray:
    ctrl = b[starts]
    nbytes = (ctrl & 0x0F).astype(np.int64)
    if np.any(ctrl & 0x70) or np.any(nbytes < 1) or np.any(nbytes > 8):
        raise DlibFormatError(f"{name}: bad integer control byte; the file is corrupt")
    if starts[-1] + 1 + nbytes[-1] != len(b):
        raise DlibFormatError(f"{name}: file is truncated")
    mag = np.zeros(len(starts), dtype=np.uint64)
    for j in range(8):
        m = nbytes > j
        idx = starts[m] + 1 + j
        mag[m] |= b[idx].astype(np.uint64) << np.uint64(8 * j)
    val = mag.astype(np.int64)
    return np.where(ctrl & 0x80, -val, val)


def _floats(pairs: np.ndarray) -> np.ndarray:
    m = pairs[0::2].astype(np.float64)
    e = pairs[1::2]
    out = np.ldexp(m, np.clip(e, -1100, 1100).astype(np.int32))
    for code, value in _SPECIAL_EXP.items():
        out[e == code] = value
    return out


@dataclass
class ShapePredictorData:
    """A dlib shape_predictor as dense arrays.

    initial_shape: (P, 2) float32, in the unit box.
    splits_idx1/idx2: (C, T, S) int64 feature indices; splits_thresh: (C, T, S) float32.
    leaves: (C, T, S + 1, P * 2) float32.
    anchor_idx: (C, F) int64; deltas: (C, F, 2) float32.
    """

    initial_shape: np.ndarray
    splits_idx1: np.ndarray
    splits_idx2: np.ndarray
    splits_thresh: np.ndarray
    leaves: np.ndarray
    anchor_idx: np.ndarray
    deltas: np.ndarray

    @property
    def num_parts(self) -> int:
        return self.initial_shape.shape[0]


def read_shape_predictor(path: str | Path) -> ShapePredictorData:
    path = Path(path)
    name = path.name
    b = np.frombuffer(path.read_bytes(), dtype=np.uint8)
    if len(b) < 4:
        raise DlibFormatError(f"{name}: file is truncated")
    v = _decode_ints(b, _varint_starts(b), name)
    pos = 0

    def take(n: int) -> np.ndarray:
        nonlocal pos
        if pos + n > len(v):
            raise DlibFormatError(f"{name}: file is truncated")
        out = v[pos : pos + n]
        pos += n
        return out

    if take(1)[0] != 1:
        raise DlibFormatError(f"{name}: not a dlib shape_predictor (version mismatch)")

    def matrix_col() -> np.ndarray:
        nr, nc = (abs(int(x)) for x in take(2))
        if nc != 1:
            raise DlibFormatError(f"{name}: expected a column vector, got {nr}x{nc}")
        return _floats(take(2 * nr))

    initial = matrix_col()
    P2 = len(initial)
    n_casc = int(take(1)[0])
    raw_splits, raw_leaves = [], []
    for _ in range(n_casc):
        n_trees = int(take(1)[0])
        # Every tree of a cascade is full and of one depth, so a cascade is one block of
        # equal-length records: S, S x (idx1, idx2, thresh m, thresh e), L, L x (-P2, -1, P2 floats).
        S = int(v[pos]) if n_trees else 0
        L = S + 1
        rec = 1 + 4 * S + 1 + L * (2 + 2 * P2)
        block = take(n_trees * rec).reshape(n_trees, rec)
        leaves_part = block[:, 2 + 4 * S :].reshape(n_trees, L, 2 + 2 * P2)
        if (
            np.any(block[:, 0] != S)
            or np.any(block[:, 1 + 4 * S] != L)
            or np.any(np.abs(leaves_part[:, :, 0]) != P2)
            or np.any(np.abs(leaves_part[:, :, 1]) != 1)
        ):
            raise DlibFormatError(f"{name}: irregular regression trees; the file is corrupt")
        raw_splits.append(block[:, 1 : 1 + 4 * S].reshape(n_trees, S, 4))
        raw_leaves.append(leaves_part[:, :, 2:])
    if n_casc == 0 or len({s.shape for s in raw_splits}) != 1:
        raise DlibFormatError(f"{name}: cascades differ in shape")
    splits = np.stack(raw_splits)  # (C, T, S, 4)
    leaves = _floats(np.stack(raw_leaves).ravel()).reshape(*splits.shape[:2], -1, P2)
    n_anchor_sets = int(take(1)[0])
    anchors = []
    for _ in range(n_anchor_sets):
        n = int(take(1)[0])
        anchors.append(take(n).copy())
    n_delta_sets = int(take(1)[0])
    deltas = []
    for _ in range(n_delta_sets):
        n = int(take(1)[0])
        deltas.append(_floats(take(4 * n)).reshape(n, 2))
    if pos != len(v):
        raise DlibFormatError(f"{name}: {len(v) - pos} unread values after the model")
    if n_anchor_sets != n_casc or n_delta_sets != n_casc:
        raise DlibFormatError(f"{name}: anchors/deltas do not match the cascade count")
    return ShapePredictorData(
        initial_shape=initial.reshape(P2 // 2, 2).astype(np.float32),
        splits_idx1=splits[..., 0].copy(),
        splits_idx2=splits[..., 1].copy(),
        splits_thresh=_floats(splits[..., 2:].ravel()).reshape(splits.shape[:3]).astype(np.float32),
        leaves=leaves.astype(np.float32),
        anchor_idx=np.stack(anchors).astype(np.int64),
        deltas=np.stack(deltas).astype(np.float32),
    )
