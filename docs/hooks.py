"""MkDocs hooks: the reference pages generated from the code at build time, so they cannot drift.

A page holds a marker (an HTML comment) where generated Markdown goes:

* ``<!-- generated: cli -->``: every command's ``--help``, from the argparse parser the CLI runs;
* ``<!-- generated: config -->``: every config key, its default, the presets' values, its valid
  range and its meaning, as ``vidx.configs.config`` declares each once (``key(default, help,
  valid)``), and the preset YAML files;
* ``<!-- generated: schemas -->``: every table's columns and types, from ``vidx.indexing.schemas``.

``tests/test_docs.py`` builds the site strictly and checks the CLI page against the parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re

MARKER = re.compile(r"<!-- generated: (\w+) -->")
WIDTH = "100"  # argparse wraps help to $COLUMNS: one width, so the page does not depend on the terminal


def cli_helps() -> list[tuple[str, str]]:
    """(command, its --help text) for ``vidx`` and every subcommand, in the parser's order."""
    from vidx.jobs.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        out: list[tuple[str, str]] = []

        def walk(p: argparse.ArgumentParser, path: list[str]) -> None:
            out.append((" ".join(path), p.format_help()))
            for a in p._actions:  # noqa: SLF001 - argparse keeps subcommands here only
                if isinstance(a, argparse._SubParsersAction):  # noqa: SLF001
                    for name, sp in a.choices.items():
                        walk(sp, path + [name])

        walk(build_parser(), ["vidx"])
        return out
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def cli_markdown() -> str:
    parts = []
    for cmd, text in cli_helps():
        parts.append(f"## `{cmd}`\n\n```text\n{text.rstrip()}\n```\n")
    return "\n".join(parts)


def config_rows() -> list[dict[str, str]]:
    """One row per config key: key, default, each preset's value (blank: the default), rule, meaning."""
    import yaml

    from vidx.configs import config

    presets = {}
    for name in ("cpu", "gpu", "cluster"):
        with open(config.preset_path(name)) as f:
            presets[name] = yaml.safe_load(f) or {}

    def preset_value(data: dict, key: str):
        for k in key.split("."):
            if not isinstance(data, dict) or k not in data:
                return ""
            data = data[k]
        return data

    rows = []
    top = config.Config()
    for f in dataclasses.fields(top):
        sub = getattr(top, f.name)
        fields = [(f"{f.name}.{g.name}", g, getattr(sub, g.name)) for g in dataclasses.fields(sub)] \
            if dataclasses.is_dataclass(sub) else [(f.name, f, sub)]
        for key, fld, default in fields:  # each key as declared once (configs/config.py: key(default, help, valid))
            rows.append({"key": key, "default": default, **{p: preset_value(d, key) for p, d in presets.items()},
                         "valid": fld.metadata.get("valid", ""), "meaning": fld.metadata.get("help", "")})
    return rows


def _cell(v) -> str:
    if v == "" or v is None:
        return ""
    s = str(v).lower() if isinstance(v, bool) else str(v)
    return f"`{s}`".replace("|", "\\|")


def config_markdown() -> str:
    lines = ["| key | default | cpu | gpu | cluster | valid (v) | meaning |", "|---|---|---|---|---|---|---|"]
    for r in config_rows():
        lines.append(f"| `{r['key']}` | {_cell(r['default'])} | {_cell(r['cpu'])} | {_cell(r['gpu'])} | "
                     f"{_cell(r['cluster'])} | {_cell(r['valid'])} | {r['meaning'].replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _column_notes(module, const: str) -> dict[str, str]:
    """The comments beside each ``pa.field(...)`` of ``const = pa.schema([...])`` in ``module``'s source."""
    src = inspect.getsource(module)
    m = re.search(rf"^{const} = pa\.schema\(\[(.*?)^\]", src, re.M | re.S)
    notes: dict[str, str] = {}
    for line in (m.group(1).splitlines() if m else []):
        names = re.findall(r'pa\.field\("(\w+)"', line)
        c = re.search(r"#\s*(.*)$", line)
        for n in names:
            notes[n] = c.group(1).strip() if c else ""
    return notes


def schemas_markdown() -> str:
    from vidx.indexing import schemas
    from vidx.indexing.people import files
    from vidx.indexing.tables import SCHEMAS

    parts = []
    tables = {**{n: (schemas, n.upper(), s) for n, s in SCHEMAS.items()},
              **{n: (files, n.upper(), getattr(files, n.upper())) for n in ("identities", "people", "gallery")}}
    for name, (module, const, schema) in tables.items():
        notes = _column_notes(module, const)
        parts.append(f"### `{name}`\n\n| column | type | nullable | note |\n|---|---|---|---|")
        for fld in schema:
            note = notes.get(fld.name, "").replace("|", "/")
            parts.append(f"| `{fld.name}` | `{fld.type}` | {'yes' if fld.nullable else 'no'} | {note} |")
        parts.append("")
    return "\n".join(parts)


GENERATORS = {"cli": cli_markdown, "config": config_markdown, "schemas": schemas_markdown}


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ARG001 - MkDocs' hook signature
    return MARKER.sub(lambda m: GENERATORS[m.group(1)](), markdown)
