"""People at scale: the cost and the purity of the cannot-link and quality rules, side by side with
plain average linkage, on synthetic archives drawn like the shared clips' real SFace tracks.

    python bench/bench_people.py [--tracks 10000 100000] [--seed 0] [--json]

The archive: people whose centres are as far apart as real different people's tracks (cosine
distance mean 0.92, sd 0.09, 1st percentile 0.70: measured on the 20 labelled tracks of the
shared clips, bench/calibration_tracks.csv); each track its person's centre plus noise that grows
as its quality falls (quality uniform in 0-1; a perfect track lies ~0.10 from its centre, the
worst ~0.31, as detections of those qualities do on the shared clips), so weak tracks are the ones
that can glue people together.  Videos hold 2-6 people each, a few tracks per person at random
times, so faces share the screen as in real footage; people recur across videos (Zipf).

Both methods cluster at the SFace cluster distance (0.5) over the same FAISS kNN graph; "before"
is vidx's clustering before the rules (every track, no constraint), "after" is
``people.people_labels`` (confident tracks under cannot-link, weak ones join only when clearly
nearest).  Reported: wall seconds of each (FAISS build included, one run each, side by side),
B-cubed precision / recall over all tracks and over the confident ones, and pairs of tracks on
screen together that ended up as one person.  A synthetic benchmark checks the machinery; the
answer on real footage is `vidx eval` (docs/internals/identities.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import pyarrow as pa

DIM = 128
# (cosine between people's centres, noise norm of a perfect track, extra noise of the worst), chosen so
# the synthetic tracks' distances match those measured on the shared clips' tracks attributed by the
# truth file (python bench/bench_people.py --measure OUT for an index of ../shared/data/videos):
# mean distance between different people's tracks, weak-weak / weak-good / good-good (weak: quality < 0.25):
#   sface (cosine)    real 0.99 / 0.95 / 0.92   synthetic 0.95 / 0.94 / 0.93
#   dlib (euclidean)  real 0.64 / 0.71 / 0.78   synthetic 0.61 / 0.71 / 0.79  (real minimum 0.33: two weak tracks)
# the last value pulls weak tracks toward the average face (small, soft and turned faces look alike to
# dlib's embedder, close to everyone: what glued different people together before)
PRESETS = {"sface": (0.10, 0.45, 0.60, 0.0), "dlib": (0.65, 0.22, 0.30, 1.0)}


def archive(n_tracks: int, seed: int, embedder: str = "sface", cast: tuple[int, int] = (2, 7),
            per_person: tuple[int, int] = (1, 4), length: tuple[float, float] = (30, 300)):
    """(embeddings, true person, quality, tracks table): ``cast`` people per video (high bound
    excluded), ``per_person`` tracks each, videos ``length`` seconds long."""
    centre_cos, r0, r1, hub_w = PRESETS[embedder]
    rng = np.random.default_rng(seed)
    n_people = max(2, n_tracks // 12)
    g = rng.normal(size=DIM)
    g /= np.linalg.norm(g)
    u = rng.normal(size=(n_people, DIM))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    a = np.sqrt(centre_cos)
    centres = a * g + np.sqrt(1 - a * a) * u
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    pop = 1.0 / np.arange(1, n_people + 1) ** 0.8  # some people recur in many videos
    pop /= pop.sum()
    person, video, start, end = [], [], [], []
    v = 0
    while len(person) < n_tracks:
        who = rng.choice(n_people, size=rng.integers(*cast), replace=False, p=pop)
        secs = rng.uniform(*length)
        for p in who:  # a few tracks per person, one after another (one face is never in two places)
            s = rng.uniform(0, secs / 2)
            for _ in range(rng.integers(*per_person)):
                e = s + rng.uniform(1, 20)
                person.append(p)
                video.append(f"v{v:06d}")
                start.append(s)
                end.append(e)
                s = e + rng.uniform(0.5, 30)
        v += 1
    n = n_tracks
    person = np.array(person[:n])
    q = rng.uniform(0, 1, n)
    r = r0 + r1 * (1 - q) ** 2  # weaker tracks lie farther from their person
    noise = rng.normal(size=(n, DIM))
    noise -= (noise * centres[person]).sum(1, keepdims=True) * centres[person]
    noise *= (r / np.linalg.norm(noise, axis=1))[:, None]
    emb = centres[person] + noise + hub_w * ((1 - q) ** 2)[:, None] * g  # weak faces drift to the average face
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    tracks = pa.table({"track_id": [f"t{i:07d}" for i in range(n)], "video_id": video[:n],
                       "start_s": np.array(start[:n]), "end_s": np.array(end[:n]), "quality": q})
    return emb.astype(np.float32), person, q, tracks


def bcubed(labels: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """B-cubed precision and recall, from the contingency counts (no n x n matrix)."""
    _, li = np.unique(labels, return_inverse=True)
    _, ti = np.unique(truth, return_inverse=True)
    pair = li.astype(np.int64) * (ti.max() + 1) + ti
    _, pi, pc = np.unique(pair, return_inverse=True, return_counts=True)
    both = pc[pi]
    return float((both / np.bincount(li)[li]).mean()), float((both / np.bincount(ti)[ti]).mean())


def violations(labels: np.ndarray, cannot: np.ndarray) -> int:
    return int((labels[cannot[:, 0]] == labels[cannot[:, 1]]).sum()) if len(cannot) else 0


def run(n: int, seed: int, embedder: str = "sface") -> dict:
    from vidx.configs.config import PeopleConfig, fill_distances
    from vidx.configs.spaces import space
    from vidx.indexing import faces_index, people

    sp = space(embedder)
    cfg = PeopleConfig()
    fill_distances(embedder, None, cfg)
    emb, person, q, tracks = archive(n, seed, embedder)
    tids = tracks["track_id"].to_pylist()

    t0 = time.perf_counter()
    idx = faces_index.FaceIndex.build(emb, tids, exact_below=cfg.index_exact_below, codec=cfg.index_codec,
                                      embedder=sp.model, rule=sp.rule)
    before = people.cluster(emb, cfg.cluster_distance, cfg.neighbours, idx, tids, metric=sp.metric)
    t_before = time.perf_counter() - t0

    t0 = time.perf_counter()
    idx = faces_index.FaceIndex.build(emb, tids, exact_below=cfg.index_exact_below, codec=cfg.index_codec,
                                      embedder=sp.model, rule=sp.rule)
    cannot = people.co_occurring(tracks)
    t_pairs = time.perf_counter() - t0
    after, role = people.people_labels(emb, q, cannot, cfg, sp, idx, tids)
    t_after = time.perf_counter() - t0

    conf = q >= cfg.min_quality
    res = {"embedder": embedder, "tracks": n, "people": int(len(np.unique(person))), "videos": int(len(set(tracks["video_id"].to_pylist()))),
           "on_screen_together_pairs": int(len(cannot)), "min_quality": cfg.min_quality,
           "confident_tracks": int(conf.sum())}
    for name, lab, secs in (("before", before, t_before), ("after", after, t_after)):
        p_all, r_all = bcubed(lab, person)
        p_c, r_c = bcubed(lab[conf], person[conf])
        res[name] = {"seconds": round(secs, 2), "bcubed_precision": round(p_all, 4), "bcubed_recall": round(r_all, 4),
                     "confident_precision": round(p_c, 4), "confident_recall": round(r_c, 4),
                     "together_in_one_person": violations(lab, cannot), "people": int(len(np.unique(lab)))}
    res["after"]["pairs_seconds"] = round(t_pairs, 2)
    res["after"]["roles"] = {k: role.count(k) for k in ("core", "joined", "alone")}
    return res


def measure(out: str) -> int:
    """Distances between the tracks the truth file attributes to one person, per quality."""
    from pathlib import Path

    from vidx.indexing import evaluate, people
    from vidx.indexing.tables import read_index_table

    truth = Path(__file__).resolve().parents[1] / "tests" / "truth" / "shared_clips.csv"
    sp = people.index_space(people.Store(out).require_manifest())
    rows = [r for r in evaluate.read_truth(str(truth), read_index_table(out, "videos")) if r.person]
    att = evaluate.attribute_tracks(out, rows)
    t = read_index_table(out, "face_tracks").to_pandas()
    t = t[t.track_id.isin(att)]
    lab = np.array([att[x][0] for x in t.track_id])
    e = np.stack(t.embedding.map(np.asarray))
    d = sp.pairwise(e, e)
    iu = np.triu_indices(len(e), 1)
    diff = d[iu][lab[iu[0]] != lab[iu[1]]]
    print(f"{sp.name} ({sp.metric}): {len(e)} attributed tracks; different people: mean {diff.mean():.3f}, sd "
          f"{diff.std():.3f}, 1st percentile {np.quantile(diff, 0.01):.3f}, min {diff.min():.3f}; same person: "
          f"{', '.join(f'{x:.3f}' for x in d[iu][lab[iu[0]] == lab[iu[1]]])}")
    d[lab[:, None] == lab[None, :]] = np.inf
    for i in np.argsort(t.quality.values):
        print(f"  quality {t.quality.values[i]:.2f}: nearest other person {d[i].min():.3f} ({lab[i]})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tracks", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--embedder", nargs="+", default=["sface", "dlib"], choices=tuple(PRESETS))
    ap.add_argument("--measure", metavar="OUT", help="print the distances of an index of the shared clips instead")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.measure:
        return measure(args.measure)
    for emb_name, n in ((e, n) for e in args.embedder for n in args.tracks):
        r = run(n, args.seed, emb_name)
        if args.json:
            print(json.dumps(r))
            continue
        print(f"{emb_name}: {n} tracks, {r['people']} people, {r['videos']} videos, {r['on_screen_together_pairs']} pairs on "
              f"screen together, {r['confident_tracks']} confident (quality >= {r['min_quality']})")
        for k in ("before", "after"):
            s = r[k]
            print(f"  {k:<6} {s['seconds']:7.2f} s  B-cubed P {s['bcubed_precision']:.4f} R {s['bcubed_recall']:.4f}  "
                  f"(confident P {s['confident_precision']:.4f} R {s['confident_recall']:.4f})  "
                  f"{s['people']} people, {s['together_in_one_person']} pairs on screen together in one person")
        print(f"  after: pairs {r['after']['pairs_seconds']} s; roles {r['after']['roles']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
