"""The pool: Ray (a local one started on demand, or the cluster's), one actor per slot, each
holding a ChunkIndexer; chunks fanned out two an actor, retried where a worker dies, moved where a
node is lost."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime


from vidx.configs.config import Config
from vidx.configs.errors import IndexJobError
from vidx.indexing.store import Store
from vidx.workers import decode
from vidx.workers.chunks import ChunkResult, ChunkTask

from vidx.jobs.index.commit import _damage
from vidx.jobs.index.state import Run

log = logging.getLogger(__name__)


def _ray_init(quiet: bool = True) -> bool:
    """Start or join Ray; True when this call started a local Ray (the caller shuts it down).
    Quiet: the workers' output stays in Ray's own log files instead of the driver's terminal."""
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        log.info("connecting to the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(log_to_driver=not quiet)
        return False
    log.info("starting a local Ray with %d CPUs", os.cpu_count() or 1)
    try:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=not quiet,
                 logging_level=logging.WARNING)
    except ValueError as e:  # a Ray started on this machine (`ray start --head`) is running: join it
        if "existing cluster" not in str(e):
            raise
        log.info("joining the Ray already running on this machine")
        ray.init(address="auto", log_to_driver=not quiet, logging_level=logging.WARNING)
        return False
    return True


@contextlib.contextmanager
def ray_output_to_file(store: Store, quiet: bool):
    """While Ray runs, everything written to this process's stderr (Ray's C++ core, Ray Data's
    log lines, library warnings) goes to a log file in the index folder (a temporary folder for
    an index on an object store), and vidx's own log lines and progress bar to the terminal.
    Yields the terminal stream; ``quiet`` False (``vidx --verbose``) leaves stderr alone."""
    if not quiet:
        yield sys.stderr
        return
    import tempfile

    folder = store.path("logs") if store.fs.type_name == "local" else tempfile.mkdtemp(prefix="vidx-logs-")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"ray-{datetime.now().strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log")
    sys.stderr.flush()
    saved = os.dup(2)
    term = os.fdopen(os.dup(saved), "w", buffering=1)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"# vidx index, pid {os.getpid()}, {datetime.now().isoformat(timespec='seconds')}: what Ray and the "
                 "libraries wrote to stderr follows\n".encode())
    moved = [h for h in logging.getLogger().handlers
             if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) in (sys.stderr, sys.__stderr__)]
    for h in moved:
        h.setStream(term)
    os.dup2(fd, 2)
    os.close(fd)
    log.info("Ray's own log: %s", path)
    try:
        yield term
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        for h in moved:
            h.setStream(sys.stderr)
        term.close()


