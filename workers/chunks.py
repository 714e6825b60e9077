"""What crosses the Ray boundary: a chunk's task (driver -> worker) and its result (worker -> driver).

Typed values, pickled as they are: no dict of keys rebuilt on each side, no damage spans
flattened to a string and parsed again.  The planner (``vidx.jobs.index.plan``) makes the tasks;
``ChunkIndexer.index_chunk`` takes one and returns a result; the pool (``vidx.jobs.index.pool``)
hands the result's parts to the commit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vidx.indexing.delta_log import FilePart
from vidx.workers.decode import Stream
from vidx.workers.sources import Source


@dataclass(frozen=True)
class ChunkTask:
    """One chunk of one video, with everything the worker needs to decode it without probing:
    the sampled frames (indices and presentation times on vidx's clock) for faces and, when
    actions run, at the action model's clip rate; the stream's size, decoder and key frames."""

    video_id: str
    source: Source  # the video's name, parsed (a path, a URI, or ARCHIVE::MEMBER)
    chunk: int
    start_s: float
    end_s: float
    stream: Stream
    frame_idx: np.ndarray  # (n,) int64: the faces' sampled frames
    frame_t: np.ndarray  # (n,) float64: their times
    action_idx: np.ndarray | None = None  # the action model's frames (None: faces only)
    action_t: np.ndarray | None = None

    @property
    def key(self) -> tuple[str, int]:
        return self.video_id, self.chunk

    @property
    def seconds(self) -> float:
        return self.end_s - self.start_s


@dataclass
class ChunkResult:
    """What a worker did with one chunk: its new part per table (not yet committed), the sampled
    times it could not decode (``damaged``, read around), counts and timings; or why it failed."""

    video_id: str
    chunk: int
    seconds: float
    status: str = "ok"  # ok | failed
    error: str = ""
    parts: dict[str, FilePart] = field(default_factory=dict)
    damaged: list[tuple[float, float]] = field(default_factory=list)  # undecodable spans, seconds
    detections: int = 0
    segments: int = 0
    sampled_frames: int = 0
    decode_s: float = 0.0
    model_s: float = 0.0
    wall_s: float = 0.0
    node: str | None = None  # the Ray node that ran it (the pool's bookkeeping)

    @classmethod
    def failed(cls, task: ChunkTask, error: str) -> "ChunkResult":
        return cls(task.video_id, task.chunk, task.seconds, status="failed", error=error)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def spans_tag(spans: list[tuple[float, float]]) -> str:
    """Damage spans as the part file's ``damaged`` tag ("4.00-4.50;6.10-6.10"): the on-disk record,
    read back by :func:`parse_spans` when a video is committed from its files."""
    return ";".join(f"{a:.2f}-{b:.2f}" for a, b in spans)


def parse_spans(tag: str) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (sp.split("-") for sp in tag.split(";") if sp)]
