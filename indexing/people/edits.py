"""Commands that change people: corrections (``vidx people``) and enrolment (``vidx enroll``), each
followed by a refresh."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.indexing.lease import writes_index
from vidx.indexing.people.corrections import _refuse_not, _refuse_together, _tracks_of
from vidx.indexing.people.files import (
    GALLERY,
    PeopleError,
    _fsl,
    index_space,
    load,
    person_id_for,
    read_corrections,
    read_gallery,
    resolve_people,
    write_corrections,
    write_gallery,
)
from vidx.indexing.people.naming import PhotoFace, photo_warnings
from vidx.indexing.people.refresh import RefreshResult, refresh
from vidx.indexing.store import Store

log = logging.getLogger(__name__)


@writes_index("people")
def correct(out: str, op: str, people_args: list[str], name: str | None = None, video: str | None = None,
            tracks: list[str] | None = None, force: bool = False, check: bool = False) -> RefreshResult | None:
    """Record a correction (merge A B..., split P [--video V | --tracks T...], move P --tracks T...
    (into P), rename P NAME) and refresh.  People may be given by id or name.  A merge or move that
    would put two faces on screen together into one person is refused unless ``force``.  ``check``:
    only refuse (PeopleError) or return None, recording nothing (a page asks before it acts)."""
    store = Store(out)
    identities, people = load(out)
    persons = [resolve_people(people, p) for p in people_args]
    done = read_corrections(store)
    if op == "merge":
        if len(persons) < 2:
            raise PeopleError("merge needs at least two people")
        into = _tracks_of(identities, persons[0])
        rec = {"op": "merge", "into": into, "from": _tracks_of(identities, [p for ps in persons[1:] for p in ps])}
        if not set(rec["from"]) - set(into):
            raise PeopleError("those are already one person")
        if not force:
            _refuse_together(out, into, rec["from"], "merging " + " and ".join(people_args))
        _refuse_not(done, set(into) | set(rec["from"]), "merging " + " and ".join(people_args))
        rec["force"] = force
    elif op == "move":
        if len(persons) != 1 or not tracks:
            raise PeopleError("move needs the person to move tracks into and --tracks TRACK_ID...")
        known = set(identities["track_id"].to_pylist())
        missing = sorted(set(tracks) - known)
        if missing:
            raise PeopleError(f"no track {', '.join(missing)} in this index")
        into = _tracks_of(identities, persons[0])
        moved = [t for t in tracks if t not in set(into)]
        if not moved:
            raise PeopleError(f"those tracks already belong to {people_args[0]}")
        if not force:
            _refuse_together(out, into, moved, f"moving those tracks into {people_args[0]}")
        _refuse_not(done, set(into) | set(moved), f"moving those tracks into {people_args[0]}")
        rec = {"op": "move", "tracks": moved, "into": into, "force": force}
    elif op == "rename":
        rec = {"op": "rename", "tracks": _tracks_of(identities, persons[0]), "name": name or ""}
        if name:
            _refuse_not(done, set(rec["tracks"]), f"naming {people_args[0]} {name}", name)
    elif op == "accept":  # reviewed: the tracks are the person (out of the review queue, kept there)
        if not tracks:
            raise PeopleError("accept needs --tracks TRACK_ID...")
        own = _tracks_of(identities, persons[0])
        missing = sorted(set(tracks) - set(own))
        if missing:
            raise PeopleError(f"track(s) {', '.join(missing)} do not belong to {people_args[0]}")
        rec = {"op": "accept", "tracks": list(tracks), "into": own}
    elif op == "not":  # tracks of a person that are not them, or (name) a person who is not NAME
        own = _tracks_of(identities, persons[0])
        label = people.filter(pc.is_in(people["person_id"], value_set=pa.array(persons[0])))["name"].to_pylist()
        was = next((x for x in label if x), None)
        if tracks:
            missing = sorted(set(tracks) - set(own))
            if missing:
                raise PeopleError(f"track(s) {', '.join(missing)} do not belong to {people_args[0]}")
            anchor = [t for t in own if t not in set(tracks)]
            if not anchor and not (name or was):
                raise PeopleError(f"those are every track of {people_args[0]}: nothing is left to keep them apart "
                                  "from; name who they are not (--name NAME)")
            rec = {"op": "not", "tracks": list(tracks), "anchor": anchor, "name": name or was or "",
                   "was": people_args[0], "person_id": person_id_for(list(tracks), salt="not:")}
        elif name:
            rec = {"op": "not", "tracks": own, "anchor": [], "name": name, "was": people_args[0],
                   "person_id": persons[0][0]}
        else:
            raise PeopleError("not needs --tracks TRACK_ID... (these appearances are not PERSON) or --name NAME "
                              "(PERSON is not NAME)")
    elif op == "split":
        own = identities.filter(pc.is_in(identities["person_id"], value_set=pa.array(persons[0])))
        if video:
            own_v = own.filter(pc.equal(own["video_id"], video))
            if own_v.num_rows == 0:
                raise PeopleError(f"{people_args[0]} has no track in video {video}")
            moved = own_v["track_id"].to_pylist()
        elif tracks:
            missing = sorted(set(tracks) - set(own["track_id"].to_pylist()))
            if missing:
                raise PeopleError(f"track(s) {', '.join(missing)} do not belong to {people_args[0]}")
            moved = list(tracks)
        else:
            raise PeopleError("split needs --video VIDEO_ID or --tracks TRACK_ID...")
        if len(moved) == own.num_rows:
            raise PeopleError(f"that would move every track of {people_args[0]}; nothing to split")
        rec = {"op": "split", "tracks": moved, "person_id": person_id_for(moved, salt="split:")}
    else:
        raise PeopleError(f"unknown correction {op!r}")
    if check:
        return None
    rec["at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    write_corrections(store, read_corrections(store) + [rec])
    return refresh(out)


@writes_index("enroll")
def enroll(out: str, name: str, faces: list[PhotoFace]) -> RefreshResult:
    """Add photos' faces to the gallery under ``name`` (a photo enrolled again is replaced) and
    refresh, which labels the matching people."""
    import os

    if not name.strip():
        raise PeopleError("the name must not be empty")
    store = Store(out)
    sp = index_space(store.require_manifest(f"index videos into it first ('vidx index ... --out {out}')"))
    wrong = sorted({f.embedder for f in faces if f.embedder and f.embedder != sp.model})
    if wrong:
        raise PeopleError(f"{sp.built_with(out)}; these photos were embedded with {', '.join(wrong)}: embed them "
                          f"with {sp.name} (vidx enroll does so by itself)")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    new = pa.table({"name": [name] * len(faces),
                    "photo": [f.photo if f.photo.startswith("upload:") else os.path.abspath(f.photo) for f in faces],
                    "face": pa.array([f.face for f in faces], pa.int32()),
                    "box": pa.FixedSizeListArray.from_arrays(np.asarray([f.box for f in faces], np.float32).ravel(), 4),
                    "embedding": _fsl(np.stack([f.embedding for f in faces]) if faces else np.zeros((0, 128))),
                    "added": [now] * len(faces)}, schema=GALLERY)
    old = read_gallery(store)
    key = pc.binary_join_element_wise(old["name"], old["photo"], pc.cast(old["face"], pa.string()), "\0")
    new_key = pc.binary_join_element_wise(new["name"], new["photo"], pc.cast(new["face"], pa.string()), "\0")
    old = old.filter(pc.invert(pc.is_in(key, value_set=new_key)))
    warnings = photo_warnings(name, faces, old, sp)
    write_gallery(store, pa.concat_tables([old, new]))
    res = refresh(out)
    res.warnings = warnings
    return res
