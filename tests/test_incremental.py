"""People built incrementally (new tracks join through the FAISS index; only the people near them
are clustered again) against a full clustering of the same index, stable ids and corrections
across an add, videos indexed again, and queries answered concurrently as sequentially."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from synthetic_index import crowd, near, person_vectors, set_people_config, write_index
from vidx.indexing import faces_index, people
from vidx.indexing.query import Query, QueryEngine
from vidx.indexing.store import Store

from test_cli import VIDX

PEOPLE = person_vectors(12, seed=11)


def _video(vid: str, cast: list[int], seed: int, weak: int | None = None) -> list[tuple]:
    """Tracks of ``cast`` people: each on screen twice, the cast together (cannot-link pairs);
    ``weak``: one more, low-quality track of that person."""
    rows = []
    for k, p in enumerate(cast):
        for j in range(2):
            s = 100.0 * j + k  # the cast shares the screen in each of two scenes
            rows.append((f"{vid}-p{p:02d}-{j}", s, s + 30, near(PEOPLE[p], 0.25, seed + 10 * k + j), 0.9))
    if weak is not None:
        rows.append((f"{vid}-p{weak:02d}-weak", 300.0, 302.0, near(PEOPLE[weak], 0.45, seed + 99), 0.1))
    return rows


def _partition(out: str) -> set[frozenset[str]]:
    ident, _ = people.load(out)
    groups: dict[str, set[str]] = {}
    for t, p in zip(ident["track_id"].to_pylist(), ident["person_id"].to_pylist()):
        groups.setdefault(p, set()).add(t)
    return {frozenset(g) for g in groups.values()}


def _ids(out: str) -> dict[str, str]:
    ident, _ = people.load(out)
    return dict(zip(ident["track_id"].to_pylist(), ident["person_id"].to_pylist()))


def test_incremental_add_gives_the_full_partition_with_stable_ids_and_corrections(tmp_path):
    out = str(tmp_path / "idx")
    write_index(out, {f"v{i}": _video(f"v{i}", [i % 10, (i + 3) % 10, (i + 6) % 10], seed=100 * i, weak=(i + 1) % 10)
                      for i in range(10)})
    r = people.refresh(out)
    assert r.mode == "full" and r.tracks == 10 * 7
    before = _ids(out)
    # a correction and a name made before the delivery
    person_of = {t.split("-")[1]: p for t, p in before.items()}
    people.correct(out, "rename", [person_of["p01"]], name="Una")
    people.correct(out, "split", [person_of["p02"]], tracks=["v2-p02-0", "v2-p02-1"])
    split_id = _ids(out)["v2-p02-0"]
    assert split_id != person_of["p02"]

    # the delivery: known people and two new ones (10, 11), one video indexed again
    write_index(out, {"w1": _video("w1", [1, 4, 10], seed=5000, weak=2), "w2": _video("w2", [11, 7, 2], seed=6000),
                      "v5": _video("v5", [5, 8, 1], seed=7000)})
    r = people.refresh(out)
    assert r.mode == "incremental" and 0 < r.reclustered < r.tracks
    inc = _partition(out)
    ids = _ids(out)
    assert not any(t.startswith("v5-") and t.endswith("weak") for t in ids)  # v5's old tracks are gone
    for t, p in before.items():  # every track still indexed keeps its person id...
        if t in ids and not t.startswith("v2-p02"):
            assert ids[t] == p, t
    assert ids["v2-p02-0"] == ids["v2-p02-1"] == split_id  # ...the split stays split
    assert ids["w1-p01-0"] == person_of["p01"]  # a known face joins its person, and its name
    _, ppl = people.load(out)
    assert dict(zip(ppl["person_id"].to_pylist(), ppl["name"].to_pylist()))[person_of["p01"]] == "Una"
    assert ids["w1-p10-0"] not in before.values() and ids["w2-p11-0"] not in before.values()  # new people
    assert faces_index.FaceIndex.load(out).meta.count == r.tracks

    # the same index clustered from scratch: the same people (the split replayed on both)
    r = people.refresh(out, force=True)
    assert r.mode == "full"
    assert _partition(out) == inc
    assert all(len({t.split("-")[1] for t in g}) == 1 for g in inc)  # no person holds two true people
    strong = {frozenset(t for t in g if not t.endswith("weak")) for g in inc} - {frozenset()}
    assert len(strong) == 12 + 1  # twelve people, p02 split in two


def test_nothing_new_changes_nothing_and_reindex_full_reclusters(tmp_path):
    out = str(tmp_path / "idx")
    write_index(out, {"v0": _video("v0", [0, 1], seed=1), "v1": _video("v1", [1, 2], seed=2)})
    p = subprocess.run([VIDX, "reindex", out], capture_output=True, text=True)
    assert p.returncode == 0 and "every track clustered" in p.stdout, p.stderr
    p = subprocess.run([VIDX, "reindex", out], capture_output=True, text=True)
    assert p.returncode == 0 and "nothing new" in p.stdout
    commit = Store(out).read_manifest()["commit"]
    p = subprocess.run([VIDX, "reindex", out, "--full"], capture_output=True, text=True)
    assert p.returncode == 0 and "every track clustered" in p.stdout
    assert Store(out).read_manifest()["commit"] == commit + 1
    write_index(out, {"v2": _video("v2", [2, 3], seed=3)})
    p = subprocess.run([VIDX, "reindex", out], capture_output=True, text=True)
    assert p.returncode == 0 and "clustered again" in p.stdout


def test_a_missing_vectors_file_falls_back_to_a_full_refresh(tmp_path):
    out = str(tmp_path / "idx")
    write_index(out, {"v0": _video("v0", [0, 1], seed=1)})
    people.refresh(out)
    (tmp_path / "idx" / people.VECTORS).unlink()
    write_index(out, {"v1": _video("v1", [1, 2], seed=2)})
    r = people.refresh(out)
    assert r.mode == "full" and r.tracks == 8
    assert (tmp_path / "idx" / people.VECTORS).stat().st_size == 8 * 128 * 4


@pytest.fixture(scope="module")
def busy_index(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("busy") / "idx")
    videos = {f"v{i:02d}": _video(f"v{i:02d}", [i % 12, (i + 5) % 12, (i + 9) % 12], seed=300 * i) for i in range(24)}
    actions = {v: [(0.0, 20.0, "talking", 0.9), (95.0, 140.0, "waving hand", 0.5), (10.0, 110.0, "clapping", 0.3)]
               for i, v in enumerate(videos) if i % 3}
    write_index(out, videos, actions=actions)
    people.refresh(out)
    return out


def test_concurrent_queries_answer_as_sequential_ones(busy_index):
    eng = QueryEngine(busy_index)
    pids = sorted(set(eng.identities["person_id"].to_pylist()))
    qs = []
    for i in range(24):
        qs += [Query(person_id=pids[i % len(pids)]),
               Query(face=near(PEOPLE[i % 12], 0.2, 40 + i), limit=10, offset=i % 3),
               Query(actions=["talking" if i % 2 else "wav"], limit=7, offset=i % 4),
               Query(actions=["clapping"], video=f"v{i:02d}", start=50, end=120),
               Query(person_id=pids[i % len(pids)], start=90, end=200, min_score=0.4)]
    sequential = [eng.search(q) for q in qs]
    assert all(sequential[1::5]) and all(sequential[0::5])  # every face and person query finds something
    assert any(sequential[2::5]) and any(sequential[3::5])
    with ThreadPoolExecutor(8) as pool:
        for _ in range(3):
            assert list(pool.map(eng.search, qs)) == sequential


def test_action_pages_walk_videos_in_path_order(busy_index):
    eng = QueryEngine(busy_index)
    everything = eng.search(Query(actions=["talking"], limit=1000))
    assert everything and all(any(a["label"] == "talking" for a in r["actions"]) for r in everything)
    keys = [(r["path"], r["start_s"]) for r in everything]
    assert keys == sorted(keys)
    pages = [eng.search(Query(actions=["talking"], limit=5, offset=o)) for o in range(0, len(everything), 5)]
    assert [r["track_id"] for p in pages for r in p] == [r["track_id"] for r in everything]
    # 8 of 24 videos have no actions: none of their tracks answers
    assert not {r["video_id"] for r in everything} & {f"v{i:02d}" for i in range(0, 24, 3)}
    assert np.all([r["end_s"] > 0 for r in everything])


def test_growing_past_the_exact_index_trains_ivf_without_clustering_everything(tmp_path):
    out = str(tmp_path / "idx")
    video = crowd(300, 25, seed=0)
    write_index(out, {f"v{v:03d}": video(v) for v in range(100)})
    set_people_config(out, index_exact_below=2600)
    assert people.refresh(out).index_kind == "exact"
    write_index(out, {f"v{v:03d}": video(v) for v in range(100, 108)})
    r = people.refresh(out)
    assert r.mode == "incremental" and r.index_kind == "ivf" and r.reclustered < r.tracks
    inc = _partition(out)
    assert people.refresh(out, force=True).index_kind == "ivf"
    assert _partition(out) == inc


def test_action_packs_follow_their_tables(tmp_path):
    from vidx.indexing import packs
    from vidx.indexing.tables import read_index_table

    out = str(tmp_path / "idx")

    def rows(t):
        return sorted((r["video_id"], r["start_s"], r["label"]) for r in t.select(["video_id", "start_s", "label"]).to_pylist())

    write_index(out, {"v0": _video("v0", [0, 1], seed=1), "v1": _video("v1", [1, 2], seed=2)},
                actions={"v0": [(0, 5, "talking", 0.9)], "v1": [(3, 9, "waving", 0.5), (20, 30, "talking", 0.7)]})
    people.refresh(out)
    store = Store(out)
    assert rows(store.read_table(packs.PACKS["action_segments"])) == rows(read_index_table(out, "action_segments"))
    # v1 indexed again with other actions, v2 new: until a refresh the pack is stale and unused
    write_index(out, {"v1": _video("v1", [1, 2], seed=2), "v2": _video("v2", [3], seed=3)},
                actions={"v1": [(1, 2, "clapping", 0.5)], "v2": [(0, 9, "dancing", 0.8)]})
    table = rows(read_index_table(out, "action_segments"))
    assert ("v1", 20.0, "talking") not in table and ("v2", 0.0, "dancing") in table
    assert rows(store.read_table(packs.PACKS["action_segments"])) != table
    assert rows(QueryEngine(out).segments) == table
    people.refresh(out)
    assert rows(store.read_table(packs.PACKS["action_segments"])) == table
    assert rows(QueryEngine(out).segments) == table


def test_a_refresh_stopped_after_any_write_then_rerun_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    """A crash between any two of the refresh's writes (FAISS files, faces.vectors, identities,
    people, the basis, the manifest): the next refresh gives what an uninterrupted one gives."""
    import shutil

    base = tmp_path / "base"
    write_index(str(base), {f"v{i}": _video(f"v{i}", [i % 6, (i + 2) % 6], seed=10 * i, weak=(i + 1) % 6)
                            for i in range(6)})
    people.refresh(str(base))
    write_index(str(base), {"w1": _video("w1", [1, 4, 7], seed=900), "v2": _video("v2", [2, 5], seed=901)})

    def state(out: str):
        ident, ppl = people.load(out)
        return (ident.drop_columns(["similarity", "distance"]).sort_by("track_id").to_pylist(),
                ppl.drop_columns(["embedding"]).sort_by("person_id").to_pylist(),
                faces_index.FaceIndex.load(out).meta.count, (Path(out) / people.VECTORS).stat().st_size)

    calls = []
    real = Store.write_bytes
    ref = tmp_path / "ref"
    shutil.copytree(base, ref)
    monkeypatch.setattr(Store, "write_bytes", lambda self, rel, data: (calls.append(rel), real(self, rel, data))[1])
    people.refresh(str(ref))
    monkeypatch.setattr(Store, "write_bytes", real)
    want = state(str(ref))
    assert len(calls) >= 6

    class Crash(Exception):
        pass

    for stop in range(len(calls)):
        out = tmp_path / f"stop{stop}"
        shutil.copytree(base, out)
        seen = []

        def failing(self, rel, data, seen=seen, stop=stop):
            if len(seen) == stop:
                raise Crash(rel)
            seen.append(rel)
            return real(self, rel, data)

        monkeypatch.setattr(Store, "write_bytes", failing)
        with pytest.raises(Crash):
            people.refresh(str(out))
        monkeypatch.setattr(Store, "write_bytes", real)
        people.refresh(str(out))
        got = state(str(out))
        assert got == want, f"stopped before writing {calls[stop]}"


def test_deep_pages_are_counted_and_heavy_searches_answer_off_the_event_loop(busy_index, monkeypatch):
    from fastapi.testclient import TestClient

    from vidx.jobs.serve import create_app

    eng = QueryEngine(busy_index)
    everything = eng.search(Query(actions=["talking"], limit=1000))
    for off in (0, 3, len(everything) - 2, len(everything) + 5):  # pages before the asked one are only counted
        assert eng.search(Query(actions=["talking"], limit=4, offset=off)) == everything[off : off + 4]
    monkeypatch.setattr(QueryEngine, "HEAVY_ROWS", 3)  # every page deeper than 3 rows: a thread's work
    q = Query(actions=["talking"], limit=4, offset=5)
    assert eng.heavy(q) and not eng.heavy(Query(actions=["talking"], limit=2))
    seen = []
    real = QueryEngine.search
    monkeypatch.setattr(QueryEngine, "search", lambda self, q: seen.append(threading.current_thread()) or real(self, q))
    c = TestClient(create_app(busy_index))
    r = c.get("/api/search", params={"action": "talking", "limit": 4, "offset": 5}).json()
    assert [x["track_id"] for x in r["items"]] == [x["track_id"] for x in everything[5:9]]
    light = c.get("/api/search", params={"action": "talking", "limit": 2}).json()
    assert [x["track_id"] for x in light["items"]] == [x["track_id"] for x in everything[:2]]
    assert seen[0] is not seen[1]  # the heavy one ran in a worker thread, the light one on the loop's
