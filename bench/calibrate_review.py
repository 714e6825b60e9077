"""The review queue's bound: how many appearances it holds and how many of the index's identity
errors it catches, at each margin bound, on indexes with a truth file.

    python bench/calibrate_review.py --index OUT --truth TRUTH.csv [--index OUT2 --truth T2.csv ...]
        [--bounds 0 0.05 0.1 0.15 0.2 0.3]

An error is a track the truth gives to one person (by time and face position, as ``vidx eval``
attributes them) whose vidx person is not that truth person's home (the vidx person holding most
of their tracks), or whose vidx person's majority truth person is another: the tracks a reviewer
would move.  The queue (``people.review_queue`` with no bound) gives every open track's margin
(distance to the nearest other person's centre minus distance to its own); a bound keeps the
tracks under it.  Prints one row per bound: tracks in the queue of all open, errors caught of all.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import Counter

from vidx.indexing import evaluate, people
from vidx.indexing.tables import read_index_table


def errors(out: str, truth: str) -> tuple[set[str], int]:
    """(tracks in error, tracks attributed) of the index at ``out``."""
    rows = [r for r in evaluate.read_truth(truth, read_index_table(out, "videos")) if r.person]
    att = evaluate.attribute_tracks(out, rows)  # track -> (truth person, vidx person)
    home = {}
    for t in {tp for tp, _ in att.values()}:
        home[t] = Counter(vp for tp, vp in att.values() if tp == t).most_common(1)[0][0]
    major = {}
    for v in {vp for _, vp in att.values()}:
        major[v] = Counter(tp for tp, vp in att.values() if vp == v).most_common(1)[0][0]
    bad = {k for k, (tp, vp) in att.items() if home[tp] != vp or major[vp] != tp}
    return bad, len(att)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", action="append", required=True)
    ap.add_argument("--truth", action="append", required=True)
    ap.add_argument("--bounds", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.15, 0.2, 0.3])
    args = ap.parse_args(argv)
    if len(args.index) != len(args.truth):
        ap.error("give one --truth for each --index")
    margins, bad_all, attributed = [], set(), 0
    for out, truth in zip(args.index, args.truth):
        bad, n = errors(out, truth)
        q = people.review_queue(out, limit=10 ** 9, candidates=10 ** 9, bound=math.inf)
        margins += [(out, x["track_id"], x["margin"]) for x in q.items]
        bad_all |= {(out, t) for t in bad}
        attributed += n
        print(f"{out}: {q.total} open tracks, {n} attributed by the truth, {len(bad)} in error", file=sys.stderr)
    print(f"{'bound':>6}  {'in queue':>14}  {'errors caught':>14}  in queue, per index")
    for b in args.bounds:
        inq = {(o, t) for o, t, m in margins if m < b}
        per = ", ".join(f"{sum(1 for o2, _ in inq if o2 == o)} of {sum(1 for o2, _, _ in margins if o2 == o)}"
                        for o in args.index)
        print(f"{b:6.2f}  {len(inq):5d} of {len(margins):<5d}  {len(inq & bad_all):5d} of {len(bad_all):<5d}  {per}")
    for o, t, m in sorted(margins, key=lambda x: x[2]):
        if (o, t) in bad_all:
            print(f"  error {t} ({o}): margin {m:.3f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
