"""A Parquet log of number columns reads as its text would (numbers skip the trim, core.ingest.validation), and exact
duplicates are found by sorted row hashes, in one pass or several (core.ingest.duplicates.repeated_hashes)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core import schema as S
from core.ingest.duplicates import repeated_hashes
from core.ingest.options import IngestOptions
from core.ingest.pipeline import ingest

T0 = 1_700_000_000
# user, item, timestamp (seconds, a float, or none), behavior, value: good rows, exact copies, a missing and an
# unreadable time, a time out of range, a missing rating, a rating out of range
ROWS: list[tuple[Any, ...]] = [
    (1, 10, T0, "view", None),
    (1, 11, T0 + 60, "rate", 4.0),
    (1, 11, T0 + 60, "rate", 4.0),
    (1, 11, T0 + 60, "rate", 4.0),
    (2, 10, float(T0 + 5), "click", None),
    (2, 12, None, "view", None),
    (2, 13, float("nan"), "view", None),
    (3, 10, 10**20, "view", None),
    (3, 12, T0 + 9, "rate", None),
    (3, 14, T0 + 11, "rate", 9.5),
    (4, 15, T0 * 1000 + 7, "cart", 1.5),
]


def _parquet() -> bytes:
    columns = list(zip(*ROWS))
    table = pa.table(
        {
            "user_id": pa.array(columns[0], pa.int64()),
            "item_id": pa.array(columns[1], pa.int32()),
            "timestamp": pa.array([None if t is None else float(t) for t in columns[2]], pa.float64()),
            "behavior": pa.array(columns[3]),
            "value": pa.array(columns[4], pa.float64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _csv() -> str:
    def text(x: Any) -> str:
        if x is None:
            return ""
        if isinstance(x, float) and x == x and abs(x) < 9e15 and x == int(x):
            return str(int(x))  # as the Parquet reader writes an integral float
        return str(x)

    return "user_id,item_id,timestamp,behavior,value\n" + "".join(",".join(map(text, r)) + "\n" for r in ROWS)


def test_a_number_log_in_parquet_reads_as_its_text(ws: Any, write_file: Any) -> None:
    typed = ingest(ws, write_file("log.parquet", _parquet()), options=IngestOptions(name="p", keep_ids=True))
    text = ingest(ws, write_file("log.csv", _csv()), options=IngestOptions(name="c", keep_ids=True))
    a, b = typed.to_dict(), text.to_dict()
    assert a["rejected_by_reason"] == b["rejected_by_reason"] != {}
    assert set(a["rejected_by_reason"]) >= {S.R_MISSING_TIME, S.R_BAD_TIME, S.R_MISSING_RATING, S.R_RATING_RANGE}
    for key in ("rows_read", "rows_accepted", "users", "items", "behaviors", "duplicates", "time_range"):
        assert a[key] == b[key], key
    assert a["duplicates"] == 2 and a["duplicate_examples"][0]["copies"] == 3
    fields = ", ".join(S.EVENT_FIELDS)
    query = f"SELECT {fields} FROM events WHERE dataset = ? ORDER BY row"
    pd.testing.assert_frame_equal(ws.query(query, ["p"]), ws.query(query, ["c"]))


@pytest.mark.parametrize("per_pass", [1, 3, 1000])
def test_repeated_hashes_in_passes_are_those_of_one_pass(per_pass: int) -> None:
    import duckdb

    rng = np.random.default_rng(0)
    values = rng.integers(0, 2**64, size=200, dtype=np.uint64)
    hashes = np.concatenate([values, values[:7], values[:3], np.array([2**64 - 1, 2**64 - 1, 0, 0], np.uint64)])
    con = duckdb.connect()
    con.register("hashes", {"h": rng.permutation(hashes)})
    found = repeated_hashes(con, "SELECT h::UBIGINT AS h FROM hashes", per_pass=per_pass)
    assert sorted(found.tolist()) == sorted({*values[:7].tolist(), 2**64 - 1, 0})
