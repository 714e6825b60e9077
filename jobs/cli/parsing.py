"""The parser's shared parts: help that states defaults, no silent prefix matching, the face options."""

from __future__ import annotations

import argparse


class _Help(argparse.HelpFormatter):
    """Every option's help ends with its default, where it has one worth saying."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        d = action.default
        said = not (d is None or d is False or d is argparse.SUPPRESS or d == [])  # 0 is a default worth saying
        if (action.option_strings and said and "default" not in text
                and not isinstance(action, (argparse._HelpAction, argparse._VersionAction))):
            text += (" " if text else "") + "(default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """No silent prefix matching (``--no-action`` is not ``--no-actions``), and a typo gets the
    closest valid choice or option."""

    def __init__(self, *a, **kw):
        kw.setdefault("allow_abbrev", False)
        kw.setdefault("formatter_class", _Help)
        super().__init__(*a, **kw)

    def options(self) -> list[str]:
        return [o for a in self._actions for o in a.option_strings if o.startswith("--")]

    def error(self, message: str):
        import difflib
        import re

        m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if m:
            near = difflib.get_close_matches(m[1], re.findall(r"'([^']*)'", m[2]), n=1, cutoff=0.5)
            if near:
                message += f"; did you mean '{near[0]}'?"
        super().error(message)

    def unrecognized(self, extras: list[str]) -> None:
        """Refuse arguments this (sub)command does not take, naming its closest option for each."""
        import difflib

        hints = []
        for x in extras:
            near = difflib.get_close_matches(x.split("=")[0], self.options(), n=1, cutoff=0.6) \
                if x.startswith("-") else []
            if near:
                hints.append(f"'{x}': did you mean '{near[0]}'?")
        self.error(f"unrecognized arguments: {' '.join(extras)}" + (f" ({'; '.join(hints)})" if hints else ""))


def _verbose(p: argparse.ArgumentParser) -> None:
    """-v / --verbose, accepted before the command and after it (``vidx index ... --verbose``)."""
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, and each step's full output (Ray's too)")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vidx")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _detector_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--detector", choices=("dlib", "retinaface"), default=None,
                   help=f"face detector: dlib (exact dlib, CC0 weights; faces from ~80 px) or retinaface "
                   f"(MIT; small and turned faces, faster); default {default}")


def _embedder_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--embedder", choices=("sface", "dlib"), default=None,
                   help=f"face embedder: sface (video faces; cosine distance; needs retinaface) or dlib (exact dlib; "
                   f"euclidean distance, < 0.6 = same person); default {default}")


def _face_options(p: argparse.ArgumentParser, index: bool = False) -> None:
    """index: photos given to an index use its detector and embedder unless told."""
    _detector_option(p, "the index's" if index else "dlib (retinaface with --embedder sface)")
    _embedder_option(p, "the index's (another is refused)" if index else "dlib")
    p.add_argument("--json", action="store_true", help="print JSON (one object per line)")
    p.add_argument("--upsample", type=int, choices=(0, 1), default=0,
                   help="upsample once to find faces down to ~40 px (4x slower); default 0 (~80 px)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1 ...")
