"""The index job: plan -> fan out over Ray -> commit.

1. Plan (driver): list the videos under the sources (local paths or pyarrow.fs URIs; folders
   recursively, videos recognised by content), give each a content-derived id, probe it,
   split it into chunks and leave out the chunks the tables' Delta logs already commit.
2. Fan out: a pool of Ray actors, each holding a
   :class:`vidx.workers.chunk_worker.ChunkIndexer` (models loaded once) and two chunks at a time
   (one decoding while the other runs the models); each actor writes its own parts.  Ray and
   the actors start while the driver still plans.  (Ray Data's ``map_batches`` did this before;
   its executor cost about 4 s of start-up on 2 cores before the first actor ran: bench_index.)
3. Commit (driver): every few seconds the parts of the chunks finished since are committed to
   the per-chunk Delta tables (one commit each, costing what it adds: a killed job resumes where
   it stopped); at the end, tracks cut by chunk boundaries are joined, a finished video's chunk
   parts are compacted into one file a table, and the videos table and the manifest are
   written.  A rerun with nothing to do changes nothing.

Discovery (what the sources hold, each video's content id) is ``vidx.workers.sources``, which
hands each video on as a parsed :class:`~vidx.workers.sources.Source`.  Modules, in the order of a
run: ``plan`` (chunks, as
:class:`~vidx.workers.chunks.ChunkTask` values), ``run`` (checks, then plan, pool and commit),
``state`` (what those steps share: :class:`Run`, and the :class:`Summary`), ``pool`` (Ray actors
and retries over one state per chunk; results come back as
:class:`~vidx.workers.chunks.ChunkResult`), ``commit`` (parts into the tables, the manifest),
``merge`` (per-video tracks and actions from the chunks' rows).
"""

from vidx.jobs.index.commit import _ChunkParts, _commit, _compact  # noqa: F401
from vidx.workers.sources import Input, Source, content_id, list_inputs, member_id  # noqa: F401
from vidx.jobs.index.merge import action_segments, join_tracks, person_actions  # noqa: F401
from vidx.jobs.index.plan import VideoPlan, chunk_tasks, plan_all, plan_video  # noqa: F401
from vidx.jobs.index.pool import _fan_out, _Pool  # noqa: F401
from vidx.jobs.index.run import run_index  # noqa: F401
from vidx.jobs.index.state import Run, Summary  # noqa: F401
