"""Compare two indexes table by table: every table vidx writes, the identities and people, by
content (rows sorted, every column, thumbnails included), and the FAISS files byte for byte.
A refactor that must not change behaviour shows "ALL IDENTICAL" on the same videos indexed
before and after it.

    python bench/compare_indexes.py OLD_INDEX NEW_INDEX
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pyarrow as pa

from vidx.indexing import people
from vidx.indexing.tables import SCHEMAS, read_index_table


def _sorted(t: pa.Table) -> pa.Table:
    plain = [c for c in t.column_names
             if not any(f(t.schema.field(c).type) for f in (pa.types.is_list, pa.types.is_fixed_size_list,
                                                             pa.types.is_binary, pa.types.is_large_binary))]
    return t.sort_by([(c, "ascending") for c in plain])


def main(argv: list[str]) -> int:
    a, b = argv
    same = True
    pairs = [(name, read_index_table(a, name), read_index_table(b, name)) for name in SCHEMAS]
    pairs += [(name, people.load(a)[i], people.load(b)[i]) for i, name in enumerate(("identities", "people"))]
    for name, x, y in pairs:
        eq = _sorted(x).equals(_sorted(y))
        same &= eq
        print(f"{name:16} rows {x.num_rows:6d} {y.num_rows:6d}  {'identical' if eq else 'DIFFERENT'}")
    for f in ("faces.faiss", "faces.ids.parquet"):
        pa_, pb = Path(a, f), Path(b, f)
        if pa_.exists() or pb.exists():
            eq = pa_.exists() and pb.exists() and \
                hashlib.sha256(pa_.read_bytes()).digest() == hashlib.sha256(pb.read_bytes()).digest()
            same &= eq
            print(f"{f:16} {'byte-identical' if eq else 'DIFFERENT'}")
    print("ALL IDENTICAL" if same else "DIFFERENCES")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
