"""Index job benchmark: a baseline commit's pipeline beside this checkout's, one run, same archive.

    python bench/bench_index.py [--data ../shared/data] [--minutes 10] [--baseline b1c29bb]
                                [--set key=value ...] [--no-profile]

Faces only (actions.enabled=false) unless --set actions.enabled=true; the default config
(SFace, RetinaFace, 2 fps, max side 1280).

* The archive: ``../shared/data/videos`` repeated to at least ``--minutes`` of video, each
  copy made distinct by an ISO-BMFF ``free`` box appended to the file (ignored by every
  demuxer, so the frames are the same and only the content id differs).
* Each pipeline runs ``vidx index`` (``run_index``, local Ray, quiet) in a fresh Python
  process: the baseline from a ``git worktree`` of ``--baseline``, the new one from this
  checkout.  Wall time includes the interpreter, imports, Ray start and the people refresh,
  i.e. what a user waits for.  Then both index a small job (one 4-second clip) for the
  fixed cost.
* Outputs: the two indexes are compared frame by frame (same sampled frames, same number of
  faces per frame, largest box / score / embedding difference, same tracks).
* Quality, same run: ``bench/eval_shared.py`` (index the shared clips, enrol the two named
  people, ``vidx eval`` on tests/truth/shared_clips.csv) with each pipeline, and
  ``bench/separation.py``: the same/different-person distances of the tracks each index wrote,
  the labelled tracks (bench/calibration_tracks.csv) carried onto the new index's tracks.
* Profile after: cProfile of this checkout's chunk worker over the shared videos in one
  process with one thread (as in a 1-CPU actor), grouped by stage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

RUNNER = r"""
import json, os, sys, time
t0 = time.time()
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
from vidx.configs.config import load_config
import vidx.jobs.index as J
phases = {}
if hasattr(J, "_Pool"):  # this checkout: when Ray, the actors and the work were ready
    enter, fan, commit = J._Pool.__enter__, J._fan_out, J._commit
    def _enter(self):
        r = enter(self); phases["ray_up_s"] = time.time() - t0
        import ray
        ray.get([a.ready.remote() for a in self.actors]); phases["actors_ready_s"] = time.time() - t0
        return r
    def _fan(*a, **k):
        fan(*a, **k); phases["work_done_s"] = time.time() - t0
    def _commit(*a, **k):
        commit(*a, **k); phases["committed_s"] = time.time() - t0
    J._Pool.__enter__ = _enter
    R = sys.modules.get("vidx.jobs.index.run", J)  # where run_index looks them up (a package since 2026-12-05)
    R._fan_out, R._commit = _fan, _commit
src, out, sets = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
cfg = load_config(None, ["actions.enabled=false", *sets])
s = J.run_index([src], out, cfg, progress=False, quiet=True)
phases["done_s"] = time.time() - t0
print(json.dumps({"chunks": s.chunks_run, "detections": s.detections, "tracks": s.tracks,
                  "failures": len(s.failures), "phases": phases, "in_process_s": time.time() - t0}))
"""


def make_archive(videos: Path, dest: Path, seconds: float) -> tuple[list[Path], float]:
    from vidx.workers import decode

    src = sorted(p for p in videos.iterdir() if p.is_file())
    per_round = sum(decode.probe(str(p)).duration for p in src)
    rounds = max(1, math.ceil(seconds / per_round))
    dest.mkdir(parents=True)
    for r in range(rounds):
        for p in src:
            q = dest / f"r{r:02d}_{p.name}"
            shutil.copyfile(p, q)
            tag = f"vidx bench copy {r}".encode()
            with open(q, "ab") as f:  # a free box: skipped by demuxers, changes the content id
                f.write(struct.pack(">I", 8 + len(tag)) + b"free" + tag)
    return src, rounds * per_round


def run(pythonpath: str | None, src: Path, out: Path, sets: list[str]) -> dict:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", RUNNER, str(src), str(out), json.dumps(sets)], env=env,
                       capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        raise SystemExit(f"bench: the run failed ({out}):\n{p.stderr[-3000:]}")
    r = json.loads(p.stdout.strip().splitlines()[-1])
    r["wall_s"] = wall
    return r


def quality(pythonpath: str | None, out: Path) -> dict:
    """bench/eval_shared.py with one pipeline: vidx eval's numbers on the shared truth."""
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    p = subprocess.run([sys.executable, str(ROOT / "bench" / "eval_shared.py"), str(out), "--json"], env=env,
                       capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"bench: the evaluation failed ({out}):\n{p.stderr[-3000:]}")
    txt = p.stdout
    return json.loads(txt[txt.index("\n{") + 1:] if not txt.startswith("{") else txt)


