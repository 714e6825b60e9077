"""Asking the index: ``vidx query`` and ``vidx eval``."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path

from vidx.jobs.cli.parsing import _detector_option, _embedder_option
from vidx.jobs.cli.people import _people_errors, _pick

log = logging.getLogger("vidx")


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


def cmd_eval(args) -> int:
    from vidx.indexing.evaluate import TruthError, evaluate, format_report

    try:
        rep = evaluate(args.out, args.truth)
    except (TruthError, *_people_errors()) as e:
        log.error("vidx eval: %s", e)
        return 2
    print(json.dumps(rep.to_dict(), indent=1) if args.json else format_report(rep))
    return 0


def add_parsers(sub) -> None:
    """The subcommands query, eval."""
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
    ev = sub.add_parser("eval", help="measure an index's people and actions against a truth CSV written by eye",
                        description="Truth rows: video,person,start_s,end_s (optional: action instead of person, "
                        "hard, x_min, x_max); times in seconds from each video's first frame. Reports recall of "
                        "true seconds, false seconds and precision per person, tracks of one person overlapping "
                        "in time, B-cubed clustering precision/recall, and action segment P/R/F1 at tIoU 0.5.")
    ev.add_argument("out", metavar="OUT", help="index folder or URI")
    ev.add_argument("--truth", required=True, metavar="FILE.csv", help="the truth rows (see above)")
    ev.add_argument("--json", action="store_true", help="the report as one JSON object")
    ev.set_defaults(func=cmd_eval)
