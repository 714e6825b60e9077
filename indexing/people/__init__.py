"""People: face tracks clustered across the archive into identities, the gallery of enrolled
names, and the user's corrections, which survive re-indexing.

    OUT/faces.faiss (+ .ids.parquet, .json)        FAISS index of track embeddings
    OUT/faces.shards/                              FAISS shards of the tracks appended since it was written whole
    OUT/faces.vectors                              the embeddings, float32, identities' row order
    OUT/packs/identities.arrow                     identities' narrow columns (Arrow IPC): a server maps it
    OUT/people_basis.json                          the face_tracks parts (and action packs) built from
    OUT/identities/                                Delta table: track_id -> person_id, similarity, track times
    OUT/people/                                    Delta table: one row per person: name, counts, thumbnail track
    OUT/gallery/                                   Delta table: enrolled photos' embeddings, by name (user data)
    OUT/corrections.json                           merge / split / move / rename / accept / not, replayed in order

The package, one module a concern, each using only those above it:

    files        schemas, errors, the files and their readers (load, resolve_people)
    clustering   cannot-links, exact and graph average linkage, the quality rule, stable ids
    corrections  the corrections as array operations, and the checks that refuse contradicting ones
    naming       names from enrolled photos; photo warnings
    assemble     the identities and people tables from an assignment
    resume       a delivery appended: the agglomeration resumed from the people as clusters
    refresh      appended, incremental and full refreshes
    edits        vidx people's corrections and vidx enroll, each followed by a refresh
    review       suggestions, a person's tracks, possibly the same person, the review queue

Everything is importable from ``vidx.indexing.people``.

:func:`refresh` brings the FAISS index, identities and people up to date whenever the tracks,
the gallery, the corrections or the parameters changed (a digest in the manifest says);
``vidx index`` calls it at the end, so a rerun with nothing new changes nothing.  It builds on
what it built.  A delivery of new videos (nothing else changed) is appended: the average
linkage resumed with each nearby person as one cluster (exact from its sum of unit vectors),
only the new rows written (:mod:`.resume`; about 2 s for 1,000 tracks at a million).  Tracks
removed (a video indexed again, a person forgotten) or names and corrections changed: the
people near the changed tracks are clustered again (``_incremental``).  A full clustering runs
on ``force`` (``vidx reindex --full``), new parameters, or when there is nothing to build on.

Who may be one person: two tracks of one video that share a sampled time are two people (a
cannot-link constraint), in the clustering, in every merge it makes, in naming, and in a manual
``people merge`` (refused unless forced).  Only confident tracks (``face_tracks.quality`` >=
``people.min_quality``: big, sharp, frontal enough, seen more than once) form people; a weaker
track joins the person whose centre is nearest when that is below ``cluster_distance``, at least
``people.attach_margin`` nearer than any other person, and no track of that person is on screen
with it; otherwise it stays a person of its own (a photo query still finds it).

Clustering: a k-nearest-neighbour graph from the FAISS index, cut at ``cluster_distance``; each
connected part is clustered by average linkage with the cannot-link pairs at infinite distance
(which average linkage carries into every merged cluster), exactly over every pair in parts up
to ``dense_limit`` tracks, and over the kNN graph in larger ones (:func:`graph_linkage`), whose clusters
that hold a conflicting pair are re-clustered exactly.  One bad track cannot chain two people
together and nothing is quadratic in the archive size.  Person ids are kept across
re-clustering: a new cluster takes the id most of its tracks had.

Corrections are stored as the track ids they were made on, not person ids, so they still apply
when re-indexing renumbers clusters: ``merge`` joins the people holding those tracks (the first keeps its name), ``split``
moves tracks to a person of their own, ``rename`` names the person holding most of the tracks.
Enrolled names label every person whose distance to the name's nearest photos (the mean of the
nearest half, at most 3: one poor photo cannot veto a name) is below ``match_distance``; two
people on screen together never get the same name (the nearer keeps it); a manual name wins
over an enrolled one.
"""


from __future__ import annotations

from vidx.indexing.people.clustering import (  # noqa: F401
    centres,
    cluster,
    co_occurring,
    constrained_linkage,
    graph_linkage,
    people_labels,
    stable_ids,
)
from vidx.indexing.people.corrections import Assignment, on_screen_together, refused_names, replay  # noqa: F401
from vidx.indexing.people.edits import correct, enroll  # noqa: F401
from vidx.indexing.people.files import (  # noqa: F401
    BASIS,
    CORRECTIONS_REL,
    Codes,
    GALLERY,
    IDENTITIES,
    PEOPLE,
    TRACK_COLUMNS,
    VECTORS,
    PeopleError,
    _emb,
    index_space,
    load,
    people_config,
    person_id_for,
    read_basis,
    read_corrections,
    read_gallery,
    read_vectors,
    resolve_people,
    write_corrections,
    write_gallery,
)
from vidx.indexing.people.naming import WEAK_PHOTO, PhotoFace, name_people, nearest_photos, photo_warnings  # noqa: F401
from vidx.indexing.people.refresh import RefreshResult, refresh  # noqa: F401
from vidx.indexing.people.review import (  # noqa: F401
    REVIEW_CANDIDATES,
    REVIEW_MARGIN,
    ReviewQueue,
    Suggestion,
    describe_near,
    near_misses,
    nearest_people,
    person_tracks,
    review_queue,
    similar_people,
    suggestions,
)
