"""The distance spaces of the two face embedders: each one's metric and every threshold vidx uses.

``sface`` (the default for video): OpenCV Zoo's SFace; unit vectors compared by cosine distance.
``dlib``: dlib's ResNet; raw descriptors compared by euclidean distance (dlib's rule: < 0.6 is the
same person).  Distances of one embedder mean nothing to the other, so every threshold is a
property of the embedder (:class:`Space`), and an index records which embedder built it.

The SFace values were chosen from the distributions of same-person and different-person track
and detection distances on the shared clips (``bench/calibrate_embedders.py``; docs/internals/embedders.md shows
the table); the dlib values are the ones vidx used before SFace, chosen the same way.  Plain
numpy: indexing and the jobs read it without loading a model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES = ("sface", "dlib")


@dataclass(frozen=True)
class Space:
    name: str  # the config's name: sface | dlib
    model: str  # the embedder's name as an index records it
    metric: str  # cosine (1 - cosine similarity) | euclidean (on raw descriptors)
    link_distance: float  # a detection continues a track below this distance to its last face
    overlap_distance: float  # ...or below this when it stays in place (IoU >= 0.5)
    join_distance: float  # tracks cut by a chunk boundary are joined below this
    cluster_distance: float  # average-linkage distance below which tracks are one person
    match_distance: float  # a photo (enrolled or queried) matches a track below this
    same_person: float  # the verdict of `vidx faces compare` on two photos
    verify_distance: float  # a face stays in a track only this close to the track's own faces (its mean)

    def pairwise(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Distances (N, M) between the rows of a (N, D) and b (M, D)."""
        return pairwise(a, b, self.metric)

    def distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-wise distance between a and b (same shape, or broadcastable)."""
        return distance(a, b, self.metric)

    def from_similarity(self, sims: np.ndarray, norm_a: np.ndarray, norm_b: np.ndarray) -> np.ndarray:
        return from_similarity(sims, norm_a, norm_b, self.metric)

    def built_with(self, where: str) -> str:
        """The start of every refusal of another embedder's vectors in an index of this one."""
        return f"{where} was built with the {self.name} face embedder ({self.model})"

    @property
    def rule(self) -> str:
        if self.metric == "cosine":
            return f"cosine distance (1 - cosine similarity) of unit vectors; same person < {self.same_person}"
        return f"euclidean distance of raw 128-d descriptors; same person < {self.same_person}"


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def from_similarity(sims: np.ndarray, norm_a: np.ndarray, norm_b: np.ndarray, metric: str) -> np.ndarray:
    """Distances from the cosine similarities a FAISS inner-product search over unit vectors
    returns, given the rows' norms (euclidean needs them: |a|^2 + |b|^2 - 2 cos |a| |b|)."""
    if metric == "cosine":
        return 1.0 - sims
    d2 = norm_a ** 2 + norm_b ** 2 - 2.0 * sims * norm_a * norm_b
    return np.sqrt(np.maximum(d2, 0.0))


def distance(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Row-wise distance between a and b (same shape, or broadcastable): ``cosine`` or ``euclidean``."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if metric == "cosine":
        na = np.linalg.norm(a, axis=-1)
        nb = np.linalg.norm(b, axis=-1)
        return 1.0 - (a * b).sum(-1) / np.maximum(na * nb, 1e-12)
    return np.linalg.norm(a - b, axis=-1)


def pairwise(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Distances (N, M) between the rows of a and b: ``cosine`` or ``euclidean``."""
    a = np.asarray(a, np.float64).reshape(-1, np.shape(a)[-1])
    b = np.asarray(b, np.float64).reshape(-1, np.shape(b)[-1])
    if metric == "cosine":
        return 1.0 - _unit(a) @ _unit(b).T
    if metric != "euclidean":
        raise ValueError(f"unknown metric {metric!r}")
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(d2, 0.0))


SPACES = {
    # dlib: its own same-person rule (0.6) and the values vidx was tuned with on the shared clips
    "dlib": Space("dlib", "dlib_resnet_v1", "euclidean", link_distance=0.55, overlap_distance=0.7,
                  join_distance=0.5, cluster_distance=0.5, match_distance=0.6, same_person=0.6,
                  verify_distance=0.7),
    # sface: calibrated on the shared clips' tracks (bench/calibrate_embedders.py, docs/internals/embedders.md)
    # (detections: same person 95% < 0.50, 99% < 0.62; different people 1% < 0.72.  Consecutive
    # detections of a track: 95% < 0.43; the nearest other person in the same clip: >= 0.57.
    # Photos: own tracks <= 0.41, others' >= 0.63.  Tracks: different people >= 0.69.)
    "sface": Space("sface", "sface_2021dec", "cosine", link_distance=0.5, overlap_distance=0.55,
                   join_distance=0.5, cluster_distance=0.5, match_distance=0.55, same_person=0.55,
                   verify_distance=0.55),
}
BY_MODEL = {s.model: s for s in SPACES.values()}


def space(name: str) -> Space:
    """The space of a config name (sface, dlib) or of a model name an index records."""
    if name in SPACES:
        return SPACES[name]
    if name in BY_MODEL:
        return BY_MODEL[name]
    raise ValueError(f"unknown face embedder {name!r} (choose from {', '.join(NAMES)})")
