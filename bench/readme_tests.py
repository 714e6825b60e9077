"""Write the suite's own numbers into the README's test section (between its tests:begin / tests:end
markers), from the report every pytest run leaves in test-artifacts/test-report.json (tests/conftest.py).

    python bench/readme_tests.py [--report test-artifacts/test-report.json] [--check]

Run it after the fresh-clone run whose numbers the README should give (`.ci/run`, or `pytest` in a
fresh clone); --check exits 1 when the README's block differs from the report (nothing written).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- tests:begin (bench/readme_tests.py writes this block) -->", "<!-- tests:end -->"


def block(rep: dict) -> str:
    c = rep["counts"]
    m, s = divmod(int(rep["wall_s"]), 60)
    cmd = " ".join(["pytest", *rep["args"]])
    lines = [BEGIN,
             f"Last full run ({rep['date']}, {'CI' if rep['ci'] else 'a local run'}, {rep['cpus']} CPUs, Python "
             f"{rep['python']}, `{cmd}`): **{c['passed']} passed, {c['failed']} failed, "
             f"{c['skipped']} skipped** in {m}:{s:02d}. The slowest tests:",
             "",
             "| test | s |", "|---|---:|"]
    lines += [f"| `{t['test']}` | {t['s']} |" for t in rep["slowest"]]
    lines.append(END)
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--report", type=Path, default=ROOT / "test-artifacts" / "test-report.json")
    ap.add_argument("--readme", type=Path, nargs="+", default=[ROOT / "README.md", ROOT / "docs" / "development" / "tests.md"],
                    help="the files holding the block (the README and the manual's Tests page)")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    if not args.report.is_file():
        print(f"{args.report} is missing: run the test suite first (tests/conftest.py writes it)", file=sys.stderr)
        return 2
    rep = json.loads(args.report.read_text())
    pat = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)
    same = True
    for path in args.readme:
        text = path.read_text()
        if not pat.search(text):
            print(f"{path} has no {BEGIN} ... {END} block", file=sys.stderr)
            return 2
        new = pat.sub(lambda _: block(rep), text)
        same &= new == text
        if not args.check:
            path.write_text(new)
    if args.check:
        return 0 if same else 1
    print(block(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
