"""One run's state, handed from step to step: what the plan found, what the pool ran, what the
commit writes, and the summary the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vidx.configs.config import Config
from vidx.indexing.store import Store

if TYPE_CHECKING:
    from vidx.jobs.index.commit import _ChunkParts
    from vidx.jobs.index.plan import VideoPlan


@dataclass
class Summary:
    videos_ok: int = 0
    videos_partial: int = 0
    videos_failed: int = 0
    chunks_run: int = 0
    chunks_skipped: int = 0
    tracks: int = 0
    detections: int = 0
    people: int = 0
    wall_s: float = 0.0
    people_s: float = 0.0  # of wall_s, the people refresh at the end
    failures: list[tuple[str, str]] = field(default_factory=list)
    partials: list[tuple[str, str]] = field(default_factory=list)  # indexed with a part missing, and why
    skipped: list[tuple[str, str]] = field(default_factory=list)  # pointed at, not indexed, and why


@dataclass
class Run:
    """What the steps of one ``run_index`` share.  The run fills the first fields before any work;
    the plan fills ``plans``; the pool records each chunk it ran (``ran_videos``, ``chunk_errors``,
    the parts in ``parts``); the commit reads all of it."""

    cfg: Config
    store: Store
    tables: dict[str, Any]  # table name -> IndexTable
    parts: "_ChunkParts"  # the per-chunk tables' parts: committed, and finished since
    manifest: dict[str, Any]
    before: dict[str, Any]  # the manifest as the run found it (a rerun with nothing new writes nothing)
    actions: dict[str, Any] | None = None  # the action model the workers load, or None
    plans: dict[str, "VideoPlan"] = field(default_factory=dict)
    summary: Summary = field(default_factory=Summary)
    chunk_errors: dict[tuple[str, int], str] = field(default_factory=dict)  # (video, chunk) -> why it failed
    ran_videos: set[str] = field(default_factory=set)  # videos with a chunk run (or rebuilt) this time
