"""``vidx eval``: an index's answers measured against a truth file written by eye.

Truth CSV (lines starting with ``#`` are comments), one row per interval::

    video,person,action,start_s,end_s[,hard][,x_min,x_max]

``video``: a file name or a path suffix of an indexed video.  ``person``: who is on screen (an
enrolled name, or any label for someone not named); ``action``: a label of the action models
(alone: what the scene shows; with a person: what that person does, scored against vidx's
per-person actions).  Times are seconds on vidx's clock: from the video's first frame, as
a player shows them.  ``hard`` = 1: the person is there but the face is small, beyond profile or
hidden: not counted in recall, and reporting the person there is not false.  ``x_min``/``x_max``
(0-1 across the frame): where the face's centre is, for people on screen together; a track is
attributed to the one person whose rows cover its times and its mean face centre, and those
tracks are what B-cubed clustering precision and recall are measured over.

People: a truth person with an enrolled name is vidx's people of that name; any other is the vidx
person (not named for another) that covers most of its seconds, one to one, largest overlaps
first.  A track covers its sampled span held until the next sample (``1 / faces.sample_fps``).
Recall: the person's true seconds (not hard) that vidx reports; false seconds: seconds vidx
reports for the person where the truth does not have them, in any video the truth file lists.
Identity, as multi-object tracking measures it (``motmetrics``' definitions, the MOTChallenge
ones): at every sampled time of each truth video, the truth people present (not hard) are the
ground-truth objects and the faces vidx tracked there are the hypotheses, labelled by their face
track; a face matches a person when its centre lies in the person's x_min..x_max band.  Faces inside
a hard row only (no other row covers them) are left out, as MOTChallenge leaves out distractors.
IDF1, ID precision and ID recall (the best one-to-one mapping of people to tracks over the whole
video), identity switches (a person's track changes) and transfers (a track goes from one person to
another), over all truth videos.  Purity: per track, the share of its faces (one per sampled time)
that belong to its majority person, by time and face position.  The same measures by person
(``identity["people"]``): each face labelled by the person vidx gives its track to, as a user
sees it; a track that restarts on the same person is a track switch but no person switch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from vidx.indexing import people as people_mod
from vidx.indexing.store import Store
from vidx.indexing.tables import read_index_table
from vidx.configs.errors import TruthError  # noqa: F401 - defined there, raised here

STEP_S = 0.02  # the time grid seconds are counted on
IOU = 0.5  # temporal IoU an action segment needs to match a truth segment
REQUIRED = ("video", "start_s", "end_s")


@dataclass
class TruthRow:
    line: int
    video_id: str
    person: str | None
    action: str | None
    start: float
    end: float
    hard: bool
    x_min: float
    x_max: float


def read_truth(path: str, videos: pa.Table) -> list[TruthRow]:
    """Parse and check a truth CSV against an index's videos; errors name the line."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise TruthError(f"cannot read truth file {path}: {e.strerror or e}") from None
    numbered = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")]
    if not numbered:
        raise TruthError(f"{path}: no header and no rows")
    text = "\n".join(ln for _, ln in numbered).encode()
    try:
        table = pcsv.read_csv(io.BytesIO(text), convert_options=pcsv.ConvertOptions(
            column_types={c: pa.string() for c in ("video", "person", "action", "start_s", "end_s", "hard",
                                                   "x_min", "x_max")}, strings_can_be_null=True))
    except pa.ArrowInvalid as e:
        raise TruthError(f"{path}: not a CSV vidx can read ({e})") from None
    cols = set(table.column_names)
    missing = [c for c in REQUIRED if c not in cols]
    if missing or not cols & {"person", "action"}:
        need = missing + ([] if cols & {"person", "action"} else ["person or action"])
        raise TruthError(f"{path}: missing column(s) {', '.join(need)} (header: {','.join(table.column_names)}; "
                         f"expected video,person,start_s,end_s with optional action, hard, x_min, x_max)")
    paths = videos["path"].to_pylist()
    ids = videos["video_id"].to_pylist()
    rows = []
    for k, r in enumerate(table.to_pylist()):
        line = numbered[k + 1][0]
        where = f"{path}:{line}"
        vid = _match_video(r["video"], paths, ids, where)
        person, action = (r.get("person") or "").strip() or None, (r.get("action") or "").strip() or None
        if not person and not action:
            raise TruthError(f"{where}: give a person, an action, or both (what that person does), got neither")
        start, end = _num(r["start_s"], "start_s", where), _num(r["end_s"], "end_s", where)
        if end <= start:
            raise TruthError(f"{where}: end_s {end:g} is not after start_s {start:g}")
        if start < 0:
            raise TruthError(f"{where}: start_s {start:g} is negative (times count from the first frame)")
        hard = (r.get("hard") or "0").strip().lower() in ("1", "true", "yes")
        x0 = _num(r.get("x_min") or "0", "x_min", where)
        x1 = _num(r.get("x_max") or "1", "x_max", where)
        if not 0 <= x0 < x1 <= 1:
            raise TruthError(f"{where}: x_min/x_max must satisfy 0 <= x_min < x_max <= 1, got {x0:g}, {x1:g}")
        rows.append(TruthRow(line, vid, person, action, start, end, hard, x0, x1))
    if not rows:
        raise TruthError(f"{path}: a header but no rows")
    return rows


