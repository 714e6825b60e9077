"""People: ``vidx reindex``, ``vidx enroll``, ``vidx people``, ``vidx forget``."""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path

from vidx.jobs.cli.parsing import _face_options
from vidx.jobs.cli.faces import _engine

log = logging.getLogger("vidx")


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


def add_parsers(sub) -> None:
    """The subcommands reindex, enroll, people, forget."""
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
    fg = sub.add_parser("forget", help="remove a person from the index: tracks, detections, thumbnails, "
                        "gallery photos and vectors",
                        description="Remove every trace of a person from OUT: their face tracks, detections, "
                        "thumbnails, enrolled photos and vectors, and the older table versions that held them "
                        "(time travel to those versions ends). The face index and people are rebuilt. "
                        "Cannot be undone.")
    fg.add_argument("out", metavar="OUT", help="index folder or URI")
    fg.add_argument("--person", required=True, metavar="NAME|ID", help="the person's name or id")
    fg.set_defaults(func=cmd_forget)
