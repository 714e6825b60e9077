"""Face verification on the labelled identities of ../shared/data/faces.

    python bench/verify_faces.py [--data ../shared/data]

Builds every same-person and different-person pair from MANIFEST.tsv's single-face photos
and dlib's aligned "johns" chips, leaving out the pairs the data's README marks as leakage
(the same photograph cropped, scaled or near-duplicated).  Photos go through the whole engine
(detect -> landmarks -> chip -> embed, largest face); with the dlib embedder the johns chips
(dlib's own 150x150 chips) are embedded as they are, with SFace they go through the engine like
photos (SFace needs its own 112x112 alignment).  Prints the pair counts, accuracy at the
embedder's same-person threshold and the best threshold.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import re
import sys
from pathlib import Path

import numpy as np

# Leakage named in shared/data/README.md and MANIFEST.tsv: crops / copies of another photo.
EXCLUDED_PHOTOS = {
    "faces/fr_obama_partial_face.jpg",  # crop of fr_obama.jpg
    "faces/fr_obama_small.jpg",  # downscaled copy of fr_obama.jpg
    "faces/fnp_aligned_angelina_jolie.png",  # crop of fnp_angelina_jolie_1.jpg
}


def load_items(data_dir: Path):
    """[(key, identity, kind)] for usable single-face photos and chips, plus near-duplicate pairs."""
    items, dups = [], set()
    with open(data_dir / "MANIFEST.tsv", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            path, kind = row["local_file"], row["kind"]
            if kind != "face" or path in EXCLUDED_PHOTOS:
                continue
            is_chip = "/dlib_johns/" in path
            items.append((path, row["identity_or_label"], "chip" if is_chip else "photo"))
            m = re.search(r"near-duplicate of (\S+\.jpg)", row["visual_check"])
            if m:
                other = str(Path(path).parent / m.group(1))
                dups.add(frozenset((path, other)))
    return items, dups


def embed_items(data_dir: Path, items, engine):
    from vidx.workers.images import load_rgb

    emb, missing = {}, []
    as_chips = engine.space.name == "dlib"  # dlib's chips are the dlib embedder's own input
    chips = [(k, load_rgb(data_dir / k)) for k, _, kind in items if kind == "chip" and as_chips]
    if chips:
        e = engine.embedder.embed(np.stack([c for _, c in chips]))
        emb.update({k: v for (k, _), v in zip(chips, e)})
    photos = [(k, load_rgb(data_dir / k)) for k, _, kind in items if kind == "photo" or not as_chips]
    for s in range(0, len(photos), 4):
        part = photos[s : s + 4]
        faces = engine([im for _, im in part])
        for j, (k, _) in enumerate(part):
            rows = np.flatnonzero(faces.image_index == j)
            if len(rows) == 0:
                missing.append(k)
                continue
            b = faces.boxes[rows]
            emb[k] = faces.embeddings[rows[np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))]]
    return emb, missing


def evaluate(data_dir: Path, engine) -> dict:
    items, dups = load_items(data_dir)
    emb, missing = embed_items(data_dir, items, engine)
    ident = {k: i for k, i, _ in items}
    keys = [k for k, _, _ in items if k in emb]
    d, same = [], []
    sp = engine.space
    for a, b in itertools.combinations(keys, 2):
        if frozenset((a, b)) in dups:
            continue
        d.append(float(sp.distance(emb[a], emb[b])))
        same.append(ident[a] == ident[b])
    d, same = np.array(d), np.array(same)
    acc = lambda t: float(((d < t) == same).mean())  # noqa: E731
    grid = np.round(np.arange(0.10, 1.20, 0.01), 2)
    thr = sp.same_person
    accs = np.array([acc(t) for t in grid])
    best = int(np.argmax(accs))
    return {
        "items": len(keys), "identities": len({ident[k] for k in keys}), "no_face": missing,
        "pairs": len(d), "same_pairs": int(same.sum()), "diff_pairs": int((~same).sum()),
        "threshold": thr, "accuracy": acc(thr), "tpr": float((d[same] < thr).mean()),
        "tnr": float((d[~same] >= thr).mean()),
        "best_threshold": float(grid[best]), "best_accuracy": float(accs[best]),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--detector", default=None, choices=("dlib", "retinaface"),
                    help="default dlib (retinaface with --embedder sface)")
    ap.add_argument("--embedder", default="dlib", choices=("dlib", "sface"))
    args = ap.parse_args(argv)
    from vidx.workers.faces import PHOTO_SIDE, FaceEngine

    det = args.detector or ("retinaface" if args.embedder == "sface" else "dlib")
    r = evaluate(args.data, FaceEngine(device=args.device, detector=det, embedder=args.embedder, photo_side=PHOTO_SIDE))
    print(f"detector: {det}; embedder: {args.embedder}")
    print(f"faces: {r['items']} ({r['identities']} identities); no face found in: {r['no_face'] or 'none'}")
    print(f"pairs: {r['pairs']} ({r['same_pairs']} same-person, {r['diff_pairs']} different-person)")
    print(f"accuracy at {r['threshold']}: {r['accuracy']:.4f} (same-person accepted {r['tpr']:.4f}, "
          f"different-person rejected {r['tnr']:.4f})")
    print(f"best threshold: {r['best_threshold']:.2f} (accuracy {r['best_accuracy']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