def _pool_size(cfg: Config) -> int:
    import ray

    res = ray.cluster_resources()
    if cfg.ray.num_gpus > 0:
        gpus = res.get("GPU", 0)
        if gpus < cfg.ray.num_gpus:
            raise IndexJobError(f"the config asks for GPU actors (ray.num_gpus={cfg.ray.num_gpus}) but the "
                             f"Ray cluster has {gpus:g} GPUs; use --set ray.num_gpus=0 or --config default")
        cap = int(gpus // cfg.ray.num_gpus)
    else:
        cap = max(1, int(res.get("CPU", 1) // cfg.ray.num_cpus))
    n = cfg.ray.actors or cap
    return max(1, min(n, cap))


CALLS_PER_ACTOR = 2  # chunks an actor holds at once: one decodes while the other runs the models
TASK_RETRIES = 2  # a chunk whose worker process dies (on a live node) is retried this often, then fails alone
MAX_MOVES = 10  # a chunk whose actor was lost with its node goes to another this often, at no cost to its retries
NO_WORKER_S = 300.0  # how long chunks wait for a lost worker to come back when no other is left


def _node_lost(e: Exception, node: str | None) -> bool:
    """Whether a chunk's failure is its actor going away with its node (a lost machine, a
    preempted spot node) or being unreachable, not its worker process dying on a live node (a
    crash, an out-of-memory kill: the chunk's fault, maybe).  ``node``: where the actor last ran."""
    import ray

    if isinstance(e, ray.exceptions.ActorUnavailableError):  # unreachable: its node went, or it restarts
        return True
    if not isinstance(e, ray.exceptions.RayActorError):
        return False
    if getattr(e, "preempted", False) or any(k in str(e) for k in ("node has died", "node died", "NODE_DIED",
                                                                   "failed to connect to all addresses")):
        return True
    if node is not None:
        try:
            alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
        except Exception:  # noqa: BLE001 - the cluster's own state unreadable: count it against the chunk
            return False
        return node not in alive
    return False


class _Worker:
    """A Ray actor holding one :class:`~vidx.workers.chunk_worker.ChunkIndexer` (the batch-inference
    pattern: models loaded once in ``__init__``).  Imported inside the actor, so the driver never
    loads torch or the models."""

    def __init__(self, *args, **kwargs):
        from vidx.workers.chunk_worker import ChunkIndexer

        self.indexer = ChunkIndexer(*args, **kwargs)

    def ready(self) -> str:
        """The node this actor runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def index_chunk(self, task: ChunkTask) -> ChunkResult:
        r = self.indexer.index_chunk(task)
        r.node = self.ready()
        return r


class _Pool:
    """The chunk workers: ``_Worker`` actors on the Ray cluster (a local Ray started on demand),
    resources declared once from the config.  Entered while the driver still plans, so starting
    Ray, the actors' imports and the model loads overlap the hashing and probing.  An actor whose
    process dies is restarted by Ray (on another node if its own is gone); which chunks are
    retried is the driver's choice (:func:`_fan_out`): a chunk whose actor went with its node goes
    to another actor at no cost, a chunk whose worker process died on a live node is retried
    ``TASK_RETRIES`` times, so only a chunk that keeps killing its worker fails alone."""

    def __init__(self, cfg: Config, out: str, actions: dict | None, quiet: bool):
        self.cfg, self.out, self.actions, self.quiet = cfg, out, actions, quiet
        self.actors: list = []
        self.started = False

    def __enter__(self) -> "_Pool":
        import ray

        self.started = _ray_init(self.quiet)
        cfg = self.cfg
        n = _pool_size(cfg)
        actor = ray.remote(_Worker).options(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus,
                                            max_concurrency=CALLS_PER_ACTOR, max_restarts=-1,
                                            max_task_retries=0)  # retries are the driver's (_fan_out)
        kw = {"out": self.out, "faces": cfg.to_dict()["faces"], "tracking": cfg.to_dict()["tracking"],
              "num_cpus": cfg.ray.num_cpus,
              "actions": {k: v for k, v in self.actions.items() if k != "labels"} if self.actions else None}
        self.actors = [actor.remote(**kw) for _ in range(n)]
        return self

    def trim(self, n_chunks: int) -> None:
        """Fewer chunks than actors: the idle ones go (they would only hold CPUs)."""
        import ray

        keep = max(1, min(len(self.actors), n_chunks))
        for a in self.actors[keep:]:
            ray.kill(a)
        self.actors = self.actors[:keep]

    def __exit__(self, *exc) -> None:
        import ray

        for a in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(a)
        self.actors = []
        if self.started and self.quiet:  # a local Ray we started; its shutdown chatter goes to the log too
            ray.shutdown()


@dataclass
class _Chunk:
    """One chunk's task and what happened to it so far (the pool's per-chunk state)."""

    task: ChunkTask
    crashes: int = 0  # times its worker process died on a live node (retried up to TASK_RETRIES)
    moves: int = 0  # times its actor was lost with its node (free, up to MAX_MOVES)


class _FanOut:
    """The chunks of one run through the pool: two an actor, the next as each returns; a chunk
    whose actor was lost with its node goes to another actor, one whose worker process died is
    retried, and a lost actor takes work again once Ray has restarted it elsewhere.  Each result
    goes to the run (:meth:`record`), committed every few seconds."""

    def __init__(self, run: Run, todo: list[ChunkTask], pool: _Pool, progress: bool | None, term):
        from tqdm import tqdm

        self.run, self.pool, self.term = run, pool, term
        self.todo = todo
        self.queue = [_Chunk(t) for t in reversed(todo)]  # pop() takes them in plan order; a retry goes on top
        self.running: dict = {}  # ObjectRef -> (chunk, actor)
        self.probes: dict = {}  # ObjectRef of a ready() call -> actor whose node was lost (restarting elsewhere)
        self.healthy = list(pool.actors)
        self.nodes: dict = {}  # actor -> the node its last answer came from
        self.left: dict[str, int] = {}  # video -> chunks not yet returned
        for t in todo:
            self.left[t.video_id] = self.left.get(t.video_id, 0) + 1
        self.videos_done: set[str] = set()
        self.done_s, self.faces = 0.0, 0
        self.total_s = sum(t.seconds for t in todo)
        self.tty = term.isatty() if progress is None else progress
        self.bar = tqdm(total=round(self.total_s, 1), unit="video-s", disable=not self.tty, dynamic_ncols=True,
                        file=term)
        self.last_write = self.last_log = self.t_run = time.time()

    def submit(self, actor) -> None:
        ch = self.queue.pop()
        self.running[actor.index_chunk.remote(ch.task)] = (ch, actor)

    def go(self) -> None:
        import ray

        for _ in range(CALLS_PER_ACTOR):
            for a in self.healthy:
                if self.queue:
                    self.submit(a)
        waiting_since = None
        while self.running or (self.queue and self.probes):
            if not self.running and self.queue and not self.healthy:  # every actor lost with its node: wait
                waiting_since = waiting_since or time.time()
                if time.time() - waiting_since > NO_WORKER_S:
                    break
            ready, _ = ray.wait(list(self.running) + list(self.probes), num_returns=1,
                                timeout=None if self.running else 10.0)
            if not ready:
                continue
            ref = ready[0]
            if ref in self.probes:
                if self.back(ref):
                    waiting_since = None
                continue
            ch, actor = self.running.pop(ref)
            try:
                r = ray.get(ref)
            except ray.exceptions.RayError as e:
                r = self.failed(ch, actor, e)
                if r is None:  # retried or moved
                    continue
            if r.node:
                self.nodes[actor] = r.node
            if self.queue and actor in self.healthy:
                self.submit(actor)
            self.record(r)
        for ch in reversed(self.queue):  # no worker could be placed for NO_WORKER_S: these wait for the next run
            self.run.chunk_errors[ch.task.key] = (f"no worker could run it: every worker was lost with its node and "
                                                  f"none came back within {NO_WORKER_S:.0f} s")
        self.run.parts.commit()
        self.bar.close()

    def back(self, ref) -> bool:
        """A lost actor's probe answered: back (restarted on a live node), it takes work again."""
        import ray

        actor = self.probes.pop(ref)
        try:
            node = ray.get(ref)
        except ray.exceptions.RayError:
            self.probes[actor.ready.remote()] = actor
            return False
        self.nodes[actor] = node
        self.healthy.append(actor)
        for _ in range(CALLS_PER_ACTOR):
            if self.queue:
                self.submit(actor)
        return True

    def failed(self, ch: _Chunk, actor, e: Exception) -> ChunkResult | None:
        """A chunk's call raised: moved (its actor went with its node), retried (its worker process
        died), or, past its retries, a failed result.  None when it goes back on the queue."""
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        if _node_lost(e, self.nodes.get(actor)) and ch.moves < MAX_MOVES:  # not the chunk's fault
            ch.moves += 1
            self.queue.append(ch)
            if actor in self.healthy:
                self.healthy.remove(actor)
                self.probes[actor.ready.remote()] = actor
                log.info("a worker was lost with its node (%s); its chunks go to the other workers", first)
            if self.healthy and self.queue:
                self.submit(self.healthy[len(self.running) % len(self.healthy)])
            return None
        ch.crashes += 1
        if ch.crashes <= TASK_RETRIES:  # its worker process died: Ray restarts the actor; try again
            self.queue.append(ch)
            if self.queue and actor in self.healthy:
                self.submit(actor)
            return None
        return ChunkResult.failed(ch.task, f"the worker process died on this chunk ({TASK_RETRIES + 1} tries): {first}")

    def record(self, r: ChunkResult) -> None:
        """A chunk's result into the run: its parts (committed every few seconds), its damage or its
        error, the progress bar."""
        from tqdm import tqdm

        run, vid = self.run, r.video_id
        run.ran_videos.add(vid)
        run.summary.chunks_run += 1
        if r.ok:
            run.parts.add(r.parts)
            spans = _damage(r.damaged, run.plans[vid].info)
            if spans:
                with tqdm.external_write_mode(file=self.term):  # the bar steps aside for the line
                    log.warning("%s: undecodable %s (indexed around it)", run.plans[vid].uri,
                                decode.describe_spans(spans))
            self.faces += r.detections
        else:
            run.chunk_errors[(vid, r.chunk)] = r.error
            with tqdm.external_write_mode(file=self.term):
                log.warning("%s chunk %d failed: %s", run.plans[vid].uri, r.chunk, r.error)
        self.left[vid] -= 1
        if self.left[vid] == 0:
            self.videos_done.add(vid)
        self.done_s += r.seconds
        self.bar.update(round(r.seconds, 1))
        self.bar.set_postfix_str(f"videos {len(self.videos_done)}/{len(self.left)} chunks {run.summary.chunks_run}/"
                                 f"{len(self.todo)} faces {self.faces}")
        now = time.time()
        if now - self.last_write > 2.0:  # resumable: what finished is committed every few seconds
            run.parts.commit()
            self.last_write = now
        if not self.tty and now - self.last_log > 10.0:
            log.info("%d/%d chunks, %.0f/%.0f video-s, %d faces, %.1f video-s/s", run.summary.chunks_run,
                     len(self.todo), self.done_s, self.total_s, self.faces, self.done_s / max(now - self.t_run, 1e-9))
            self.last_log = now


def _fan_out(run: Run, todo: list[ChunkTask], pool: _Pool, progress: bool | None = None, term=None) -> None:
    """Run ``todo`` on the pool's actors (:class:`_FanOut`), their results into ``run``."""
    term = term or sys.stderr
    pool.trim(len(todo))
    log.info("indexing %d chunk(s) of %d video(s) with %d actor(s)", len(todo),
             len({t.video_id for t in todo}), len(pool.actors))
    _FanOut(run, todo, pool, progress, term).go()
