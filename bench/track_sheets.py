"""Contact sheets of an index's face tracks, for labelling tracks by eye.

    python bench/track_sheets.py OUT SHEETS_DIR [--per-track 8]

One PNG per video: a row per track (its id, start-end seconds on vidx's clock, counted from the
first frame), up to ``--per-track`` of its detections evenly spread over the track, each crop
with its time; rejected detections are left out.  bench/calibrate_embedders.py reads the labels
written from these sheets (bench/calibration_tracks.csv).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("sheets", type=Path)
    ap.add_argument("--per-track", type=int, default=8)
    args = ap.parse_args(argv)
    import pyarrow.compute as pc

    from vidx.indexing.tables import read_index_table
    from vidx.workers import decode

    args.sheets.mkdir(parents=True, exist_ok=True)
    videos = read_index_table(args.out, "videos")
    tracks = read_index_table(args.out, "face_tracks")
    dets = read_index_table(args.out, "face_detections").filter(pc.is_valid(pc.field("segment_id")))
    seg2track = {s: t for t, segs in zip(tracks["track_id"].to_pylist(), tracks["segments"].to_pylist()) for s in segs}
    for v in videos.to_pylist():
        vd = dets.filter(pc.equal(dets["video_id"], v["video_id"])).to_pydict()
        if not vd["frame"]:
            continue
        tid = np.array([seg2track[s] for s in vd["segment_id"]])
        frames = np.array(vd["frame"])
        want: dict[str, np.ndarray] = {}
        for t in dict.fromkeys(tid.tolist()):
            rows = np.flatnonzero(tid == t)
            want[t] = rows[np.unique(np.linspace(0, len(rows) - 1, min(args.per_track, len(rows))).round().astype(int))]
        need = np.unique(frames[np.concatenate(list(want.values()))])
        info = decode.probe(v["path"])
        imgs = dict(zip(need.tolist(), decode.read_frames(v["path"], info, need, 0, len(need), info.timestamps[need]).__next__()[1]))
        cell = 96
        sheet = Image.new("RGB", (cell * (args.per_track + 2), cell * len(want)), "white")
        draw = ImageDraw.Draw(sheet)
        for r, (t, rows) in enumerate(want.items()):
            tr = tracks.filter(pc.equal(tracks["track_id"], t)).to_pylist()[0]
            draw.text((2, r * cell + 2), f"{t[-10:]}\n{tr['start_s']:.1f}-{tr['end_s']:.1f}s\nn={tr['detections']}", fill="black")
            for c, i in enumerate(rows):
                im = imgs[int(frames[i])]
                x1, y1, x2, y2 = vd["x1"][i], vd["y1"][i], vd["x2"][i], vd["y2"][i]
                pad = 0.3 * (x2 - x1)
                crop = Image.fromarray(im[max(0, int(y1 - pad)): int(y2 + pad), max(0, int(x1 - pad)): int(x2 + pad)])
                crop.thumbnail((cell - 4, cell - 14))
                sheet.paste(crop, ((c + 2) * cell, r * cell))
                draw.text(((c + 2) * cell, r * cell + cell - 12), f"{vd['t'][i]:.1f}s", fill="red")
        sheet.save(args.sheets / f"{Path(v['path']).stem}.png")
        print(args.sheets / f"{Path(v['path']).stem}.png", len(want))
    return 0


if __name__ == "__main__":
    sys.exit(main())
