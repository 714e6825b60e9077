"""The import graph runs one way: the store is used by the tables and the lease, never the other
way round, and each module of the people package uses only the ones above it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEOPLE = ["files", "clustering", "corrections", "naming", "assemble", "resume", "refresh", "edits", "review"]


def _imports(path: Path) -> set[str]:
    """Every vidx module a file imports, at the top or inside functions."""
    got = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("vidx"):
            got.add(n.module)
            got.update(f"{n.module}.{a.name}" for a in n.names)
        elif isinstance(n, ast.Import):
            got.update(a.name for a in n.names if a.name.startswith("vidx"))
    return got


def test_the_store_imports_neither_the_tables_nor_the_lease():
    got = _imports(ROOT / "indexing" / "store.py")
    assert not {m for m in got if m.startswith(("vidx.indexing.tables", "vidx.indexing.lease", "vidx.indexing.people"))}


def test_each_people_module_uses_only_those_above_it():
    for i, name in enumerate(PEOPLE):
        got = {m.split(".")[3] for m in _imports(ROOT / "indexing" / "people" / f"{name}.py")
               if m.startswith("vidx.indexing.people.")}
        assert got <= set(PEOPLE[:i]), f"people.{name} imports {sorted(got - set(PEOPLE[:i]))}"


def test_a_fresh_interpreter_imports_each_module_first():
    import subprocess
    import sys

    for mod in ("vidx.indexing.tables", "vidx.indexing.lease", "vidx.indexing.store", "vidx.indexing.people.review"):
        p = subprocess.run([sys.executable, "-c", f"import {mod}"], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr


FLOORS = ["configs", "indexing", "workers", "jobs"]  # each floor imports only the floors below it


def test_no_floor_imports_one_above_it():
    """configs < indexing < workers < jobs: the tables and queries never import the models or the
    jobs, the models never the jobs (the query reads the action labels from the index, not from
    the action model's module)."""
    up = []
    for i, floor in enumerate(FLOORS):
        for path in sorted((ROOT / floor).rglob("*.py")):
            for m in _imports(path):
                to = m.split(".")[1] if m.count(".") else ""
                if to in FLOORS and FLOORS.index(to) > i:
                    up.append(f"{path.relative_to(ROOT)} imports {m}")
    assert not up, up


def test_every_exception_is_declared_in_the_one_errors_module():
    """vidx/configs/errors.py declares every exception (the rest import them; a private one that
    only stops a loop inside a function may stay there); a user-facing one is a VidxError, which the
    CLI turns into one line and exit status 2."""
    elsewhere = []
    for floor in FLOORS:
        for path in sorted((ROOT / floor).rglob("*.py")):
            if path == ROOT / "configs" / "errors.py":
                continue
            for n in ast.walk(ast.parse(path.read_text())):
                if isinstance(n, ast.ClassDef) and not n.name.startswith("_") and any(
                        isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception", "Error_")) or b.id in
                                                     ("VidxError", "FileExistsError")) for b in n.bases):
                    elsewhere.append(f"{path.relative_to(ROOT)}: class {n.name}")
    assert not elsewhere, elsewhere
    from vidx.configs import errors

    user = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, Exception)
            and c.__module__ == errors.__name__ and c.__name__ not in ("AlreadyExists", "Changed")]
    assert len(user) >= 20 and all(issubclass(c, errors.VidxError) for c in user)


def test_every_module_over_500_lines_says_why_in_the_manual():
    """A maintainer reading docs/internals/layout.md learns why each long module is one file."""
    layout = (ROOT / "docs" / "internals" / "layout.md").read_text()
    long = [p.relative_to(ROOT).as_posix() for floor in ("jobs", "workers", "indexing", "configs")
            for p in sorted((ROOT / floor).rglob("*.py")) if len(p.read_text().splitlines()) > 500]
    assert long, "no long module left: drop this test and the manual's list"
    unsaid = [m for m in long if f"`{m}`" not in layout]
    assert not unsaid, f"modules over 500 lines that docs/internals/layout.md does not explain: {unsaid}"
