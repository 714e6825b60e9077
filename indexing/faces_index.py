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
from dataclasses import asdict, dataclass
from pathlib import Path

import faiss
import numpy as np

from vidx.indexing.store import Store

EMBEDDER = "dlib_resnet_v1"
DISTANCE_RULE = "euclidean on raw 128-d descriptors < 0.6 = same person; index: cosine of unit vectors"
INDEX_FILE = "faces.faiss"
META_FILE = "faces.faiss.json"
IDS_FILE = "faces.ids.json"


class FaceIndexError(RuntimeError):
    pass


def track_hash(track_ids: list[str]) -> np.ndarray:
    """Stable non-negative int64 id for each track id."""
    return np.array([int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") >> 1
                     for t in track_ids], dtype=np.int64)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


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
    def __init__(self, index: faiss.Index, meta: Meta, ids: dict[int, str]):
        self.index, self.meta, self.ids = index, meta, ids

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
        return cls(index, meta, dict(zip(hid.tolist(), track_ids)))

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, list[list[str]]]:
        """Cosine similarities (Q, k) and the matching track ids (missing slots dropped)."""
        sims, ids = self.search_ids(queries, k)
        out = [[self.ids[i] for i in row if i >= 0] for row in ids]
        return sims, out

    def search_ids(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and the int64 ids (``track_hash``; -1 = empty slot), (Q, k) each."""
        q = unit(np.atleast_2d(queries))
        if q.shape[1] != self.meta.dim:
            raise FaceIndexError(f"query has {q.shape[1]} dimensions, the index {self.meta.dim}")
        return self.index.search(q, min(k, max(self.meta.count, 1)))

    def remove(self, track_ids: list[str]) -> int:
        """Remove tracks (e.g. a forgotten person); returns how many vectors went."""
        hid = track_hash(track_ids)
        n = self.index.remove_ids(faiss.IDSelectorBatch(hid))
        for h in hid.tolist():
            self.ids.pop(h, None)
        self.meta.count -= int(n)
        return int(n)

    def save(self, where: Store | str | Path) -> None:
        """Into an index folder on any filesystem pyarrow.fs reaches (the index as bytes)."""
        store = _store(where)
        for name, data in ((INDEX_FILE, faiss.serialize_index(self.index).tobytes()),
                           (IDS_FILE, json.dumps({str(k): v for k, v in self.ids.items()}).encode()),
                           (META_FILE, json.dumps(asdict(self.meta), indent=1).encode())):
            store.write_bytes(name, data)  # meta last: a reader trusts the pair only when both are there

    @classmethod
    def load(cls, where: Store | str | Path, embedder: str | None = None) -> "FaceIndex":
        store = _store(where)
        if not store.exists(META_FILE):
            raise FaceIndexError(f"{store.uri} has no face index ({META_FILE}); build it with 'vidx reindex'")
        meta = Meta(**json.loads(store.read_bytes(META_FILE)))
        if embedder is not None and meta.embedder != embedder:
            raise FaceIndexError(f"the face index in {store.uri} was built with embedder {meta.embedder!r}; "
                                 f"queries use {embedder!r}: rebuild it with 'vidx reindex'")
        index = faiss.deserialize_index(np.frombuffer(store.read_bytes(INDEX_FILE), np.uint8))
        if meta.kind == "ivf":
            faiss.extract_index_ivf(index).nprobe = meta.nprobe
        ids = {int(k): v for k, v in json.loads(store.read_bytes(IDS_FILE)).items()}
        return cls(index, meta, ids)


def _store(where: Store | str | Path) -> Store:
    return where if isinstance(where, Store) else Store(str(where))
