"""Identities, enrolment, corrections and forgetting on hand-built indexes (no models)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from synthetic_index import near, person_vectors, write_index
from vidx.indexing import faces_index, people
from vidx.indexing.forget import forget
from vidx.indexing.query import Query, QueryEngine, QueryError
from vidx.indexing.store import Store
from vidx.indexing.tables import read_index_table

A, B, C = person_vectors(3, seed=3)


def test_cluster_groups_people_and_does_not_chain_through_a_bridge():
    x = np.stack([near(A, 0.2, i) for i in range(5)] + [near(B, 0.2, 10 + i) for i in range(5)])
    for dense_limit in (4000, 3):  # exact average linkage, and the kNN-graph path for large parts
        lab = people.cluster(x, 0.5, neighbours=4, dense_limit=dense_limit)
        assert len(set(lab[:5])) == 1 and len(set(lab[5:])) == 1 and lab[0] != lab[5]
    # two tight groups 0.8 apart and one track half-way: single linkage would chain them
    a = np.stack([near(A, 0.05, i) for i in range(6)])
    b = np.stack([near(A + 0.8 * (B - A) / np.linalg.norm(B - A), 0.05, 20 + i) for i in range(6)])
    bridge = (A + 0.4 * (B - A) / np.linalg.norm(B - A))[None]
    lab = people.cluster(np.concatenate([a, bridge, b]).astype(np.float32), 0.5, neighbours=12)
    assert len(set(lab[:6])) == 1 and len(set(lab[7:])) == 1 and lab[0] != lab[7]


def test_stable_ids_follow_the_majority_of_tracks():
    prev = {"t1": "Pold", "t2": "Pold", "t3": "Pother"}
    ids = people.stable_ids(np.array([0, 0, 0, 1]), ["t1", "t2", "t3", "t4"], prev)
    assert ids[:3] == ["Pold"] * 3 and ids[3] not in ("Pold", "Pother")
    assert people.stable_ids(np.array([0, 1]), ["x", "y"], {}) == [people.person_id_for(["x"]), people.person_id_for(["y"])]


def test_replay_merge_split_rename():
    assign = people.Assignment(pa.array(["a1", "a2", "b1", "b2"]), pa.array(["PA", "PA", "PB", "PB"]))
    names = people.replay(assign, [
        {"op": "rename", "tracks": ["b1", "b2"], "name": "Bea"},
        {"op": "split", "tracks": ["b2"], "person_id": "PX"},
        {"op": "rename", "tracks": ["b2"], "name": "Xavier"},
        {"op": "merge", "into": ["a1"], "from": ["b1"]},
    ])
    assert assign.ids().to_pylist() == ["PA", "PA", "PA", "PX"]
    assert names == {"PX": "Xavier"}  # the merged-away person's name goes with it


def _tracks_everywhere(out) -> set[str]:
    """Every string value in every Parquet file under the index, and the FAISS id map."""
    seen: set[str] = set()
    for p in Store(str(out)).fs.get_file_info(pafs.FileSelector(str(out), recursive=True)):
        if p.path.endswith(".parquet"):
            t = pq.read_table(p.path)
            for col in t.columns:
                if str(col.type) in ("string", "large_string"):
                    seen |= set(col.to_pylist())
                elif str(col.type).startswith("list<") and "string" in str(col.type):
                    seen |= {x for v in col.to_pylist() for x in (v or [])}
    seen |= set(faces_index.FaceIndex.load(out).ids.values())
    return seen


def test_refresh_enroll_corrections_survive_reindexing_and_forget(tmp_path):
    out = str(tmp_path)
    write_index(out, {"v1": [("a1", 0, 5, near(A, 0.2, 1)), ("b1", 0, 9, near(B, 0.2, 2))],
                      "v2": [("a2", 3, 8, near(A, 0.2, 3)), ("b2", 10, 12, near(B, 0.2, 4))]})
    r = people.refresh(out)
    assert r.changed and r.people == 2 and r.tracks == 4
    commit = Store(out).read_manifest()["commit"]
    assert not people.refresh(out).changed and Store(out).read_manifest()["commit"] == commit  # no-op rerun

    # enrol A from two "photos"
    faces = [people.PhotoFace("alice1.jpg", 0, [0, 0, 9, 9], near(A, 0.3, 5)),
             people.PhotoFace("alice2.jpg", 0, [0, 0, 9, 9], near(A, 0.3, 6))]
    r = people.enroll(out, "Alice", faces)
    ident, ppl = people.load(out)
    pid = dict(zip(ident["track_id"].to_pylist(), ident["person_id"].to_pylist()))
    assert r.named == {"Alice": [pid["a1"]]}
    b_id = pid["b1"]

    # split b2 off, name it; then "re-index" with a new video holding B and C
    people.correct(out, "split", [b_id], tracks=["b2"])
    ident, _ = people.load(out)
    people.correct(out, "rename", [ident.filter(pc.equal(ident["track_id"], "b2"))["person_id"][0].as_py()],
                   name="Bob junior")
    write_index(out, {"v3": [("b3", 0, 4, near(B, 0.2, 7)), ("c1", 0, 4, near(C, 0.2, 8))]})
    r = people.refresh(out)
    assert r.changed and r.people == 4
    ident, ppl = people.load(out)
    pid = dict(zip(ident["track_id"].to_pylist(), ident["person_id"].to_pylist()))
    assert pid["b3"] == pid["b1"] == b_id  # ids stable; the new track joined B
    assert pid["b2"] not in (b_id, pid["a1"], pid["c1"])
    names = dict(zip(ppl["person_id"].to_pylist(), ppl["name"].to_pylist()))
    assert names[pid["b2"]] == "Bob junior" and names[pid["a1"]] == "Alice" and names[b_id] is None

    # merge Bob junior back into B, by name and id; persists across a forced rebuild
    people.correct(out, "merge", [b_id, "bob junior"])
    people.refresh(out, force=True)
    ident, _ = people.load(out)
    pid = dict(zip(ident["track_id"].to_pylist(), ident["person_id"].to_pylist()))
    assert pid["b1"] == pid["b2"] == pid["b3"] == b_id
    with pytest.raises(people.PeopleError, match="already one person"):
        people.correct(out, "merge", [b_id, b_id])
    with pytest.raises(people.PeopleError, match="every track"):
        people.correct(out, "split", [b_id], tracks=["b1", "b2", "b3"])
    with pytest.raises(people.PeopleError, match="do not belong"):
        people.correct(out, "split", [b_id], tracks=["c1"])

    # forget Alice: gone from every table, the FAISS index, the gallery and the query
    assert {"a1", "a2"} <= _tracks_everywhere(out)
    res = forget(out, "alice")
    assert res.tracks == 2 and res.gallery_photos == 2 and res.names == ["Alice"] and res.videos == ["v1", "v2"]
    assert res.detections == 10 and res.segments == 2
    assert not {"a1", "a2"} & _tracks_everywhere(out)
    assert "Alice" not in _tracks_everywhere(out)
    assert set(read_index_table(out, "face_tracks")["track_id"].to_pylist()) == {"b1", "b2", "b3", "c1"}
    assert faces_index.FaceIndex.load(out).meta.count == 4
    videos = read_index_table(out, "videos")
    assert dict(zip(videos["video_id"].to_pylist(), videos["tracks"].to_pylist())) == {"v1": 1, "v2": 1, "v3": 2}
    eng = QueryEngine(out)
    assert eng.search(Query(face=near(A, 0.3, 5))) == []
    with pytest.raises(QueryError, match="no person"):
        eng.search(Query(person="Alice"))
    with pytest.raises(people.PeopleError, match="no person"):
        forget(out, "alice")
    assert not people.refresh(out).changed  # forget left a consistent index behind