def quality_table(evals: dict[str, dict], sep: dict[str, dict]) -> str:
    rows = ["| pipeline | recall of true seconds | false s | precision | B-cubed P / R | recall, quality 0-0.15 | "
            "tracks: same max / different min | faces embedded | faces: FAR at TAR 95% |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, e in evals.items():
        t, b, s = e["totals"], e["bcubed"], sep[name]
        low = next((q for q in e["by_quality"] if q["quality"] == "0.00-0.15"), None)
        lq = f"{100 * low['recall']:.1f}% of {low['seconds']:.2f} s" if low and low["recall"] is not None else "-"
        rows.append(f"| {name} | {100 * t['recall']:.1f}% of {t['true_s']:.2f} s | {t['false_s']:.2f} | "
                    f"{100 * t['precision']:.1f}% | {100 * b['precision']:.1f}% / {100 * b['recall']:.1f}% | {lq} | "
                    f"{s['same_max']:.3f} / {s['diff_min']:.3f} | {s['faces']} | {s['face_far_at_tar95']:.4f} |")
    return "\n".join(rows)


def compare(a: str, b: str) -> dict:
    """Frame-by-frame comparison of two indexes of the same archive."""
    import numpy as np
    import pyarrow.compute as pc

    from vidx.indexing.tables import read_index_table

    def dets(out):
        t = read_index_table(out, "face_detections").sort_by([("video_id", "ascending"), ("frame", "ascending"),
                                                                 ("x1", "ascending"), ("y1", "ascending")])
        return t

    da, db = dets(a), dets(b)
    res = {"detections": (da.num_rows, db.num_rows)}
    fa = set(zip(da["video_id"].to_pylist(), da["frame"].to_pylist()))
    fb = set(zip(db["video_id"].to_pylist(), db["frame"].to_pylist()))
    res["frames_with_faces_equal"] = fa == fb
    if da.num_rows == db.num_rows and res["frames_with_faces_equal"]:
        box = lambda t: np.stack([t[c].to_numpy() for c in ("x1", "y1", "x2", "y2")], 1)  # noqa: E731
        res["max_box_diff_px"] = float(np.abs(box(da) - box(db)).max()) if da.num_rows else 0.0
        res["max_score_diff"] = float(np.abs(da["score"].to_numpy() - db["score"].to_numpy()).max()) if da.num_rows else 0.0
        ea = np.nan_to_num(np.stack(da["embedding"].fill_null([0.0] * 128).to_numpy(zero_copy_only=False)))
        eb = np.nan_to_num(np.stack(db["embedding"].fill_null([0.0] * 128).to_numpy(zero_copy_only=False)))
        res["max_embedding_diff"] = float(np.abs(ea - eb).max()) if da.num_rows else 0.0
    ta = read_index_table(a, "face_tracks").sort_by([("video_id", "ascending"), ("start_s", "ascending")])
    tb = read_index_table(b, "face_tracks").sort_by([("video_id", "ascending"), ("start_s", "ascending")])
    res["tracks"] = (ta.num_rows, tb.num_rows)
    res["tracks_equal"] = ta.num_rows == tb.num_rows and all(
        pc.all(pc.equal(ta[c], tb[c])).as_py() for c in ("video_id", "start_s", "end_s", "detections"))
    return res


PROFILE_GROUPS = [  # (label, function name as cProfile reports it), cumulative seconds
    ("RetinaFace network (onnxruntime)", "run"),
    ("RetinaFace input (BGR float blob)", "_blob"),
    ("RetinaFace output decoding + NMS", "_decode"),
    ("SFace network (OpenCV dnn)", "<method 'forward' of 'cv2.dnn.Net' objects>"),
    ("aligned chips (ArcFace template)", "arcface_chips"),
    ("shot-change histograms", "colour_histograms"),
    ("tracker", "update"),
    ("Parquet parts", "write_table"),
    ("waiting for the decoder thread", "get"),
]


def profile(videos: Path, sets: list[str]) -> tuple[float, list[tuple[str, float]], float]:
    import cProfile
    import pstats

    from vidx.configs.config import load_config
    from vidx.jobs.index import chunk_tasks, list_inputs, plan_all
    from vidx.workers.chunk_worker import ChunkIndexer

    cfg = load_config(None, ["actions.enabled=false", *sets])
    cfg.resolve()
    plans = plan_all(list_inputs([str(videos)]), cfg.chunk_seconds)
    chunks = [row for p in plans.values() if not p.error for row in chunk_tasks(p, cfg)]
    with tempfile.TemporaryDirectory() as tmp:
        w = ChunkIndexer(tmp, cfg.to_dict()["faces"], cfg.to_dict()["tracking"], num_cpus=1)
        w.index_chunk(chunks[0])  # warm
        pr = cProfile.Profile()
        t = time.perf_counter()
        pr.enable()
        rs = [w.index_chunk(c) for c in chunks]
        pr.disable()
        wall = time.perf_counter() - t
    st = pstats.Stats(pr).stats
    by_name: dict[str, float] = {}
    for (file, _, name), (_, _, _, cum, _) in st.items():
        key = name
        if name == "run" and "onnxruntime" not in file:
            continue
        if name == "get" and "queue" not in file:
            continue
        if name == "update" and "tracking" not in file:
            continue
        if name == "write_table" and "store" not in file:
            continue
        by_name[key] = by_name.get(key, 0.0) + cum
    groups = [(label, by_name.get(fn, 0.0)) for label, fn in PROFILE_GROUPS]
    decode_s = sum(r.decode_s for r in rs)
    return wall, groups, decode_s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="vidx index: a baseline commit beside this checkout, same archive")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--baseline", default="b1c29bb", help="git revision of the pipeline to compare with")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--no-quality", action="store_true", help="skip vidx eval and the separation of both pipelines")
    args = ap.parse_args(argv)
    if not (args.data / "videos").is_dir():
        ap.error(f"no videos folder under {args.data} (give the shared data folder with --data)")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    videos = args.data / "videos"
    with tempfile.TemporaryDirectory(prefix="vidx-bench-") as tmp:
        tmp = Path(tmp)
        src, archive_s = make_archive(videos, tmp / "archive", args.minutes * 60)
        small = tmp / "small"
        small.mkdir()
        shutil.copyfile(videos / "shd_obama.mp4", small / "clip.mp4")
        base = tmp / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), args.baseline],
                       check=True, capture_output=True)
        overlay = tmp / "overlay"
        overlay.mkdir()
        (overlay / "vidx").symlink_to(base)
        try:
            rows = {}
            for name, pp in (("baseline", str(overlay)), ("new", None)):
                rows[name] = {"archive": run(pp, tmp / "archive", tmp / f"idx-{name}", args.set),
                              "small": run(pp, small, tmp / f"small-{name}", args.set)}
            same = compare(str(tmp / "idx-baseline"), str(tmp / "idx-new"))
            evals, sep = {}, {}
            if not args.no_quality:
                sys.path.insert(0, str(ROOT / "bench"))
                from separation import read_labels, separation, track_people

                for name, pp in (("baseline", str(overlay)), ("new", None)):
                    evals[name] = quality(pp, tmp / f"eval-{name}")
                labels = read_labels()
                sep["baseline"] = separation(str(tmp / "eval-baseline"), labels)
                sep["new"] = separation(str(tmp / "eval-new"),
                                        track_people(str(tmp / "eval-baseline"), str(tmp / "eval-new"), labels))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], capture_output=True)
        n_files = len(list((tmp / "archive").iterdir()))
    cpus = os.cpu_count()
    print(f"# vidx index benchmark: {n_files} videos ({len(src)} shared videos x {n_files // len(src)}), "
          f"{archive_s:.0f} video-s, faces only at 2 fps, {cpus} CPUs; baseline {args.baseline} vs this checkout")
    print("| pipeline | archive wall s | x real time | small job (one 4 s clip) wall s | chunks | detections | tracks |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("baseline", "new"):
        a, s = rows[name]["archive"], rows[name]["small"]
        print(f"| {name} | {a['wall_s']:.1f} | {archive_s / a['wall_s']:.2f} | {s['wall_s']:.1f} | {a['chunks']} | "
              f"{a['detections']} | {a['tracks']} |")
    b, n = rows["baseline"]["archive"]["wall_s"], rows["new"]["archive"]["wall_s"]
    print(f"\nspeed-up on the archive: {b / n:.2f}x; small job: "
          f"{rows['baseline']['small']['wall_s'] / rows['new']['small']['wall_s']:.2f}x")
    ph = rows["new"]["small"]["phases"]
    print("new pipeline, small job, seconds from the process start: "
          + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f}" for k, v in ph.items()))
    ph = rows["new"]["archive"]["phases"]
    print("new pipeline, archive, seconds from the process start: "
          + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f}" for k, v in ph.items()))
    print(f"outputs (baseline vs new): {json.dumps(same)}")
    if evals:
        print("\nquality on the shared clips (bench/eval_shared.py, bench/separation.py), same run:")
        print(quality_table(evals, sep))
    if not args.no_profile:
        wall, groups, dec = profile(videos, args.set)
        print(f"\nprofile after: chunk worker, one process, one thread, the {len(src)} shared videos: {wall:.1f} s "
              f"(decoder thread busy {dec:.1f} s beside it)")
        print("| stage | s | share |")
        print("|---|---:|---:|")
        for label, sec in groups:
            print(f"| {label} | {sec:.2f} | {100 * sec / wall:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