def _num(v: str | None, col: str, where: str) -> float:
    try:
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TruthError(f"{where}: {col} must be a number of seconds (or a fraction), got {v!r}") from None
    if not math.isfinite(x):
        raise TruthError(f"{where}: {col} must be finite, got {v!r}")
    return x


def _match_video(name: str | None, paths: list[str], ids: list[str], where: str) -> str:
    if not name:
        raise TruthError(f"{where}: the video column is empty")
    name = name.strip().replace("\\", "/")
    hits = [i for p, i in zip(paths, ids) if p == name or p.endswith("/" + name.lstrip("/")) or i == name]
    if len(set(hits)) == 1:
        return hits[0]
    if not hits:
        known = sorted(posixpath.basename(p) for p in paths)
        raise TruthError(f"{where}: no indexed video is {name!r} (indexed: {', '.join(known[:12])}"
                         f"{' ...' if len(known) > 12 else ''})")
    raise TruthError(f"{where}: {name!r} names {len(set(hits))} indexed videos; give more of its path")


# ---------------------------------------------------------------------------- the report


@dataclass
class PersonScore:
    person: str
    named: bool  # the truth person is an enrolled (or manual) name in the index
    matched: list[str]  # vidx person ids
    true_s: float
    found_s: float
    reported_s: float
    false_s: float

    @property
    def recall(self) -> float | None:
        return self.found_s / self.true_s if self.true_s else None

    @property
    def precision(self) -> float | None:
        return (self.reported_s - self.false_s) / self.reported_s if self.reported_s else None


@dataclass
class ActionScore:
    label: str
    truth: int
    predicted: int
    matched: int

    @property
    def precision(self) -> float | None:
        return self.matched / self.predicted if self.predicted else None

    @property
    def recall(self) -> float | None:
        return self.matched / self.truth if self.truth else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p and r else (0.0 if p is not None and r is not None else None)


