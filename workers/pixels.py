"""Several RGB images as one flat pixel buffer, so a single gather reads from all of them.

A batch of same-size frames ((N, H, W, 3) tensor) is used as it is (a view, no copy);
a list of images of mixed sizes is concatenated once.  Landmarks and chips both gather
their pixels through it, so frames are never converted or copied per face.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def as_image_tensor(im: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A uint8 (H, W, 3) tensor view of an image (copies read-only numpy arrays)."""
    if isinstance(im, torch.Tensor):
        return im
    return torch.from_numpy(im if im.flags.writeable else im.copy())


class PixelSource:
    """flat: (M, 3) uint8; base[i]: offset of image i's first pixel; height[i], width[i]."""

    def __init__(self, images: Sequence[np.ndarray | torch.Tensor] | torch.Tensor,
                 device: torch.device | str | None = None):
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            batch = images if device is None else images.to(device)
            n, h, w = batch.shape[:3]
            self.flat = batch.contiguous().reshape(-1, 3)
            sizes = [(h, w)] * n
        else:
            imgs = [as_image_tensor(im) for im in images]
            if device is not None:
                imgs = [im.to(device) for im in imgs]
            sizes = [tuple(im.shape[:2]) for im in imgs]
            dev = imgs[0].device if imgs else torch.device(device or "cpu")
            self.flat = (torch.cat([im.reshape(-1, 3) for im in imgs]) if imgs
                         else torch.zeros((0, 3), dtype=torch.uint8, device=dev))
        self.device = self.flat.device
        hw = np.asarray(sizes, dtype=np.int64).reshape(-1, 2)
        self.height, self.width = hw[:, 0], hw[:, 1]
        self.base = np.concatenate([[0], np.cumsum(hw[:, 0] * hw[:, 1])[:-1]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.base)

    def images(self) -> list[torch.Tensor]:
        """Each image as an (H, W, 3) view into the buffer."""
        return [self.flat[b : b + h * w].view(h, w, 3)
                for b, h, w in zip(self.base, self.height, self.width)]

    def tensors(self, which: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(base, height, width) of the given images as long tensors on the buffer's device."""
        to = lambda a: torch.as_tensor(a[which], dtype=torch.long, device=self.device)  # noqa: E731
        return to(self.base), to(self.height), to(self.width)


def chip_batch(chips: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """uint8 RGB chips (N, size, size, 3) or (N, 3, size, size) as an (N, 3, size, size) tensor
    (a view where it can be); a clear error for any other shape."""
    if isinstance(chips, np.ndarray):
        chips = torch.from_numpy(chips)
    if chips.ndim != 4:
        raise ValueError(f"expected a batch of chips, got shape {tuple(chips.shape)}")
    if chips.shape[-1] == 3:
        chips = chips.permute(0, 3, 1, 2)
    if tuple(chips.shape[1:]) != (3, size, size):
        raise ValueError(f"chips must be {size}x{size} RGB, got {tuple(chips.shape)}")
    return chips
