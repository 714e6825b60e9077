"""The ``vidx`` command line: a thin layer over the library.

    vidx faces PHOTO... [--json] [--upsample 0|1] [--device cpu|cuda]
    vidx faces compare A B [--upsample 0|1] [--device cpu|cuda]
    vidx index SRC... --out OUT [--config FILE] [--set key=value ...]
    vidx reindex OUT
    vidx enroll OUT --name NAME PHOTO[@N]...
    vidx people list|rename|merge|split OUT ...
    vidx query OUT [--face PHOTO | --person NAME | --person-id ID] [--action LABEL...] [--video V] ...
    vidx forget OUT --person NAME|ID
    vidx check OUT [--repair]
    vidx vacuum OUT [--retention-hours H]
    vidx redact OUT VIDEO --to FILE (--keep PERSON... | --only PERSON... | --all) [--style blur|pixelate|box]
    vidx serve OUT [--host 127.0.0.1] [--port 8765] [--token TOKEN]
    vidx models list | pull NAME
    vidx actions VIDEO [--model NAME] [--json]
    vidx actions train DATA --base MODEL --out WEIGHTS [--from-scratch]
    vidx demo DIR

One module per command group (faces, index, people, search, media, actions), each with its
commands and ``add_parsers``; ``parsing`` holds what the parsers share.  Only ``main`` turns
errors into exit codes.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from vidx.jobs.cli import actions, faces, index, media, people, search
from vidx.jobs.cli.actions import labels_parser, train_parser  # noqa: F401 - what tests and the docs' hooks call
from vidx.jobs.cli.faces import compare_parser
from vidx.jobs.cli.parsing import _Parser, _verbose, _version

log = logging.getLogger("vidx")


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="vidx", description="Index video archives by who did what when. Times everywhere are "
                 "seconds from each video's first frame, as players show them.",
                 epilog="'vidx COMMAND -h' explains a command. Also: 'vidx faces compare A B', "
                 "'vidx actions labels [WORD]', 'vidx actions train DATA ...'.")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging, and each step's full output")
    ap.add_argument("--version", action="version", version=f"vidx {_version()}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (faces, index, people, search, media, actions):
        group.add_parsers(sub)
    for p in sub.choices.values():
        _verbose(p)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    words = [a for a in argv if a not in ("-v", "--verbose")]  # `vidx -v faces compare ...` too
    if not words:  # bare `vidx`: what it can do
        build_parser().print_help()
        return 0
    if words[:2] == ["faces", "compare"]:  # a sub-command of `faces`, which also takes PHOTO...
        parser = compare_parser()
    elif words[:2] == ["actions", "train"]:  # likewise for `actions VIDEO`
        parser = train_parser()
    elif words[:2] == ["actions", "labels"]:
        parser = labels_parser()
    else:
        parser = None
    if parser is not None:
        rest = list(argv)
        for w in words[:2]:
            rest.remove(w)
        args = parser.parse_args(rest)
    else:
        top = build_parser()
        args, extras = top.parse_known_args(argv)
        if extras:  # refused by the command that was given, with its closest options
            top._subparsers._group_actions[0].choices[args.command].unrecognized(extras)
    args.verbose = getattr(args, "verbose", False)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(message)s" if args.verbose else "%(message)s",
                        stream=sys.stderr)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its loader logs CPU-feature probing at INFO
    from vidx.configs.errors import VidxError
    from vidx.indexing.store import storage_error

    try:
        return args.func(args)
    except VidxError as e:  # bad input or an index state the user can act on: one line, exit 2
        log.error("vidx %s: %s", args.command, e)
        return 2
    except OSError as e:  # an object store that cannot be reached or refuses: one line, not a trace
        msg = storage_error(e)
        if msg is None:
            raise
        raise SystemExit(f"vidx {argv[0]}: {msg}") from None


