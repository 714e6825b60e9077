"""dlib's 5-point landmark predictor (``shape_predictor_5_face_landmarks.dat``), vectorised.

dlib's shape_predictor is a cascade of regression-tree forests (Kazemi & Sullivan, 2014).  At
each cascade level it samples grey pixels at points placed relative to the current shape
(similarity transform from the mean shape, then the face box), and every tree of the level
walks down by comparing pixel pairs; the chosen leaves add up into a shape update.

Here all faces of all images and all trees of a level are evaluated at once with tensor
gathers, on any torch device: the only Python loops are over cascade levels (15) and tree
depth (4).  Leaf updates are summed sequentially in float32 on the CPU (see _accumulate), so
results equal dlib's bit for bit (integer points, rounded as dlib rounds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from vidx.workers import dlib_format, face_weights
from vidx.workers.pixels import PixelSource


def similarity_2d(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares similarity transform (Umeyama) mapping src -> dst, batched.

    src, dst: (..., P, 2).  Returns (M (..., 2, 2), t (..., 2)) with dst ~ M @ src + t.  In 2-D
    the optimum scaled rotation has the closed form [[a, -b], [b, a]] / var(src), which equals
    Umeyama's SVD solution (dlib's find_similarity_transform).
    """
    ms, md = src.mean(-2, keepdim=True), dst.mean(-2, keepdim=True)
    s, d = src - ms, dst - md
    var = (s * s).sum((-1, -2)) / src.shape[-2]
    a = (s * d).sum((-1, -2)) / src.shape[-2]
    b = (s[..., 0] * d[..., 1] - s[..., 1] * d[..., 0]).sum(-1) / src.shape[-2]
    var = torch.where(var == 0, torch.ones_like(var), var)
    m = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2) / var[..., None, None]
    t = md.squeeze(-2) - (m @ ms.squeeze(-2)[..., None])[..., 0]
    return m, t


class LandmarkPredictor(nn.Module):
    """5-point landmarks for face boxes, batched over faces and images."""

    name = "dlib_sp5"

    def __init__(self, path: str | Path | None = None):
        super().__init__()
        path = Path(path) if path else face_weights.model_path(face_weights.LANDMARKS_FILE)
        try:
            sp = dlib_format.read_shape_predictor(path)
        except (dlib_format.DlibFormatError, OSError) as e:
            raise face_weights.corrupt(path, e) from e
        C, T, S = sp.splits_idx1.shape
        self.depth = int(np.log2(S + 1))
        if 2**self.depth != S + 1:
            raise face_weights.corrupt(path, ValueError("trees are not full binary trees"))
        self.num_parts = sp.num_parts
        self.register_buffer("initial", torch.from_numpy(sp.initial_shape))  # (P, 2)
        self.register_buffer("idx1", torch.from_numpy(sp.splits_idx1))  # (C, T, S)
        self.register_buffer("idx2", torch.from_numpy(sp.splits_idx2))
        self.register_buffer("thresh", torch.from_numpy(sp.splits_thresh))  # (C, T, S)
        self.register_buffer("leaves", torch.from_numpy(sp.leaves).reshape(C, T, S + 1, -1, 2))
        self.register_buffer("anchor", torch.from_numpy(sp.anchor_idx))  # (C, F)
        self.register_buffer("deltas", torch.from_numpy(sp.deltas))  # (C, F, 2)
        self.eval()

    @staticmethod
    def _accumulate(shape: torch.Tensor, vals: torch.Tensor) -> torch.Tensor:
        """shape + vals[:, 0] + vals[:, 1] + ... in float32, in tree order, as dlib adds them.

        The cascade is chaotic: pairwise summation (torch.sum, torch.cumsum) changes the
        rounding enough to pick other leaves later for ~20% of boxes.  numpy's add.accumulate
        is a sequential float32 loop in C, so the result is bit-identical to dlib's.
        """
        seq = torch.cat([shape[:, None], vals], 1).cpu().numpy()
        out = np.add.accumulate(seq, axis=1)[:, -1]
        return torch.from_numpy(out).to(shape.device)

    @torch.inference_mode()
    def predict(self, images: PixelSource | Sequence[torch.Tensor | np.ndarray] | torch.Tensor,
                image_index: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Landmarks (F, P, 2) float64 (integral values, as dlib's points) for F faces.

        images: RGB uint8 images (a list of any sizes, an (N, H, W, 3) batch or a PixelSource);
        image_index: (F,) which image each box is in; boxes: (F, 4) [l, t, r, b] inclusive.
        """
        n_faces = len(boxes)
        if n_faces == 0:
            return np.zeros((0, self.num_parts, 2), np.float64)
        dev = self.initial.device
        src = images if isinstance(images, PixelSource) else PixelSource(images, dev)
        flat = src.flat.to(dev)
        base, height, width = (t.to(dev) for t in src.tensors(np.asarray(image_index, np.int64)))
        b = torch.as_tensor(np.asarray(boxes, np.float64), device=dev)
        # unnormalizing_tform: (0,0) -> top-left, (1,1) -> bottom-right
        org = b[:, None, :2]  # (F, 1, 2) double
        ext = (b[:, 2:] - b[:, :2])[:, None, :]
        shape = self.initial.expand(n_faces, -1, -1).clone()  # (F, P, 2) float32
        C, T, S = self.idx1.shape
        t_idx = torch.arange(T, device=dev)
        for c in range(C):
            m, _ = similarity_2d(self.initial.double(), shape.double())
            m = m.float()  # dlib casts the 2x2 to float
            anchor_pts = shape[:, self.anchor[c]]  # (F, Fe, 2)
            pts = torch.einsum("fij,ej->fei", m, self.deltas[c]) + anchor_pts
            img = torch.floor(org + ext * pts.double() + 0.5).long()  # (F, Fe, 2) x, y
            x, y = img[..., 0], img[..., 1]
            ok = (x >= 0) & (y >= 0) & (x < width[:, None]) & (y < height[:, None])
            lin = (base[:, None] + y * width[:, None] + x).clamp(0, max(flat.shape[0] - 1, 0))
            rgb = flat[lin].int()  # (F, Fe, 3); grey = (r + g + b) // 3 as dlib's rgb -> grey
            fv = torch.where(ok, (rgb.sum(-1) // 3).float(), torch.zeros((), device=dev))
            node = torch.zeros((n_faces, T), dtype=torch.long, device=dev)
            i1, i2, th = self.idx1[c], self.idx2[c], self.thresh[c]
            for _ in range(self.depth):
                a = fv.gather(1, i1[t_idx, node])
                bb = fv.gather(1, i2[t_idx, node])
                go_left = (a - bb) > th[t_idx, node]
                node = torch.where(go_left, 2 * node + 1, 2 * node + 2)
            leaf = node - S
            shape = self._accumulate(shape, self.leaves[c][t_idx, leaf])
        out = torch.floor(org + ext * shape.double() + 0.5)
        return out.cpu().numpy()
