"""A minimal writer for dlib's serialization format, to build synthetic model files in tests."""

from __future__ import annotations

import math

import numpy as np


def int_(v: int) -> bytes:
    v = int(v)
    mag = abs(v)
    n = max(1, (mag.bit_length() + 7) // 8)
    return bytes([n | (0x80 if v < 0 else 0)]) + mag.to_bytes(n, "little")


def float_(v: float) -> bytes:
    if math.isinf(v):
        return int_(0) + int_(32000 if v > 0 else 32001)
    if math.isnan(v):
        return int_(0) + int_(32002)
    m, e = math.frexp(float(v))
    return int_(int(m * 2**53)) + int_(e - 53)


def string(s: str) -> bytes:
    b = s.encode()
    return int_(len(b)) + b


def column(values) -> bytes:
    """dlib matrix<float,0,1> in the newer format (negative dimensions)."""
    values = list(values)
    return int_(-len(values)) + int_(-1) + b"".join(float_(x) for x in values)


def shape_predictor(initial, trees, anchors, deltas) -> bytes:
    """initial: (P, 2); trees: list per cascade of [(splits [(i1, i2, thr)], leaves (L, 2P))];
    anchors: list per cascade of feature anchor indices; deltas: per cascade (F, 2)."""
    out = int_(1) + column(np.asarray(initial, float).ravel())
    out += int_(len(trees))
    for cascade in trees:
        out += int_(len(cascade))
        for splits, leaves in cascade:
            out += int_(len(splits))
            for i1, i2, thr in splits:
                out += int_(i1) + int_(i2) + float_(thr)
            out += int_(len(leaves))
            for leaf in leaves:
                out += column(np.asarray(leaf, float).ravel())
    out += int_(len(anchors))
    for a in anchors:
        out += int_(len(a)) + b"".join(int_(x) for x in a)
    out += int_(len(deltas))
    for d in deltas:
        out += int_(len(d)) + b"".join(float_(x) + float_(y) for x, y in d)
    return out
