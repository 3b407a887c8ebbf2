"""Exact duplicate rows of an ingest: the row hashes of the read pass find candidate groups, and only their rows are
grouped exactly (a hash collision never counts)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from core import schema as S
from core.ingest.reader import count
from core.ingest.validation import CHECKED

HASHES_PER_PASS = 50_000_000  # row hashes sorted at once when looking for exact duplicates (400 MB)


def exact_duplicates(
    con: duckdb.DuckDBPyConnection, key: str, show_user: Callable[[Any], Any], examples: int
) -> tuple[int, list[dict[str, Any]]]:
    """Exact duplicate rows among those accepted (or dropped as duplicates), and the ``examples`` largest groups.

    The row hash ``h`` (computed in the read pass) finds candidate groups (:func:`repeated_hashes`); only
    their rows are then grouped exactly, so a hash collision never counts.
    """
    kept = f"(reason IS NULL OR reason = '{S.R_DUPLICATE}')"
    repeated = repeated_hashes(con, f"SELECT h FROM {CHECKED} WHERE {kept}")
    if not len(repeated):
        return 0, []
    con.register("__repeated", pd.DataFrame({"h": repeated}))
    try:
        groups = con.execute(
            "SELECT n, first_row, u, i, ts, b, v, sum(n - 1) OVER () FROM (SELECT count(*) AS n, "
            "min(row) AS first_row, any_value(u) AS u, any_value(i) AS i, any_value(ts) AS ts, any_value(b) AS b, "
            f"any_value(v) AS v FROM {CHECKED} WHERE {kept} AND h IN (SELECT h FROM __repeated) "
            f"GROUP BY {key} HAVING count(*) > 1) ORDER BY n DESC, first_row LIMIT {examples}"
        ).fetchall()
    finally:
        con.unregister("__repeated")
    keys = ("copies", "first_row", S.USER_ID, S.ITEM_ID, S.TIMESTAMP, S.BEHAVIOR, S.VALUE)
    shown = [dict(zip(keys, (r[0], r[1], show_user(r[2]), r[3], str(r[4]), r[5], r[6]))) for r in groups]
    return (int(groups[0][7]) if groups else 0), shown


def repeated_hashes(con: duckdb.DuckDBPyConnection, query: str, per_pass: int = HASHES_PER_PASS) -> np.ndarray:
    """The hashes (UBIGINT column ``h`` of ``query``) that occur more than once, sorted.

    Sorted in numpy: DuckDB's GROUP BY over 10M distinct hashes took 2.3 s, fetching and sorting them 0.3 s.
    Above ``per_pass`` rows, in passes over ranges of the hash's top bits (memory: 8 bytes per row of a pass)."""
    rows = count(con, f"SELECT count(*) FROM ({query})")
    bits = max(0, math.ceil(math.log2(max(1, rows) / per_pass)))
    found = []
    for part in range(1 << bits):
        where = f" WHERE h >> {64 - bits} = {part}" if bits else ""
        h = con.execute(f"SELECT h FROM ({query}){where}").fetchnumpy()["h"]
        h = np.sort(np.asarray(h, dtype=np.uint64))
        found.append(np.unique(h[1:][h[1:] == h[:-1]]))
    return np.concatenate(found) if found else np.zeros(0, np.uint64)
