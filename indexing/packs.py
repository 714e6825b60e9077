"""Packs: one Parquet file per action table, beside the Delta tables, for readers that want every
row at once (the query engine at start).

An archive of 10,000 videos holds 10,000 one-video parts per table, and opening that many
Parquet files costs about a millisecond each (10 s for action_segments at a million tracks,
measured by bench/bench_query.py), so a server could not answer within seconds of its start.
The people refresh, which runs at the end of every `vidx index` and after every change of
names, corrections or forgotten people, keeps a pack of each table up to date: the rows of
videos whose parts changed are replaced, the rest kept.  A pack is a cache: ``people_basis.json``
records which parts it holds, and a reader uses it only when they are exactly the table's live
parts, reading the table itself otherwise.

    OUT/packs/action_segments.parquet
    OUT/packs/person_actions.parquet
"""

from __future__ import annotations

import logging

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from vidx.indexing.store import Store
from vidx.indexing.tables import SCHEMAS, IndexTable, video_of

log = logging.getLogger(__name__)

PACKS = {"action_segments": "packs/action_segments.parquet", "person_actions": "packs/person_actions.parquet"}


def _live(store: Store, name: str) -> tuple[IndexTable, dict, int]:
    t = IndexTable(store, name)
    if t.log.version < 0:
        return t, {}, -1
    snap = t.snapshot()
    return t, dict(snap.files), snap.version


def update(store: Store, was: dict[str, dict] | None) -> dict[str, dict]:
    """Bring every pack up to date with its table; ``was``: what each pack held (from the basis:
    the table's version and parts), None when unknown.  Returns what each pack holds now."""
    now = {}
    for name, rel in PACKS.items():
        table, parts, version = _live(store, name)
        files = {p: video_of(part) for p, part in parts.items()}
        old = ((was or {}).get(name) or {}).get("files")
        if old == files and store.exists(rel):
            now[name] = {"version": version, "files": files}
            continue
        if old is not None and store.exists(rel) and None not in files.values() and None not in old.values():
            changed = {old[p] for p in set(old) - set(files)} | {files[p] for p in set(files) - set(old)}
            kept = store.read_table(rel, SCHEMAS[name])
            kept = kept.filter(pc.invert(pc.is_in(kept["video_id"], value_set=pa.array(sorted(changed), pa.string()))))
            fresh = table.read([parts[p] for p, v in files.items() if v in changed])
            rows = pa.concat_tables([kept, fresh.cast(kept.schema)])
            log.debug("pack %s: %d video(s) replaced", name, len(changed))
        else:
            rows = table.read(parts.values())
        buf = pa.BufferOutputStream()
        pq.write_table(rows, buf, compression="zstd")
        store.write_bytes(rel, buf.getvalue().to_pybytes())
        now[name] = {"version": version, "files": files}
    return now


def read(store: Store, name: str, basis: dict | None) -> pa.Table:
    """Every row of table ``name``: from its pack when the pack was made from the table's newest
    version (one listing of its log: no commit since, so the same live parts), else from the
    table's parts."""
    held = ((basis or {}).get("packs") or {}).get(name) or {}
    if "version" in held and IndexTable(store, name).log.version == held["version"] and store.exists(PACKS[name]):
        return store.read_table(PACKS[name], SCHEMAS[name])
    table, parts, _ = _live(store, name)
    if len(parts) > 100:
        log.info("%s: reading %d parts (run 'vidx reindex %s' to pack them into one file)", name, len(parts), store.uri)
    return table.read(parts.values())
