"""The manual builds strictly (no broken link or anchor, no page left out of the nav) and its
generated references say what the code says: the CLI page holds every command's --help."""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("vidx_docs_hooks", ROOT / "docs" / "hooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_manual_builds_strictly_and_its_cli_page_is_the_parsers_help(tmp_path):
    site = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
                       capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stdout + p.stderr
    page = (site / "reference" / "cli" / "index.html").read_text()
    # the text of the page's code blocks, unescaped and without the highlighter's markup
    blocks = [html.unescape(re.sub(r"<[^>]+>", "", b)).rstrip() for b in re.findall(r"<code>(.*?)</code>", page, re.S)]
    helps = _hooks().cli_helps()
    assert len(helps) >= 15  # vidx and its commands
    for cmd, text in helps:
        assert text.rstrip() in blocks, cmd
    cfg = (site / "reference" / "config" / "index.html").read_text()
    for key in ("faces.sample_fps", "tracking.verify_distance", "people.match_distance", "ray.num_gpus"):
        assert f"<code>{key}</code>" in cfg, key
    tables = (site / "reference" / "tables" / "index.html").read_text()
    assert "<code>shots</code>" in tables and "<code>face_detections</code>" in tables


def test_the_config_reference_lists_every_key_the_config_takes():
    from vidx.configs.config import _RULES

    keys = {r["key"] for r in _hooks().config_rows()}
    assert set(_RULES) <= keys, set(_RULES) - keys
