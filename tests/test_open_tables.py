"""The index's tables are Delta tables that other engines read without vidx: delta-rs + DuckDB
join tracks and action segments; an index of the old layout is refused with a way out."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from synthetic_index import person_vectors, write_index
from vidx.indexing.store import IndexError_, Store
from vidx.indexing.tables import read_index_table

VIDX = f"{sys.prefix}/bin/vidx"


@pytest.fixture
def index_dir(tmp_path):
    out = tmp_path / "idx"
    v = person_vectors(3)
    write_index(out, {"vid1": [("t1", 0.0, 4.0, v[0]), ("t2", 10.0, 14.0, v[1])],
                      "vid2": [("t3", 2.0, 9.0, v[2])]},
                actions={"vid1": [(1.0, 3.0, "talking", 0.9), (20.0, 25.0, "dancing", 0.8)],
                         "vid2": [(0.0, 3.0, "clapping", 0.7)]})
    return out


def test_duckdb_joins_tracks_and_actions_from_the_delta_tables_without_vidx(index_dir):
    # run in a fresh interpreter that never imports vidx: what a user of another engine has
    script = textwrap.dedent(f"""
        import json, sys
        import duckdb
        from deltalake import DeltaTable
        tracks = DeltaTable("{index_dir}/face_tracks").to_pyarrow_dataset()
        actions = DeltaTable("{index_dir}/action_segments").to_pyarrow_dataset()
        rows = duckdb.sql('''
            SELECT t.track_id, a.label, round(least(t.end_s, a.end_s) - greatest(t.start_s, a.start_s), 2) AS overlap
            FROM tracks t JOIN actions a ON a.video_id = t.video_id
             AND a.start_s < t.end_s AND a.end_s > t.start_s
            ORDER BY 1, 2''').fetchall()
        assert "vidx" not in sys.modules
        print(json.dumps(rows))
    """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == [["t1", "talking", 2.0], ["t3", "clapping", 1.0]]


def test_vidx_and_delta_rs_read_the_same_rows(index_dir):
    from deltalake import DeltaTable

    for name in ("videos", "face_tracks", "track_segments", "face_detections", "action_segments"):
        ours = read_index_table(str(index_dir), name)
        theirs = DeltaTable(str(index_dir / name)).to_pyarrow_table()
        key = ours.column_names[:2]
        assert ours.num_rows == theirs.num_rows > 0, name
        assert (ours.select(key).sort_by([(k, "ascending") for k in key]).to_pylist()
                == theirs.select(key).sort_by([(k, "ascending") for k in key]).to_pylist()), name


def test_an_index_of_the_old_layout_is_refused_with_how_to_rebuild(tmp_path):
    out = tmp_path / "old"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"schema_version": 4, "commit": 3, "videos": {}}))
    with pytest.raises(IndexError_, match=r"written by another vidx version \(schema 4, this vidx reads 5\).*"
                                          r"index the videos again into a new folder"):
        Store(str(out)).require_manifest()
    p = subprocess.run([VIDX, "query", str(out), "--person", "x"], capture_output=True, text=True)
    assert p.returncode == 2 and "index the videos again into a new folder" in p.stderr


def test_a_part_is_vidx_s_by_its_name_and_tags_never_by_its_statistics():
    from vidx.indexing.delta_log import FilePart
    from vidx.indexing.tables import chunk_keys, is_own

    mine = FilePart("v1/00002-0123456789ab.parquet", 1, 1, {}, {"video_id": "v1", "chunks": "2-4"})
    assert is_own("face_detections", mine) and chunk_keys(mine) == [("v1", 2), ("v1", 3), ("v1", 4)]
    # a file another engine wrote for one video (its delete or compaction): not vidx's, whatever its statistics
    one = {"minValues": {"video_id": "v1", "chunk": 0}, "maxValues": {"video_id": "v1", "chunk": 1}}
    assert not is_own("face_detections", FilePart("part-00001-0a1b-c000.zstd.parquet", 1, 1, one))
    assert not is_own("face_detections", FilePart("v1/00002-0123456789ab.parquet", 1, 1, one))  # tags dropped
    assert is_own("face_tracks", FilePart("v1-0123456789ab.parquet", 1, 1, {}, {"video_id": "v1"}))
    assert is_own("videos", FilePart("videos-0123456789ab.parquet", 1, 1))
    assert not is_own("videos", FilePart("part-00000-1f2e.parquet", 1, 1))