@dataclass
class Report:
    people: list[PersonScore] = field(default_factory=list)
    overlapping: list[dict[str, Any]] = field(default_factory=list)  # tracks of one person overlapping in time
    mixed: list[dict[str, Any]] = field(default_factory=list)  # tracks whose faces belong to two truth people
    bcubed: dict[str, Any] = field(default_factory=dict)
    actions: list[ActionScore] = field(default_factory=list)
    actions_indexed: bool = True  # False: the index was built with --no-actions (action rows not scored)
    person_actions: list[ActionScore] = field(default_factory=list)  # rows with a person and an action
    # recall by face quality: the tracks the truth gives to one person, by the track's quality
    by_quality: list[dict[str, Any]] = field(default_factory=list)
    # identity (multi-object tracking): IDF1, IDP, IDR, switches, transfers, purity (see the module doc)
    identity: dict[str, Any] = field(default_factory=dict)

    def totals(self, named_only: bool = False) -> dict[str, Any]:
        ps = [p for p in self.people if p.named or not named_only]
        t = sum(p.true_s for p in ps)
        f = sum(p.found_s for p in ps)
        rep = sum(p.reported_s for p in ps)
        fa = sum(p.false_s for p in ps)
        return {"people": len(ps), "true_s": round(t, 2), "found_s": round(f, 2), "recall": _r(f / t if t else None),
                "reported_s": round(rep, 2), "false_s": round(fa, 2),
                "false_ratio": _r(fa / t if t else None), "precision": _r((rep - fa) / rep if rep else None)}

    def action_totals(self) -> dict[str, Any]:
        s = ActionScore("all", sum(a.truth for a in self.actions), sum(a.predicted for a in self.actions),
                        sum(a.matched for a in self.actions))
        return {"truth": s.truth, "predicted": s.predicted, "matched": s.matched, "precision": _r(s.precision),
                "recall": _r(s.recall), "f1": _r(s.f1)}

    def to_dict(self) -> dict[str, Any]:
        return {
            "people": [{**asdict(p), "recall": _r(p.recall), "precision": _r(p.precision),
                        "true_s": round(p.true_s, 2), "found_s": round(p.found_s, 2),
                        "reported_s": round(p.reported_s, 2), "false_s": round(p.false_s, 2)} for p in self.people],
            "totals": self.totals(), "named": self.totals(named_only=True),
            "overlapping_tracks": self.overlapping, "mixed_tracks": self.mixed, "bcubed": self.bcubed,
            "actions": [{**asdict(a), "precision": _r(a.precision), "recall": _r(a.recall), "f1": _r(a.f1)}
                        for a in self.actions],
            "action_totals": self.action_totals() if self.actions else None,
            "actions_indexed": self.actions_indexed,
            "person_actions": [{**asdict(a), "precision": _r(a.precision), "recall": _r(a.recall), "f1": _r(a.f1)}
                               for a in self.person_actions],
            "by_quality": self.by_quality,
            "identity": self.identity,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def evaluate(out: str, truth_path: str) -> Report:
    store = Store(out)
    m = store.require_manifest()
    videos = read_index_table(out, "videos")
    rows = read_truth(truth_path, videos)
    duration = dict(zip(videos["video_id"].to_pylist(), videos["duration_s"].to_pylist()))
    report = Report()
    person_rows = [r for r in rows if r.person and not r.action]
    if person_rows:
        _people(out, m, rows, person_rows, duration, report)
    action_rows = [r for r in rows if r.action and not r.person]
    both = [r for r in rows if r.person and r.action]
    report.actions_indexed = bool(((m.get("config") or {}).get("actions") or {}).get("enabled", True))
    if action_rows and report.actions_indexed:
        report.actions = _actions(read_index_table(out, "action_segments"), action_rows)
    if both and report.actions_indexed:
        report.person_actions = _person_actions(out, both, report)
    return report


def _person_actions(out: str, rows: list[TruthRow], report: Report) -> list[ActionScore]:
    """What each truth person does (rows with a person and an action) against the per-person
    actions of the vidx people matched to them, per label, at temporal IoU >= 0.5."""
    identities, _ = people_mod.load(out)
    person_of = dict(zip(identities["track_id"].to_pylist(), identities["person_id"].to_pylist()))
    matched = {p.person: set(p.matched) for p in report.people}
    pa_rows = read_index_table(out, "person_actions").to_pylist()
    scores = []
    for who in sorted({r.person for r in rows}):
        mine = [r for r in rows if r.person == who]
        theirs = [x for x in pa_rows if person_of.get(x["track_id"]) in matched.get(who, ())]
        segs = pa.table({k: [x[k] for x in theirs] for k in ("video_id", "start_s", "end_s", "label")},
                        schema=pa.schema([("video_id", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                                          ("label", pa.string())]))
        for a in _actions(segs, mine):
            a.label = f"{who}: {a.label}"
            scores.append(a)
    return scores


def _grid(d: float) -> int:
    return max(1, int(math.ceil(d / STEP_S)))


def _mask(n: int, start: float, end: float) -> tuple[int, int]:
    return max(0, int(round(start / STEP_S))), min(n, int(round(end / STEP_S)))


def _people(out: str, m: dict, rows: list[TruthRow], person_rows: list[TruthRow], duration: dict[str, float],
            report: Report) -> None:
    identities, people = people_mod.load(out)
    tracks = read_index_table(out, "face_tracks").select(["track_id", "video_id", "start_s", "end_s", "segments"])
    fps = float(((m.get("config") or {}).get("faces") or {}).get("sample_fps") or 2.0)
    hold = 1.0 / fps
    con = duckdb.connect()
    con.register("tracks", tracks)
    con.register("identities", identities)
    con.register("people", people.select(["person_id", "name"]))
    vids = sorted({r.video_id for r in rows})
    con.register("truth_videos", pa.table({"video_id": vids}))

    # tracks of one person that overlap in time (any video)
    report.overlapping = [dict(zip(("person_id", "name", "video_id", "track_a", "track_b", "overlap_s"), r)) for r in
                          con.execute("""
        SELECT i.person_id, p.name, a.video_id, a.track_id, b.track_id,
               round(least(a.end_s, b.end_s) - greatest(a.start_s, b.start_s), 3)
        FROM tracks a JOIN identities i ON i.track_id = a.track_id JOIN people p ON p.person_id = i.person_id
        JOIN identities j ON j.person_id = i.person_id AND j.track_id > a.track_id
        JOIN tracks b ON b.track_id = j.track_id AND b.video_id = a.video_id
             AND a.start_s <= b.end_s AND b.start_s <= a.end_s
        ORDER BY 1, 3, 4, 5""").fetchall()]

    # time grids: truth (present / hard) per person, coverage per vidx person, per video
    names_t = sorted({r.person for r in person_rows})
    n_of = {v: _grid(float(duration.get(v) or max(r.end for r in rows if r.video_id == v))) for v in vids}
    present = {v: np.zeros((len(names_t), n_of[v]), bool) for v in vids}
    counted = {v: np.zeros((len(names_t), n_of[v]), bool) for v in vids}
    ti = {p: k for k, p in enumerate(names_t)}
    for r in person_rows:
        a, b = _mask(n_of[r.video_id], r.start, r.end)
        present[r.video_id][ti[r.person], a:b] = True
        if not r.hard:
            counted[r.video_id][ti[r.person], a:b] = True
    cov_rows = con.execute("""SELECT i.person_id, t.video_id, t.start_s, t.end_s FROM tracks t
        JOIN identities i USING (track_id) WHERE t.video_id IN (SELECT video_id FROM truth_videos)""").fetchall()
    pids = sorted({r[0] for r in cov_rows})
    pi = {p: k for k, p in enumerate(pids)}
    cover = {v: np.zeros((len(pids), n_of[v]), bool) for v in vids}
    for pid, v, s, e in cov_rows:
        a, b = _mask(n_of[v], s, min(e + hold, duration.get(v) or e + hold))
        cover[v][pi[pid], a:max(b, a + 1)] = True

    # match truth people to vidx people: by name, then by overlap (one to one, largest first)
    by_name: dict[str, list[str]] = {}
    for pid, name in zip(people["person_id"].to_pylist(), people["name"].to_pylist()):
        if name:
            by_name.setdefault(name.casefold(), []).append(pid)
    matched: dict[str, list[str]] = {}
    named = {p for p in names_t if p.casefold() in by_name}
    taken = set()
    for p in named:
        matched[p] = [q for q in by_name[p.casefold()] if q in pi] or by_name[p.casefold()]
        taken.update(matched[p])
    overlap = np.zeros((len(names_t), len(pids)))
    for v in vids:
        overlap += counted[v].astype(np.float32) @ cover[v].T.astype(np.float32)
    for k in np.argsort(-overlap, axis=None):
        t, q = np.unravel_index(k, overlap.shape)
        if overlap[t, q] <= 0:
            break
        p = names_t[t]
        if p in matched or pids[q] in taken:
            continue
        matched[p] = [pids[q]]
        taken.add(pids[q])
    for p in names_t:
        ms = [q for q in matched.get(p, []) if q in pi]
        true_s = found = reported = false = 0.0
        for v in vids:
            c = cover[v][[pi[q] for q in ms]].any(0) if ms else np.zeros(n_of[v], bool)
            true_s += counted[v][ti[p]].sum()
            found += (c & counted[v][ti[p]]).sum()
            reported += c.sum()
            false += (c & ~present[v][ti[p]]).sum()
        report.people.append(PersonScore(p, p in named, matched.get(p, []), true_s * STEP_S, found * STEP_S,
                                         reported * STEP_S, false * STEP_S))
    report.people.sort(key=lambda s: (not s.named, s.person))
    att = attribute_tracks(out, person_rows, con)  # read once: B-cubed and recall by quality share it
    report.bcubed = _bcubed(att)
    report.mixed = mixed_tracks(out, person_rows)
    report.by_quality = _by_quality(att, identities, matched, named, hold)
    faces = _faces_by_video(out, {r.video_id for r in person_rows})
    report.identity = identity_measures(out, person_rows, fps, faces)
    # the same by person: what a user sees is the person a face is given to, not its track, so a
    # track that restarts on the same person is no error there, and a person credited with another's
    # face is
    person_of = dict(zip(identities["track_id"].to_pylist(), identities["person_id"].to_pylist()))
    by_person = {v: (t, x, [person_of.get(k) or k for k in ks]) for v, (t, x, ks) in faces.items()}
    p = identity_measures(out, person_rows, fps, by_person)
    report.identity["people"] = {k: p.get(k) for k in ("idf1", "idp", "idr", "switches", "transfers")} | {
        "people": p.get("tracks"), "pure_people": p.get("pure_tracks"), "purity_min": p.get("purity_min"),
        "impure": p.get("impure", []),
        # where a truth person's faces went to another vidx person: the videos to look at first
        "by_video": [v for v in p.get("by_video", []) if v["switches"] or v["transfers"]]}


QUALITY_BINS = (0.0, 0.15, 0.25, 0.5, 1.0)  # track quality; people.min_quality (0.25) is an edge


def _by_quality(att: dict[str, tuple[str, str]], identities: pa.Table, matched: dict[str, list[str]],
                named: set[str], hold: float) -> list[dict[str, Any]]:
    """Recall by face quality: of the tracks the truth gives to one person (by time and face
    position), the seconds that went to that person's vidx person, by the track's quality (where
    the hard faces are lost). A named truth person's vidx person is the one of that name; anyone
    else's is the vidx person holding most of their tracks' seconds (by position, so two people on
    screen at the same times are told apart). ``att``: :func:`attribute_tracks`."""
    if not att:
        return []
    tid = identities["track_id"].to_pylist()
    q = dict(zip(tid, identities["quality"].to_pylist()))
    span = dict(zip(tid, (e - s + hold for s, e in zip(identities["start_s"].to_pylist(),
                                                       identities["end_s"].to_pylist()))))
    held: dict[str, dict[str, float]] = {}
    for t, (who, pid) in att.items():
        held.setdefault(who, {}).setdefault(pid, 0.0)
        held[who][pid] += span[t]
    home = {who: matched.get(who, []) if who in named else [max(h, key=lambda p: (h[p], p))]
            for who, h in held.items()}
    tracks = list(att)
    bins = np.digitize([q.get(t) or 0.0 for t in tracks], QUALITY_BINS[1:-1])  # the top bin holds quality 1
    rows = []
    for k, (lo, hi) in enumerate(zip(QUALITY_BINS[:-1], QUALITY_BINS[1:])):
        ts = [t for t, b in zip(tracks, bins) if b == k]
        sec = sum(span[t] for t in ts)
        found = sum(span[t] for t in ts if att[t][1] in home[att[t][0]])
        rows.append({"quality": f"{lo:.2f}-{hi:.2f}", "tracks": len(ts), "seconds": round(sec, 2),
                     "found_s": round(found, 2), "recall": _r(found / sec if sec else None)})
    return rows


def attribute_tracks(out: str, person_rows: list[TruthRow], con: duckdb.DuckDBPyConnection | None = None
                     ) -> dict[str, tuple[str, str]]:
    """track_id -> (truth person, vidx person) for the tracks the truth attributes to one person:
    the one person whose rows (hard ones too) cover the track's times and its mean face centre."""
    con = con or duckdb.connect()
    identities, _ = people_mod.load(out)
    con.register("ids_", identities.select(["track_id", "person_id"]))
    con.register("tracks_", read_index_table(out, "face_tracks").select(["track_id", "video_id", "start_s", "end_s",
                                                                         "segments"]))
    con.register("dets", read_index_table(out, "face_detections").select(["video_id", "segment_id", "x1", "x2"]))
    con.register("videos_", read_index_table(out, "videos").select(["video_id", "width"]))
    con.register("tv_", pa.table({"video_id": sorted({r.video_id for r in person_rows})}))
    rows = con.execute("""
        WITH seg AS (SELECT segment_id, avg((x1 + x2) / 2) AS cx, count(*) AS n FROM dets
                     WHERE segment_id IS NOT NULL GROUP BY 1),
             ts AS (SELECT t.track_id, t.video_id, t.start_s, t.end_s, unnest(t.segments) AS segment_id
                    FROM tracks_ t WHERE t.video_id IN (SELECT video_id FROM tv_))
        SELECT ts.track_id, ts.video_id, any_value(ts.start_s), any_value(ts.end_s),
               sum(seg.cx * seg.n) / sum(seg.n) / any_value(v.width), any_value(i.person_id)
        FROM ts JOIN seg USING (segment_id) JOIN videos_ v ON v.video_id = ts.video_id
        JOIN ids_ i ON i.track_id = ts.track_id
        GROUP BY 1, 2""").fetchall()
    out_: dict[str, tuple[str, str]] = {}
    for tid, vid, s, e, x, pid in rows:
        cands = {r.person for r in person_rows
                 if r.video_id == vid and r.start < e + 1e-6 and s < r.end + 1e-6 and r.x_min <= x < r.x_max}
        if len(cands) == 1:
            out_[tid] = (cands.pop(), pid)
    return out_


def _faces_by_video(out: str, vids: set[str]) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """video -> (times, face centres 0-1 across the frame, track ids) of its tracked faces."""
    videos = read_index_table(out, "videos").select(["video_id", "width"])
    width = dict(zip(videos["video_id"].to_pylist(), videos["width"].to_pylist()))
    dets = read_index_table(out, "face_detections").select(["video_id", "t", "x1", "x2", "segment_id"])
    tracks = read_index_table(out, "face_tracks").select(["track_id", "segments"])
    seg_track = {sg: t for t, sgs in zip(tracks["track_id"].to_pylist(), tracks["segments"].to_pylist()) for sg in sgs}
    out_: dict[str, tuple[list, list, list]] = {}
    for vid, t, x1, x2, sg in zip(*(dets[c].to_pylist() for c in ("video_id", "t", "x1", "x2", "segment_id"))):
        if sg is None or vid not in vids:
            continue
        o = out_.setdefault(vid, ([], [], []))
        o[0].append(t)
        o[1].append((x1 + x2) / 2 / (width.get(vid) or 1))
        o[2].append(seg_track.get(sg, sg))
    return {v: (np.asarray(a, np.float64), np.asarray(b, np.float64), c) for v, (a, b, c) in out_.items()}


def identity_measures(out: str, person_rows: list[TruthRow], sample_fps: float,
                      faces: dict[str, tuple[np.ndarray, np.ndarray, list[str]]] | None = None) -> dict[str, Any]:
    """IDF1, IDP, IDR, identity switches and transfers (motmetrics), and track purity, over the
    videos ``person_rows`` cover (module doc).  Sampled times: every time a face was tracked, and
    the sample grid (1 / sample_fps) where none was, so a person nobody tracked counts as missed."""
    import motmetrics as mm

    by_video: dict[str, list[TruthRow]] = {}
    for r in person_rows:
        by_video.setdefault(r.video_id, []).append(r)
    faces = faces if faces is not None else _faces_by_video(out, set(by_video))
    accs, names = [], []
    held: dict[str, dict[str, int]] = {}  # track -> truth person -> faces (purity)
    step = 1.0 / sample_fps
    for vid, rows in sorted(by_video.items()):
        ft, fx, ftr = faces.get(vid, (np.zeros(0), np.zeros(0), []))
        end = max(r.end for r in rows)
        grid = np.arange(0.0, end, step)
        times = np.union1d(np.round(ft, 6), grid[[not len(ft) or np.abs(ft - g).min() > step / 2 for g in grid]]
                           if len(grid) else grid)
        acc = mm.MOTAccumulator(auto_id=False)
        pid = {p: i for i, p in enumerate(sorted({r.person for r in rows}))}  # motmetrics takes numbers
        hid = {t: i for i, t in enumerate(dict.fromkeys(ftr))}
        for fi, t in enumerate(times):
            here = np.flatnonzero(np.abs(ft - t) < 1e-6)
            cover = [r for r in rows if r.start - 1e-6 <= t < r.end - 1e-6]  # [start, end): one person at a cut
            gt = sorted({r.person for r in cover if not r.hard})
            hyp, dist = [], []
            for j in here:
                x = fx[j]
                who = {r.person for r in cover if r.x_min <= x < r.x_max}
                if len(who) == 1:
                    p = next(iter(who))
                    h = held.setdefault(ftr[j], {})
                    h[p] = h.get(p, 0) + 1
                if who and not (who & set(gt)):
                    continue  # a face only a hard row explains: neither found nor false
                if ftr[j] in hyp:
                    continue  # by person: two of one person's tracks at one time (counted by `overlapping`)
                hyp.append(ftr[j])
                dist.append([0.0 if p in who else np.nan for p in gt])
            d = np.asarray(dist, np.float64).T if hyp else np.zeros((len(gt), 0))
            acc.update([pid[p] for p in gt], [hid[h] for h in hyp], d.reshape(len(gt), len(hyp)), frameid=fi)
        accs.append(acc)
        names.append(vid)
    pur = {t: max(h.values()) / sum(h.values()) for t, h in held.items()}
    impure = sorted(((t, p) for t, p in pur.items() if p < 1.0), key=lambda x: x[1])
    res: dict[str, Any] = {"videos": len(names), "tracks": len(pur),
                           "pure_tracks": sum(p == 1.0 for p in pur.values()),
                           "purity_min": _r(min(pur.values())) if pur else None,
                           "purity_mean": _r(float(np.mean(list(pur.values())))) if pur else None,
                           "impure": [{"track_id": t, "purity": _r(p), "people": held[t]} for t, p in impure[:20]]}
    if not accs:
        return res
    mh = mm.metrics.create()
    keys = ["idf1", "idp", "idr", "num_switches", "num_transfer", "num_objects", "num_false_positives", "num_misses"]
    with _quiet_root(mm.metrics.__file__):
        summary = mh.compute_many(accs, metrics=keys, names=names, generate_overall=True)
    overall = summary.loc["OVERALL"]
    res.update({"idf1": _r(overall["idf1"]), "idp": _r(overall["idp"]), "idr": _r(overall["idr"]),
                "switches": int(overall["num_switches"]), "transfers": int(overall["num_transfer"]),
                "objects": int(overall["num_objects"]), "false_positives": int(overall["num_false_positives"]),
                "misses": int(overall["num_misses"]),
                "by_video": [{"video_id": v, "idf1": _r(summary.loc[v, "idf1"]),
                              "switches": int(summary.loc[v, "num_switches"]),
                              "transfers": int(summary.loc[v, "num_transfer"])} for v in names]})
    return res


@contextlib.contextmanager
def _quiet_root(source: str):
    """Drop the root logger's records from ``source`` while the block runs: motmetrics logs its own
    timings ("partials: 0.43 seconds.") at INFO on the root logger, which vidx's CLI shows."""
    class _Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return record.pathname != source

    root, drop = logging.getLogger(), _Drop()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def mixed_tracks(out: str, person_rows: list[TruthRow]) -> list[dict[str, Any]]:
    """Tracks whose detections the truth attributes to more than one person (each detection by
    its time and face centre, where exactly one person's rows cover both): one track, two people."""
    videos = read_index_table(out, "videos").select(["video_id", "width"])
    width = dict(zip(videos["video_id"].to_pylist(), videos["width"].to_pylist()))
    dets = read_index_table(out, "face_detections").select(["video_id", "t", "x1", "x2", "segment_id"])
    tracks = read_index_table(out, "face_tracks").select(["track_id", "segments"])
    seg_track = {sg: t for t, sgs in zip(tracks["track_id"].to_pylist(), tracks["segments"].to_pylist()) for sg in sgs}
    by_video: dict[str, list[TruthRow]] = {}
    for r in person_rows:
        by_video.setdefault(r.video_id, []).append(r)
    seen: dict[str, dict[str, list[float]]] = {}
    for vid, t, x1, x2, sg in zip(*(dets[c].to_pylist() for c in ("video_id", "t", "x1", "x2", "segment_id"))):
        if sg is None or vid not in by_video:
            continue
        x = (x1 + x2) / 2 / (width.get(vid) or 1)
        who = {r.person for r in by_video[vid] if r.start - 1e-6 <= t <= r.end + 1e-6 and r.x_min <= x < r.x_max}
        if len(who) == 1:
            seen.setdefault(seg_track.get(sg, sg), {}).setdefault(who.pop(), []).append(t)
    return [{"track_id": tid, "people": {p: [round(min(ts), 2), round(max(ts), 2)] for p, ts in sorted(who.items())}}
            for tid, who in sorted(seen.items()) if len(who) > 1]


def _bcubed(att: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """B-cubed precision / recall of vidx's people over the tracks the truth attributes to one person
    (``att``: :func:`attribute_tracks`)."""
    tids = sorted(att)
    if not tids:
        return {"tracks": 0, "precision": None, "recall": None, "f1": None}
    lab = np.array([att[t][0] for t in tids])
    clu = np.array([att[t][1] for t in tids])
    same_c = clu[:, None] == clu[None, :]
    same_l = lab[:, None] == lab[None, :]
    both = (same_c & same_l).sum(1)
    p = float((both / same_c.sum(1)).mean())
    r = float((both / same_l.sum(1)).mean())
    return {"tracks": len(tids), "truth_people": len(set(lab.tolist())), "vidx_people": len(set(clu.tolist())),
            "precision": _r(p), "recall": _r(r), "f1": _r(2 * p * r / (p + r) if p + r else 0.0)}


def _actions(segs: pa.Table, action_rows: list[TruthRow]) -> list[ActionScore]:
    vids = {r.video_id for r in action_rows}
    pred = [s for s in segs.select(["video_id", "start_s", "end_s", "label"]).to_pylist() if s["video_id"] in vids]
    labels = sorted({r.action for r in action_rows} | {s["label"] for s in pred})
    out = []
    for lab in labels:
        truth = [r for r in action_rows if r.action.casefold() == lab.casefold()]
        mine = [s for s in pred if s["label"].casefold() == lab.casefold()]
        used: set[int] = set()
        hits = 0
        pairs = []
        for i, s in enumerate(mine):
            for j, t in enumerate(truth):
                if t.video_id != s["video_id"]:
                    continue
                inter = min(s["end_s"], t.end) - max(s["start_s"], t.start)
                union = max(s["end_s"], t.end) - min(s["start_s"], t.start)
                iou = inter / union if union > 0 else 0.0
                if iou >= IOU:
                    pairs.append((iou, i, j))
        done_i: set[int] = set()
        for iou, i, j in sorted(pairs, reverse=True):  # greedy, best overlap first, one to one
            if i in done_i or j in used:
                continue
            done_i.add(i)
            used.add(j)
            hits += 1
        out.append(ActionScore(lab, len(truth), len(mine), hits))
    return out


def format_report(rep: Report) -> str:
    """The human-readable report `vidx eval` prints."""
    lines = ["person                          matched      true_s  found_s  recall  false_s  precision"]
    for p in rep.people:
        who = (p.person[:30] + ("*" if p.named else "")).ljust(31)
        m = (",".join(p.matched) if p.matched else "-")[:12].ljust(12)
        lines.append(f"{who} {m} {p.true_s:7.2f} {p.found_s:8.2f} {_pct(p.recall):>7} {p.false_s:8.2f} "
                     f"{_pct(p.precision):>10}")
    for label, t in (("all", rep.totals()), ("named*", rep.totals(named_only=True))):
        if t["people"]:
            lines.append(f"{label}: recall {_pct(t['recall'])} of {t['true_s']:.2f} s; false {t['false_s']:.2f} s "
                         f"({_pct(t['false_ratio'])} of true); precision {_pct(t['precision'])}")
    b = rep.bcubed
    if b:
        lines.append(f"clustering (B-cubed over {b['tracks']} attributed tracks): precision {_pct(b['precision'])}, "
                     f"recall {_pct(b['recall'])}, F1 {_pct(b['f1'])}")
    if rep.by_quality:
        lines.append("recall by face quality (tracks the truth gives to one person): " + "; ".join(
            f"{b['quality']}: {_pct(b['recall'])} of {b['seconds']:.2f} s ({b['tracks']} tracks)"
            for b in rep.by_quality if b["tracks"]))
    i = rep.identity
    if i.get("idf1") is not None:
        lines.append(f"identity (motmetrics, {i['videos']} videos): IDF1 {_pct(i['idf1'])} (IDP {_pct(i['idp'])}, "
                     f"IDR {_pct(i['idr'])}); switches {i['switches']}, transfers {i['transfers']}; "
                     f"pure tracks {i['pure_tracks']} of {i['tracks']} (lowest purity {_pct(i['purity_min'])})")
        for t in i["impure"][:10]:
            lines.append(f"  {t['track_id']}: purity {_pct(t['purity'])} "
                         + ", ".join(f"{p} {n}" for p, n in sorted(t["people"].items())))
        q = i.get("people") or {}
        if q.get("idf1") is not None:
            lines.append(f"identity by person (each face labelled by its person, not its track): IDF1 {_pct(q['idf1'])} "
                         f"(IDP {_pct(q['idp'])}, IDR {_pct(q['idr'])}); switches {q['switches']}, transfers "
                         f"{q['transfers']}; pure people {q['pure_people']} of {q['people']} (lowest purity "
                         f"{_pct(q['purity_min'])})")
            for t in q["impure"][:10]:
                lines.append(f"  {t['track_id']}: purity {_pct(t['purity'])} "
                             + ", ".join(f"{p} {n}" for p, n in sorted(t["people"].items())))
    lines.append(f"tracks of one person overlapping in time: {len(rep.overlapping)}")
    lines.append(f"tracks holding two people (by the truth's times and face positions): {len(rep.mixed)}")
    for m in rep.mixed[:10]:
        lines.append(f"  {m['track_id']}: " + "; ".join(f"{p} {a:.2f}-{b:.2f} s" for p, (a, b) in m["people"].items()))
    for o in rep.overlapping[:10]:
        lines.append(f"  {o['name'] or o['person_id']}: {o['track_a']} and {o['track_b']} ({o['overlap_s']} s)")
    if not rep.actions_indexed:
        lines.append("actions: not scored (the index was built without actions)")
    if rep.actions:
        lines.append("action                          truth  predicted  matched  precision  recall     F1")
        for a in rep.actions:
            lines.append(f"{a.label[:30].ljust(31)} {a.truth:5d} {a.predicted:10d} {a.matched:8d} "
                         f"{_pct(a.precision):>10} {_pct(a.recall):>7} {_pct(a.f1):>6}")
        t = rep.action_totals()
        lines.append(f"actions (tIoU >= {IOU}): precision {_pct(t['precision'])}, recall {_pct(t['recall'])}, "
                     f"F1 {_pct(t['f1'])}")
    for a in rep.person_actions:
        lines.append(f"person action {a.label}: truth {a.truth}, predicted {a.predicted}, matched {a.matched} "
                     f"(precision {_pct(a.precision)}, recall {_pct(a.recall)}, F1 {_pct(a.f1)})")
    lines.append("* an enrolled name; seconds on vidx's clock (from each video's first frame)")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"
