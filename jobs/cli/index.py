"""Building and keeping an index: ``vidx index``, ``vidx check [--repair]``, ``vidx vacuum``."""

from __future__ import annotations

import logging
import os
import shlex
import sys
from pathlib import Path

from vidx.jobs.cli.people import _people_errors

log = logging.getLogger("vidx")


def cmd_index(args) -> int:
    from vidx.configs.errors import IndexJobError
    from vidx.indexing.store import IndexError_
    from vidx.configs.config import ConfigError, load_config
    from vidx.jobs.index import run_index
    from vidx.workers.sources import Source

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
    local = [x for x in args.sources if Source.parse(x).local_path is not None]
    missing = [x for x in local if not os.path.exists(x)]
    if missing and len(missing) == len(args.sources):
        log.error("vidx index: no such file or folder: %s", ", ".join(missing))
        return 2
    for x in missing:
        log.warning("vidx index: no such file or folder: %s (reported as failed; the other inputs are indexed)", x)
    fresh = not Source.parse(args.out).remote and not os.path.exists(args.out)  # a local index this run creates
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


def add_parsers(sub) -> None:
    """The subcommands index, check, vacuum."""
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
