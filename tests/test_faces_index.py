"""The FAISS face index on synthetic embeddings: exact and IVF-PQ, shards, removal, metadata."""

from __future__ import annotations

import numpy as np
import pytest

from vidx.indexing.faces_index import FaceIndex, FaceIndexError, track_hash


def clustered(n_people=50, per=20, dim=128, seed=0):
    """Synthetic 'people': a centre each, tracks scattered around it (raw-scale vectors)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_people, dim)).astype(np.float32)
    x = np.repeat(centres, per, 0) + 0.15 * rng.normal(size=(n_people * per, dim)).astype(np.float32)
    ids = [f"p{i // per}-t{i % per}" for i in range(len(x))]
    return x * 0.12, ids, centres * 0.12


def test_track_hash_is_stable_and_positive():
    h = track_hash(["a", "b", "a"])
    assert h[0] == h[2] != h[1] and (h >= 0).all()


@pytest.mark.parametrize("exact_below,codec", [(10**9, ""), (100, "SQ8"), (100, "PQ16x8")])
def test_search_finds_the_same_person(tmp_path, exact_below, codec):
    x, ids, centres = clustered()
    idx = FaceIndex.build(x, ids, exact_below=exact_below, shard_size=300, codec=codec or "SQ8")
    assert idx.meta.kind == ("exact" if exact_below > len(x) else "ivf")
    assert idx.meta.count == len(x)  # three shards merged
    idx.save(tmp_path)
    idx = FaceIndex.load(tmp_path)
    sims, found = idx.search(centres[[3, 17]], k=10)
    assert all(t.startswith("p3-") for t in found[0]) and all(t.startswith("p17-") for t in found[1])
    assert sims.shape == (2, 10) and sims[0, 0] > 0.9


def test_remove_and_metadata_checks(tmp_path):
    x, ids, centres = clustered(n_people=5, per=4)
    idx = FaceIndex.build(x, ids)
    assert idx.remove([t for t in ids if t.startswith("p2-")]) == 4
    _, found = idx.search(centres[2:3], k=20)
    assert not any(t.startswith("p2-") for t in found[0]) and idx.meta.count == 16
    idx.save(tmp_path)
    with pytest.raises(FaceIndexError, match="built with embedder 'dlib_resnet_v1'"):
        FaceIndex.load(tmp_path, embedder="arcface")
    with pytest.raises(FaceIndexError, match="no face index"):
        FaceIndex.load(tmp_path / "empty")
    with pytest.raises(FaceIndexError, match="dimensions"):
        idx.search(np.zeros((1, 64)))


def test_refresh_builds_from_face_tracks_and_names_it_in_the_manifest(tmp_path):
    import pyarrow as pa

    from vidx.indexing import schemas
    from vidx.indexing.people import refresh
    from vidx.indexing.store import Store
    from vidx.indexing.tables import IndexTable, write_part

    x, ids, centres = clustered(n_people=3, per=2)
    tracks = pa.table({
        # one after another: tracks on screen together would be different people
        "track_id": ids, "video_id": ["v"] * len(ids), "start_s": [2.0 * i for i in range(len(ids))],
        "end_s": [2.0 * i + 1 for i in range(len(ids))],
        "detections": pa.array([1] * len(ids), pa.int32()),
        "embedding": pa.FixedSizeListArray.from_arrays(x.ravel(), 128),
        "thumbnail": [b""] * len(ids), "thumbnail_t": [0.0] * len(ids), "segments": [[t] for t in ids],
        "quality": [1.0] * len(ids),
    }, schema=schemas.FACE_TRACKS)
    store = Store(str(tmp_path))
    IndexTable(store, "face_tracks").create().commit([write_part(store, "face_tracks", tracks, "v")])
    store.write_manifest({"schema_version": schemas.SCHEMA_VERSION, "commit": 1, "videos": {"v": {}}})
    res = refresh(str(tmp_path))
    assert res.tracks == 6 and res.people == 3 and store.read_manifest()["faces_index"]["kind"] == "exact"
    # named by the version of the face_tracks table it was built from (created: 0, its parts: 1)
    assert store.read_manifest()["faces_index"]["face_tracks_version"] == 1
    assert FaceIndex.load(tmp_path).meta.face_tracks_version == 1
    _, found = FaceIndex.load(tmp_path).search(centres[1:2], k=2)
    assert sorted(found[0]) == ["p1-t0", "p1-t1"]
