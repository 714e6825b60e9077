"""The FAISS index over face-track embeddings: exact below a size, IVF above it.

Above ``exact_below`` vectors the index is IVF with a compressed code: ``SQ8`` (8 bits per
dimension) by default, ``PQ16x8`` / ``PQ64x8`` on request.  Measured on synthetic track
embeddings (bench/bench_faiss.py), IVF-SQ8 keeps recall@10 >= 0.95 against exact search while
PQ loses the order among a person's near-identical tracks (recall ~0.6) and trains 10-30x
longer; PQ is for when memory, not recall, is the limit.

Vectors are the embedder's (SFace or dlib) made unit length, searched by inner product (cosine).
Ids are stable int64 hashes of ``track_id``, so an index built in shards (e.g. one per video,
as faiss ``contrib/ondisk.py`` does: train once, add shards with their ids, merge) or rebuilt
later maps to the same ``face_tracks`` rows.  A metadata file beside the index records the
embedder and distance rule; searching with another embedder is refused.

    idx = FaceIndex.build(embeddings, track_ids, embedder="sface_2021dec")  # exact or IVF by size
    idx.save(folder); idx = FaceIndex.load(folder, embedder="sface_2021dec")
    sims, track_ids = idx.search(query_embeddings, k=10)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from vidx.indexing.store import Store
from vidx.configs.errors import FaceIndexError  # noqa: F401 - defined there, raised here

EMBEDDER = "dlib_resnet_v1"
DISTANCE_RULE = "euclidean on raw 128-d descriptors < 0.6 = same person; index: cosine of unit vectors"
INDEX_FILE = "faces.faiss"
META_FILE = "faces.faiss.json"
IDS_FILE = "faces.ids.parquet"  # (id, track_id) sorted by id: no Python dict of a million entries
OLD_IDS_FILE = "faces.ids.json"  # before 2026-12: read, never written
SHARD_DIR = "faces.shards"  # <n>.faiss + <n>.ids.parquet: vectors added by incremental refreshes
MAX_SHARDS = 32  # more, and the next refresh writes the index whole again


def track_hash(track_ids: list[str]) -> np.ndarray:
    """Stable non-negative int64 id for each track id."""
    return np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") >> 1
                     for t in track_ids], dtype=np.int64)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


class IdRows:
    """FAISS ids -> the rows of a table that holds them (sorted once; searched per lookup)."""

    def __init__(self, ids: np.ndarray):
        ids = np.asarray(ids, np.int64)
        self.order = np.argsort(ids, kind="stable")
        self.sorted = ids[self.order]

    def rows(self, hits: np.ndarray) -> np.ndarray:
        """The row of each id in ``hits`` (any shape), -1 for -1 (an empty slot) or an unknown id."""
        hits = np.asarray(hits, np.int64)
        if not len(self.sorted):
            return np.full(hits.shape, -1, np.int64)
        at = np.clip(np.searchsorted(self.sorted, hits), 0, len(self.sorted) - 1)
        return np.where((hits >= 0) & (self.sorted[at] == hits), self.order[at], -1)


@dataclass
class Meta:
    embedder: str
    distance: str
    dim: int
    kind: str  # exact | ivf
    count: int
    nlist: int = 0
    codec: str = ""  # SQ8, PQ16x8, ... for ivf
    nprobe: int = 0
    face_tracks_version: int = -1  # the version of the face_tracks Delta table it was built from
    shards: list[str] = field(default_factory=list)  # added since the index was written whole (SHARD_DIR)


def gpu_available() -> bool:
    """faiss-gpu installed (the `gpu` extra) and a GPU visible to it."""
    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


def train_ivf(sample: np.ndarray, nlist: int, codec: str = "SQ8") -> faiss.Index:
    """An empty, trained IVF index (inner product on unit vectors): train once, add shards later.
    k-means runs on the GPU when faiss-gpu sees one (the costly step at 1e6 vectors); the
    trained index comes back to the CPU, where shards are added and the file is written."""
    d = sample.shape[1]
    index = faiss.index_factory(d, f"IVF{nlist},{codec}", faiss.METRIC_INNER_PRODUCT)
    if gpu_available():
        try:
            res = faiss.StandardGpuResources()
            g = faiss.index_cpu_to_gpu(res, 0, index)
            g.train(unit(sample))
            return faiss.index_gpu_to_cpu(g)
        except RuntimeError as e:  # a codec without a GPU implementation (e.g. some PQ sizes)
            import logging

            logging.getLogger(__name__).info("training on the CPU (%s)", e)
    index.train(unit(sample))
    return index


class FaceIndex:
    def __init__(self, index: faiss.Index, meta: Meta, id_hash: np.ndarray, id_track: pa.Array, has_ids: bool = True):
        order = np.argsort(id_hash, kind="stable")
        self.index, self.meta, self.has_ids = index, meta, has_ids  # has_ids: False when loaded without them
        self.id_hash = np.asarray(id_hash, np.int64)[order]  # sorted: ids map to tracks by searchsorted
        self.id_track = id_track.take(pa.array(order))

    @property
    def ids(self) -> dict[int, str]:
        """FAISS id -> track id, as a dict (for small indexes and tests; searches use the arrays)."""
        return dict(zip(self.id_hash.tolist(), self.id_track.to_pylist()))

    def track_ids(self, hashes: np.ndarray) -> list[str | None]:
        """The track id of each FAISS id (None for -1 or an id the index does not hold)."""
        rows = IdRows(self.id_hash).rows(np.asarray(hashes, np.int64).ravel())  # id_hash is sorted already
        names = self.id_track.take(pa.array(np.maximum(rows, 0))).to_pylist() if len(self.id_hash) else []
        return [names[i] if r >= 0 else None for i, r in enumerate(rows.tolist())]

    @classmethod
    def build(cls, embeddings: np.ndarray, track_ids: list[str], exact_below: int = 100_000,
              shard_size: int = 200_000, nprobe: int = 32, codec: str = "SQ8", seed: int = 0,
              embedder: str = EMBEDDER, rule: str = DISTANCE_RULE) -> "FaceIndex":
        x = unit(embeddings)
        n, d = x.shape if x.ndim == 2 else (0, 128)
        hid = track_hash(track_ids)
        if len(set(hid.tolist())) != len(hid):
            raise FaceIndexError("duplicate track ids")
        if n < exact_below:
            index = faiss.IndexIDMap2(faiss.IndexFlatIP(d))
            if n:
                index.add_with_ids(x, hid)
            meta = Meta(embedder, rule, d, "exact", n)
        else:
            nlist = int(min(4096, max(64, 4 * np.sqrt(n))))
            rng = np.random.default_rng(seed)
            sample = x[rng.choice(n, size=min(n, 40 * nlist), replace=False)]  # faiss wants >= 39 per list
            trained = train_ivf(sample, nlist, codec)
            index = None
            for s in range(0, n, shard_size):  # shards with stable ids, merged into the first
                shard = faiss.clone_index(trained)
                shard.add_with_ids(x[s : s + shard_size], hid[s : s + shard_size])
                if index is None:
                    index = shard
                else:
                    index.merge_from(shard, 0)
            faiss.extract_index_ivf(index).nprobe = nprobe
            meta = Meta(embedder, rule, d, "ivf", n, nlist, codec, nprobe)
        return cls(index, meta, hid, pa.array(list(track_ids), pa.string()))

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
        """Cosine similarities (Q, k) and the matching track ids (missing slots dropped)."""
        sims, ids = self.search_ids(queries, k)
        names = self.track_ids(ids)
        width = ids.shape[1] if ids.ndim == 2 else 0
        out = [[t for t in names[r * width : (r + 1) * width] if t is not None] for r in range(len(ids))]
        return sims, out

    def add(self, embeddings: np.ndarray, track_ids: list[str]) -> None:
        """Add tracks (an incremental refresh): an IVF index keeps its trained lists."""
        if not len(track_ids):
            return
        hid = track_hash(track_ids)
        if len(set(hid.tolist())) != len(hid) or self.has_ids and IdRows(self.id_hash).rows(hid).max() >= 0:
            raise FaceIndexError("duplicate track ids")
        self.index.add_with_ids(unit(embeddings), hid)
        self.meta.count += len(hid)
        if not self.has_ids:  # loaded without them (the caller checked the ids)
            return
        all_hash = np.concatenate([self.id_hash, hid])
        all_track = pa.concat_arrays([self.id_track, pa.array(list(track_ids), pa.string())])
        order = np.argsort(all_hash, kind="stable")
        self.id_hash, self.id_track = all_hash[order], all_track.take(pa.array(order))

    def search_ids(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and the int64 ids (``track_hash``; -1 = empty slot), (Q, k) each."""
        q = unit(np.atleast_2d(queries))
        if q.shape[1] != self.meta.dim:
            raise FaceIndexError(f"query has {q.shape[1]} dimensions, the index {self.meta.dim}")
        return self.index.search(q, min(k, max(self.meta.count, 1)))

    def remove(self, track_ids: list[str]) -> int:
        """Remove tracks (e.g. a forgotten person); returns how many vectors went."""
        hid = track_hash(track_ids)
        if not len(hid):
            return 0
        n = self.index.remove_ids(faiss.IDSelectorBatch(hid))
        keep = ~np.isin(self.id_hash, hid)
        self.id_hash, self.id_track = self.id_hash[keep], self.id_track.filter(pa.array(keep))
        self.meta.count -= int(n)
        return int(n)

    def save(self, where: Store | str | Path) -> None:
        """Into an index folder on any filesystem pyarrow.fs reaches (the index as bytes), whole:
        the shards an incremental refresh added are folded in and deleted."""
        if not self.has_ids:
            raise FaceIndexError("a face index loaded without its ids cannot be written whole")
        store = _store(where)
        self.meta.shards = []
        for name, data in ((INDEX_FILE, faiss.serialize_index(self.index).tobytes()),
                           (IDS_FILE, _ids_bytes(self.id_hash, self.id_track)),
                           (META_FILE, json.dumps(asdict(self.meta), indent=1).encode())):
            store.write_bytes(name, data)  # meta last: a reader trusts the pair only when both are there
        if store.exists(OLD_IDS_FILE):
            store.fs.delete_file(store.path(OLD_IDS_FILE))
        sel = pafs.FileSelector(store.path(SHARD_DIR), allow_not_found=True)
        for info in store.fs.get_file_info(sel):  # every shard is in the index now
            if info.type == pafs.FileType.File:
                store.fs.delete_file(info.path)

    def save_added(self, where: Store | str | Path, embeddings: np.ndarray, track_ids: list[str]) -> None:
        """Add tracks and write only them, as a shard beside the index (faiss ``contrib/ondisk.py``:
        the same trained lists, stable ids), instead of the whole index: what an incremental
        refresh costs is what it adds.  An exact index, or one with MAX_SHARDS shards, is written
        whole (its ids read first if it was loaded without them)."""
        store = _store(where)
        whole = self.meta.kind != "ivf" or len(self.meta.shards) >= MAX_SHARDS
        if whole and not self.has_ids:
            stored = FaceIndex.load(store)
            self.id_hash, self.id_track, self.has_ids = stored.id_hash, stored.id_track, True
        self.add(embeddings, track_ids)
        if whole:
            self.save(store)
            return
        hid = track_hash(track_ids)
        shard = faiss.clone_index(self._trained())
        shard.add_with_ids(unit(embeddings), hid)
        name = f"{max([int(x) for x in self.meta.shards] + [0]) + 1:06d}"
        store.write_bytes(f"{SHARD_DIR}/{name}.faiss", faiss.serialize_index(shard).tobytes())
        store.write_bytes(f"{SHARD_DIR}/{name}.ids.parquet", _ids_bytes(hid, pa.array(list(track_ids), pa.string())))
        self.meta.shards.append(name)
        store.write_bytes(META_FILE, json.dumps(asdict(self.meta), indent=1).encode())  # last: the shard counts now

    def _trained(self) -> faiss.Index:
        """An empty copy of this IVF index: its trained lists, no vectors."""
        empty = faiss.clone_index(self.index)
        empty.reset()
        return empty

    @classmethod
    def load(cls, where: Store | str | Path, embedder: str | None = None, with_ids: bool = True) -> "FaceIndex":
        """``with_ids=False``: skip the id -> track id table (a caller mapping FAISS ids itself,
        as the query engine does through ``identities.face_id``).  A shard deleted between
        reading the metadata and the shard (a full refresh folded it in) is looked for again once."""
        try:
            return cls._load(_store(where), embedder, with_ids)
        except FileNotFoundError:
            return cls._load(_store(where), embedder, with_ids)

    @classmethod
    def _load(cls, store: Store, embedder: str | None, with_ids: bool) -> "FaceIndex":
        if not store.exists(META_FILE):
            raise FaceIndexError(f"{store.uri} has no face index ({META_FILE}); build it with 'vidx reindex'")
        meta = Meta(**json.loads(store.read_bytes(META_FILE)))
        if embedder is not None and meta.embedder != embedder:
            raise FaceIndexError(f"the face index in {store.uri} was built with embedder {meta.embedder!r}; "
                                 f"queries use {embedder!r}: rebuild it with 'vidx reindex'")
        index = faiss.deserialize_index(np.frombuffer(store.read_bytes(INDEX_FILE), np.uint8))
        ids = [pq.read_table(pa.BufferReader(store.read_bytes(IDS_FILE)))] if with_ids and store.exists(IDS_FILE) else []
        for name in meta.shards:  # an incremental refresh's additions, merged in (their lists are the index's)
            shard = faiss.deserialize_index(np.frombuffer(store.read_bytes(f"{SHARD_DIR}/{name}.faiss"), np.uint8))
            index.merge_from(shard, 0)
            if ids:
                ids.append(pq.read_table(pa.BufferReader(store.read_bytes(f"{SHARD_DIR}/{name}.ids.parquet"))))
        if index.ntotal != meta.count:  # the files are written one after another: a writer stopped between them
            raise FaceIndexError(f"the face index in {store.uri} is incomplete ({index.ntotal} vectors, its metadata "
                                 f"says {meta.count}); rebuild it with 'vidx reindex'")
        if meta.kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = meta.nprobe
        if not with_ids:
            return cls(index, meta, np.zeros(0, np.int64), pa.array([], pa.string()), has_ids=False)
        if ids:
            t = pa.concat_tables(ids)
            if t.num_rows != index.ntotal:
                raise FaceIndexError(f"the face index in {store.uri} is incomplete ({index.ntotal} vectors, "
                                     f"{t.num_rows} ids); rebuild it with 'vidx reindex'")
            return cls(index, meta, t["id"].to_numpy(), t["track_id"].combine_chunks())
        old = json.loads(store.read_bytes(OLD_IDS_FILE))
        return cls(index, meta, np.array([int(k) for k in old], np.int64), pa.array(list(old.values()), pa.string()))


def _ids_bytes(id_hash: np.ndarray, id_track: pa.Array) -> bytes:
    buf = pa.BufferOutputStream()
    pq.write_table(pa.table({"id": pa.array(id_hash, pa.int64()), "track_id": id_track}), buf)
    return buf.getvalue().to_pybytes()


def _store(where: Store | str | Path) -> Store:
    return where if isinstance(where, Store) else Store(str(where))
