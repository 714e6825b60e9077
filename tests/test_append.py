"""A delivery appended to the people as they stand (indexing/people/resume.py): the same people,
names and per-person facts as a full refresh of the same index, only the new rows written, the
identities rows in the order of faces.vectors, FAISS shards folded by a full refresh, and a
refresh stopped midway leaving nothing a reader trips on."""

from __future__ import annotations

import importlib
import os

import numpy as np
import pyarrow as pa
import pytest

from synthetic_index import crowd, near, person_vectors, set_people_config, write_index
from vidx.indexing import faces_index, people
from vidx.indexing.people.files import IDENTITIES_PACK, NARROW, read_basis, read_identities
from vidx.indexing.query import Query, QueryEngine
from vidx.indexing.store import Store
from vidx.indexing.tables import IndexTable, read_index_table

SFACE = "sface_2021dec"
PEOPLE = person_vectors(14, seed=21)


def _video(vid: str, cast: list[int], seed: int, weak: int | None = None) -> list[tuple]:
    """Each of ``cast`` on screen twice, the cast together; ``weak``: one low-quality track more."""
    rows = []
    for k, p in enumerate(cast):
        for j in range(2):
            s = 100.0 * j + k
            rows.append((f"{vid}-p{p:02d}-{j}", s, s + 10 + 7 * k + j, near(PEOPLE[p], 0.3, seed + 10 * k + j), 0.9))
    if weak is not None:
        rows.append((f"{vid}-p{weak:02d}-weak", 300.0, 302.0, near(PEOPLE[weak], 0.5, seed + 99), 0.1))
    return rows


def _people_by_members(out: str) -> dict[frozenset, dict]:
    ident, ppl = people.load(out)
    members: dict[str, set[str]] = {}
    for t, p in zip(ident["track_id"].to_pylist(), ident["person_id"].to_pylist()):
        members.setdefault(p, set()).add(t)
    rows = {r["person_id"]: r for r in ppl.to_pylist()}
    return {frozenset(m): rows[p] for p, m in members.items()}


def _gallery(out: str, name: str, who: int) -> None:
    from vidx.indexing.people.files import GALLERY, write_gallery

    emb = np.stack([near(PEOPLE[who], 0.2, 900 + i) for i in range(3)])
    write_gallery(Store(out), pa.table({
        "name": [name] * 3, "photo": [f"{name}{i}.jpg" for i in range(3)], "face": pa.array([0] * 3, pa.int32()),
        "box": pa.FixedSizeListArray.from_arrays(np.zeros(12, np.float32), 4),
        "embedding": pa.FixedSizeListArray.from_arrays(emb.ravel(), 128), "added": ["2026-12-03"] * 3},
        schema=GALLERY))


@pytest.fixture
def grown(tmp_path):
    """An SFace index of 10 videos refreshed in full, a name enrolled, then a delivery appended:
    known people (one of them named), two new ones (12 and 13, the second named), weak tracks."""
    out = str(tmp_path / "idx")
    write_index(out, {f"v{i}": _video(f"v{i}", [i % 10, (i + 3) % 10, (i + 6) % 10], 100 * i, weak=(i + 1) % 10)
                      for i in range(10)}, embedder=SFACE)
    _gallery(out, "Ada", 13)  # nobody indexed yet looks like her
    assert people.refresh(out).mode == "full"
    write_index(out, {"w1": _video("w1", [1, 4, 12], 5000, weak=2), "w2": _video("w2", [13, 7, 12], 6000, weak=13)},
                embedder=SFACE)
    before = _people_by_members(out)
    r = people.refresh(out)
    return out, r, before


def test_a_delivery_appends_the_people_a_full_refresh_finds(grown):
    out, r, before = grown
    assert r.mode == "appended" and r.reclustered == 6 + 6 + 2 and r.tracks == 70 + 14
    appended = _people_by_members(out)
    ident, _ = people.load(out)
    assert len(IndexTable(Store(out), "identities", people.IDENTITIES).snapshot().files) == 2  # the old part kept, one added
    r = people.refresh(out, force=True)
    assert r.mode == "full"
    full = _people_by_members(out)
    assert set(appended) == set(full)  # the same people...
    for members, row in full.items():  # ...with the same ids, counts, thumbnails, centres and names
        got = appended[members]
        for col in ("person_id", "tracks", "videos", "thumbnail_track", "name", "name_source"):
            assert got[col] == row[col], (col, sorted(members))
        assert got["seconds"] == pytest.approx(row["seconds"])
        assert np.allclose(got["embedding"], row["embedding"], atol=1e-5)
    named = {row["name"]: m for m, row in full.items() if row["name"]}
    assert set(named) == {"Ada"} and all(t.split("-")[1] == "p13" for t in named["Ada"])
    assert all(len({t.split("-")[1] for t in m}) == 1 for m in full)  # no person holds two true people
    old_ids = {row["person_id"] for row in before.values()}
    assert {row["person_id"] for m, row in full.items() if any(t.startswith("v") for t in m)} <= old_ids


