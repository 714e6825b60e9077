"""Person tubes: each face track's own part of the frame, for classifying what that person does.

The body region is a geometric prior from the face box (no person detector): ``BODY_WIDTH`` face
widths wide, centred on the face, from ``BODY_ABOVE`` face heights above the face's top (raised
hands, hair) down ``BODY_HEIGHT`` face heights, clipped to the frame.  Along a window the face
boxes are interpolated between the track's detections (held at its ends) and the region keeps
the window's median size, so the crop follows the person without jittering in scale.  Crops are
letterboxed into a square (black bars) so the person keeps their shape whatever the model's
resize does, and cut for every person and frame of a window in one ``roi_align`` call.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import roi_align

BODY_WIDTH = 3.0  # face widths
BODY_ABOVE = 0.5  # face heights above the face box's top
BODY_HEIGHT = 7.0  # face heights, from there down


def boxes_at(times: np.ndarray, det_t: np.ndarray, det_boxes: np.ndarray) -> np.ndarray:
    """A track's face box at each of ``times``: linear between its detections, held at its ends."""
    return np.stack([np.interp(times, det_t, det_boxes[:, k]) for k in range(4)], 1)


def body_regions(face: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 4) body regions for (T, 4) face boxes of one window, at the window's median size."""
    fw = float(np.median(face[:, 2] - face[:, 0] + 1))
    fh = float(np.median(face[:, 3] - face[:, 1] + 1))
    cx = (face[:, 0] + face[:, 2]) / 2
    top = face[:, 1] - BODY_ABOVE * fh
    bw, bh = BODY_WIDTH * fw, BODY_HEIGHT * fh
    r = np.stack([cx - bw / 2, top, cx + bw / 2, top + bh], 1)
    r[:, [0, 2]] = np.clip(r[:, [0, 2]], 0, width - 1)
    r[:, [1, 3]] = np.clip(r[:, [1, 3]], 0, height - 1)
    return r


def crops(frames: np.ndarray | torch.Tensor, frame_index: np.ndarray, regions: np.ndarray, side: int) -> torch.Tensor:
    """(N, side, side, 3) uint8 letterboxed crops: ``regions[i]`` of ``frames[frame_index[i]]``.

    One ``roi_align`` per distinct crop shape (regions of one window share a size), so every
    person and frame of a piece is cut in a few batched calls."""
    used, frame_index = np.unique(frame_index, return_inverse=True)  # only the frames cut from go to float
    x = torch.as_tensor(np.asarray(frames)[used] if isinstance(frames, np.ndarray) else frames[torch.as_tensor(used)])
    x = x.permute(0, 3, 1, 2).float()  # (F, 3, H, W)
    n = len(regions)
    out = torch.zeros((n, 3, side, side), dtype=torch.float32, device=x.device)
    if n == 0:
        return out.permute(0, 2, 3, 1).to(torch.uint8)
    w = regions[:, 2] - regions[:, 0] + 1
    h = regions[:, 3] - regions[:, 1] + 1
    scale = side / np.maximum(w, h)
    ow = np.clip(np.round(w * scale).astype(int), 1, side)
    oh = np.clip(np.round(h * scale).astype(int), 1, side)
    for shape in sorted(set(zip(oh.tolist(), ow.tolist()))):
        sel = np.flatnonzero((oh == shape[0]) & (ow == shape[1]))
        rois = torch.as_tensor(np.concatenate([frame_index[sel, None].astype(np.float64), regions[sel]], 1),
                               dtype=torch.float32, device=x.device)
        rois[:, 3:] += 1  # inclusive pixel boxes -> continuous coordinates
        part = roi_align(x, rois, output_size=shape, spatial_scale=1.0, sampling_ratio=2, aligned=False)
        y0, x0 = (side - shape[0]) // 2, (side - shape[1]) // 2
        out[torch.as_tensor(sel, device=x.device), :, y0 : y0 + shape[0], x0 : x0 + shape[1]] = part
    return out.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1)
