"""The people tables' schemas, files and readers: what every other part of the people package builds on."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from vidx.configs.config import PeopleConfig, fill_distances
from vidx.configs.spaces import Space, space
from vidx.indexing import faces_index, schemas
from vidx.indexing.store import IndexError_, Store
from vidx.indexing.tables import IndexTable, replace_table

log = logging.getLogger(__name__)


CORRECTIONS_REL = "corrections.json"

IDENTITIES = pa.schema([
    pa.field("track_id", pa.string(), nullable=False),
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("similarity", pa.float32()),  # cosine of the track to its person's mean embedding
    pa.field("distance", pa.float32()),  # the track's distance to its person's centre (the embedder's metric)
    pa.field("quality", pa.float32()),  # the track's quality (face_tracks.quality)
    # core: a confident track that formed the person; joined: a weak track that joined it; alone: a weak
    # track no person was clearly nearest to; manual: placed by a correction; reviewed: accepted by hand
    pa.field("role", pa.string()),
    # the track's own facts, copied so that queries and the next refresh read one narrow table
    pa.field("face_id", pa.int64()),  # its id in the FAISS index (faces_index.track_hash)
    pa.field("start_s", pa.float64()),  # seconds from the video's first frame
    pa.field("end_s", pa.float64()),
    pa.field("detections", pa.int32()),
    pa.field("thumbnail_t", pa.float64()),
])

PEOPLE = pa.schema([
    pa.field("person_id", pa.string(), nullable=False),
    pa.field("name", pa.string()),  # null: not named
    pa.field("name_source", pa.string()),  # enrolled | manual | null
    pa.field("name_distance", pa.float32()),  # enrolled: mean distance to the name's nearest photos
    pa.field("tracks", pa.int32()),
    pa.field("videos", pa.int32()),
    pa.field("seconds", pa.float64()),  # summed track durations
    pa.field("thumbnail_track", pa.string()),  # the track with most detections
    pa.field("embedding", pa.list_(pa.float32(), schemas.EMBED_DIM)),  # detection-weighted mean (raw)
])

GALLERY = pa.schema([
    pa.field("name", pa.string(), nullable=False),
    pa.field("photo", pa.string(), nullable=False),  # the path it was enrolled from
    pa.field("face", pa.int32()),  # which face of the photo (left to right)
    pa.field("box", pa.list_(pa.float32(), 4)),
    pa.field("embedding", pa.list_(pa.float32(), schemas.EMBED_DIM)),
    pa.field("added", pa.string()),
])


class PeopleError(RuntimeError):
    """A people command cannot be carried out (unknown person, nothing indexed...)."""


def person_id_for(track_ids: list[str], salt: str = "") -> str:
    return "P" + hashlib.blake2b((salt + min(track_ids)).encode(), digest_size=4).hexdigest()


def _emb(table: pa.Table, col: str = "embedding") -> np.ndarray:
    return np.asarray(table[col].combine_chunks().flatten().to_numpy(zero_copy_only=False),
                      np.float32).reshape(-1, schemas.EMBED_DIM)


def _fsl(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(np.asarray(x, np.float32).ravel(), schemas.EMBED_DIM)


def read_gallery(store: Store) -> pa.Table:
    return _read(store, "gallery", GALLERY)


def _read(store: Store, name: str, schema: pa.Schema) -> pa.Table:
    t = IndexTable(store, name, schema)
    return t.read() if t.log.version >= 0 else schema.empty_table()


def write_gallery(store: Store, gallery: pa.Table) -> None:
    replace_table(store, "gallery", gallery, GALLERY)


def read_corrections(store: Store) -> list[dict[str, Any]]:
    if not store.exists(CORRECTIONS_REL):
        return []
    with store.fs.open_input_stream(store.path(CORRECTIONS_REL)) as f:
        try:
            return json.loads(f.read())["ops"]
        except (ValueError, KeyError) as e:
            raise IndexError_(f"{store.path(CORRECTIONS_REL)} is unreadable ({e})") from None


def write_corrections(store: Store, ops: list[dict[str, Any]]) -> None:
    store.write_bytes(CORRECTIONS_REL, json.dumps({"version": 1, "ops": ops}, indent=1).encode())


def index_space(manifest: dict[str, Any]) -> Space:
    """The embedder an index was built with, and its distances."""
    return space(manifest.get("embedder") or faces_index.EMBEDDER)


def people_config(manifest: dict[str, Any]) -> PeopleConfig:
    """The people parameters the index was built with (``vidx index --set people.*``); thresholds
    left at 0 take the index's embedder's values."""
    saved = (manifest.get("config") or {}).get("people") or {}
    known = {k: v for k, v in saved.items() if k in PeopleConfig.__dataclass_fields__}
    cfg = PeopleConfig(**known)
    fill_distances(index_space(manifest).name, None, cfg)
    return cfg


VECTORS = "faces.vectors"  # float32 (rows of identities, 128): the tracks' embeddings, memory-mapped by readers
BASIS = "people_basis.json"  # what the people tables were built from: the next refresh adds only what is new
TRACK_COLUMNS = ["track_id", "video_id", "start_s", "end_s", "detections", "thumbnail_t", "quality"]


def _settings_digest(cfg: PeopleConfig, embedder: str) -> str:
    """What a change of forces a full re-clustering: the people parameters and the embedder."""
    return hashlib.blake2b(json.dumps([asdict(cfg), embedder], sort_keys=True).encode(), digest_size=16).hexdigest()


def _labels_digest(gallery: pa.Table, ops: list) -> str:
    """What names and corrections depend on (a change relabels; it re-clusters nothing)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(_emb(gallery).tobytes())
    h.update("\0".join(gallery["name"].to_pylist()).encode())
    h.update(json.dumps(ops, sort_keys=True).encode())
    return h.hexdigest()


