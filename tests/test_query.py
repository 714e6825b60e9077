"""The query engine on a hand-built index with known answers: the time-overlap join with action
segments (touching, nested, disjoint intervals; several actions per track), filters, pages,
and face search by embedding."""

from __future__ import annotations

import pytest

from synthetic_index import near, person_vectors, write_index
from vidx.indexing import people
from vidx.indexing.query import Query, QueryEngine, QueryError

A, B, STRANGER = person_vectors(3, seed=7)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    out = tmp_path_factory.mktemp("idx")
    write_index(out, {
        "va": [("a1", 10, 20, near(A, 0.2, 1)), ("b1", 0, 10, near(B, 0.2, 2)), ("b2", 30, 40, near(B, 0.2, 3))],
        "vb": [("a2", 0, 5, near(A, 0.2, 4))],
    }, actions={
        "va": [(5, 25, "talking", 0.9),          # a1 nested inside it (10 s), b1 half (5 s)
               (20, 30, "waving", 0.6),          # touches a1 at 20 and b2 at 30: no overlap
               (12, 14, "dancing ballet", 0.4),  # nested inside a1 (2 s)
               (35, 50, "clapping", 0.2)],       # b2's last 5 s
        "vb": [(100, 110, "talking", 0.8)],      # disjoint from a2
    })
    people.refresh(str(out))
    eng = QueryEngine(str(out))
    pid = {r["track_id"]: r["person_id"] for r in eng.identities.to_pylist()}
    assert pid["a1"] == pid["a2"] != pid["b1"] == pid["b2"]  # two people across two videos
    return eng, pid


def _acts(row):
    return [(a["label"], a["overlap_s"]) for a in row["actions"]]


def test_person_rows_carry_the_overlapping_actions(engine):
    eng, pid = engine
    rows = eng.search(Query(person_id=pid["a1"]))
    assert [r["track_id"] for r in rows] == ["a1", "a2"]  # by path, then start
    assert _acts(rows[0]) == [("talking", 10.0), ("dancing ballet", 2.0)]  # longest overlap first
    assert rows[1]["actions"] == []  # vb's talking is disjoint
    assert rows[0]["path"] == "/videos/va.mp4" and (rows[0]["start_s"], rows[0]["end_s"]) == (10, 20)


@pytest.mark.parametrize("labels,min_score,expected", [
    (["talking"], 0.0, {"a1": [("talking", 10.0)], "b1": [("talking", 5.0)]}),
    (["waving"], 0.0, {}),  # touching intervals do not overlap
    (["danc"], 0.0, {"a1": [("dancing ballet", 2.0)]}),  # part of a label, any case
    (["CLAPPING"], 0.3, {}),  # below the score
    (["clapping"], 0.1, {"b2": [("clapping", 5.0)]}),
    (["talking", "clapping"], 0.0, {"a1": [("talking", 10.0)], "b1": [("talking", 5.0)], "b2": [("clapping", 5.0)]}),
])
def test_who_was_on_screen_during_an_action(engine, labels, min_score, expected):
    eng, _ = engine
    rows = eng.search(Query(actions=labels, min_score=min_score))
    assert {r["track_id"]: _acts(r) for r in rows} == expected


def test_filters_and_pages(engine):
    eng, pid = engine
    assert [r["track_id"] for r in eng.search(Query(person_id=pid["b1"], actions=["talking"]))] == ["b1"]
    assert [r["track_id"] for r in eng.search(Query(video="vb"))] == ["a2"]
    assert [r["track_id"] for r in eng.search(Query(video="va.mp4", start=25, end=35))] == ["b2"]
    assert [r["track_id"] for r in eng.search(Query(video="va", start=20, end=31))] == ["b2"]  # a1 ends at 20, b2 starts at 30
    page = [r["track_id"] for r in eng.search(Query(video="va", limit=2))]
    rest = [r["track_id"] for r in eng.search(Query(video="va", limit=2, offset=2))]
    assert page + rest == ["b1", "a1", "b2"]
    with pytest.raises(QueryError, match="no indexed video"):
        eng.search(Query(video="nope.mp4"))
    with pytest.raises(QueryError, match="no person with id or name 'Zed'"):
        eng.search(Query(person="Zed"))
    with pytest.raises(QueryError, match="before"):
        eng.search(Query(person_id=pid["a1"], start=5, end=1))


def test_face_search_finds_the_person_and_not_a_stranger(engine):
    eng, pid = engine
    q = near(A, 0.3, 9)
    rows = eng.search(Query(face=q))
    # the order and distances the test computes itself, from the vectors it wrote (nearest first)
    mine = {"a1": near(A, 0.2, 1), "a2": near(A, 0.2, 4)}
    want = {t: float(eng.space.pairwise(q[None], v[None])[0, 0]) for t, v in mine.items()}
    assert [r["track_id"] for r in rows] == sorted(want, key=want.get)
    assert all(abs(r["distance"] - want[r["track_id"]]) < 1e-4 and r["distance"] < 0.6 for r in rows)
    assert eng.search(Query(face=STRANGER)) == []
    assert eng.thumbnail("a1") == b"jpeg:a1"
    assert eng.with_thumbnails(rows[:1])[0]["thumbnail_jpeg_base64"]


def test_concurrent_searches_give_the_sequential_answers(engine):
    from concurrent.futures import ThreadPoolExecutor

    eng, pid = engine
    queries = [Query(face=near(A, 0.3, 9)), Query(person_id=pid["b1"]), Query(actions=["talking"]),
               Query(face=near(B, 0.3, 10)), Query(video="va", start=20, end=31)] * 8
    want = [eng.search(q) for q in queries]
    with ThreadPoolExecutor(8) as pool:  # vidx serve answers requests from a thread pool
        got = list(pool.map(eng.search, queries))
    assert got == want


def test_an_action_word_matching_no_label_is_refused_with_the_closest(engine):
    """The index's action model's labels (recorded in its manifest) and the index's own: a word in
    none of them is a mistake to name, not an empty answer."""
    from vidx.indexing.query import QueryError

    eng, _ = engine
    with pytest.raises(QueryError, match="no action label contains 'swiming'; closest: swimming backstroke"):
        eng.search(Query(actions=["swiming"]))
    assert eng.search(Query(actions=["swimming"])) == []  # a label, just not in this index: no rows
