"""The people tables' schemas, files and readers: what every other part of the people package builds on."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from vidx.configs.config import PeopleConfig, fill_distances
from vidx.configs.spaces import Space, space
from vidx.indexing import faces_index, schemas
from vidx.indexing.store import IndexError_, Store
from vidx.indexing.tables import IndexTable, replace_table
from vidx.configs.errors import PeopleError  # noqa: F401 - defined there, raised here

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


class Codes:
    """A column of ids (person ids, video ids) as integer codes over its distinct values: the one
    shape ids take inside array code (``values[codes[i]]`` is row i's id).  Ids are strings at every
    boundary (the tables, the API, the CLI); codes live only as long as the arrays they index."""

    def __init__(self, col: pa.Array | pa.ChunkedArray | list[str]):
        if isinstance(col, list):
            col = pa.array(col, pa.string())
        enc = pc.dictionary_encode(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
        self.values: list[str] = enc.dictionary.to_pylist()
        self.codes: np.ndarray = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self._at = {v: i for i, v in enumerate(self.values)}

    def __len__(self) -> int:
        return len(self.values)

    def code_of(self, value: str, add: bool = False) -> int:
        """The code of ``value``: -1 when it has none, or (``add``) a new code for it."""
        c = self._at.get(value)
        if c is None:
            if not add:
                return -1
            c = self._at[value] = len(self.values)
            self.values.append(value)
        return c

    def lookup(self, values: list[str]) -> np.ndarray:
        """The codes of ``values`` (-1 where absent), one hash lookup for all."""
        at = pc.index_in(pa.array(values, pa.string()), value_set=pa.array(self.values, pa.string()))
        return np.nan_to_num(at.to_numpy(zero_copy_only=False).astype(np.float64), nan=-1).astype(np.int64)

    def member(self, some: np.ndarray) -> np.ndarray:
        """Whether each row's code is among ``some`` (a table lookup: np.isin hashes a million codes)."""
        table = np.zeros(len(self.values), bool)
        table[np.asarray(some, np.int64)] = True
        return table[self.codes]

    def ids(self) -> pa.Array:
        """Each row's id."""
        return pa.array(self.values, pa.string()).take(pa.array(self.codes))


def person_id_for(track_ids: list[str], salt: str = "", taken: set[str] | frozenset[str] = frozenset()) -> str:
    """The one place a person id is minted: from the person's first track id (and a salt naming the
    correction that made it), stable across re-clustering; rehashed past the ids in ``taken``."""
    pid = "P" + hashlib.blake2b((salt + min(track_ids)).encode(), digest_size=4).hexdigest()
    while pid in taken:
        pid = "P" + hashlib.blake2b(pid.encode(), digest_size=4).hexdigest()
    return pid


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


NARROW = ["track_id", "person_id", "video_id", "quality", "face_id", "start_s", "end_s", "detections", "thumbnail_t"]
IDENTITIES_PACK = "packs/identities.arrow"  # NARROW, Arrow IPC: a server memory-maps it at start
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


def read_vectors(store: Store, rows: int, ranged: bool = False) -> np.ndarray:
    """The tracks' embeddings in identities' row order: memory-mapped from a local index (pages
    read when touched, shared with the page cache); from an object store read whole, or with
    ``ranged`` a :class:`RangedVectors` that reads the blocks asked for.  The file may hold more
    rows than asked (a refresh appending while this reads): the first ``rows``."""
    import pyarrow.fs as pafs

    size = rows * schemas.EMBED_DIM * 4
    local = store.fs.type_name == "local"
    path = store.path(VECTORS)
    info = store.fs.get_file_info(path)
    found = info.size if info.type == pafs.FileType.File else -1
    if found < size:
        raise IndexError_(f"{path} does not match the identities table ({rows} rows); run 'vidx reindex {store.uri}'")
    if not local:
        if ranged:
            return RangedVectors(store, rows)
        data = store.read_bytes(VECTORS)
        return np.frombuffer(data, np.float32, count=rows * schemas.EMBED_DIM).reshape(rows, schemas.EMBED_DIM)
    if rows == 0:  # numpy cannot map an empty file
        return np.zeros((0, schemas.EMBED_DIM), np.float32)
    return np.memmap(path, np.float32, "r", shape=(rows, schemas.EMBED_DIM))


class RangedVectors:
    """faces.vectors on an object store, read in blocks as rows are asked for (ranged GETs, each
    block once) instead of whole at start: a server at a million tracks would otherwise fetch
    512 MB before its first face query.  Indexing with an array of rows (or an int) gives them."""

    BLOCK_ROWS = 4096  # 2 MiB a read

    def __init__(self, store: Store, rows: int):
        self.store, self.shape = store, (rows, schemas.EMBED_DIM)
        self._blocks: dict[int, np.ndarray] = {}
        self._file = None

    def __len__(self) -> int:
        return self.shape[0]

    def _block(self, b: int) -> np.ndarray:
        got = self._blocks.get(b)
        if got is None:
            if self._file is None:
                self._file = self.store.fs.open_input_file(self.store.path(VECTORS))
            a, z = b * self.BLOCK_ROWS, min((b + 1) * self.BLOCK_ROWS, self.shape[0])
            data = self._file.read_at((z - a) * schemas.EMBED_DIM * 4, a * schemas.EMBED_DIM * 4)
            got = self._blocks[b] = np.frombuffer(data, np.float32).reshape(z - a, schemas.EMBED_DIM)
        return got

    def __getitem__(self, rows) -> np.ndarray:
        one = np.isscalar(rows)
        r = np.arange(self.shape[0])[rows] if isinstance(rows, slice) else np.atleast_1d(np.asarray(rows, np.int64))
        if r.dtype == bool:
            r = np.flatnonzero(r)
        out = np.empty((len(r), schemas.EMBED_DIM), np.float32)
        blocks = r // self.BLOCK_ROWS
        for b in np.unique(blocks).tolist():
            at = blocks == b
            out[at] = self._block(b)[r[at] - b * self.BLOCK_ROWS]
        return out[0] if one else out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        x = self[np.arange(self.shape[0])]
        return x if dtype is None else x.astype(dtype)


def write_vectors(store: Store, emb: np.ndarray) -> None:
    store.write_bytes(VECTORS, np.ascontiguousarray(emb, np.float32).tobytes())


def append_vectors(store: Store, rows: int, new: np.ndarray) -> None:
    """Add ``new`` after the first ``rows`` embeddings: in place on a local index (bytes past
    ``rows`` - a refresh stopped midway - are cut first; readers map only the rows their
    identities hold), rewritten whole on an object store (no appends there)."""
    new = np.ascontiguousarray(new, np.float32)
    if store.fs.type_name != "local":
        write_vectors(store, np.concatenate([read_vectors(store, rows), new]))
        return
    with open(store.path(VECTORS), "r+b") as f:
        f.truncate(rows * schemas.EMBED_DIM * 4)
        f.seek(0, 2)
        f.write(new.tobytes())
        f.flush()
        os.fsync(f.fileno())


def write_identities_pack(store: Store, narrow: pa.Table) -> None:
    """Identities' narrow columns in row order, as one Arrow IPC file (a cache of the table:
    :func:`read_identities` uses it only for the version the basis names)."""
    buf = pa.BufferOutputStream()
    with pa.ipc.new_file(buf, narrow.schema) as w:
        w.write_table(narrow.combine_chunks())
    store.write_bytes(IDENTITIES_PACK, buf.getvalue().to_pybytes())


def read_identities(store: Store, basis: dict[str, Any] | None) -> pa.Table:
    """Identities' NARROW columns in row order: memory-mapped from the pack when it was written
    for the table's newest version (one listing of the log), else read from the table."""
    table = IndexTable(store, "identities", IDENTITIES)
    version = (basis or {}).get("identities_version")
    if version is not None and version == table.log.version and (basis or {}).get("identities_pack") and \
            store.exists(IDENTITIES_PACK):
        src = pa.memory_map(store.path(IDENTITIES_PACK)) if store.fs.type_name == "local" else \
            pa.BufferReader(store.read_bytes(IDENTITIES_PACK))
        t = pa.ipc.open_file(src).read_all()
        if t.num_rows == basis.get("rows"):
            return t
    return table.read(columns=NARROW) if table.log.version >= 0 else IDENTITIES.empty_table().select(NARROW)


def read_basis(store: Store) -> dict[str, Any] | None:
    if not store.exists(BASIS):
        return None
    try:
        b = json.loads(store.read_bytes(BASIS))
        return b if b.get("version") == 1 else None
    except ValueError:
        return None


def load(out: str, narrow: bool = False) -> tuple[pa.Table, pa.Table]:
    """(identities, people): the Delta tables the last refresh replaced; ``narrow``: identities'
    NARROW columns only (:func:`read_identities`)."""
    store = Store(out)
    m = store.require_manifest()
    if not (m.get("people") or {}).get("digest"):
        raise PeopleError(f"{out} has no people tables yet; build them with 'vidx reindex {out}'")
    ident = read_identities(store, read_basis(store)) if narrow else _read(store, "identities", IDENTITIES)
    return ident, _read(store, "people", PEOPLE)


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