def _digest(settings: str, labels: str, files: dict[str, str | None]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update((settings + labels).encode())
    for p in sorted(files):  # parts are never rewritten in place: their names say what they hold
        h.update(p.encode() + b"\0")
    return h.hexdigest()


def read_vectors(store: Store, rows: int) -> np.ndarray:
    """The tracks' embeddings in identities' row order: memory-mapped from a local index (pages
    read when touched, shared with the page cache), read whole from an object store."""
    import os

    size = rows * schemas.EMBED_DIM * 4
    local = store.fs.type_name == "local"
    path = store.path(VECTORS)
    data = None if local else (store.read_bytes(VECTORS) if store.exists(VECTORS) else b"")
    found = (os.path.getsize(path) if os.path.exists(path) else -1) if local else len(data)
    if found != size:
        raise IndexError_(f"{path} does not match the identities table ({rows} rows); run 'vidx reindex {store.uri}'")
    if not local:
        return np.frombuffer(data, np.float32).reshape(rows, schemas.EMBED_DIM)
    if rows == 0:  # numpy cannot map an empty file
        return np.zeros((0, schemas.EMBED_DIM), np.float32)
    return np.memmap(path, np.float32, "r", shape=(rows, schemas.EMBED_DIM))


def read_basis(store: Store) -> dict[str, Any] | None:
    if not store.exists(BASIS):
        return None
    try:
        b = json.loads(store.read_bytes(BASIS))
        return b if b.get("version") == 1 else None
    except ValueError:
        return None


def load(out: str) -> tuple[pa.Table, pa.Table]:
    """(identities, people): the Delta tables the last refresh replaced."""
    store = Store(out)
    m = store.require_manifest()
    if not (m.get("people") or {}).get("digest"):
        raise PeopleError(f"{out} has no people tables yet; build them with 'vidx reindex {out}'")
    return _read(store, "identities", IDENTITIES), _read(store, "people", PEOPLE)


def resolve_people(people: pa.Table, who: str) -> list[str]:
    """Person ids for a person id or a name (case-insensitive); a clear error if neither."""
    if who in set(people["person_id"].to_pylist()):
        return [who]
    names = people["name"].to_pylist()
    hits = [p for p, n in zip(people["person_id"].to_pylist(), names) if n and n.casefold() == who.casefold()]
    if hits:
        return hits
    known = sorted({n for n in names if n})
    raise PeopleError(f"no person with id or name {who!r}" +
                      (f" (names: {', '.join(known)})" if known else " (no one is named yet; see 'vidx people')"))