def test_appended_rows_keep_the_vectors_order_and_the_pack(grown):
    out, _, _ = grown
    store = Store(out)
    ident, _ = people.load(out)
    vec = people.read_vectors(store, ident.num_rows)
    ft = read_index_table(out, "face_tracks", ["track_id", "embedding"])
    by_track = dict(zip(ft["track_id"].to_pylist(), people._emb(ft)))
    assert all(np.array_equal(vec[i], by_track[t]) for i, t in enumerate(ident["track_id"].to_pylist()))
    assert store.exists(IDENTITIES_PACK)
    assert read_identities(store, read_basis(store)).equals(ident.select(NARROW))
    eng = QueryEngine(out)  # answers from the pack and the appended vectors
    hits = eng.search(Query(face=near(PEOPLE[12], 0.1, 77)))
    assert hits and {h["track_id"].split("-")[1] for h in hits} == {"p12"}


def test_shards_are_added_then_folded_by_a_full_refresh(tmp_path):
    out = str(tmp_path / "idx")
    video = crowd(200, 20, seed=1)
    write_index(out, {f"v{v:03d}": video(v) for v in range(40)}, embedder=SFACE)
    set_people_config(out, index_exact_below=500)
    assert people.refresh(out).index_kind == "ivf"
    for batch in (range(40, 43), range(43, 45)):
        write_index(out, {f"v{v:03d}": video(v) for v in batch}, embedder=SFACE)
        r = people.refresh(out)
        assert r.mode == "appended" and r.index_kind == "ivf"
    idx = faces_index.FaceIndex.load(out)
    assert len(idx.meta.shards) == 2 and idx.meta.count == r.tracks == 45 * 20
    assert sorted(idx.id_track.to_pylist()) == sorted(people.load(out)[0]["track_id"].to_pylist())
    appended = _people_by_members(out)
    people.refresh(out, force=True)
    idx = faces_index.FaceIndex.load(out)
    assert idx.meta.shards == [] and not list((tmp_path / "idx" / faces_index.SHARD_DIR).glob("*"))
    assert idx.meta.count == 45 * 20
    assert set(_people_by_members(out)) == set(appended)


def test_a_refresh_stopped_after_the_vectors_leaves_readers_and_the_next_refresh_whole(grown, monkeypatch):
    out, _, _ = grown
    n = people.load(out)[0].num_rows
    write_index(out, {"w3": _video("w3", [5, 12], 7000)}, embedder=SFACE)
    refresh_mod = importlib.import_module("vidx.indexing.people.refresh")  # the module, not its function

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(refresh_mod, "append_rows", stop)
    with pytest.raises(KeyboardInterrupt):
        people.refresh(out)  # the vectors and the FAISS shard are written, identities are not
    monkeypatch.undo()
    assert QueryEngine(out).n_tracks == n  # a reader sees the last refresh (the file's extra rows unread)
    assert QueryEngine(out).search(Query(face=near(PEOPLE[5], 0.1, 3)))
    r = people.refresh(out)  # the face index holds more than identities: not built on, rebuilt
    assert r.tracks == n + 4 and r.mode == "full"
    assert os.path.getsize(Store(out).path(people.VECTORS)) == r.tracks * 128 * 4
    assert faces_index.FaceIndex.load(out).meta.count == r.tracks


def test_names_or_corrections_changed_are_not_appended(grown):
    out, _, _ = grown
    _gallery(out, "Ben", 12)  # a name enrolled and a delivery, refreshed together: names are redone
    write_index(out, {"w4": _video("w4", [3, 12], 8000)}, embedder=SFACE)
    r = people.refresh(out)
    assert r.mode == "incremental" and r.named.keys() == {"Ben"}
    people.correct(out, "rename", [people.load(out)[1]["person_id"][0].as_py()], name="Bo")  # refreshes
    write_index(out, {"w5": _video("w5", [3, 12], 9000)}, embedder=SFACE)
    r = people.refresh(out)
    assert r.mode == "appended" and {"Ben", "Bo"} <= r.named.keys()  # the next delivery appends again
    assert all(t.split("-")[1] == "p12" for t in _tracks_named(out, "Ben"))


def _tracks_named(out: str, name: str) -> list[str]:
    ident, ppl = people.load(out)
    ids = {p for p, n in zip(ppl["person_id"].to_pylist(), ppl["name"].to_pylist()) if n == name}
    return [t for t, p in zip(ident["track_id"].to_pylist(), ident["person_id"].to_pylist()) if p in ids]
