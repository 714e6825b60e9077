"""What is made from an index: ``vidx redact``, ``vidx serve``, ``vidx demo``."""

from __future__ import annotations

import logging
from pathlib import Path

from vidx.jobs.cli.parsing import _detector_option
from vidx.jobs.cli.people import _people_errors

log = logging.getLogger("vidx")


def cmd_redact(args) -> int:
    from vidx.jobs.redact import RedactError, redact

    keep = [] if args.all else args.keep  # argparse lets one of --keep, --only, --all through; redact() asks for one
    try:
        r = redact(args.out, args.video, args.to, keep=keep, only=args.only, style=args.style, margin=args.margin,
                   every=args.detect_every, max_side=args.max_side, crf=args.quality, device=args.device)
    except (RedactError, *_people_errors()) as e:
        log.error("vidx redact: %s", e)
        return 2
    tm = r.timing
    print(f"wrote {r.output}: {r.frames} frames ({r.seconds:.1f} s), faces blurred on {r.redacted_frames} of them "
          f"({r.regions} regions); {r.faces_found} faces found, {r.unattributed} of them no index track explains "
          f"(blurred), {r.kept} kept visible ({r.verified_kept} of the {r.verified} the boxes could not attribute, "
          f"by their embedding); {r.wall_s:.1f} s, {r.fps:.1f} frames/s (detect {tm['detect_s']:.1f} s, "
          f"embed {tm['embed_s']:.1f} s, encode {tm['encode_s']:.1f} s, decode {tm['decode_s']:.1f} s, "
          f"blur {tm['redact_s']:.1f} s)")
    return 0


def cmd_serve(args) -> int:
    import os

    from vidx.jobs.serve import serve

    # detector None: the index's own
    serve(args.out, args.host, args.port, args.token or os.environ.get("VIDX_TOKEN") or None, args.detector)
    return 0


def cmd_demo(args) -> int:
    from vidx.jobs.demo import make_demo_media

    paths = make_demo_media(args.out)
    print("\n".join(str(p) for p in paths))  # the list, once, on stdout
    return 0


def add_parsers(sub) -> None:
    """The subcommands redact, serve, demo."""
    rd = sub.add_parser("redact", help="write a copy of an indexed video with faces blurred: everyone's but the "
                        "people kept, or only some people's",
                        description="Write a copy of VIDEO (an indexed video's id, path or file name) to FILE with "
                        "faces blurred on every frame: --keep PERSON... blurs everyone else, --only PERSON... blurs "
                        "just them, --all blurs every face. Faces are found again on every frame (RetinaFace) and "
                        "given to the index's tracks and people; a face no track explains is blurred. Same frames, "
                        "frame times and audio as the source (audio copied untouched); H.264 at --quality. The "
                        "source is only read; FILE is written under a temporary name, then renamed.")
    rd.add_argument("out", metavar="OUT", help="index folder or URI")
    rd.add_argument("video", metavar="VIDEO", help="an indexed video's id, path or file name")
    rd.add_argument("--to", required=True, metavar="FILE", help="the copy to write (.mp4, .mov, .m4v or .mkv)")
    who = rd.add_mutually_exclusive_group()
    who.add_argument("--keep", nargs="+", metavar="PERSON", help="people left visible (names or ids); every other "
                     "face is blurred")
    who.add_argument("--only", nargs="+", metavar="PERSON", help="people blurred (names or ids); the others stay")
    who.add_argument("--all", action="store_true", help="blur every face")
    rd.add_argument("--style", choices=("blur", "pixelate", "box"), default="blur", help="how a face is hidden")
    rd.add_argument("--margin", type=float, default=0.25, help="widen each face box by this share of its size per side")
    rd.add_argument("--detect-every", type=int, default=1, metavar="N",
                    help="find faces on every Nth frame (each frame takes the boxes found within N of it); 1: every frame")
    rd.add_argument("--max-side", type=int, default=1280, help="find faces on frames scaled to this longer side "
                    "(0: native)")
    rd.add_argument("--quality", type=int, default=18, metavar="CRF", help="x264 constant rate factor: 0 lossless, "
                    "18 visually lossless, 23 x264's default, 51 worst")
    rd.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
    rd.set_defaults(func=cmd_redact)
    sv = sub.add_parser("serve", help="a web page and HTTP API to search people and actions, with playback",
                        description="Serve OUT over HTTP: the page at /, the JSON API under /api (OpenAPI schema at "
                        "/openapi.json, docs at /docs). Binds to 127.0.0.1 unless told; binding elsewhere needs a token.")
    sv.add_argument("out", metavar="OUT", help="index folder or URI")
    sv.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface; needs --token)")
    sv.add_argument("--port", type=int, default=8765, help="port to listen on")
    sv.add_argument("--token", help="required on every request (Authorization: Bearer TOKEN); default $VIDX_TOKEN")
    _detector_option(sv, "the index's")
    sv.set_defaults(func=cmd_serve)
    d = sub.add_parser("demo", help="write demo photos and clips (public-domain, from scikit-image) into a folder",
                       description="Write into DIR the public-domain astronaut portrait that scikit-image ships, "
                       "the same face mirrored and turned, a photo with no face, and two clips: the face on "
                       "screen from 1 s to 6 s, and no face. Prints each file written.")
    d.add_argument("out", type=Path, metavar="DIR", help="folder to write into (created if absent)")
    d.set_defaults(func=cmd_demo)
